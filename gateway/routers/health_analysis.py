from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from gateway.dependencies import ReadKey
from tunebridge.errors import InvalidInput, PayloadTooLarge
from tunebridge.health import analyze_text

router = APIRouter(prefix="/api/health", tags=["health"])

MAX_METRICS_BYTES = 64 << 20


@router.post("")
async def analyze_metrics(request: Request, _: ReadKey) -> dict[str, Any]:
    """Body: a trainer_state.json, our metrics JSONL, or an OpenAI step-metrics CSV."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_METRICS_BYTES:
            raise PayloadTooLarge(MAX_METRICS_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("not_utf8", f"Invalid UTF-8 at byte offset {exc.start}.") from None
    return await run_in_threadpool(analyze_text, text)
