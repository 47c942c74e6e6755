"""One error vocabulary for users: a code, a message and where. HTTP and Slack render it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing a user can fix, located as precisely as we know (file, line, column, field)."""

    code: str
    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None
    severity: str = "error"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class TunebridgeError(Exception):
    code: str
    message: str
    problems: list[Problem] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFound(TunebridgeError):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(
            f"{kind}_not_found", f"No {kind} with id {ident!r}.", details={"id": ident}
        )


class InvalidInput(TunebridgeError):
    pass


class Conflict(TunebridgeError):
    pass


class PayloadTooLarge(TunebridgeError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "payload_too_large",
            f"Upload exceeds the limit of {limit} bytes.",
            details={"limit": limit},
        )


class DecompressionRefused(PayloadTooLarge):
    """A compressed upload that expands too far: most likely a decompression bomb."""

    def __init__(self, max_ratio: float, compressed: int, decompressed: int) -> None:
        TunebridgeError.__init__(
            self, "decompression_bomb",
            f"The gzip upload expands more than {max_ratio:g}x ({compressed} compressed bytes "
            f"had already become {decompressed}); it was refused as a likely decompression "
            "bomb and nothing was stored. Upload it uncompressed, or ask for a higher "
            "TUNEBRIDGE_MAX_GZIP_RATIO.",
            details={"max_ratio": max_ratio, "compressed_bytes": compressed,
                     "decompressed_bytes": decompressed})


class Unauthorized(TunebridgeError):
    def __init__(self, message: str = "A valid API key is required.") -> None:
        super().__init__("unauthorized", message)


class Forbidden(TunebridgeError):
    def __init__(self, scope: str) -> None:
        super().__init__(
            "forbidden", f"This API key lacks the {scope!r} scope.", details={"required": scope}
        )


class Unavailable(TunebridgeError):
    def __init__(self, message: str = "The database is unavailable; retry shortly.") -> None:
        super().__init__("unavailable", message)
