"""How the Ray job server's failures read to the poller: unreachable or refusing our token
(retry, alert; the job is not at fault), refusing the request itself (fail), or answering that
a job does not exist or already exists (the executor decides what that means).

The SDK raises RuntimeError("Request failed with status code N: ...") for HTTP errors and
ray.exceptions.AuthenticationError (a RuntimeError) for 401/403.
"""

from __future__ import annotations

import re

from backends.base import BackendError


class RayUnavailable(BackendError):
    """The job server did not answer, or refused our credentials: the job is not at fault."""

    def __init__(self, message: str, *, configuration: bool = False) -> None:
        super().__init__(message, retryable=True)
        self._configuration = configuration

    @property
    def is_configuration(self) -> bool:
        return self._configuration


class RayRejected(BackendError):
    """The job server refused the request itself (4xx): repeating it cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class NotFound(BackendError):
    pass


class AlreadyExists(BackendError):
    pass


def classify(exc: Exception, address: str) -> Exception:
    text = str(exc)
    if type(exc).__name__ == "AuthenticationError" or "status code 401" in text \
            or "status code 403" in text:
        return RayUnavailable(f"Ray job server at {address} refused our credentials "
                              "(TUNEBRIDGE_RAY_DASHBOARD_TOKEN)", configuration=True)
    if "already exists" in text:
        return AlreadyExists(text)
    if "status code 404" in text or "does not exist" in text:
        return NotFound(text)
    if isinstance(exc, OSError):
        return RayUnavailable(f"Ray job server at {address} is unreachable: "
                              f"{type(exc).__name__}")
    if re.search(r"status code 4\d\d", text):
        return RayRejected(f"Ray job server at {address} refused the request: {text[:300]}")
    return RayUnavailable(f"Ray job server at {address} answered: {text[:300]}")
