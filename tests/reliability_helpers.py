"""Helpers for the reliability tests: process figures and raw Wyoming connections.

The server is C's real server started with tests/wyoming_helpers.ServerProcess; figures are read
from /proc through psutil (RSS, threads, open files) for the server and its engine child.
Figures the final report quotes are printed as ``FIGURE name: value`` lines and appended to
``.cache/reliability-figures.jsonl`` (one JSON object per line, with the time of the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

import psutil
from wyoming.event import Event, async_read_event, async_write_event
from wyoming_helpers import ROOT, ServerProcess

FIGURES = ROOT / ".cache" / "reliability-figures.jsonl"


def record(name: str, value: object) -> None:
    """Print a figure for the report and keep it in .cache/reliability-figures.jsonl."""
    print(f"FIGURE {name}: {value}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), name: value}) + "\n")


def mib(n: float) -> float:
    return round(n / (1024 * 1024), 1)


@dataclass
class ProcFigures:
    """RSS (bytes), threads and open file descriptors of the server and its engine process."""

    server_rss: int
    engine_rss: int
    server_threads: int
    server_fds: int

    @property
    def total_rss(self) -> int:
        return self.server_rss + self.engine_rss


def proc_figures(srv: ServerProcess) -> ProcFigures:
    """Figures of the server process and of the engine child /health names."""
    server = psutil.Process(srv.proc.pid)
    engine_pid = srv.health()["engine_pid"]
    engine_rss = psutil.Process(engine_pid).memory_info().rss if engine_pid else 0
    return ProcFigures(
        server_rss=server.memory_info().rss,
        engine_rss=engine_rss,
        server_threads=server.num_threads(),
        server_fds=server.num_fds(),
    )


def server_rss(srv: ServerProcess) -> int:
    """RSS of the server (front-end) process alone, in bytes."""
    return psutil.Process(srv.proc.pid).memory_info().rss


def wait_idle(srv: ServerProcess, timeout: float = 120.0) -> dict:
    """Wait until the server has no jobs and no connections; returns /health."""
    deadline = time.monotonic() + timeout
    doc = srv.health()
    while time.monotonic() < deadline:
        doc = srv.health()
        if doc["active_jobs"] == 0 and doc["connections"] == 0:
            return doc
        time.sleep(0.1)
    return doc


@dataclass
class RawReply:
    """What a server sent back on a raw connection: events, then closed or still open."""

    events: list[Event]
    closed: bool
    reset: bool = False  # closed by a reset (unread input): an error event may be lost

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def error_codes(self) -> list[str]:
        return [str(e.data.get("code")) for e in self.events if e.type == "error"]


async def raw_exchange(
    port: int,
    raw: bytes,
    wait: float = 2.0,
    then_describe: bool = False,
    until: tuple[str, ...] = (),
) -> RawReply:
    """Send ``raw`` bytes, read events until the server closes or ``wait`` seconds pass quietly.

    Reading also stops at an event whose type is in ``until``.  With ``then_describe`` and the
    connection still open, a describe follows: a usable connection answers it with info.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    events: list[Event] = []
    closed = False
    reset = False
    try:
        writer.write(raw)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

        async def read_some() -> bool:
            while True:
                try:
                    event = await asyncio.wait_for(async_read_event(reader), wait)
                except asyncio.TimeoutError:
                    return False
                except ConnectionError:
                    nonlocal reset
                    reset = True
                    return True
                if event is None:
                    return True
                events.append(event)
                if event.type in until or (then_describe and event.type == "info"):
                    return False

        closed = await read_some()
        if then_describe and not closed:
            try:
                await async_write_event(Event("describe"), writer)
            except ConnectionError:
                closed = True
            else:
                closed = await read_some()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return RawReply(events, closed, reset)


def header(event_type: object = "synthesize", **fields: object) -> bytes:
    """A raw header line: ``{"type": ..., **fields}\\n``."""
    return json.dumps({"type": event_type, **fields}).encode() + b"\n"


def log_text(srv: ServerProcess) -> str:
    return srv.log()


def assert_no_traceback(srv: ServerProcess) -> None:
    log = srv.log()
    assert "Traceback" not in log, log[-6000:]


def health_ok(srv: ServerProcess) -> bool:
    return srv.proc.poll() is None and srv.health()["state"] == "ready"
