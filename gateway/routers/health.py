from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from gateway.dependencies import RuntimeDep
from storage import migration

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers. Readiness (database, schema) is /readyz."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    def check() -> dict[str, str]:
        runtime.db.ping()
        return {"database": "ok",
                "schema": "ok" if migration.is_at_head(runtime.db.engine) else "behind"}

    try:
        checks = await run_in_threadpool(check)
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__},
                            status_code=503)
    ready = checks["schema"] == "ok"
    return JSONResponse({"status": "ready" if ready else "unavailable", **checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.telemetry.registry
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
