"""Slack Web API clients: one for listeners (waits out rate limits), one for the notifier.

The notifier's client waits in place only for short Retry-After pauses; a longer one surfaces
as an error so the outbox can park that channel (DeliveryFailed(retry_after)) while other
channels keep flowing. Neither client retries a 5xx or a dropped connection by itself: Slack may
have acted, and only the notifier knows how to check (message metadata) before trying again.
"""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk import WebClient
from slack_sdk.http_retry import RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from tunebridge.settings import Settings

DEFAULT_API_URL = "https://slack.com/api/"


def retry_after(headers: Mapping[str, list[str] | str] | None) -> float | None:
    """Slack's Retry-After header in seconds (header names arrive in any case)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return float(raw)
            except ValueError:
                return None
    return None


class ShortRateLimitRetry(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler, limited to pauses of at most `max_wait_s`."""

    def __init__(self, max_wait_s: float, max_retry_count: int = 2) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after(response.headers)
        return wait is not None and wait <= self.max_wait_s


def web_client(settings: Settings, handlers: list[RetryHandler]) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url or DEFAULT_API_URL,
                     timeout=15, retry_handlers=handlers)


def listener_client(settings: Settings) -> WebClient:
    return web_client(settings, [RateLimitErrorRetryHandler(max_retry_count=3)])


def notifier_client(settings: Settings, max_inline_wait_s: float = 2.0) -> WebClient:
    return web_client(settings, [ShortRateLimitRetry(max_inline_wait_s)])
