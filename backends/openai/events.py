"""Incremental event reading: the API lists newest first, we store oldest→newest, exactly once.

The cursor the services persist is the id (and timestamp) of the newest event already handed
over. Each poll pages backwards from the newest event with `after` until it meets that id, then
returns what it passed, reversed. Because the cursor is all the state there is, a fresh backend
instance after a gateway restart continues exactly where the last one stopped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from openai.types.fine_tuning import FineTuningJobEvent

PageFetcher = Callable[[str | None], Awaitable[tuple[list[FineTuningJobEvent], bool]]]


@dataclass(frozen=True)
class EventCursor:
    """Where the last poll stopped. Serialised as a small JSON string (opaque to the services)."""

    last_event_id: str | None = None
    last_event_at: int | None = None

    @classmethod
    def load(cls, raw: str | None) -> EventCursor:
        """Accept our JSON, or a bare event id (hand-written or from an older format)."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls(last_event_id=raw)
        if not isinstance(data, dict):
            return cls(last_event_id=raw)
        at = data.get("at")
        return cls(last_event_id=data.get("id"), last_event_at=at if isinstance(at, int) else None)

    def dump(self) -> str | None:
        if self.last_event_id is None:
            return None
        return json.dumps({"id": self.last_event_id, "at": self.last_event_at}, sort_keys=True)

    def is_known(self, event: FineTuningJobEvent) -> bool:
        """True once paging reaches events handed over before.

        The id match is exact. The timestamp check guards against an id that vanished (the
        provider may prune old events): anything strictly older than the newest event we stored
        was already seen. Same-second events are decided by id only, so none is skipped.
        """
        if event.id == self.last_event_id:
            return True
        return self.last_event_at is not None and event.created_at < self.last_event_at


async def new_events(
    fetch_page: PageFetcher, cursor: EventCursor
) -> tuple[list[FineTuningJobEvent], EventCursor]:
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
    newest_first: list[FineTuningJobEvent], cursor: EventCursor
) -> tuple[list[FineTuningJobEvent], EventCursor]:
    if not newest_first:
        return [], cursor
    newest = newest_first[0]
    return list(reversed(newest_first)), EventCursor(newest.id, newest.created_at)
