"""From what a user pointed at to a stored, validated dataset.

Three sources: a dataset id (already stored), a Slack file (files.info, then `url_private`
streamed with the bot token straight into the blob store), or a URL on an allow-listed host.
The bot token is only ever sent to Slack's own file hosts; URLs are fetched without credentials
and without following redirects, so an allowed host cannot bounce us elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import urlsplit

import httpx
from slack_sdk import WebClient

from storage.blobs import BlobTooLarge
from storage.tables import Dataset
from tunebridge import datasets
from tunebridge.errors import InvalidInput, PayloadTooLarge, Problem
from tunebridge.runtime import Runtime

DATASET_ID = re.compile(r"^ds_[A-Za-z0-9]+$")
FILE_ID = re.compile(r"^F[A-Z0-9]{6,}$")
PERMALINK = re.compile(r"/files/[^/]+/(F[A-Z0-9]{6,})(?:/|$)")
CHUNK = 1 << 20


def slack_file_id(source: str) -> str | None:
    if FILE_ID.match(source):
        return source
    match = PERMALINK.search(urlsplit(source).path) if "://" in source else None
    return match.group(1) if match else None


class DatasetIntake:
    def __init__(self, *, runtime: Runtime, client: WebClient, bot_token: str,
                 allowed_hosts: Collection[str]) -> None:
        self.runtime = runtime
        self.client = client
        self._token = bot_token
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self._slack_hosts = {urlsplit(client.base_url).hostname or "slack.com"}

    def resolve(self, source: str, *, creator: str) -> Dataset:
        source = source.strip()
        if DATASET_ID.match(source):
            return datasets.get_dataset(db=self.runtime.db, dataset_id=source)
        file_id = slack_file_id(source)
        if file_id is not None:
            return self._from_slack(file_id, creator)
        if urlsplit(source).scheme in ("http", "https"):
            return self._from_url(source, creator)
        raise InvalidInput("unknown_dataset_source",
                           f"`{source}` is not a dataset id, a Slack file or a URL.",
                           [Problem("unknown_dataset_source", "Unrecognised dataset.",
                                    field="dataset")])

    def _is_slack_host(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return host in self._slack_hosts or host == "slack.com" or host.endswith(".slack.com")

    def _from_slack(self, file_id: str, creator: str) -> Dataset:
        info = self.client.files_info(file=file_id)["file"]
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        if not self._is_slack_host(url):
            raise InvalidInput("slack_file_unavailable", "Slack gave no downloadable file URL.")
        if int(info.get("size") or 0) > self.runtime.settings.max_upload_bytes:
            raise PayloadTooLarge(self.runtime.settings.max_upload_bytes)
        headers = {"Authorization": f"Bearer {self._token}"}
        return self._download(url, headers, str(info.get("name") or file_id), creator)

    def _from_url(self, url: str, creator: str) -> Dataset:
        host = (urlsplit(url).hostname or "").lower()
        if host not in self.allowed_hosts:
            allowed = ", ".join(sorted(self.allowed_hosts)) or "no host (ask an admin)"
            raise InvalidInput(
                "dataset_host_not_allowed", f"Datasets can only be fetched from: {allowed}.",
                [Problem("dataset_host_not_allowed", f"{host} is not allowed.", field="dataset")])
        name = urlsplit(url).path.rsplit("/", 1)[-1] or "download.jsonl"
        return self._download(url, {}, name, creator)

    def _download(self, url: str, headers: dict[str, str], name: str, creator: str) -> Dataset:
        settings = self.runtime.settings
        try:
            with httpx.stream("GET", url, headers=headers, timeout=60,
                              follow_redirects=False) as response:
                if response.status_code != 200:
                    raise InvalidInput(
                        "download_failed",
                        f"Could not download {name} (HTTP {response.status_code}); if it is a "
                        "Slack file, share it in a channel the bot is in.")
                staged = self.runtime.blobs.stage(response.iter_bytes(CHUNK),
                                                  max_bytes=settings.max_upload_bytes)
        except BlobTooLarge:
            raise PayloadTooLarge(settings.max_upload_bytes) from None
        except httpx.HTTPError as exc:
            raise InvalidInput("download_failed", f"Could not download {name}: {exc}.") from exc
        stored = datasets.store_dataset(
            db=self.runtime.db, blobs=self.runtime.blobs, clock=self.runtime.clock,
            staged=staged, filename=name, creator=creator,
            limits=self.runtime.validation_limits)
        return stored.dataset
