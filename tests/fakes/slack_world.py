"""The state behind the fake Slack Web API: channels with threads and message metadata, files,
user groups. Modelled on the API reference so the real `slack_sdk` sees what Slack would send.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class SlackError(Exception):
    """An `{"ok": false, "error": code}` answer (Slack answers errors with HTTP 200)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class StoredFile:
    id: str
    name: str
    content: bytes
    user: str = "U_UPLOADER"
    title: str | None = None


@dataclass
class SlackWorld:
    bot_token: str
    base: str = ""  # http://127.0.0.1:port, set by the server once bound
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    public: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_ts: float = 0.0

    # --- helpers for tests -------------------------------------------------------------
    def add_file(self, file_id: str, name: str, content: bytes, user: str = "U1") -> None:
        self.files[file_id] = StoredFile(id=file_id, name=name, content=content, user=user)

    def channel(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.messages.get(channel, [])]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.channel(channel) if m.get("thread_ts") == ts and m["ts"] != ts]

    # --- API methods -------------------------------------------------------------------
    def _next_ts(self) -> str:
        """Like Slack's: wall-clock seconds with microseconds, unique and increasing."""
        self._last_ts = max(time.time(), self._last_ts + 1e-6)
        return f"{self._last_ts:.6f}"

    def _find(self, channel: str, ts: str) -> dict[str, Any]:
        for message in self.messages.get(channel, []):
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    def post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            raise SlackError("channel_not_found")
        if not args.get("text") and not args.get("blocks"):
            raise SlackError("no_text")
        with self._lock:
            message = {"type": "message", "ts": self._next_ts(), "user": "UBOT", "bot_id": "BBOT",
                       "text": args.get("text", ""), "blocks": _json(args.get("blocks")) or []}
            if args.get("thread_ts"):
                message["thread_ts"] = str(args["thread_ts"])
                parent = self._find(channel, str(args["thread_ts"]))
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
            if args.get("metadata"):
                message["metadata"] = _json(args["metadata"])
            self.messages.setdefault(channel, []).append(message)
            return {"channel": channel, "ts": message["ts"], "message": dict(message)}

    def update_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        with self._lock:
            message = self._find(channel, ts)
            for key in ("text", "blocks", "metadata"):
                if args.get(key) is not None:
                    message[key] = _json(args[key])
            return {"channel": channel, "ts": ts, "text": message["text"]}

    def history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        top = [m for m in self.channel(channel) if m.get("thread_ts") in (None, m["ts"])]
        return self._page(list(reversed(top)), args)

    def replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        with self._lock:
            parent = dict(self._find(channel, ts))
        return self._page([parent, *self.thread(channel, ts)], args)

    def _page(self, rows: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
        oldest = float(args.get("oldest") or 0)
        rows = [m for m in rows if float(m["ts"]) >= oldest]
        if str(args.get("include_all_metadata", "")).lower() not in ("true", "1"):
            rows = [{k: v for k, v in m.items() if k != "metadata"} for m in rows]
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        chunk = rows[start:start + limit]
        more = start + limit < len(rows)
        meta = {"next_cursor": str(start + limit) if more else ""}
        return {"messages": chunk, "has_more": more, "response_metadata": meta}

    def file_info(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self.files.get(str(args.get("file")))
        if stored is None:
            raise SlackError("file_not_found")
        url = f"{self.base}/files-pri/T1-{stored.id}/{stored.name}"
        return {"file": {"id": stored.id, "name": stored.name, "title": stored.name,
                         "size": len(stored.content), "user": stored.user, "filetype": "text",
                         "url_private": url, "url_private_download": url + "?download=1"}}

    def get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"FUP{len(self.uploads) + 1:05d}"
        self.uploads[file_id] = b""
        return {"upload_url": f"{self.base}/upload/v1/{file_id}", "file_id": file_id}

    def complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = _json(args.get("files")) or []
        for item in files:
            if not self.uploads.get(item["id"]):
                raise SlackError("file_upload_not_completed")
        channel = args.get("channel_id")
        if channel:
            with self._lock:
                message = {"type": "message", "ts": self._next_ts(), "user": "UBOT",
                           "text": args.get("initial_comment") or "", "files": files,
                           "upload": True}
                if args.get("thread_ts"):
                    message["thread_ts"] = str(args["thread_ts"])
                self.messages.setdefault(str(channel), []).append(message)
        return {"files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    def usergroup_users(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup"))
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def uploaded_pngs(self) -> list[bytes]:
        return [data for data in self.uploads.values() if data.startswith(b"\x89PNG")]


def _json(value: Any) -> Any:
    """Form-encoded calls carry JSON arguments as strings; JSON calls carry them as objects."""
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value
