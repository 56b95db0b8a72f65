"""The engine process boundary: the records both sides send, and the server's end.

The child's end is ``engine_worker`` (``python -m wyoming_kokoro_gguf.server.engine_worker FD``).

Why a process: building the ONNX graph and creating ONNX Runtime sessions hold Python's GIL for
seconds at a time, so an engine loaded in a thread would stall the event loop and Home
Assistant's ``describe`` (1 s timeout; the server answers within 50 ms) would time out while the
model loads.  In a child process the event loop never waits for the engine, and a crash of the
engine is survived (the child is restarted).

Why subprocess and not multiprocessing: multiprocessing's spawn also starts a resource-tracker
process (13 MB RSS, measured) that the engine never uses.  FD is the child's end of a socket
pair.  The protocol on it, every message a record defined below:

* server -> engine: ``Begin(config)`` once, then ``Step`` / ``Cancel`` / ``Stop``;
* engine -> server while loading: ``StateChanged``, ``ModelResolved``, ``VoicesKnown`` (the
  voice list from the file's metadata first, within a fraction of a second, so ``describe``
  lists every voice almost at once; then the final list with the blends), ``LoadWarning``,
  then ``Ready`` or ``LoadFailed``;
* engine -> server per ``Step``: one of ``Chunk``, ``UnitEnd``, ``UnitFailed``.

The child side imports the engine, the model resolution and the plain records of the server
(config, voices), never the Wyoming front end (handler, context, scheduler, HTTP API, or the
``wyoming`` package).  See docs/ARCHITECTURE.md for the whole flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from wyoming_kokoro_gguf.server.config import ServerConfig
from wyoming_kokoro_gguf.server.errors import EngineCrashed, EngineFailed
from wyoming_kokoro_gguf.server.voices import VoiceDesc

_LOGGER = logging.getLogger(__name__)

ENTRY = "wyoming_kokoro_gguf.server.engine_worker"  # the child's module
MAX_ENGINE_RESTARTS = 3
# The engine runs at the server's priority: speaking is what a person waits for (at nice 5 beside
# a nice-10 job the paragraph's RTF ratio to kokoro-onnx went from 1.15x to 2.02x).  Only its
# first start's graph building and plan measurement run niced (engine_worker.BUILD_NICE).
# Describes during synthesis took up to 150 ms at the same priority on a loaded 2-core machine,
# well within Home Assistant's 1 s.
# One clause takes seconds; an engine silent this long is wedged and gets restarted.  An emulator
# needs far longer (QEMU's Pi 4 took over 300 s for a 2 s sentence beside other work):
# script/addon-check raises it with the environment variable.
STEP_TIMEOUT = 300.0
STEP_TIMEOUT_ENV = "WYOMING_KOKORO_GGUF_STEP_TIMEOUT"


def step_timeout(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds an engine step may take: STEP_TIMEOUT_ENV when it is a positive number."""
    try:
        seconds = float(environ.get(STEP_TIMEOUT_ENV, STEP_TIMEOUT))
    except ValueError:
        seconds = STEP_TIMEOUT
    return seconds if math.isfinite(seconds) and seconds > 0 else STEP_TIMEOUT


# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Begin:
    """Server -> engine, first: what to load and how."""

    config: ServerConfig


@dataclass(frozen=True)
class Step:
    """Server -> engine: the next piece of audio of one unit of text of one job."""

    job_id: int
    unit_id: int
    text: str
    voice: str
    speed: float
    upcoming: tuple[str, ...] = ()  # the job's next units, which the engine may start early


@dataclass(frozen=True)
class Cancel:
    """Server -> engine: drop the job's work (the client went away or the request failed)."""

    job_id: int


@dataclass(frozen=True)
class Stop:
    """Server -> engine: end the process."""


@dataclass(frozen=True)
class StateChanged:
    """Engine -> server: where loading is ("resolving", "loading")."""

    state: str


@dataclass(frozen=True)
class ModelResolved:
    """Engine -> server: the model file chosen, its host plan (for /health) and cache size."""

    path: str
    plan: dict[str, Any] | None
    cache_mb: float | None


@dataclass(frozen=True)
class VoicesKnown:
    """Engine -> server: the voice list; ``final`` once the engine (and its blends) is built."""

    voices: tuple[VoiceDesc, ...]
    final: bool


@dataclass(frozen=True)
class Ready:
    """Engine -> server: the engine can synthesize; the host plan as measured (synth/tune.py),
    when the engine measured or reused one."""

    load_seconds: float
    plan: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoadWarning:
    """Engine -> server: something to log that does not stop loading (a skipped blend)."""

    text: str


@dataclass(frozen=True)
class LoadFailed:
    """Engine -> server: the model cannot be loaded (one line for the user); the child ends."""

    text: str


@dataclass(frozen=True, eq=False)
class Chunk:
    """Engine -> server: the next int16 audio of a unit."""

    job_id: int
    unit_id: int
    audio: np.ndarray


@dataclass(frozen=True)
class UnitEnd:
    """Engine -> server: the unit has no more audio."""

    job_id: int
    unit_id: int


@dataclass(frozen=True)
class UnitFailed:
    """Engine -> server: the unit cannot be synthesized (code and text for the client)."""

    job_id: int
    unit_id: int
    code: str
    text: str


StepReply = Chunk | UnitEnd | UnitFailed


# ----------------------------------------------------------------------------- server side


def start(config: ServerConfig) -> tuple[subprocess.Popen, Connection]:
    """Start the engine process and send it ``Begin``; its process and the server's end."""
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", ENTRY, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,  # stdio:// serves Wyoming on the server's stdin and stdout
            stdout=2,  # whatever the engine prints goes to the log, never into the Wyoming stream
        )
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    conn.send(Begin(config))
    return proc, conn


def _wait(proc: subprocess.Popen, seconds: float) -> None:
    """Wait up to ``seconds`` for ``proc`` to end (and reap it if it has)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(seconds)


@dataclass
class _Pending:
    """The one step in flight: which unit it is for, and where its reply goes."""

    job_id: int
    unit_id: int
    future: asyncio.Future = field(repr=False)


class EngineProcess:
    """The front end's handle on the engine child process: state, voices, one step at a time."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.state = "starting"
        self.model: str | None = None
        self.plan: dict[str, Any] | None = None
        self.error: str | None = None
        self.voices: dict[str, VoiceDesc] = {}
        self.voices_final = False
        self.load_seconds: float | None = None
        self.generation = 0
        self.voices_known = asyncio.Event()
        self.ready = asyncio.Event()
        self.failed = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._model_listeners: list[Callable[[float | None], None]] = []
        self._pending: _Pending | None = None
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._restarts = 0
        self._stopping = False
        self._step_timeout = step_timeout()  # read once, not on every step
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            StateChanged: self._on_state,
            ModelResolved: self._on_model,
            VoicesKnown: self._on_voices,
            Ready: self._on_ready,
            LoadWarning: self._on_warning,
            LoadFailed: self._on_failed,
        }

    def on_voices(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the event loop) whenever the voice list changes."""
        self._listeners.append(callback)

    @property
    def pid(self) -> int | None:
        """The engine process id (for /health and operators)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def restarts(self) -> int:
        """How often the engine process was restarted after a crash."""
        return self._restarts

    def on_model(self, callback: Callable[[float | None], None]) -> None:
        """Call ``callback(plan_cache_mb)`` once the model file is resolved."""
        self._model_listeners.append(callback)

    def start(self) -> None:
        """Spawn the engine process (returns at once; loading goes on in the child)."""
        self._loop = asyncio.get_running_loop()
        self._spawn()

    def _spawn(self) -> None:
        proc, conn = start(self.config)
        self._proc, self._conn = proc, conn
        self.generation += 1
        threading.Thread(
            target=self._read_loop,
            args=(conn, proc, self.generation),
            name="engine-reader",
            daemon=True,
        ).start()

    def _read_loop(self, conn: Connection, proc: subprocess.Popen, generation: int) -> None:
        """Thread: forward the child's messages into the event loop until the pipe closes."""
        loop = self._loop
        assert loop is not None
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # noqa: BLE001
                _LOGGER.exception("unreadable message from the engine process")
                break
            try:
                loop.call_soon_threadsafe(self._on_message, msg, generation)
            except RuntimeError:  # loop closed: the server is gone
                return
        _wait(proc, 10)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_exit, proc.poll(), generation)

    def _on_message(self, msg: object, generation: int) -> None:
        if generation != self.generation:
            return
        if isinstance(msg, Chunk | UnitEnd | UnitFailed):
            pending = self._pending
            if (
                pending
                and (pending.job_id, pending.unit_id) == (msg.job_id, msg.unit_id)
                and not pending.future.done()
            ):
                self._pending = None
                pending.future.set_result(msg)
            return
        handler = self._handlers.get(type(msg))
        if handler is not None:
            handler(msg)

    def _on_state(self, msg: StateChanged) -> None:
        self.state = msg.state
        _LOGGER.info("Engine: %s", msg.state)

    def _on_model(self, msg: ModelResolved) -> None:
        self.model, self.plan = msg.path, msg.plan
        _LOGGER.info("Model: %s", msg.path)
        for callback in list(self._model_listeners):
            callback(msg.cache_mb)

    def _on_voices(self, msg: VoicesKnown) -> None:
        self.voices = {v.name: v for v in msg.voices}
        self.voices_final = msg.final
        self.voices_known.set()
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # noqa: BLE001
                _LOGGER.exception("voice listener failed")

    def _on_ready(self, msg: Ready) -> None:
        self.load_seconds = float(msg.load_seconds)
        if msg.plan is not None:
            self.plan = msg.plan
        self.state = "ready"
        self.ready.set()
        _LOGGER.info(
            "Ready: %d voices, engine loaded in %.1f s", len(self.voices), msg.load_seconds
        )

    def _on_warning(self, msg: LoadWarning) -> None:
        _LOGGER.warning("%s", msg.text)

    def _on_failed(self, msg: LoadFailed) -> None:
        self.error = msg.text
        self.state = "failed"
        self.failed.set()
        _LOGGER.error("Could not load the model: %s", msg.text)

    def _on_exit(self, exitcode: int | None, generation: int) -> None:
        if generation != self.generation or self._stopping or self.failed.is_set():
            return
        self.ready.clear()
        text = f"the synthesis engine stopped unexpectedly (exit code {exitcode})"
        pending, self._pending = self._pending, None
        if pending and not pending.future.done():
            pending.future.set_exception(EngineCrashed(text))
        if self._restarts >= MAX_ENGINE_RESTARTS:
            self.error = text
            self.state = "failed"
            self.failed.set()
            _LOGGER.error("%s; giving up after %d restarts", text, self._restarts)
            return
        self._restarts += 1
        _LOGGER.error("%s; restarting it (%d/%d)", text, self._restarts, MAX_ENGINE_RESTARTS)
        self.state = "restarting"
        self._spawn()

    async def _wait_for(self, event: asyncio.Event) -> None:
        if event.is_set():
            return
        if self.failed.is_set():
            raise EngineFailed(f"the model could not be loaded: {self.error}")
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.failed.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if not event.is_set():
            raise EngineFailed(f"the model could not be loaded: {self.error}")

    async def wait_voices(self) -> None:
        """Wait until the voice list is known; EngineFailed if it never will be."""
        await self._wait_for(self.voices_known)

    async def wait_ready(self) -> None:
        """Wait until the engine can synthesize; EngineFailed if it never will."""
        await self._wait_for(self.ready)

    async def step(self, step: Step) -> StepReply:
        """The next audio of ``step``'s unit (``Chunk``), its end (``UnitEnd``) or its failure."""
        await self.wait_ready()
        assert self._loop is not None and self._conn is not None
        future: asyncio.Future = self._loop.create_future()
        self._pending = _Pending(step.job_id, step.unit_id, future)
        try:
            self._conn.send(step)
        except (OSError, ValueError) as err:
            self._pending = None
            raise EngineCrashed(f"the synthesis engine is not reachable: {err}") from err
        timeout = self._step_timeout
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            _LOGGER.error("the engine did not answer within %.0f s; restarting it", timeout)
            # Not ready until the replacement is: a retry must wait for it, not reach the
            # killed engine and fail with its exit.
            self.ready.clear()
            self._pending = None
            if self._proc is not None:
                self._proc.kill()
            raise EngineCrashed(
                f"the synthesis engine did not answer within {timeout:.0f} s"
            ) from None

    def cancel(self, job_id: int) -> None:
        """Drop the child's generator for ``job_id`` (the client went away)."""
        if self._conn is not None and self.ready.is_set():
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(Cancel(job_id))

    async def stop(self) -> None:
        """End the child: at once if it is busy (a clause can take seconds), else politely."""
        self._stopping = True
        proc, conn = self._proc, self._conn
        if proc is None or conn is None:
            return
        loop = asyncio.get_running_loop()
        if self._pending is None and proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(Stop())
            await loop.run_in_executor(None, _wait, proc, 0.5)
        if proc.poll() is None:
            proc.terminate()  # nothing to save: the engine holds no state worth keeping
            await loop.run_in_executor(None, _wait, proc, 3)
        if proc.poll() is None:
            proc.kill()
            await loop.run_in_executor(None, _wait, proc, 3)
        with contextlib.suppress(OSError):
            conn.close()
