"""Duplicate and overlap detection by 64-bit content hashes, in bounded memory.

Examples are never kept: each becomes a 64-bit hash of its canonical JSON (keys sorted, so
whitespace and key order do not hide a duplicate). Hashes live in an open-addressing table of
two flat arrays (8-byte hash + 4-byte line = 12 bytes a slot, at most half full), which grows
by doubling up to `max_slots`. Past that the index turns to hash sampling: it keeps only hashes
whose top `level` bits are zero, halving what it holds each time it fills. Duplicates of the
kept fraction are still found with exact line numbers; `exact` turns False and counts become
lower bounds. The default cap (2**22 slots: 48 MiB, 96 MiB while rehashing) is exact up to
~2M distinct examples.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from typing import Any

import orjson

DEFAULT_MAX_SLOTS = 1 << 22
_MIN_SLOTS = 1 << 10
_MAX_LINE = (1 << 32) - 1  # line numbers are stored in 4 bytes


def record_hash(record: Any) -> int:
    """Nonzero 64-bit hash of the record's canonical JSON (zero marks an empty slot)."""
    canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    value = int.from_bytes(hashlib.blake2b(canonical, digest_size=8).digest(), "little")
    return value or 1


class HashIndex:
    """Maps content hash → first line seen, in bounded memory (see the module docstring)."""

    def __init__(self, max_slots: int = DEFAULT_MAX_SLOTS) -> None:
        if max_slots < _MIN_SLOTS or max_slots & (max_slots - 1):
            raise ValueError("max_slots must be a power of two >= 1024")
        self.max_slots = max_slots
        self.level = 0  # hashes with any of the top `level` bits set are not tracked
        self.size = 0
        self._allocate(_MIN_SLOTS)

    def _allocate(self, slots: int) -> None:
        self._keys = array("Q", bytes(8 * slots))
        self._lines = array("I", bytes(4 * slots))
        self._mask = slots - 1

    @property
    def exact(self) -> bool:
        return self.level == 0

    @property
    def nbytes(self) -> int:
        return len(self._keys) * 8 + len(self._lines) * 4

    def entries(self) -> Iterator[tuple[int, int]]:
        """(hash, first line) of every tracked example, in table order."""
        for value, line in zip(self._keys, self._lines, strict=True):
            if value:
                yield value, line

    def tracked(self, value: int) -> bool:
        return self.level == 0 or value >> (64 - self.level) == 0

    def _slot(self, value: int) -> int:
        keys, mask = self._keys, self._mask
        slot = value & mask  # blake2b bits are uniform already
        while keys[slot] and keys[slot] != value:
            slot = (slot + 1) & mask
        return slot

    def get(self, value: int) -> int | None:
        """The first line recorded for this hash, if tracked and seen."""
        if not self.tracked(value):
            return None
        slot = self._slot(value)
        return self._lines[slot] if self._keys[slot] else None

    def add(self, value: int, line: int) -> int | None:
        """Record `line` for a hash; returns the earlier line when the hash was seen before."""
        if not self.tracked(value):
            return None
        slot = self._slot(value)
        if self._keys[slot]:
            return self._lines[slot]
        self._keys[slot] = value
        self._lines[slot] = min(line, _MAX_LINE)
        self.size += 1
        while 2 * self.size > len(self._keys):
            self._grow()
        return None

    def _grow(self) -> None:
        """Double while allowed; at the cap, raise the sampling level (drops about half).

        Rehashing reads the old arrays in place, so the transient peak is old + new arrays.
        """
        old_keys, old_lines = self._keys, self._lines
        slots = len(old_keys)
        if slots < self.max_slots:
            slots *= 2
        else:
            self.level += 1
        self._allocate(slots)
        self.size = 0
        for value, line in zip(old_keys, old_lines, strict=True):
            if value and self.tracked(value):
                slot = self._slot(value)
                self._keys[slot] = value
                self._lines[slot] = line
                self.size += 1
