"""Domain errors → JSON `{"error": {...}}` with the right status code."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.database import DatabaseUnavailable
from tunebridge.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TunebridgeError,
    Unauthorized,
    Unavailable,
)

STATUS_BY_ERROR: list[tuple[type[TunebridgeError], int]] = [
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (Unavailable, 503),
]


def status_for(error: TunebridgeError) -> int:
    return next((code for kind, code in STATUS_BY_ERROR if isinstance(error, kind)), 400)


def error_response(error: TunebridgeError) -> JSONResponse:
    body = {"code": error.code, "message": error.message,
            "problems": [p.as_dict() for p in error.problems], "details": error.details}
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    if isinstance(error, Unavailable):
        headers = {"Retry-After": "5"}
    return JSONResponse({"error": body}, status_code=status_for(error), headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(TunebridgeError)
    async def _domain(_: Request, exc: TunebridgeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return error_response(Unavailable())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"code": "invalid_field", "message": err.get("msg", "invalid"),
             "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body")}
            for err in exc.errors()
        ]
        return JSONResponse(
            {"error": {"code": "invalid_request", "message": "The request is not valid.",
                       "problems": problems, "details": {}}},
            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail), "problems": [], "details": {}}},
            status_code=exc.status_code)
