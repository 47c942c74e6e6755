"""HTTP client for the CLI: the CLI is just another API user."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {error.get('code', 'error')}: {error.get('message', body)}")
        self.status = status
        self.body = body


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _json(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"code": "bad_response", "message": response.text[:500]}}
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        return body

    def upload(self, path: Path, *, on_progress: Callable[[int], None] | None = None,
               idempotency_key: str | None = None) -> Any:
        def chunks() -> Iterator[bytes]:
            with path.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    if on_progress:
                        on_progress(len(chunk))
                    yield chunk

        headers = {"Content-Type": "application/jsonl",
                   "Content-Length": str(path.stat().st_size)}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self._http.post("/api/datasets", params={"filename": path.name},
                                   content=chunks(), headers=headers)
        return self._json(response)

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None and v != []}
        return self._json(self._http.get(path, params=clean))

    def post(self, path: str, body: dict[str, Any] | None = None,
             idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self._http.post(path, json=body or {}, headers=headers))
