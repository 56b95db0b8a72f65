"""The engine process, the child's end: ``python -m wyoming_kokoro_gguf.server.engine_worker FD``.

The server starts it through ``engine_process.start``; FD is the child's end of a socket pair and
every message on it is a record of ``engine_process``.  This module imports the engine, the model
resolution and those records, never the Wyoming front end (handler, context, scheduler, HTTP API,
the ``wyoming`` package) nor anything that imports them, and the server never imports this
module: the server's process stays free of ONNX Runtime, the engine's free of the protocol.
See docs/ARCHITECTURE.md for the whole flow.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np

from wyoming_kokoro_gguf.audio import to_int16
from wyoming_kokoro_gguf.host.data_dir import default_data_dir
from wyoming_kokoro_gguf.host.models import Resolved, resolve
from wyoming_kokoro_gguf.server.config import ServerConfig
from wyoming_kokoro_gguf.server.engine_process import (
    Cancel,
    Chunk,
    LoadFailed,
    LoadWarning,
    ModelResolved,
    Ready,
    StateChanged,
    Step,
    StepReply,
    Stop,
    UnitEnd,
    UnitFailed,
    VoicesKnown,
)
from wyoming_kokoro_gguf.server.errors import one_line
from wyoming_kokoro_gguf.server.voices import VoiceDesc, voice_from_info
from wyoming_kokoro_gguf.synth import tune
from wyoming_kokoro_gguf.synth.engine import Engine, UnknownVoiceError
from wyoming_kokoro_gguf.synth.graph_cache import GraphCache
from wyoming_kokoro_gguf.synth.lexicon import Lexicon
from wyoming_kokoro_gguf.synth.lowering import EngineOptions
from wyoming_kokoro_gguf.synth.stages import release_heap
from wyoming_kokoro_gguf.weights.model_file import open_model

LOGGER_NAME = "wyoming_kokoro_gguf.server.engine_worker"
# Seconds without work after which the engine process hands its activation memory back
# (Engine.release_memory): ~300 MB after a long text, at no measured cost to the next request.
IDLE_RELEASE_S = 3.0
# Building the graph cache and measuring the plan (a first start: tens of seconds here, minutes
# on a small board) run at this much lower priority, so Home Assistant and the server's front end
# keep the CPU.  Speaking runs at the server's own priority: a reply is what a person waits for
# (docs/PERFORMANCE.md, "Priority": at nice 5 beside a nice-10 job, the paragraph's RTF
# ratio to kokoro-onnx doubled).  Linux keeps a nice value per thread and new threads inherit
# it, so the build runs in a thread of its own and ONNX Runtime's pool threads for speaking are
# created by the main thread, which stays at the server's priority.
BUILD_NICE = 5


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
    log = logging.getLogger(LOGGER_NAME)
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
        voices = open_model(resolved.path, config.voices).voices
        conn.send(VoicesKnown(tuple(voice_from_info(n, v) for n, v in voices.items()), False))
    except Exception as err:  # noqa: BLE001 - the engine load below reports real problems
        log.debug("early voice list unavailable: %s", one_line(err))
    conn.send(StateChanged("loading"))
    started = time.monotonic()
    data_dirs = [Path(d) for d in config.data_dir] or [default_data_dir()]
    cache_dir = data_dirs[0] / "cache"
    prepared = _at_build_priority(lambda: _prepare_graphs(resolved, cache_dir, config, log), log)
    engine = prepared.engine
    if engine is None:  # the main thread's sessions: ORT's threads at the speaking priority
        # the optimized graphs of earlier starts (synth/graph_cache.py): a warm start in ~1 s
        # warmed up below by a real synthesis (the engine's own tiny pass would only repeat it)
        engine = Engine.load(
            resolved.path, prepared.options, cache_dir, warm_up=False, voices=config.voices
        )
    log.info("graph cache: %s", prepared.built or engine.graph_cache)
    engine.lexicon = Lexicon(data_dirs)
    engine.lexicon.refresh(force=True)
    for name, formula in config.blends:
        try:
            engine.add_blend(name, formula)
        except Exception as err:  # noqa: BLE001
            conn.send(LoadWarning(f"voice blend {name!r} skipped: {one_line(err)}"))
    blends = dict(config.blends)
    descs = tuple(voice_from_info(n, v, blends.get(n)) for n, v in engine.voices.items())
    conn.send(VoicesKnown(descs, True))
    _warm_up(engine, config.voice, descs, log)
    conn.send(Ready(time.monotonic() - started, prepared.measured))
    return engine


def _at_build_priority(work, log: logging.Logger):
    """``work()`` in a thread niced by BUILD_NICE (with the ORT threads it starts); its result
    or its exception."""
    outcome: dict[str, object] = {}

    def run() -> None:
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BUILD_NICE)
        except (OSError, AttributeError) as err:  # not Linux, or a sandbox: build at our own
            log.debug("build priority unchanged: %s", err)
        try:
            outcome["result"] = work()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, name="kokoro-build")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise cast(BaseException, outcome["error"])
    return outcome["result"]


class _Prepared(NamedTuple):
    """What the build thread leaves: the options to run, the plan as measured (for /health),
    how the graph cache entry came about ('' = it was there), and an engine only where the
    cache could not keep what was built."""

    options: EngineOptions
    measured: dict | None
    built: str
    engine: Engine | None


def _prepare_graphs(
    resolved: Resolved, cache_dir: Path, config: ServerConfig, log: logging.Logger
) -> _Prepared:
    """Measure the plan and build the graph cache's entry if either is missing (a first
    start), so that the serving engine is then loaded from the cache by the main thread."""
    options, measured = _measured_plan(resolved, cache_dir, config, log)
    if GraphCache(cache_dir, resolved.path, options).entry.exists():
        return _Prepared(options, measured, "", None)
    engine = Engine.load(resolved.path, options, cache_dir, warm_up=False, voices=config.voices)
    if engine.graph_cache == "saved":
        del engine  # loaded again from the cache by the main thread
        release_heap()
        return _Prepared(options, measured, "saved", None)
    return _Prepared(options, measured, "", engine)  # unwritable: keep it, build only once


def _measured_plan(
    resolved: Resolved, cache_dir: Path, config: ServerConfig, log: logging.Logger
) -> tuple[EngineOptions, dict | None]:
    """The plan's options with the levers this host measured (synth/tune.py: on a first
    start, measured while the graph cache is built; then read from the cache), and the plan
    as measured for /health.  Without a writable cache nothing is measured: it would be
    measured again on every start."""
    plan, options = resolved.host_plan, resolved.engine_options
    if not plan.tune:
        return options, None
    candidates = tune.Candidates.from_dict(plan.tune)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(cache_dir, os.W_OK):
            raise PermissionError(f"{cache_dir} is not writable")
        choice = tune.choose(resolved.path, options, candidates, cache_dir, voices=config.voices)
    except Exception as err:  # noqa: BLE001 - the planned options still work
        log.warning("host plan not measured (%s); running the plan as predicted", one_line(err))
        return options, None
    if choice.status == "fixed":
        return options, None
    log.info("%s", choice.summary())
    measured = dataclasses.replace(
        plan,
        conv=choice.conv,
        threads=choice.threads,
        passes=choice.passes,
        reasons={**plan.reasons, **choice.reasons()},
        measured=choice.as_dict(),
    )
    return choice.apply(options), measured.as_dict()


def _warm_up(
    engine: Engine, wanted: str | None, voices: tuple[VoiceDesc, ...], log: logging.Logger
) -> None:
    """One short synthesis so the first real request does not pay ONNX Runtime's first-run cost."""
    names = [v.name for v in voices]
    voice = wanted if wanted in names else ("af_heart" if "af_heart" in names else None)
    voice = voice or (sorted(names)[0] if names else None)
    if voice is None:
        engine.warm_up()  # no voice to speak with: the engine's tiny pass
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


if __name__ == "__main__":
    main()
