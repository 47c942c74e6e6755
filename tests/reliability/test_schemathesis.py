"""schemathesis against the live gateway's OpenAPI document (native `/api` and OpenAI-shaped
`/v1` alike), with a valid admin key: whatever it generates, no answer is a 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import LiveApi

pytestmark = pytest.mark.slow

EXAMPLES = 15  # per operation; about 25 operations, the whole file in well under a minute


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only: the property is about the HTTP surface, not the database."""
    yield f"sqlite:///{tmp_path / 'tunebridge.db'}"


def test_no_operation_answers_a_server_error(live: LiveApi) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    paths = set(schema.raw_schema["paths"])
    assert any(p.startswith("/api/") for p in paths) and any(p.startswith("/v1/") for p in paths)
    auth = {"Authorization": f"Bearer {live.admin_key}"}
    server_errors: list[str] = []
    calls: Counter[str] = Counter()

    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(base_url=live.url, headers=auth)
            calls[response.status_code // 100] += 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} -> "
                                     f"{response.status_code}: {response.text[:300]}")

        exercise()
    print(f"schemathesis: {len(paths)} paths, answers by class {dict(calls)}")
    assert sum(calls.values()) > 10 * len(paths)
    assert server_errors == []
