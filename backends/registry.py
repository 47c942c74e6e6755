"""Name → backend lookup, filled by the composition root from settings."""

from __future__ import annotations

from collections.abc import Iterator

from backends.base import Backend


class UnknownBackend(KeyError):
    pass


class BackendRegistry:
    def __init__(self, backends: list[Backend] | None = None) -> None:
        self._backends: dict[str, Backend] = {}
        for backend in backends or []:
            self.register(backend)

    def register(self, backend: Backend) -> None:
        self._backends[backend.name] = backend

    def get(self, name: str) -> Backend:
        try:
            return self._backends[name]
        except KeyError:
            raise UnknownBackend(name) from None

    def names(self) -> list[str]:
        return sorted(self._backends)

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends.values())
