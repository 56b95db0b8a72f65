"""The Wyoming server: engine process, fair clause scheduler, voice list, start-up and shutdown.

Layout (why it looks like this):

* The engine runs in a child process (``EngineProcess``).  Building the ONNX graph and creating
  ONNX Runtime sessions hold Python's GIL for seconds at a time, so an engine loaded in a thread
  would stall the event loop and Home Assistant's ``describe`` (1 s timeout, we promise 50 ms)
  would time out while the model loads.  In a child process the event loop never waits for the
  engine; a crash of the engine is survived too (the child is restarted).
* The child reads the voice list from the GGUF metadata first (a fraction of a second) and only
  then builds the engine, so ``describe`` lists every voice almost at once: Home Assistant reads
  the voice list only when it sets the integration up.
* ``Scheduler`` hands the engine one clause at a time, round-robin over the requests of every
  client, so a long text never starves a short one; each request may be at most ``max_ahead``
  clauses ahead of its client (bounded memory when a client reads slowly).
* ``PhraseCache`` serves repeated sentences from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from wyoming.event import Event
from wyoming.info import Attribution, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncServer, AsyncStdioServer

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.audio import SAMPLE_RATE, to_int16
from wyoming_kokoro_gguf.server import engine_process as engine_child
from wyoming_kokoro_gguf.server.phrase_cache import PhraseCache, make_key

_LOGGER = logging.getLogger(__name__)

DEFAULT_CACHE_MB = 32.0  # about 11 minutes of 24 kHz int16 speech
MAX_JOBS = 32  # requests synthesizing at once, all clients together
MAX_AHEAD = 3  # clauses a request may have ready before its client takes them
# Next units a step names, for engines that start them early (plan.passes): the next one and
# then the longest of the rest start first, so the last unit does not run alone at the end.
UPCOMING_UNITS = 3
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
KOKORO_ATTRIBUTION = Attribution(
    name="hexgrad (Kokoro-82M)", url="https://github.com/hexgrad/kokoro"
)
PROGRAM_NAME = "kokoro-gguf"
_BLEND_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(.+?)\s*$")
_BLEND_PART_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*:\s*([0-9]*\.?[0-9]+)\s*$")


class RequestError(Exception):
    """A request the server refuses, with the one-line text sent in a Wyoming Error event."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class EngineFailed(RequestError):
    """The engine could not be loaded (or stopped for good)."""

    def __init__(self, text: str) -> None:
        super().__init__(text, "engine_failed")


class EngineCrashed(RequestError):
    """The engine process died while working on this request."""

    def __init__(self, text: str) -> None:
        super().__init__(text, "engine_crashed")


# ----------------------------------------------------------------------------- voices and Info


@dataclass(frozen=True)
class VoiceDesc:
    """What the server advertises about one voice (plain data: it crosses the process pipe)."""

    name: str
    language: str
    language_name: str = ""
    gender: str = ""
    blend: str | None = None


def clean_language_tag(tag: str) -> str:
    """'en_us' / 'en-us' / 'EN-US' -> 'en-US' (the BCP 47 shape Home Assistant groups voices by)."""
    parts = [p for p in re.split(r"[-_]", tag.strip()) if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    for p in parts[1:]:
        if len(p) == 2 and p.isalpha():
            out.append(p.upper())
        elif len(p) == 4 and p.isalpha():
            out.append(p.title())
        else:
            out.append(p.lower())
    return "-".join(out)


def voice_title(name: str) -> str:
    """'af_heart' -> 'Heart', 'af_jf_alpha' (an English alias) -> 'Alpha', 'my-mix' -> 'My Mix'."""
    base = re.sub(r"^(?:[a-z]{2}_)+", "", name) or name
    words = [w for w in re.split(r"[_\-\s]+", base) if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or name


def voice_description(voice: VoiceDesc) -> str:
    """'Heart - American English, female' (what Home Assistant shows in its voice picker)."""
    details = [voice.language_name or voice.language]
    if voice.gender:
        details.append(voice.gender)
    if voice.blend:
        details.append("blend of " + blend_summary(voice.blend))
    return f"{voice_title(voice.name)} - {', '.join(d for d in details if d)}"


def blend_summary(formula: str) -> str:
    """'af_heart:0.7,af_bella:0.3' -> 'af_heart 70% + af_bella 30%'."""
    parts = [p.rsplit(":", 1) for p in formula.split(",") if ":" in p]
    total = sum(float(w) for _, w in parts) or 1.0
    return " + ".join(f"{name} {round(100 * float(w) / total)}%" for name, w in parts)


def build_info(voices: list[VoiceDesc], streaming: bool) -> Info:
    """The Info event's content: one TTS program with every voice, all installed."""
    tts_voices = [
        TtsVoice(
            name=v.name,
            description=voice_description(v),
            attribution=KOKORO_ATTRIBUTION,
            installed=True,
            version=None,
            languages=[v.language],
        )
        for v in sorted(voices, key=lambda v: v.name)
    ]
    program = TtsProgram(
        name=PROGRAM_NAME,
        description="Kokoro-82M text to speech from GGUF files",
        attribution=KOKORO_ATTRIBUTION,
        installed=True,
        version=__version__,
        voices=tts_voices,
        supports_synthesize_streaming=streaming,
    )
    return Info(tts=[program])


def parse_blends(values: list[str]) -> list[tuple[str, str]]:
    """'--voice-blend mix=af_heart:0.7,af_bella:0.3' values -> [(name, formula)]; ValueError if malformed."""
    blends: list[tuple[str, str]] = []
    for value in values:
        m = _BLEND_RE.match(value)
        if not m:
            raise ValueError(
                f"--voice-blend {value!r}: expected NAME=VOICE:WEIGHT,... "
                "(for example mix=af_heart:0.7,af_bella:0.3)"
            )
        name, formula = m.group(1), m.group(2)
        parts = []
        for part in formula.split(","):
            pm = _BLEND_PART_RE.match(part)
            if not pm or float(pm.group(2)) <= 0:
                raise ValueError(
                    f"--voice-blend {value!r}: {part.strip()!r} is not VOICE:WEIGHT with a weight above 0"
                )
            parts.append(f"{pm.group(1)}:{pm.group(2)}")
        if name in {b[0] for b in blends}:
            raise ValueError(f"--voice-blend: the name {name!r} is used twice")
        blends.append((name, ",".join(parts)))
    return blends


# ----------------------------------------------------------------------------- engine process


def _one_line(err: BaseException) -> str:
    """A user-facing single line for an exception (no traceback)."""
    text = " ".join(str(err).split())
    if not text:
        return type(err).__name__
    if type(err).__module__.startswith("wyoming_kokoro_gguf") or isinstance(
        err, OSError | ValueError
    ):
        return text
    return f"{type(err).__name__}: {text}"


@dataclass
class ResolvedModel:
    """A model file ready to load: the engine's lowering plan and the host plan behind it."""

    path: Path
    plan: Any = None  # lowering.EngineOptions for Engine.load (None: the engine's default)
    host_plan: Any = None  # plan.Plan: the reasons, the cache size, predictions (for /health)

    def lowering(self) -> Any:
        """The engine's EngineOptions."""
        if self.plan is not None and hasattr(self.plan, "engine_options"):
            return self.plan.engine_options()  # a host plan was given
        return self.plan

    def description(self) -> Any:
        """A JSON-friendly view of the plan for /health."""
        for plan in (self.host_plan, self.plan):
            if plan is None:
                continue
            if hasattr(plan, "as_dict"):
                return plan.as_dict()
            if dataclasses.is_dataclass(plan) and not isinstance(plan, type):
                return dataclasses.asdict(plan)
            return plan if isinstance(plan, dict) else str(plan)
        return None

    def cache_mb(self) -> float | None:
        """The host plan's phrase-cache size, used when --cache-mb is not given."""
        value = getattr(self.host_plan or self.plan, "cache_mb", None)
        return float(value) if value is not None else None


def resolve_model(args: Any) -> ResolvedModel:
    """Find the .gguf to load: helper D's model_store (auto/variant/path), else a plain path."""
    try:
        from wyoming_kokoro_gguf.host import models as model_store
    except ImportError:
        model_store = None  # type: ignore[assignment]
    if model_store is not None:
        result: Any = model_store.resolve(args)
    else:
        path = Path(args.model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path} (give --model a .gguf path)")
        result = path
    if isinstance(result, (str, os.PathLike)):
        return ResolvedModel(Path(result))
    if isinstance(result, tuple):
        return ResolvedModel(Path(result[0]), result[1] if len(result) > 1 else None)
    return ResolvedModel(
        Path(result.path),
        getattr(result, "engine_options", None),
        getattr(result, "host_plan", None),
    )


def _voice_desc(name: str, info: Any, blend: str | None = None) -> VoiceDesc:
    language = getattr(info, "language", "") or ""
    if not language:
        espeak = getattr(info, "espeak", "") or ""
        language = espeak or "en-US"
    return VoiceDesc(
        name=name,
        language=clean_language_tag(language),
        language_name=getattr(info, "language_name", "") or "",
        gender=getattr(info, "gender", "") or "",
        blend=blend,
    )


def _set_parent_death_signal() -> None:
    """Linux: have the kernel SIGTERM this process when the server dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def engine_worker_main(conn: Any, args: Any, blends: list[tuple[str, str]]) -> None:
    """Entry point of the engine process: resolve, load, then serve 'step' requests forever."""
    # stdout may be the Wyoming stream (stdio://): nothing the engine prints may land there.
    with contextlib.suppress(OSError):
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    _set_parent_death_signal()
    with contextlib.suppress(OSError, AttributeError):
        os.nice(ENGINE_NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "debug", False) else logging.INFO,
        format=getattr(args, "log_format", logging.BASIC_FORMAT),
        stream=sys.stderr,
    )
    log = logging.getLogger("wyoming_kokoro_gguf.engine_process")
    blend_names = dict(blends)
    try:
        conn.send(("state", "resolving"))
        resolved = resolve_model(args)
        conn.send(("model", str(resolved.path), resolved.description(), resolved.cache_mb()))
        try:  # the voice list from the file's metadata, long before the engine is built
            from wyoming_kokoro_gguf.weights.model_file import open_model

            voices = open_model(resolved.path).voices
            conn.send(("voices", [_voice_desc(n, v) for n, v in voices.items()], False))
        except Exception as err:  # noqa: BLE001 - the engine load below reports real problems
            log.debug("early voice list unavailable: %s", _one_line(err))
        conn.send(("state", "loading"))
        started = time.monotonic()
        from wyoming_kokoro_gguf.synth.engine import Engine

        engine = Engine.load(resolved.path, resolved.lowering())
        for name, formula in blends:
            try:
                engine.add_blend(name, formula)
            except Exception as err:  # noqa: BLE001
                conn.send(("warning", f"voice blend {name!r} skipped: {_one_line(err)}"))
        descs = [_voice_desc(n, v, blend_names.get(n)) for n, v in engine.voices.items()]
        conn.send(("voices", descs, True))
        _warm_up(engine, args, descs, log)
        conn.send(("ready", time.monotonic() - started))
    except Exception as err:  # noqa: BLE001 - reported as one line, the server decides
        log.debug("engine load failed", exc_info=True)
        with contextlib.suppress(Exception):
            conn.send(("failed", _one_line(err)))
        return
    _serve_steps(conn, engine, log)


def _warm_up(engine: Any, args: Any, voices: list[VoiceDesc], log: logging.Logger) -> None:
    """One short synthesis so the first real request does not pay ONNX Runtime's first-run cost."""
    names = [v.name for v in voices]
    voice = args.voice if args.voice in names else ("af_heart" if "af_heart" in names else None)
    voice = voice or (sorted(names)[0] if names else None)
    if voice is None:
        return
    try:
        for _ in engine.synthesize("Ready.", voice, 1.0):
            pass
    except Exception as err:  # noqa: BLE001 - a warm-up failure shows again on a real request
        log.warning("warm-up synthesis failed: %s", _one_line(err))


def _serve_steps(
    conn: Any, engine: Any, log: logging.Logger, idle_release_s: float = IDLE_RELEASE_S
) -> None:
    """Advance one request's clause generator per 'step' message; one generator per job id.

    A step also names the job's next units of text: on a plan with passes > 1 the engine starts
    them in the background once the job's first audio is out, so that many units compute at
    once (the engine's pool bounds it) while the current one is sent.  The next unit starts
    first, then the longest of the others (longest first: two 5 s units after an 8 s one
    finish together instead of leaving the 8 s one alone at the end).  Only while one request
    is being served: with several, each step stays one pass, so a newcomer's first audio does
    not wait behind another's work started early.  After ``idle_release_s`` without a job in
    progress, the engine gives its activation memory back to the system.
    """
    try:
        from wyoming_kokoro_gguf.synth.engine import UnknownVoiceError
    except ImportError:  # pragma: no cover - the engine defines it (COMMON.md contract)
        UnknownVoiceError = KeyError  # type: ignore[assignment,misc]  # noqa: N806
    generators: dict[int, tuple[int, Any]] = {}
    # job id -> units started early, in order: ((text, voice, speed), Future of their audio)
    early: dict[int, deque[tuple[tuple, Any]]] = {}
    ahead_limit = getattr(getattr(engine, "options", None), "passes", 1)

    def start_early(job_id: int, voice: str, speed: float, upcoming: tuple) -> None:
        if any(j != job_id for j in generators) or any(j != job_id and q for j, q in early.items()):
            return  # other requests are being served: their turns come first (round robin)
        started = early.get(job_id, deque())
        requests = [(text, voice, speed) for text in upcoming]
        todo = [r for r in requests if all(r != s for s, _ in started)]
        todo.sort(key=lambda r: (r != requests[0], -len(r[0])))  # next, then longest
        for request in todo:
            future = None if len(started) >= ahead_limit else engine.synthesize_later(*request)
            if future is None:
                break
            started.append((request, future))
        if started:
            early[job_id] = started

    def take_early(job_id: int, request: tuple, upcoming: tuple) -> Any:
        """The future of ``request`` if it was started early; cancels the job's early units
        that are no longer coming (served from the phrase cache instead)."""
        started = early.pop(job_id, deque())
        found = None
        for entry in started:
            if found is None and entry[0] == request:
                found = entry[1]
            elif entry[0][0] not in upcoming:
                entry[1].cancel()
            else:
                early.setdefault(job_id, deque()).append(entry)
        return found

    def drop_early(job_id: int) -> None:
        for _, future in early.pop(job_id, ()):
            future.cancel()

    released = True  # nothing to give back before the first request
    while True:
        try:
            if not (released or generators or early) and not conn.poll(idle_release_s):
                released = True
                try:
                    engine.release_memory()
                except Exception as err:  # noqa: BLE001 - keeping the memory is no failure
                    log.warning("could not release memory: %s", _one_line(err))
            msg = conn.recv()
        except (EOFError, OSError):
            return
        kind = msg[0]
        if kind == "stop":
            return
        if kind == "cancel":
            drop_early(msg[1])
            entry = generators.pop(msg[1], None)
            if entry is not None:
                with contextlib.suppress(Exception):
                    entry[1].close()
            continue
        if kind != "step":
            continue
        _, job_id, unit_id, text, voice, speed, upcoming = msg
        released = False
        entry = generators.get(job_id)
        try:
            ahead = False
            if entry is None or entry[0] != unit_id:
                if entry is not None:
                    entry[1].close()
                future = take_early(job_id, (text, voice, speed), upcoming)
                if future is not None:
                    ahead = True
                    entry = (unit_id, _audio_of(future))
                else:
                    entry = (unit_id, iter(engine.synthesize(text, voice, speed)))
                generators[job_id] = entry
            if ahead:  # this unit is computing already: keep the next ones going beside it
                start_early(job_id, voice, speed, upcoming)
            try:
                audio = next(entry[1])
            except StopIteration:
                generators.pop(job_id, None)
                if not early.get(job_id):
                    early.pop(job_id, None)  # nothing started early: forget the job
                reply: tuple = ("end", job_id, unit_id)
            else:
                # the job's first audio is out (it ran alone): start the next units now
                start_early(job_id, voice, speed, upcoming)
                audio = np.asarray(audio)
                if audio.dtype != np.int16:
                    audio = to_int16(audio)
                reply = ("chunk", job_id, unit_id, audio.reshape(-1))
        except UnknownVoiceError as err:
            generators.pop(job_id, None)
            drop_early(job_id)
            reply = ("error", job_id, unit_id, "unknown_voice", _one_line(err))
        except Exception as err:  # noqa: BLE001 - one request's failure must not end the engine
            log.exception("synthesis failed for %r", text[:80])
            generators.pop(job_id, None)
            drop_early(job_id)
            reply = (
                "error",
                job_id,
                unit_id,
                "synthesis_failed",
                f"synthesis failed: {_one_line(err)}",
            )
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


def _audio_of(future: Any) -> Iterator[np.ndarray]:
    """The chunks of a unit synthesized in the background (cancelled if dropped unread)."""
    try:
        yield from future.result()
    finally:
        future.cancel()


def _wait(proc: subprocess.Popen, seconds: float) -> None:
    """Wait up to ``seconds`` for ``proc`` to end (and reap it if it has)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(seconds)


class EngineProcess:
    """The front end's handle on the engine child process: state, voices, one step at a time."""

    def __init__(self, args: Any, blends: list[tuple[str, str]]) -> None:
        self.args = args
        self.blends = blends
        self.state = "starting"
        self.model: str | None = None
        self.plan: Any = None
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
        self._pending: tuple[int, int, asyncio.Future] | None = None
        self._proc: Any = None
        self._conn: Any = None
        self._restarts = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

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
        proc, conn = engine_child.start(self.args, self.blends)
        self._proc, self._conn = proc, conn
        self.generation += 1
        threading.Thread(
            target=self._read_loop,
            args=(conn, proc, self.generation),
            name="engine-reader",
            daemon=True,
        ).start()

    def _read_loop(self, conn: Any, proc: Any, generation: int) -> None:
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

    def _on_message(self, msg: tuple, generation: int) -> None:
        if generation != self.generation:
            return
        kind = msg[0]
        if kind in ("chunk", "end", "error"):
            pending = self._pending
            if pending and pending[0] == msg[1] and pending[1] == msg[2] and not pending[2].done():
                self._pending = None
                pending[2].set_result(msg)
        elif kind == "state":
            self.state = msg[1]
            _LOGGER.info("Engine: %s", msg[1])
        elif kind == "model":
            self.model, self.plan = msg[1], msg[2]
            _LOGGER.info("Model: %s", msg[1])
            for callback in list(self._model_listeners):
                callback(msg[3])
        elif kind == "voices":
            self.voices = {v.name: v for v in msg[1]}
            self.voices_final = bool(msg[2])
            self.voices_known.set()
            for callback in list(self._listeners):
                try:
                    callback()
                except Exception:  # noqa: BLE001
                    _LOGGER.exception("voice listener failed")
        elif kind == "ready":
            self.load_seconds = float(msg[1])
            self.state = "ready"
            self.ready.set()
            _LOGGER.info(
                "Ready: %d voices, engine loaded in %.1f s", len(self.voices), self.load_seconds
            )
        elif kind == "warning":
            _LOGGER.warning("%s", msg[1])
        elif kind == "failed":
            self.error = msg[1]
            self.state = "failed"
            self.failed.set()
            _LOGGER.error("Could not load the model: %s", msg[1])

    def _on_exit(self, exitcode: int | None, generation: int) -> None:
        if generation != self.generation or self._stopping or self.failed.is_set():
            return
        self.ready.clear()
        text = f"the synthesis engine stopped unexpectedly (exit code {exitcode})"
        pending, self._pending = self._pending, None
        if pending and not pending[2].done():
            pending[2].set_exception(EngineCrashed(text))
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

    async def step(
        self,
        job_id: int,
        unit_id: int,
        text: str,
        voice: str,
        speed: float,
        upcoming: tuple[str, ...] = (),
    ) -> tuple:
        """The next clause of (job, unit): ('chunk', ..., audio) | ('end', ...) | ('error', ...).

        ``upcoming``: the job's next units, which the engine may start early."""
        await self.wait_ready()
        assert self._loop is not None
        future: asyncio.Future = self._loop.create_future()
        self._pending = (job_id, unit_id, future)
        try:
            self._conn.send(("step", job_id, unit_id, text, voice, speed, upcoming))
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
                self._conn.send(("cancel", job_id))

    async def stop(self) -> None:
        """End the child: at once if it is busy (a clause can take seconds), else politely."""
        self._stopping = True
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        if self._pending is None and proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
            await loop.run_in_executor(None, _wait, proc, 0.5)
        if proc.poll() is None:
            proc.terminate()  # nothing to save: the engine holds no state worth keeping
            await loop.run_in_executor(None, _wait, proc, 3)
        if proc.poll() is None:
            proc.kill()
            await loop.run_in_executor(None, _wait, proc, 3)
        with contextlib.suppress(OSError):
            conn.close()


# ----------------------------------------------------------------------------- scheduler

_END = object()
_job_ids = itertools.count(1)
_unit_ids = itertools.count(1)


@dataclass
class _Unit:
    text: str
    key: tuple
    id: int = field(default_factory=lambda: next(_unit_ids))
    chunks: list = field(default_factory=list)
    generation: int | None = None


class Job:
    """One request's synthesis: text units in, int16 clause arrays out, in order.

    Units may be added while the job runs (streaming); ``close()`` says no more will come.
    The job is not scheduled before ``start(voice)`` (the voice is checked first).
    """

    def __init__(self, scheduler: Scheduler, speed: float) -> None:
        self.id = next(_job_ids)
        self.voice = ""
        self.speed = speed
        self._scheduler = scheduler
        self.pending: deque[str] = deque()
        self.unit: _Unit | None = None
        self.active = False
        self.closed = False
        self.done = False
        self.cancelled = False
        self.buffered = 0
        self.queue: asyncio.Queue = asyncio.Queue()
        self.samples = 0

    def add_text(self, text: str) -> None:
        """Queue one unit of text (a sentence or clause group) for synthesis."""
        text = " ".join(text.split())
        if text and not self.closed:
            self.pending.append(text)
            self._scheduler.wake()

    def close(self) -> None:
        """No more text will be added."""
        self.closed = True
        self._scheduler.wake()

    def start(self, voice: str) -> None:
        """Let the scheduler run this job with ``voice`` (already checked)."""
        self.voice = voice
        self.active = True
        self._scheduler.wake()

    def cancel(self) -> None:
        """Stop synthesizing (client gone or request failed); safe to call twice."""
        self._scheduler.cancel(self)

    def _put(self, item: Any) -> None:
        if isinstance(item, np.ndarray):
            self.buffered += 1
            self.samples += int(item.size)
        self.queue.put_nowait(item)

    def _fail(self, err: BaseException) -> None:
        if not self.done:
            self.done = True
            self.queue.put_nowait(err)

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        """The audio, clause by clause, as it is synthesized; raises RequestError on failure."""
        while True:
            item = await self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            self.buffered -= 1
            self._scheduler.wake()
            yield item


class Scheduler:
    """Round-robin over all jobs, one clause per turn, one engine step at a time."""

    def __init__(
        self,
        engine: EngineProcess,
        cache: PhraseCache,
        max_jobs: int = MAX_JOBS,
        max_ahead: int = MAX_AHEAD,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.max_jobs = max_jobs
        self.max_ahead = max_ahead
        self._jobs: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.steps = 0

    @property
    def active_jobs(self) -> int:
        """Jobs not yet finished."""
        return sum(1 for j in self._jobs if not j.done)

    def start(self) -> None:
        """Run the scheduling loop in the current event loop."""
        self._task = asyncio.create_task(self._run(), name="kokoro scheduler")

    async def stop(self) -> None:
        """Stop the loop and fail whatever is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in list(self._jobs):
            job._fail(RequestError("the server is shutting down", "shutdown"))
        self._jobs.clear()

    def create_job(self, speed: float) -> Job:
        """A new job, or RequestError when the server already has too much to do."""
        if self.active_jobs >= self.max_jobs:
            raise RequestError(
                f"the server is busy ({self.max_jobs} requests in progress); try again shortly",
                "busy",
            )
        job = Job(self, speed)
        self._jobs.append(job)
        return job

    def wake(self) -> None:
        """Something changed: look for work."""
        self._wake.set()

    def cancel(self, job: Job) -> None:
        """Stop a job and free the engine's generator for it."""
        if job.cancelled:
            return
        job.cancelled = True
        if job.unit is not None and job.unit.generation == self.engine.generation:
            self.engine.cancel(job.id)
        if not job.done:
            job.done = True
            job.queue.put_nowait(_END)
        self.wake()

    def _next_job(self) -> Job | None:
        for _ in range(len(self._jobs)):
            job = self._jobs.popleft()
            if job.done or job.cancelled:
                continue
            self._jobs.append(job)  # to the back: round robin
            if not job.active or job.buffered >= self.max_ahead:
                continue
            if job.unit is None and not job.pending:
                if job.closed:
                    job.done = True
                    job.queue.put_nowait(_END)
                continue
            return job
        return None

    async def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._advance(job)
            except RequestError as err:
                job._fail(err)
                if job.unit is not None:
                    self.engine.cancel(job.id)
            except Exception as err:  # noqa: BLE001 - keep serving everyone else
                _LOGGER.exception("scheduler error")
                job._fail(RequestError(f"internal error: {_one_line(err)}", "internal"))

    async def _advance(self, job: Job) -> None:
        if job.unit is None:
            text = job.pending.popleft()
            key = make_key(text, job.voice, job.speed)
            cached = self.cache.get(key) if self.cache.max_bytes else None
            if cached is not None:
                for audio in cached:
                    job._put(audio)
                return
            job.unit = _Unit(text=text, key=key)
        unit = job.unit
        await self.engine.wait_ready()
        if job.cancelled:
            return
        if unit.generation is not None and unit.generation != self.engine.generation:
            raise EngineCrashed("the synthesis engine restarted in the middle of this text")
        unit.generation = self.engine.generation
        upcoming = tuple(  # units the cache will not serve, which the engine may start early
            t
            for t in itertools.islice(job.pending, UPCOMING_UNITS)
            if make_key(t, job.voice, job.speed) not in self.cache
        )
        reply = await self.engine.step(job.id, unit.id, unit.text, job.voice, job.speed, upcoming)
        self.steps += 1
        if job.cancelled:
            return
        if reply[0] == "chunk":
            audio = reply[3]
            if audio.size:
                unit.chunks.append(audio)
                job._put(audio)
        elif reply[0] == "end":
            if self.cache.max_bytes and unit.chunks:
                self.cache.put(unit.key, unit.chunks)
            job.unit = None
        else:
            job.unit = None
            raise RequestError(reply[4], reply[3])


# ----------------------------------------------------------------------------- server context


class ServerContext:
    """Everything the Wyoming handlers and the HTTP API share."""

    def __init__(self, args: Any, blends: list[tuple[str, str]]) -> None:
        self.args = args
        self.blends = dict(blends)
        self.engine = EngineProcess(args, blends)
        cache_mb = DEFAULT_CACHE_MB if args.cache_mb is None else float(args.cache_mb)
        self.cache = PhraseCache(int(cache_mb * 1024 * 1024))
        self.scheduler = Scheduler(self.engine, self.cache)
        self.streaming = not args.no_streaming
        self.samples_per_chunk = int(args.samples_per_chunk)
        self.max_text_chars = int(args.max_text_chars)
        self.speed = float(args.speed)
        self.default_voice: str | None = None
        self.started = time.monotonic()
        self.connections = 0
        self.requests = 0
        self._info_event = build_info([], self.streaming).event()
        self._warned_voice = False
        self.engine.on_voices(self._voices_changed)
        self.engine.on_model(self._model_resolved)

    def start(self) -> None:
        """Start the engine process and the scheduler (inside the event loop)."""
        self.engine.start()
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop the scheduler and the engine process."""
        await self.scheduler.stop()
        await self.engine.stop()

    def _model_resolved(self, plan_cache_mb: float | None) -> None:
        if self.args.cache_mb is None and plan_cache_mb is not None:
            self.cache.max_bytes = max(0, int(plan_cache_mb * 1024 * 1024))
            _LOGGER.info("Phrase cache: %.0f MB (host plan)", plan_cache_mb)

    def _voices_changed(self) -> None:
        voices = list(self.engine.voices.values())
        self._info_event = build_info(voices, self.streaming).event()
        names = sorted(self.engine.voices)
        wanted = self.args.voice
        if wanted and wanted in self.engine.voices:
            self.default_voice = wanted
        else:
            if wanted and self.engine.voices_final and not self._warned_voice:
                self._warned_voice = True
                _LOGGER.warning(
                    "--voice %s is not in the model; voices: %s", wanted, ", ".join(names)
                )
            self.default_voice = (
                "af_heart" if "af_heart" in names else (names[0] if names else None)
            )
        if self.engine.voices_final:
            missing = [b for b in self.blends if b not in self.engine.voices]
            for name in missing:
                _LOGGER.warning("voice blend %s is not available", name)

    def info_event(self) -> Event:
        """The Info event for describe (prebuilt: answering costs one write)."""
        return self._info_event

    async def resolve_voice(self, name: str | None, language: str | None = None) -> str:
        """The voice to use for a request: the requested name, else --voice; RequestError if unknown."""
        await self.engine.wait_voices()
        voices = self.engine.voices
        if name:
            name = name.strip()
            if name in voices:
                return name
            available = ", ".join(sorted(voices))
            raise RequestError(
                f"unknown voice {name!r}; available voices: {available}", "unknown_voice"
            )
        if language:
            tag = clean_language_tag(language)
            default = voices.get(self.default_voice or "")
            if default is None or default.language.lower() != tag.lower():
                for v in sorted(voices.values(), key=lambda v: v.name):
                    if v.language.lower() == tag.lower():
                        return v.name
        if self.default_voice is None:
            raise RequestError("the model has no voices", "no_voices")
        return self.default_voice

    def check_text(self, text: str, total: int | None = None) -> None:
        """RequestError when a text is longer than --max-text-chars."""
        length = len(text) if total is None else total
        if length > self.max_text_chars:
            raise RequestError(
                f"text too long: {length} characters, the limit is {self.max_text_chars} "
                "(--max-text-chars)",
                "text_too_long",
            )

    def health(self) -> dict[str, Any]:
        """The /health document."""
        engine = self.engine
        cache = self.cache.stats()
        return {
            "state": engine.state,
            "version": __version__,
            "model": engine.model,
            "plan": engine.plan,
            "voices": sorted(engine.voices),
            "default_voice": self.default_voice,
            "streaming": self.streaming,
            "sample_rate": SAMPLE_RATE,
            "load_seconds": engine.load_seconds,
            "engine_pid": engine.pid,
            "engine_restarts": engine.restarts,
            "error": engine.error,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "connections": self.connections,
            "requests": self.requests,
            "active_jobs": self.scheduler.active_jobs,
            # Leak checks (issue 9): both return to their idle values when clients go away.
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "cache": dataclasses.asdict(cache),
        }


# ----------------------------------------------------------------------------- start-up


def _check_args(args: Any) -> list[tuple[str, str]]:
    """Validate flags the parser cannot; ValueError with a one-line message."""
    if not 0.5 <= float(args.speed) <= 2.0:
        raise ValueError(f"--speed {args.speed}: must be between 0.5 and 2.0")
    if int(args.samples_per_chunk) <= 0:
        raise ValueError("--samples-per-chunk must be above 0")
    if int(args.max_text_chars) <= 0:
        raise ValueError("--max-text-chars must be above 0")
    if args.cache_mb is not None and float(args.cache_mb) < 0:
        raise ValueError("--cache-mb must be 0 (off) or more")
    if args.http_port is not None and not 0 <= int(args.http_port) <= 65535:
        raise ValueError(f"--http-port {args.http_port}: not a port number")
    from wyoming_kokoro_gguf.host.plan import PlanError, parse_count
    from wyoming_kokoro_gguf.synth.lowering import MAX_PASSES

    try:
        parse_count(getattr(args, "threads", "auto"), "--threads")
        parse_count(getattr(args, "passes", "auto"), "--passes", MAX_PASSES)
    except PlanError as err:
        raise ValueError(str(err)) from None
    AsyncServer.from_uri(args.uri)  # raises ValueError for a bad URI
    return parse_blends(list(args.voice_blend or []))


async def _register_zeroconf(ctx: ServerContext, args: Any) -> Any:
    """Announce the server for Home Assistant's discovery once the voices are known."""
    uri = urlparse(args.uri)
    if uri.scheme != "tcp":
        _LOGGER.warning("--zeroconf needs a tcp:// URI; not registering %s", args.uri)
        return None
    try:
        from wyoming.zeroconf import HomeAssistantZeroconf
    except ImportError:
        _LOGGER.error(
            "--zeroconf needs the zeroconf package: pip install 'wyoming_kokoro_gguf[zeroconf]'"
        )
        return None
    with contextlib.suppress(EngineFailed):
        # Home Assistant reads the voice list once, when it sets the integration up.
        await ctx.engine.wait_voices()
    host = uri.hostname if uri.hostname not in (None, "", "0.0.0.0", "::") else None
    try:
        zc = HomeAssistantZeroconf(port=int(uri.port or 10200), name=args.zeroconf, host=host)
        await zc.register_server()
    except Exception as err:  # noqa: BLE001 - discovery is a convenience, not a reason to stop
        _LOGGER.error("zeroconf registration failed: %s", _one_line(err))
        return None
    _LOGGER.info("Zeroconf: registered %s._wyoming._tcp.local. on %s:%s", zc.name, zc.host, zc.port)
    return zc


async def _serve(args: Any, blends: list[tuple[str, str]]) -> int:
    from wyoming_kokoro_gguf.server.handler import KokoroEventHandler

    ctx = ServerContext(args, blends)
    server = AsyncServer.from_uri(args.uri)
    factory = partial(KokoroEventHandler, ctx)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)

    http_runner = None
    zeroconf_task: asyncio.Task | None = None
    server_task: asyncio.Task | None = None
    try:
        if args.http_port is not None:
            from wyoming_kokoro_gguf.server.http_api import start_http

            try:
                http_runner = await start_http(ctx, args.http_host, int(args.http_port))
            except OSError as err:
                _LOGGER.error(
                    "cannot serve HTTP on %s:%s: %s",
                    args.http_host,
                    args.http_port,
                    _os_error_text(err),
                )
                return 1
        if isinstance(server, AsyncStdioServer):
            server_task = asyncio.create_task(server.run(factory))
        else:
            try:
                await server.start(factory)
            except OSError as err:
                _LOGGER.error("cannot listen on %s: %s", args.uri, _os_error_text(err))
                return 1
            _log_listening(server, args.uri)
        ctx.start()  # only once the ports are ours: no engine for a server that cannot listen
        if args.zeroconf:
            zeroconf_task = asyncio.create_task(_register_zeroconf(ctx, args))

        waiters = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(ctx.engine.failed.wait()),
        }
        if server_task is not None:
            waiters.add(server_task)
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            if w is not server_task:
                w.cancel()
        if ctx.engine.failed.is_set():
            return 1
        return 0
    finally:
        if server_task is not None and not server_task.done():
            server_task.cancel()
        with contextlib.suppress(Exception):
            await server.stop()
        if zeroconf_task is not None:
            zeroconf_task.cancel()
            with contextlib.suppress(BaseException):
                zc = await zeroconf_task
                if zc is not None:
                    await zc._aiozc.async_close()
        if http_runner is not None:
            with contextlib.suppress(Exception):
                await http_runner.cleanup()
        await ctx.stop()
        _LOGGER.info("Stopped")


def _os_error_text(err: OSError) -> str:
    """'address already in use' rather than asyncio's long wrapper text."""
    if err.errno:
        return os.strerror(err.errno).lower()
    return str(err)


def _log_listening(server: Any, uri: str) -> None:
    inner = getattr(server, "_server", None)
    sockets = getattr(inner, "sockets", None) or []
    for sock in sockets:
        addr = sock.getsockname()
        if isinstance(addr, tuple):
            _LOGGER.info("Listening on tcp://%s:%s", addr[0], addr[1])
        else:
            _LOGGER.info("Listening on unix://%s", addr)
    if not sockets:
        _LOGGER.info("Listening on %s", uri)


def main(args: Any) -> int:
    """Run the server with the parsed command line (from __main__.run)."""
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=args.log_format,
        stream=sys.stderr,
    )
    if getattr(args, "addon_options", None):
        try:
            from wyoming_kokoro_gguf.server import addon_options

            args = addon_options.apply(args)
        except ImportError:
            print("error: --addon-options is not supported by this build", file=sys.stderr)
            return 2
        except Exception as err:  # noqa: BLE001 - AddonOptionsError: one line naming the option
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 2
    try:
        blends = _check_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _LOGGER.debug("arguments: %s", args)
    try:
        return asyncio.run(_serve(args, blends))
    except KeyboardInterrupt:
        return 0
