"""Delivers outbox rows to Slack, one thread per job and channel.

The first row of a job in a channel posts the status card, which becomes the thread parent
(its ts is the row's receipt, and the job's `slack_thread_ts` for its own channel). Later rows
reply in the thread and refresh the card in place (chat.update: always on a status change, at
most every `card_update_s` for progress); the completion summary that follows a terminal
status carries the loss chart (files_upload_v2). Every message carries the row's dedupe key
in its metadata, so after a crash or an ambiguous failure the notifier searches the channel or
thread before posting again: a restart never posts twice. Slack calls are blocking (slack_sdk's
WebClient) and run in a worker thread; the outbox drains one row at a time, so posts to a
channel are paced there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.blocks.card import card
from bot.blocks.messages import reply
from bot.chart import loss_chart
from bot.clients import retry_after
from storage.database import Database
from tunebridge import progress, threads
from tunebridge.clock import Clock
from tunebridge.completion_summary import KIND as SUMMARY_KIND
from tunebridge.errors import NotFound
from tunebridge.outbox import DeliveryFailed, OutgoingNotification
from tunebridge.progress import JobSnapshot
from tunebridge.threads import Thread

log = logging.getLogger(__name__)

EVENT_TYPE = "tunebridge_notification"
UNREADABLE = frozenset({"not_in_channel", "missing_scope", "channel_not_found",
                        "thread_not_found"})
Receipt = dict[str, Any]


@dataclass(frozen=True)
class Pace:
    post_interval_s: float = 1.0  # Slack: about one message per second per channel
    card_update_s: float = 20.0


class SlackNotifier:
    def __init__(self, *, client: WebClient, db: Database, clock: Clock, pace: Pace,
                 oncall_group: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.db = db
        self.clock = clock
        self.pace = pace
        self.oncall_group = oncall_group
        self._monotonic = monotonic
        self._last_post: dict[str, float] = {}
        self._card_edited: dict[tuple[str, str], float] = {}
        self._searched: str | None = None  # find_delivered just looked for this key

    async def send(self, notification: OutgoingNotification) -> Receipt:
        return await asyncio.to_thread(self._guarded, self._send, notification)

    async def find_delivered(self, dedupe_key: str) -> Receipt | None:
        self._searched = dedupe_key
        return await asyncio.to_thread(self._guarded, self._find, dedupe_key)

    def _guarded(self, call: Callable[[Any], Any], arg: Any) -> Any:
        """Slack's answers as the outbox's vocabulary: DeliveryFailed means "try again later"."""
        try:
            return call(arg)
        except SlackApiError as exc:
            status = exc.response.status_code
            wait = retry_after(dict(exc.response.headers)) if status == 429 else None
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            raise DeliveryFailed(f"slack {status}: {error or exc}", retry_after=wait) from exc
        except (URLError, OSError, SlackRequestError) as exc:
            raise DeliveryFailed(f"slack unreachable: {exc}") from exc

    def _send(self, notification: OutgoingNotification) -> Receipt:
        if not notification.channel or not notification.job_id:
            return {"skipped": "no channel or job"}
        if self._tried_before(notification.dedupe_key):
            found = self._find(notification.dedupe_key)
            if found is not None:
                return found
        try:
            snap = progress.snapshot(db=self.db, job_id=notification.job_id,
                                     now=self.clock.now())
        except NotFound:
            return {"skipped": "job not found"}
        thread = threads.thread_of(db=self.db, job_id=notification.job_id,
                                   channel=notification.channel)
        if thread is None:
            return self._post_card(notification, snap)
        self._refresh_card(snap, thread, force=notification.kind == "status")
        if notification.kind == "progress":
            return {"channel": thread.channel_id, "thread_ts": thread.ts, "card_only": True}
        return self._post_reply(notification, snap, thread)

    def _tried_before(self, dedupe_key: str) -> bool:
        """A row whose earlier attempt may have reached Slack (a 5xx, a lost connection, a
        failure after the post) is looked for before it is posted again. The attempt counter is
        in the database, so this holds across restarts."""
        if self._searched == dedupe_key:
            self._searched = None
            return False  # find_delivered looked a moment ago
        row = threads.queued_notification(db=self.db, dedupe_key=dedupe_key)
        return row is not None and row.attempts > 1

    def _metadata(self, notification: OutgoingNotification, **extra: Any) -> dict[str, Any]:
        payload = {"dedupe_key": notification.dedupe_key, "job_id": notification.job_id}
        return {"event_type": EVENT_TYPE, "event_payload": {**payload, **extra}}

    def _paced(self, channel: str) -> None:
        wait = self._last_post.get(channel, -1e9) + self.pace.post_interval_s - self._monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_post[channel] = self._monotonic()

    def _post_card(self, notification: OutgoingNotification, snap: JobSnapshot) -> Receipt:
        channel = str(notification.channel)
        text, blocks = card(snap)
        self._paced(channel)
        response = self.client.chat_postMessage(
            channel=channel, text=text, blocks=blocks, unfurl_links=False,
            metadata=self._metadata(notification, card=True))
        ts = str(response["ts"])
        threads.record_thread(db=self.db, job_id=snap.job.id, channel=channel, thread_ts=ts)
        self._card_edited[(str(response["channel"]), ts)] = self._monotonic()
        return {"channel": response["channel"], "ts": ts, "thread_ts": ts, "card": True}

    def _refresh_card(self, snap: JobSnapshot, thread: Thread, *, force: bool) -> None:
        key = (thread.channel_id, thread.ts)
        last = self._card_edited.get(key)
        if not force and last is not None and self._monotonic() - last < self.pace.card_update_s:
            return
        text, blocks = card(snap)
        self.client.chat_update(channel=thread.channel_id, ts=thread.ts, text=text, blocks=blocks)
        self._card_edited[key] = self._monotonic()

    def _post_reply(self, notification: OutgoingNotification, snap: JobSnapshot,
                    thread: Thread) -> Receipt:
        data = dict(notification.payload.get("data") or {})
        text, blocks = reply(notification.kind, str(notification.payload.get("text", "")), data,
                             snap, self.oncall_group)
        with_chart = notification.kind == SUMMARY_KIND and len(snap.points) >= 2
        self._paced(thread.channel_id)
        response = self.client.chat_postMessage(
            channel=thread.channel_id, thread_ts=thread.ts, text=text, blocks=blocks,
            metadata=self._metadata(notification, chart="pending" if with_chart else "none"))
        receipt = {"channel": response["channel"], "ts": response["ts"], "thread_ts": thread.ts}
        if with_chart:
            self._attach_chart(notification.dedupe_key, snap, receipt,
                               {"text": text, "blocks": blocks})
        return receipt

    def _attach_chart(self, dedupe_key: str, snap: JobSnapshot, receipt: Receipt,
                      message: dict[str, Any]) -> None:
        """Upload the chart into the thread, then flip the reply's metadata to chart=done: a
        crash in between leaves `pending`, and recovery uploads it then."""
        job = snap.job
        png = loss_chart(snap.points, title=f"{job.id} · {job.base_model}")
        if png is not None:
            self.client.files_upload_v2(
                channel=receipt["channel"], thread_ts=receipt["thread_ts"], content=png,
                filename=f"{job.id}-loss.png", title=f"Loss curves for {job.id}")
        self.client.chat_update(
            channel=receipt["channel"], ts=receipt["ts"], text=message.get("text") or job.id,
            blocks=message.get("blocks") or [],
            metadata={"event_type": EVENT_TYPE,
                      "event_payload": {"dedupe_key": dedupe_key, "job_id": job.id,
                                        "chart": "done"}})

    def _find(self, dedupe_key: str) -> Receipt | None:
        """The receipt of a message already posted for this key, finishing its chart if due."""
        row = threads.queued_notification(db=self.db, dedupe_key=dedupe_key)
        if row is None or not row.channel or not row.job_id:
            return None
        oldest = f"{row.created_at.timestamp() - 300:.6f}"
        thread = threads.thread_of(db=self.db, job_id=row.job_id, channel=row.channel)
        if thread is None:
            found = self._search(dedupe_key, self.client.conversations_history,
                                 channel=row.channel, oldest=oldest)
            if found is None:
                return None
            threads.record_thread(db=self.db, job_id=row.job_id, channel=row.channel,
                                  thread_ts=found["ts"])
            return {"channel": row.channel, "ts": found["ts"], "thread_ts": found["ts"],
                    "card": True, "recovered": True}
        found = self._search(dedupe_key, self.client.conversations_replies,
                             channel=thread.channel_id, ts=thread.ts, oldest=oldest)
        if found is None:
            return None
        receipt = {"channel": thread.channel_id, "ts": found["ts"], "thread_ts": thread.ts,
                   "recovered": True}
        if found["metadata"]["event_payload"].get("chart") == "pending":
            snap = progress.snapshot(db=self.db, job_id=row.job_id, now=self.clock.now())
            self._attach_chart(dedupe_key, snap, receipt, found)
        return receipt

    def _search(self, dedupe_key: str, method: Callable[..., Any], **args: Any
                ) -> dict[str, Any] | None:
        """Page through the channel or thread for the key. Where the bot may post but not read
        (no channels:history, not a member of a public channel), it cannot check: it says so
        and lets the post go ahead — at least once, rather than never."""
        cursor: str | None = None
        while True:
            try:
                page = method(include_all_metadata=True, limit=200, cursor=cursor, **args)
            except SlackApiError as exc:
                if exc.response.get("error") not in UNREADABLE:
                    raise
                log.warning("cannot search %s for %s: %s", args.get("channel"), dedupe_key,
                            exc.response.get("error"))
                return None
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if (metadata.get("event_type") == EVENT_TYPE
                        and payload.get("dedupe_key") == dedupe_key):
                    return dict(message)
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
