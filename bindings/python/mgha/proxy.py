"""A fault-injecting TCP proxy for tests: one :class:`Proxy` in front of each node's peer port.

A node is configured to *advertise* its proxy's address (the ``advertise`` config key), so
every member dials it through the proxy, and the proxy forwards to the node's real ``listen``
port. :meth:`Proxy.cut` aborts the connections through it and refuses new ones (accepted and
closed at once, so the dialer sees a failed handshake and retries); :meth:`Proxy.restore` lets
traffic through again.

What a cut means: nothing reaches *that node* from its peers. A proxy cannot tell which member
dials it (the member certificates travel encrypted), so a cut is per node, not per pair: to
separate nodes ``a`` and ``b`` completely, cut both (``mgha.testing.Cluster.partition`` does).
In a two-node cluster that is an exact partition; with more nodes, ``a`` and ``b`` are then
also unreachable from the others (though they can still dial the others).

All proxies of a process share one asyncio event loop on one daemon thread
(:class:`ProxyHub`); the methods here are called from any other thread and wait for the loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, Optional, Set, Tuple, TypeVar

T = TypeVar("T")

#: Bytes read from one side before they are written to the other.
CHUNK_BYTES = 64 * 1024
#: How long a proxy operation may wait for the event loop.
LOOP_TIMEOUT_S = 10.0


class ProxyHub:
    """The event loop thread that runs every :class:`Proxy` made through it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mgha-proxy", daemon=True)
        self._thread.start()
        self._proxies: list = []

    def run(self, coro: "Coroutine[Any, Any, T]") -> T:
        """Runs a coroutine on the loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(LOOP_TIMEOUT_S)

    def proxy(self, listen_port: int, target_port: int, host: str = "127.0.0.1") -> "Proxy":
        """A proxy listening on ``host:listen_port`` that forwards to ``host:target_port``."""
        p = Proxy(self, host, listen_port, target_port)
        self.run(p._start())
        self._proxies.append(p)
        return p

    def close(self) -> None:
        """Closes every proxy and stops the loop. Idempotent."""
        if not self._loop.is_running():
            return
        for p in self._proxies:
            p.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(LOOP_TIMEOUT_S)
        self._loop.close()


class Proxy:
    """One forwarding port; see the module documentation."""

    def __init__(self, hub: ProxyHub, host: str, listen_port: int, target_port: int) -> None:
        self._hub = hub
        self.host = host
        self.listen_port = listen_port
        self.target_port = target_port
        self._server: Optional[asyncio.AbstractServer] = None
        self._conns: Set[Tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._cut = False
        #: Connections accepted and forwarded, and refused while cut (for test diagnostics).
        self.forwarded = 0
        self.refused = 0

    @property
    def address(self) -> str:
        """``HOST:PORT`` that peers dial."""
        return f"{self.host}:{self.listen_port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.listen_port, reuse_address=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)
        self.forwarded += 1
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._conns.discard(pair)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self._cut:
                data = await reader.read(CHUNK_BYTES)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if self._cut:
                writer.transport.abort()
            else:
                writer.close()

    async def _set_cut(self, cut: bool) -> None:
        self._cut = cut
        if cut:
            for a, b in list(self._conns):
                a.transport.abort()
                b.transport.abort()
            self._conns.clear()

    def cut(self) -> None:
        """Aborts every connection through this proxy and refuses new ones."""
        self._hub.run(self._set_cut(True))

    def restore(self) -> None:
        """Lets connections through again."""
        self._hub.run(self._set_cut(False))

    async def _close(self) -> None:
        await self._set_cut(True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def close(self) -> None:
        """Stops listening and aborts every connection."""
        try:
            self._hub.run(self._close())
        except RuntimeError:
            pass  # the loop is already stopped
