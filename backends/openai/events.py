"""Incremental polling state: events exactly once, oldest→newest, and when to re-read status.

The API lists events newest first. The cursor the services persist holds the id (and time) of
the newest event already handed over; each poll pages backwards with `after` until it meets that
id, then returns what it passed, reversed. The cursor also remembers the job's last status and
when it was read, so a poll that finds only new `metrics` events (a job that is simply training)
can skip the status request: the provider logs a message event with every status change, and a
maximum status age bounds the damage if it ever does not. Because the cursor is all the state
there is, a fresh backend instance after a gateway restart continues exactly where the last one
stopped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from openai.types.fine_tuning import FineTuningJobEvent

PageFetcher = Callable[[str | None], Awaitable[tuple[list[FineTuningJobEvent], bool]]]


@dataclass(frozen=True)
class PollCursor:
    """Where the last poll stopped. Serialised as a small JSON string (opaque to the services)."""

    last_event_id: str | None = None
    last_event_at: int | None = None
    status: str | None = None  # the provider's status word when last read
    checked_at: float | None = None  # when the status was last read (clock seconds)
    n_epochs: int | None = None  # resolved epochs, to turn steps into epochs

    @classmethod
    def load(cls, raw: str | None) -> PollCursor:
        """Accept our JSON, or a bare event id (hand-written or from an older format)."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls(last_event_id=raw)
        if not isinstance(data, dict):
            return cls(last_event_id=raw)
        return cls(
            last_event_id=_typed(data.get("id"), str),
            last_event_at=_typed(data.get("at"), int),
            status=_typed(data.get("status"), str),
            checked_at=_typed(data.get("checked"), float),
            n_epochs=_typed(data.get("epochs"), int),
        )

    def dump(self) -> str:
        keys = ("id", "at", "status", "checked", "epochs")
        values = asdict(self).values()
        return json.dumps({k: v for k, v in zip(keys, values, strict=True) if v is not None})

    def is_known(self, event: FineTuningJobEvent) -> bool:
        """True once paging reaches events handed over before.

        The id match is exact. The timestamp check guards against an id that vanished (the
        provider may prune old events): anything strictly older than the newest event we stored
        was already seen. Same-second events are decided by id only, so none is skipped.
        """
        if event.id == self.last_event_id:
            return True
        return self.last_event_at is not None and event.created_at < self.last_event_at


def _typed(value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


async def new_events(
    fetch_page: PageFetcher, cursor: PollCursor
) -> tuple[list[FineTuningJobEvent], PollCursor]:
    """Return events newer than `cursor`, oldest first, and the cursor to store next."""
    collected: list[FineTuningJobEvent] = []
    seen: set[str] = set()
    after: str | None = None
    while True:
        page, has_more = await fetch_page(after)
        for event in page:
            if cursor.is_known(event):
                return _finish(collected, cursor)
            if event.id not in seen:
                seen.add(event.id)
                collected.append(event)
        if not has_more or not page:
            return _finish(collected, cursor)
        after = page[-1].id


def _finish(
    newest_first: list[FineTuningJobEvent], cursor: PollCursor
) -> tuple[list[FineTuningJobEvent], PollCursor]:
    if not newest_first:
        return [], cursor
    newest = newest_first[0]
    moved = replace(cursor, last_event_id=newest.id, last_event_at=newest.created_at)
    return list(reversed(newest_first)), moved
