"""Who may cancel other people's jobs: configured admins and the on-call user group.

Group membership comes from usergroups.users.list and is cached for `ttl_s`, so a burst of
cancel clicks costs one Slack call. If Slack cannot answer, the last known list is used; with
none, nobody is treated as on-call (fail closed — the creator and admins can still cancel).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from tunebridge.access import Grants

log = logging.getLogger(__name__)


class OncallDirectory:
    def __init__(self, *, client: WebClient, usergroup: str | None, admins: Collection[str],
                 ttl_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.usergroup = usergroup
        self.admins = frozenset(admins)
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._members: frozenset[str] | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def grants(self, user_id: str) -> Grants:
        if user_id in self.admins:
            return Grants(admin=True)
        return Grants(oncall=user_id in self.members())

    def members(self) -> frozenset[str]:
        if self.usergroup is None:
            return frozenset()
        with self._lock:
            fresh = self._monotonic() - self._fetched_at < self.ttl_s
            if self._members is None or not fresh:
                self._refresh(self.usergroup)
            return self._members or frozenset()

    def _refresh(self, usergroup: str) -> None:
        try:
            response = self.client.usergroups_users_list(usergroup=usergroup)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.warning("on-call group %s unavailable, using the last known list: %s",
                        usergroup, exc)
            return
        self._members = frozenset(str(u) for u in response.get("users") or [])
        self._fetched_at = self._monotonic()
