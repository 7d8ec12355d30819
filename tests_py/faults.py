"""A TCP proxy on 127.0.0.1 that injects real network faults between dbflow
and a test server (as psycopg's tests/fix_proxy.py and asyncpg's fuzzer do).

An asyncio forwarder on a thread of its own, driven from the test:

- ``reset_after(n, "down")``: the next link to carry ``n`` more bytes from
  the server resets (RST, both ends) right after forwarding them; ``"up"``
  counts the client's bytes. ``n=0`` upwards is "reset before forwarding
  the request"; ``close_after`` ends the link with a FIN instead.
- ``reset_all()`` / ``cut()``: every open link reset / closed now.
- ``stall()`` / ``resume()``: a black hole (accepts, forwards nothing,
  closes nothing) and back; ``delay(s)``: latency added to every chunk.

``fired`` counts the armed faults that went off, so a test can assert that
its fault really happened; ``up``/``down`` count the bytes forwarded.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

UP, DOWN = "up", "down"


@dataclass
class _Link:
    id: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    sent: dict[str, int] = field(default_factory=lambda: {UP: 0, DOWN: 0})


@dataclass
class _Armed:
    direction: str
    after: int
    action: str  # "reset" | "close"
    #: Bytes each open link had carried in `direction` when armed.
    marks: dict[int, int]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped route or a crashed
    middlebox does, not with an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"  # pass | stall
        self.latency = 0.0
        self.fired = 0
        self.up = 0
        self.down = 0
        self._armed: _Armed | None = None
        self._links: dict[int, _Link] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ---- what a test asks for ------------------------------------------------

    def reset_after(self, nbytes: int, direction: str = DOWN) -> None:
        self._arm(nbytes, direction, "reset")

    def close_after(self, nbytes: int, direction: str = DOWN) -> None:
        self._arm(nbytes, direction, "close")

    def _arm(self, nbytes: int, direction: str, action: str) -> None:
        assert direction in (UP, DOWN), direction
        with self._lock:
            marks = {link.id: link.sent[direction] for link in self._links.values()}
            self._armed = _Armed(direction, nbytes, action, marks)

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def reset_all(self) -> None:
        """Reset every open link now (a middlebox dropping its state), and
        return once the clients' sockets have taken the reset in."""
        self._call(self._end_all(_reset))
        self.wait_clients_disconnected()

    def wait_clients_disconnected(self, timeout: float = 10.0) -> None:
        """Wait until no client socket is still connected to this proxy, as
        the kernel reports them (/proc/net/tcp): a reset is processed by the
        receiving side asynchronously, and a test that acts before that
        races it."""
        deadline = time.monotonic() + timeout
        while self._clients_connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"clients of port {self.port} still connected")
            time.sleep(0.001)

    def _clients_connected(self) -> bool:
        established = "01"
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == self.port and fields[3] == established:
                    return True
        return False

    def cut(self) -> None:
        """Close every open link now (a network cut / server crash)."""
        self._call(self._end_all(lambda w: w.close()))

    def stall(self) -> None:
        self.mode = "stall"
        self._flowing.clear()

    def resume(self) -> None:
        self.mode = "pass"
        self._flowing.set()

    def delay(self, seconds: float) -> None:
        self.latency = seconds

    def links(self) -> int:
        with self._lock:
            return len(self._links)

    def close(self) -> None:
        self.resume()
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # ---- the forwarder -------------------------------------------------------

    async def _shutdown(self) -> None:
        self._server.close()
        await self._end_all(lambda w: w.close())
        # The links' tasks see their sockets closed and end; the loop stops
        # after them, so none is destroyed while pending.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _end_all(self, end) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            end(link.client)
            end(link.upstream)
        await asyncio.sleep(0)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.mode == "stall":
            # A black hole: the connection is accepted and never answered.
            await self._wait_flowing()
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        link = _Link(next(self._ids), client_w, up_w)
        with self._lock:
            self._links[link.id] = link
        await asyncio.gather(
            self._pump(link, client_r, up_w, UP),
            self._pump(link, up_r, client_w, DOWN),
            return_exceptions=True,
        )
        with self._lock:
            self._links.pop(link.id, None)

    async def _wait_flowing(self) -> None:
        while not self._flowing.is_set():
            await asyncio.sleep(0.01)

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        try:
            while True:
                await self._wait_flowing()
                data = await source.read(65536)
                if not data:
                    break
                await self._wait_flowing()
                if self.latency:
                    await asyncio.sleep(self.latency)
                forward, action = self._apply(link, direction, data)
                if forward:
                    sink.write(forward)
                    await sink.drain()
                if action is not None:
                    end = _reset if action == "reset" else (lambda w: w.close())
                    end(link.client)
                    end(link.upstream)
                    return
        except (OSError, ConnectionError):
            pass
        finally:
            # One side ended: end the other, as a real path would.
            for writer in (link.client, link.upstream):
                if not writer.is_closing():
                    writer.close()

    def _apply(self, link: _Link, direction: str, data: bytes) -> tuple[bytes, str | None]:
        """How much of `data` to forward, and the fault to fire after it."""
        with self._lock:
            armed = self._armed
            before = link.sent[direction]
            if armed is None or armed.direction != direction:
                link.sent[direction] += len(data)
                self._count(direction, len(data))
                return data, None
            carried = before - armed.marks.get(link.id, 0)
            room = armed.after - carried
            if room > len(data):
                link.sent[direction] += len(data)
                self._count(direction, len(data))
                return data, None
            forward = data[: max(room, 0)]
            link.sent[direction] += len(forward)
            self._count(direction, len(forward))
            self._armed = None
            self.fired += 1
            return forward, armed.action

    def _count(self, direction: str, n: int) -> None:
        if direction == UP:
            self.up += n
        else:
            self.down += n
