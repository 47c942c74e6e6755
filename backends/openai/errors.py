"""Turn SDK exceptions into BackendError, the only failure the services understand.

The rule that matters: throttling, server errors, timeouts and dropped connections are
*retryable* (the poller backs off, the job is never marked failed); a rejected key is a
*configuration* problem (not retryable, and loud), and a 4xx about the request itself is
permanent for that request.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import openai

from backends.base import BackendError

CONFIGURATION_HINT = "configuration error: check the OpenAI API key and base URL settings"


class OpenAIBackendError(BackendError):
    """A BackendError that keeps the provider's HTTP status and error code for callers that care."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status_code: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.status_code = status_code
        self.code = code

    @property
    def is_configuration(self) -> bool:
        return self.status_code in (401, 403)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Read `retry-after-ms`, `retry-after` in seconds, or `retry-after` as an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def translate(exc: openai.OpenAIError, action: str) -> OpenAIBackendError:
    """Map one SDK exception raised while doing `action` (e.g. "retrieve ftjob-1")."""
    if isinstance(exc, openai.APITimeoutError):
        return OpenAIBackendError(f"OpenAI timed out during {action}", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return OpenAIBackendError(f"could not reach OpenAI during {action}: {exc}", retryable=True)
    if not isinstance(exc, openai.APIStatusError):
        return OpenAIBackendError(f"OpenAI SDK error during {action}: {exc}", retryable=False)
    status, code = exc.status_code, _error_code(exc)
    detail = f"OpenAI answered {status} to {action}: {_error_message(exc)}"
    if status in (401, 403):
        return OpenAIBackendError(
            f"{CONFIGURATION_HINT} ({detail})", retryable=False, status_code=status, code=code
        )
    retryable = status in (408, 409, 429) or status >= 500
    retry_after = retry_after_seconds(exc.response.headers) if retryable else None
    return OpenAIBackendError(
        detail, retryable=retryable, retry_after=retry_after, status_code=status, code=code
    )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message


def _error_code(exc: openai.APIStatusError) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None
