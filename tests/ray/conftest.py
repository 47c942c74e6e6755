"""A real Ray head for the session (in a private network namespace, see head.py), the tiny model
of the local-trainer tests, and clients that talk to the head as an operator would."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.local.conftest import facts_files, tiny_model  # noqa: F401  (shared fixtures)
from tests.ray.head import RayHead, unshare_works


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    reason = unshare_works()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the Ray tests need a private network namespace in CI: {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="tbray-"))  # short: Ray's socket paths live under it
    head = RayHead(root, token=secrets.token_hex(16))
    try:
        head.start(wait=False)  # ready when a test first asks for its address
        yield head
    finally:
        head.close()
        shutil.rmtree(root, ignore_errors=True)


def ray_client(head: RayHead, token: str | None = None) -> Any:
    """Ray's own SDK, as `ray job status` would use it, to check what Ray recorded."""
    from ray.job_submission import JobSubmissionClient

    bearer = head.token if token is None else token
    return JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {bearer}"})
