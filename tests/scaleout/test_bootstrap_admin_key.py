"""Replicas starting together on an empty PostgreSQL database mint one bootstrap admin key,
not one each: the count and the insert run under a lock held until commit."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tunebridge import api_keys
from tunebridge.runtime import Runtime

REPLICAS = 6


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_replicas_starting_at_once_mint_one_admin_key(runtime: Runtime, tmp_path: Path) -> None:
    start = threading.Barrier(REPLICAS)

    def boot(replica: int) -> Path | None:
        start.wait()
        return api_keys.ensure_admin_key(db=runtime.db, clock=runtime.clock,
                                         path=tmp_path / f"replica{replica}" / "admin.key")

    with ThreadPoolExecutor(REPLICAS) as pool:
        files = [f for f in pool.map(boot, range(REPLICAS)) if f is not None]

    assert len(files) == 1, f"{len(files)} replicas minted a bootstrap key"
    keys = api_keys.list_keys(db=runtime.db)
    assert [k.name for k in keys] == ["bootstrap-admin"]
    token = files[0].read_text().strip()
    assert api_keys.authenticate(db=runtime.db, clock=runtime.clock, token=token).id == keys[0].id
    assert files[0].stat().st_mode & 0o777 == 0o600
