"""The engine process, both ends: ``python -m wyoming_kokoro_gguf.server.engine_process FD``.

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
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, cast

import numpy as np

from wyoming_kokoro_gguf.audio import to_int16
from wyoming_kokoro_gguf.host.models import resolve
from wyoming_kokoro_gguf.server.config import ServerConfig
from wyoming_kokoro_gguf.server.errors import EngineCrashed, EngineFailed, one_line
from wyoming_kokoro_gguf.server.voices import VoiceDesc, voice_from_info
from wyoming_kokoro_gguf.synth.engine import Engine, UnknownVoiceError
from wyoming_kokoro_gguf.weights.model_file import open_model

_LOGGER = logging.getLogger(__name__)

ENTRY = "wyoming_kokoro_gguf.server.engine_process"
# Seconds without work after which the engine process hands its activation memory back
# (Engine.release_memory): ~300 MB after a long text, at no measured cost to the next request.
IDLE_RELEASE_S = 3.0
MAX_ENGINE_RESTARTS = 3
# The engine is bulk work; the protocol front end must win the CPU at once to answer describe
# in time (measured here: describes during synthesis took up to 150 ms at the same priority on a
# loaded 2-core machine).  Also leaves Home Assistant itself the upper hand on a shared box.
ENGINE_NICE = 5
# One clause takes seconds; an engine silent this long is wedged and gets restarted.
STEP_TIMEOUT = 300.0


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
    """Engine -> server: the engine can synthesize."""

    load_seconds: float


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


# ----------------------------------------------------------------------------- engine side


def _set_parent_death_signal() -> None:
    """Linux: have the kernel SIGTERM this process when the server dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def engine_worker_main(conn: Connection, config: ServerConfig) -> None:
    """Entry point of the engine process: resolve, load, then serve ``Step`` requests forever."""
    # stdout may be the Wyoming stream (stdio://): nothing the engine prints may land there.
    with contextlib.suppress(OSError):
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    _set_parent_death_signal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format=config.log_format,
        stream=sys.stderr,
    )
    log = logging.getLogger(ENTRY)
    try:
        engine = _load(conn, config, log)
    except Exception as err:  # noqa: BLE001 - reported as one line, the server decides
        log.debug("engine load failed", exc_info=True)
        with contextlib.suppress(Exception):
            conn.send(LoadFailed(one_line(err)))
        return
    _serve_steps(conn, engine, log)


def _load(conn: Connection, config: ServerConfig, log: logging.Logger) -> Engine:
    """Resolve the model, announce its voices early, build the engine and warm it up."""
    conn.send(StateChanged("resolving"))
    resolved = resolve(config)
    plan = resolved.host_plan
    conn.send(ModelResolved(str(resolved.path), plan.as_dict(), float(plan.cache_mb)))
    try:  # the voice list from the file's metadata, long before the engine is built
        voices = open_model(resolved.path).voices
        conn.send(VoicesKnown(tuple(voice_from_info(n, v) for n, v in voices.items()), False))
    except Exception as err:  # noqa: BLE001 - the engine load below reports real problems
        log.debug("early voice list unavailable: %s", one_line(err))
    conn.send(StateChanged("loading"))
    started = time.monotonic()
    engine = Engine.load(resolved.path, resolved.engine_options)
    for name, formula in config.blends:
        try:
            engine.add_blend(name, formula)
        except Exception as err:  # noqa: BLE001
            conn.send(LoadWarning(f"voice blend {name!r} skipped: {one_line(err)}"))
    blends = dict(config.blends)
    descs = tuple(voice_from_info(n, v, blends.get(n)) for n, v in engine.voices.items())
    conn.send(VoicesKnown(descs, True))
    _warm_up(engine, config.voice, descs, log)
    conn.send(Ready(time.monotonic() - started))
    return engine


def _warm_up(
    engine: Engine, wanted: str | None, voices: tuple[VoiceDesc, ...], log: logging.Logger
) -> None:
    """One short synthesis so the first real request does not pay ONNX Runtime's first-run cost."""
    names = [v.name for v in voices]
    voice = wanted if wanted in names else ("af_heart" if "af_heart" in names else None)
    voice = voice or (sorted(names)[0] if names else None)
    if voice is None:
        return
    try:
        for _ in engine.synthesize("Ready.", voice, 1.0):
            pass
    except Exception as err:  # noqa: BLE001 - a warm-up failure shows again on a real request
        log.warning("warm-up synthesis failed: %s", one_line(err))


@dataclass(frozen=True)
class _Synthesis:
    """What one unit's audio depends on (a unit started early is matched by it)."""

    text: str
    voice: str
    speed: float


class _Running(NamedTuple):
    """The unit a job is at, and the generator of its audio."""

    unit_id: int
    audio: Generator[np.ndarray, None, None]


class _Early(NamedTuple):
    """A unit started in the background before its step came."""

    synthesis: _Synthesis
    future: Future


class _StepLoop:
    """Advances one request's unit generator per ``Step``; one generator per job id.

    A step also names the job's next units of text: on a plan with passes > 1 the engine starts
    them in the background once the job's first audio is out, so that many units compute at
    once (the engine's pool bounds it) while the current one is sent.  The next unit starts
    first, then the longest of the others (longest first: two 5 s units after an 8 s one
    finish together instead of leaving the 8 s one alone at the end).  Only while one request
    is being served: with several, each step stays one pass, so a newcomer's first audio does
    not wait behind another's work started early.  After ``idle_release_s`` without a job in
    progress, the engine gives its activation memory back to the system.
    """

    def __init__(
        self, conn: Connection, engine: Engine, log: logging.Logger, idle_release_s: float
    ) -> None:
        self.conn = conn
        self.engine = engine
        self.log = log
        self.idle_release_s = idle_release_s
        self.generators: dict[int, _Running] = {}  # job id -> its unit in progress
        self.early: dict[int, deque[_Early]] = {}  # job id -> units started early, in order
        self.ahead_limit = engine.options.passes
        self.released = True  # nothing to give back before the first request

    def run(self) -> None:
        """Serve until ``Stop`` or until the server's end of the pipe closes."""
        while True:
            try:
                self._release_when_idle()
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            if isinstance(msg, Stop):
                return
            if isinstance(msg, Cancel):
                self._cancel(msg.job_id)
            elif isinstance(msg, Step):
                reply = self._step(msg)
                try:
                    self.conn.send(reply)
                except (EOFError, OSError):
                    return

    def _release_when_idle(self) -> None:
        """Give the activation memory back once no job has been in progress for a while."""
        if self.released or self.generators or self.early:
            return
        if self.conn.poll(self.idle_release_s):
            return
        self.released = True
        try:
            self.engine.release_memory()
        except Exception as err:  # noqa: BLE001 - keeping the memory is no failure
            self.log.warning("could not release memory: %s", one_line(err))

    def _cancel(self, job_id: int) -> None:
        self._drop_early(job_id)
        running = self.generators.pop(job_id, None)
        if running is not None:
            with contextlib.suppress(Exception):
                running.audio.close()

    def _step(self, msg: Step) -> StepReply:
        """The next audio of ``msg``'s unit, its end, or why it failed."""
        self.released = False
        try:
            return self._advance(msg)
        except UnknownVoiceError as err:
            self.generators.pop(msg.job_id, None)
            self._drop_early(msg.job_id)
            return UnitFailed(msg.job_id, msg.unit_id, "unknown_voice", one_line(err))
        except Exception as err:  # noqa: BLE001 - one request's failure must not end the engine
            self.log.exception("synthesis failed for %r", msg.text[:80])
            self.generators.pop(msg.job_id, None)
            self._drop_early(msg.job_id)
            text = f"synthesis failed: {one_line(err)}"
            return UnitFailed(msg.job_id, msg.unit_id, "synthesis_failed", text)

    def _advance(self, msg: Step) -> StepReply:
        job_id, synthesis = msg.job_id, _Synthesis(msg.text, msg.voice, msg.speed)
        running = self.generators.get(job_id)
        ahead = False
        if running is None or running.unit_id != msg.unit_id:
            if running is not None:
                running.audio.close()
            future = self._take_early(job_id, synthesis, msg.upcoming)
            if future is not None:
                ahead = True
                running = _Running(msg.unit_id, _audio_of(future))
            else:
                running = _Running(msg.unit_id, _generate(self.engine, synthesis))
            self.generators[job_id] = running
        if ahead:  # this unit is computing already: keep the next ones going beside it
            self._start_early(job_id, msg)
        try:
            audio = next(running.audio)
        except StopIteration:
            self.generators.pop(job_id, None)
            if not self.early.get(job_id):
                self.early.pop(job_id, None)  # nothing started early: forget the job
            return UnitEnd(job_id, msg.unit_id)
        # the job's first audio is out (it ran alone): start the next units now
        self._start_early(job_id, msg)
        audio = np.asarray(audio)
        if audio.dtype != np.int16:
            audio = to_int16(audio)
        return Chunk(job_id, msg.unit_id, audio.reshape(-1))

    def _start_early(self, job_id: int, msg: Step) -> None:
        """Start the job's upcoming units in the background, next first, then longest first."""
        others_busy = any(j != job_id for j in self.generators) or any(
            j != job_id and q for j, q in self.early.items()
        )
        if others_busy:
            return  # other requests are being served: their turns come first (round robin)
        started = self.early.get(job_id, deque())
        wanted = [_Synthesis(text, msg.voice, msg.speed) for text in msg.upcoming]
        todo = [s for s in wanted if all(s != early.synthesis for early in started)]
        todo.sort(key=lambda s: (s != wanted[0], -len(s.text)))  # next, then longest
        for synthesis in todo:
            future = None
            if len(started) < self.ahead_limit:
                future = self.engine.synthesize_later(
                    synthesis.text, synthesis.voice, synthesis.speed
                )
            if future is None:
                break
            started.append(_Early(synthesis, future))
        if started:
            self.early[job_id] = started

    def _take_early(
        self, job_id: int, synthesis: _Synthesis, upcoming: tuple[str, ...]
    ) -> Future | None:
        """The future of ``synthesis`` if it was started early; cancels the job's early units
        that are no longer coming (served from the phrase cache instead)."""
        found = None
        for early in self.early.pop(job_id, deque()):
            if found is None and early.synthesis == synthesis:
                found = early.future
            elif early.synthesis.text not in upcoming:
                early.future.cancel()
            else:
                self.early.setdefault(job_id, deque()).append(early)
        return found

    def _drop_early(self, job_id: int) -> None:
        for early in self.early.pop(job_id, ()):
            early.future.cancel()


def _generate(engine: Engine, synthesis: _Synthesis) -> Generator[np.ndarray, None, None]:
    """The unit's audio, computed as it is read (the engine checks the voice at once); a
    generator, so that close() stops it when the job moves on or is cancelled."""
    audio = engine.synthesize(synthesis.text, synthesis.voice, synthesis.speed)
    return cast(Generator[np.ndarray, None, None], audio)


def _serve_steps(
    conn: Connection, engine: Engine, log: logging.Logger, idle_release_s: float = IDLE_RELEASE_S
) -> None:
    """Serve ``Step`` and ``Cancel`` messages on ``conn`` with a loaded engine (see _StepLoop)."""
    _StepLoop(conn, engine, log, idle_release_s).run()


def _audio_of(future: Future) -> Generator[np.ndarray, None, None]:
    """The chunks of a unit synthesized in the background (cancelled if dropped unread)."""
    try:
        yield from future.result()
    finally:
        future.cancel()


def main(argv: list[str] | None = None) -> None:
    """The child's entry: read ``Begin`` from the inherited socket, then serve the engine on it."""
    conn = Connection(int((argv or sys.argv)[1]))
    try:
        begin = conn.recv()
    except (EOFError, OSError):  # the server went away before sending it
        return
    engine_worker_main(conn, begin.config)


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
    _lower_priority(proc.pid)
    conn = Connection(ours.detach())
    conn.send(Begin(config))
    return proc, conn


def _lower_priority(pid: int) -> None:
    """Nice the engine by ENGINE_NICE from its first instant: importing the engine's modules
    takes seconds of CPU, while the server must already answer describe in time."""
    with contextlib.suppress(OSError, AttributeError):
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, ours + ENGINE_NICE)


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
        try:
            return await asyncio.wait_for(future, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            _LOGGER.error("the engine did not answer within %.0f s; restarting it", STEP_TIMEOUT)
            if self._proc is not None:
                self._proc.kill()
            raise EngineCrashed(
                f"the synthesis engine did not answer within {STEP_TIMEOUT:.0f} s"
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


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy: the records must pickle under their
    # real name (wyoming_kokoro_gguf.server.engine_process.Chunk), which the server unpickles.
    from wyoming_kokoro_gguf.server import engine_process

    engine_process.main()
