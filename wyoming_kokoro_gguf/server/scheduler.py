"""The fair clause scheduler: every request's units of text, one engine step at a time.

``Scheduler`` hands the engine one clause at a time, round-robin over the requests of every
client, so a long text never starves a short one; each request may be at most ``max_ahead``
clauses ahead of its client (bounded memory when a client reads slowly).  Repeated units are
served from the ``PhraseCache`` without the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wyoming_kokoro_gguf.server.engine_process import Chunk, EngineProcess, Step, UnitEnd
from wyoming_kokoro_gguf.server.errors import EngineCrashed, RequestError, one_line
from wyoming_kokoro_gguf.server.phrase_cache import PhraseCache, make_key

_LOGGER = logging.getLogger(__name__)

MAX_JOBS = 32  # requests synthesizing at once, all clients together
MAX_AHEAD = 3  # clauses a request may have ready before its client takes them
# Next units a step names, for engines that start them early (plan.passes): the next one and
# then the longest of the rest start first, so the last unit does not run alone at the end.
UPCOMING_UNITS = 3

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
    retried: bool = False
    skip: int = 0  # samples a retry makes again that the client already has

    def retry(self, crash: EngineCrashed) -> None:
        """Synthesize this unit again on the restarted engine, from its start; the samples the
        client already has are dropped, so it hears a delay, not a gap or a repeat.  Once only:
        a unit that crashes the engine twice fails its request (``crash``)."""
        if self.retried:
            raise crash
        self.retried = True
        self.skip = sum(chunk.size for chunk in self.chunks)
        self.generation = None
        _LOGGER.warning("%s; synthesizing the clause again from its start", crash.text)

    def take(self, audio: np.ndarray) -> np.ndarray:
        """The part of ``audio`` the client does not have yet."""
        drop = min(self.skip, audio.size)
        self.skip -= drop
        return audio[drop:]


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
        """Queue one unit of text (a sentence or clause group) for synthesis.  Spaces are
        collapsed but line breaks kept: a fenced code block is one unit of several lines, and
        read as one line it would be inline code, read aloud (synth/markdown.py)."""
        lines = (" ".join(line.split()) for line in text.splitlines())
        text = "\n".join(line for line in lines if line)
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
                job._fail(RequestError(f"internal error: {one_line(err)}", "internal"))

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
            unit.retry(EngineCrashed("the synthesis engine restarted in the middle of this text"))
        unit.generation = self.engine.generation
        upcoming = tuple(  # units the cache will not serve, which the engine may start early
            t
            for t in itertools.islice(job.pending, UPCOMING_UNITS)
            if make_key(t, job.voice, job.speed) not in self.cache
        )
        step = Step(job.id, unit.id, unit.text, job.voice, job.speed, upcoming)
        try:
            reply = await self.engine.step(step)
        except EngineCrashed as crash:
            unit.retry(crash)
            return
        self.steps += 1
        if job.cancelled:
            return
        if isinstance(reply, Chunk):
            audio = unit.take(reply.audio)
            if audio.size:
                unit.chunks.append(audio)
                job._put(audio)
        elif isinstance(reply, UnitEnd):
            if self.cache.max_bytes and unit.chunks:
                self.cache.put(unit.key, unit.chunks)
            job.unit = None
        else:
            job.unit = None
            raise RequestError(reply.text, reply.code)
