"""A byte relay between a TCP port and a Unix socket, for reaching a Ray head that runs in a
private network namespace.

Ray listens on every interface, so the test head runs in `unshare -rn` where only its own
loopback exists. Inside, `python -m tests.ray.relay unix:PATH tcp:127.0.0.1:8265` exposes the
dashboard on a Unix socket (a path on the shared filesystem crosses network namespaces); outside,
`Relay` listens on 127.0.0.1 of the host and forwards to that socket. Only the job server's HTTP
port is reachable that way, and only from loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _open(target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, _, where = target.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    host, _, port = where.rpartition(":")
    return await asyncio.open_connection(host, int(port))


def _handler(target: str):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await _open(target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def serve_unix(path: str, target: str) -> None:
    Path(path).unlink(missing_ok=True)
    server = await asyncio.start_unix_server(_handler(target), path)
    async with server:
        await server.serve_forever()


class Relay:
    """127.0.0.1:<free port> on the host → `target`, served from a daemon thread."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-relay", daemon=True)

    def start(self) -> Relay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("relay did not start")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(_handler(self.target), "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(RuntimeError):
            self._loop.run_forever()
        server.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


if __name__ == "__main__":
    listen, upstream = sys.argv[1], sys.argv[2]
    asyncio.run(serve_unix(listen.removeprefix("unix:"), upstream))
