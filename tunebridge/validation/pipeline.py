"""Token counting beside parsing: examples' texts are counted in batches on worker threads.

Counting tokens is most of a full validation's time. tiktoken's encoder releases the GIL, so
while worker threads encode one batch, the validating thread parses and checks the next lines.
Everything the validator reports goes through the pipeline in line order (problems, and a slot
per counted example), and batches are resolved oldest first, so the report is exactly the one
a serial pass makes: same problems in the same order, same statistics. Memory stays bounded:
at most `threads` batches of `batch_chars` characters are in flight.

Opt-in (ValidationOptions.token_threads): threads only pay where a core is free and the
counter releases the GIL. On the 2-core development host, busy with other work, counting inline
with bpe-openai (faster, but holding the GIL) beat tiktoken on two threads; a many-core host is
not measured yet.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from tunebridge.errors import Problem
from tunebridge.tokens import BatchCounter, TokenCounter

_BATCH_CHARS = 1 << 20


@dataclass(frozen=True)
class Slot:
    """One example's count: `known` tokens now, plus the counts of texts[start:end]."""

    line: int
    known: int
    start: int
    end: int


@dataclass
class _Batch:
    texts: list[str] = field(default_factory=list)
    items: list[Problem | Slot] = field(default_factory=list)
    chars: int = 0
    future: Future[list[int]] | None = None


class TokenPipeline:
    """Takes problems and deferred counts in line order, hands them back in the same order.

    `emit_problem` and `emit_tokens(line, tokens)` are called only from the validating thread
    (in `add_*` when a batch completes, and in `drain`).
    """

    def __init__(self, counter: TokenCounter, count_batch: BatchCounter,
                 emit_problem: Callable[[Problem], None],
                 emit_tokens: Callable[[int, int], None], *, threads: int | None = None,
                 batch_chars: int = _BATCH_CHARS) -> None:
        self._counter = counter
        self._count_batch = count_batch
        self._emit_problem = emit_problem
        self._emit_tokens = emit_tokens
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="tokens")
        self._batch_chars = batch_chars
        self._inflight: deque[_Batch] = deque()
        self._open = _Batch()

    def add_problem(self, problem: Problem) -> None:
        self._open.items.append(problem)

    def add_example(self, line: int, known: int, texts: list[str]) -> None:
        batch = self._open
        start = len(batch.texts)
        batch.texts.extend(texts)
        batch.items.append(Slot(line, known, start, start + len(texts)))
        batch.chars += sum(map(len, texts))
        if batch.chars >= self._batch_chars:
            self._submit()

    def _submit(self) -> None:
        batch, self._open = self._open, _Batch()
        if batch.texts:
            batch.future = self._pool.submit(self._count_batch, batch.texts)
        self._inflight.append(batch)
        while len(self._inflight) > self._threads:
            self._resolve(self._inflight.popleft())

    def _resolve(self, batch: _Batch) -> None:
        counts = batch.future.result() if batch.future is not None else []
        self._counter.learn(batch.texts, counts)
        for item in batch.items:
            if isinstance(item, Problem):
                self._emit_problem(item)
            else:
                self._emit_tokens(item.line, item.known + sum(counts[item.start:item.end]))

    def drain(self) -> None:
        """Resolve everything; the pipeline can take more afterwards."""
        self._submit()
        while self._inflight:
            self._resolve(self._inflight.popleft())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
