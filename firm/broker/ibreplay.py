"""The replay clock of a fake gateway, as a side channel: not the TWS protocol (a real gateway has no
such thing) but what a replay rehearsal through the IB path needs to keep the fake's market in step
with the pipeline's bars.

Server: :func:`serve_control` wraps a running :class:`firm.broker.ibsim.IBSim` (on its loop) with a
line protocol on its own port: ``step_to YYYY-MM-DD`` advances the fake's clock until its last
completed bar is that session (never backwards) and answers ``ok YYYY-MM-DD``; ``date`` answers the
current session. Client: :class:`ReplayClock`, a blocking socket the broker calls before each bar.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket

import pandas as pd


async def serve_control(sim, host: str = "127.0.0.1", port: int = 0) -> asyncio.base_events.Server:
    """Serve ``sim``'s clock on ``host:port`` (0: a free port; read it from the server's socket)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                cmd, _, arg = line.decode().strip().partition(" ")
                if cmd == "step_to":
                    target = pd.Timestamp(arg)
                    while sim.dates[sim.bar] < target and sim.step():
                        pass
                    writer.write(f"ok {sim.date}\n".encode())
                elif cmd == "date":
                    writer.write(f"ok {sim.date}\n".encode())
                else:
                    writer.write(f"error unknown command {cmd!r}\n".encode())
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


class ReplayClock:
    """Client of :func:`serve_control`: ``step_to(ts)`` moves the fake's market to the session of ``ts``."""

    def __init__(self, address: str, timeout_s: float = 30.0):
        host, _, port = address.rpartition(":")
        self.address = (host or "127.0.0.1", int(port))
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._file = None

    def _ask(self, line: str) -> str:
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=self.timeout_s)
            self._file = self._sock.makefile("r", encoding="utf-8")
        self._sock.sendall(line.encode() + b"\n")
        answer = self._file.readline().strip()
        if not answer.startswith("ok "):
            raise RuntimeError(f"replay clock at {self.address[0]}:{self.address[1]}: {answer or 'closed'}")
        return answer[3:]

    def step_to(self, ts: dt.datetime) -> str:
        session = pd.Timestamp(ts).tz_convert("America/New_York").date()
        return self._ask(f"step_to {session}")

    def date(self) -> str:
        return self._ask("date")

    def close(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()
            self._sock = None


class BackgroundGateway:
    """A fake gateway (``IBSim``) listening on a free loopback port, and with ``control`` its replay clock,
    served from an event loop in a daemon thread: for synchronous code (tests, benchmarks, notebooks) that
    drives the IB path against the fake. ``do`` runs a coroutine on that loop, ``call`` a function."""

    def __init__(self, sim, control: bool = True):
        import threading

        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.control = None
        self.control_port: int | None = None

        async def start():
            await sim.start("127.0.0.1", 0)
            if control:
                self.control = await serve_control(sim)
                self.control_port = self.control.sockets[0].getsockname()[1]

        self.do(start())

    def do(self, coro, timeout_s: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn, *args):
        async def go():
            return fn(*args)

        return self.do(go())

    def stop(self) -> None:
        async def stop():
            if self.control is not None:
                self.control.close()
            await self.sim.stop()

        self.do(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
