"""A loopback TCP proxy between agents and a gateway that misbehaves on command.

Owns: one listening socket on 127.0.0.1 (port 0) forwarding each accepted connection to the gateway, in an
asyncio loop of its own thread, and the faults a link can have: `drop` (close every connection now; new ones
are forwarded), `delay` (hold each chunk for a while before forwarding it), `black_hole` (accept and read, but
forward nothing in either direction, and keep the connections open), `half_open` (shut the gateway-to-agent
direction with a FIN while agent-to-gateway bytes still flow), and `heal` (forward normally again). It knows
nothing of gRPC or TLS: it moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.integration.harness import Pki

MODES = ("pass", "delay", "black_hole", "half_open")


class LinkProxy:
    """A proxy for agents: it has the `pki` and `address` an agent dials (see `Dialable`)."""

    def __init__(self, pki: Pki, target: str) -> None:
        self.pki = pki
        self._target_host, port = target.rsplit(":", 1)
        self._target_port = int(port)
        self.mode = "pass"
        self.delay_s = 0.0
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, agent_in: asyncio.StreamReader, agent_out: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            gateway_in, gateway_out = await asyncio.open_connection(self._target_host, self._target_port)
        except OSError:
            agent_out.close()
            return
        self._writers |= {agent_out, gateway_out}
        try:
            await asyncio.gather(
                self._pump(agent_in, gateway_out, towards_agent=False),
                self._pump(gateway_in, agent_out, towards_agent=True),
                return_exceptions=True,
            )
        finally:
            for writer in (agent_out, gateway_out):
                self._writers.discard(writer)
                writer.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, towards_agent: bool) -> None:
        while data := await source.read(65536):
            if self.mode == "black_hole":
                continue  # read and thrown away: the sender sees its bytes leave, nothing arrives
            if self.mode == "half_open" and towards_agent:
                if sink.can_write_eof():
                    sink.write_eof()
                continue
            if self.mode == "delay":
                await asyncio.sleep(self.delay_s)
            sink.write(data)
            await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()

    def set(self, mode: str, delay_s: float = 0.0) -> None:
        assert mode in MODES, f"unknown mode {mode!r}; known: {MODES}"
        self.delay_s = delay_s
        self.mode = mode

    def heal(self) -> None:
        self.set("pass")

    def drop(self) -> None:
        """Close every connection through the proxy now (both sides see the link end); returns once they are."""

        async def close_all() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
