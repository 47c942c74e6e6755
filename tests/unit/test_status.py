from __future__ import annotations

import pytest

from tunebridge.status import (
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    JobStatus,
    check_transition,
)


def test_every_status_has_a_row_and_terminal_rows_are_empty() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
    for status in set(JobStatus) - TERMINAL:
        assert TRANSITIONS[status], f"{status} is a dead end"


def test_every_status_is_reachable_from_an_initial_one() -> None:
    seen, frontier = set(INITIAL), list(INITIAL)
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(JobStatus)


@pytest.mark.parametrize(("current", "target"), [
    (JobStatus.SUCCEEDED, JobStatus.CANCELLED),
    (JobStatus.CANCELLED, JobStatus.RUNNING),
    (JobStatus.FAILED, JobStatus.QUEUED),
    (JobStatus.RUNNING, JobStatus.QUEUED),
    (JobStatus.CANCELLING, JobStatus.RUNNING),
])
def test_illegal_transitions_raise_a_conflict(current: JobStatus, target: JobStatus) -> None:
    with pytest.raises(IllegalTransition) as raised:
        check_transition("job_1", current, target)
    assert raised.value.code == "illegal_transition"
    assert raised.value.details == {"job_id": "job_1", "status": str(current),
                                    "requested": str(target)}


def test_the_happy_path_is_legal() -> None:
    path = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.CANCELLED]
    for current, target in zip(path, path[1:], strict=False):
        check_transition("job_1", current, target)
