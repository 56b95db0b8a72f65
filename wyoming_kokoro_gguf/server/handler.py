"""Wyoming event handling for one client connection.

Event sequences the handler produces (audio is 24 kHz, 16-bit, mono throughout):

* ``synthesize`` (outside a stream): audio-start, audio-chunk..., audio-stop.  Chunks go out as
  each clause is synthesized, so a long text starts playing within a clause's time.
* ``synthesize-start``, ``synthesize-chunk``..., [``synthesize``], ``synthesize-stop``:
  audio-start (once), audio-chunk... as soon as each sentence of the text is complete and
  synthesized, audio-stop, synthesize-stopped.  The ``synthesize`` that Home Assistant sends
  inside the stream (the whole text again, for old servers) is not spoken a second time.
  Home Assistant builds its WAV header from the first audio-start and ignores later ones, so
  one audio-start with one format is what a stream gets here.
* A voice the model lacks is spoken with a voice of its language (a warning in the log):
  Home Assistant ignores errors while streaming and caches what it got, so silence would stay.
* A stream longer than --max-text-chars is spoken up to the limit (cut at a word, warned).
* Other failures of a one-shot ``synthesize`` (text too long, engine failure, busy): an
  ``error`` event with one clear line, then the connection is closed without ``audio-stop``:
  a client reading until ``audio-stop`` (Home Assistant, without a timeout) sees the failure
  instead of waiting forever or caching an empty result.  In a stream, synthesize-stopped
  still follows synthesize-stop, so a streaming client never waits forever.
* ``text_format: "ssml"`` on ``synthesize`` or ``synthesize-start``: the text is SSML
  (synth/ssml.py).  A stream's SSML deltas are collected until synthesize-stop and parsed then
  (markup cannot be cut safely mid-tag), so an SSML stream's first audio waits for its end.
* ``describe`` (and ``ping``) is answered at once, at any point, even in the middle of a synthesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from wyoming_kokoro_gguf.audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH
from wyoming_kokoro_gguf.server.context import ServerContext
from wyoming_kokoro_gguf.server.errors import RequestError
from wyoming_kokoro_gguf.server.limits import ProtocolError, check_event, limits_for, read_event
from wyoming_kokoro_gguf.server.scheduler import Job
from wyoming_kokoro_gguf.server.segmenter import TextSegmenter
from wyoming_kokoro_gguf.synth import ssml

_LOGGER = logging.getLogger(__name__)

MAX_QUEUED_REQUESTS = 8  # per connection


def _is_ssml(text_format: Any) -> bool:
    """Whether a request's text_format names SSML (an enum or a plain string)."""
    return str(getattr(text_format, "value", text_format) or "").lower() == "ssml"


class _Request:
    """A queued request of one connection: a one-shot synthesize or a text stream."""

    def __init__(
        self, handler: KokoroEventHandler, voice: Any, streaming: bool, text_format: Any = None
    ) -> None:
        self.handler = handler
        # SSML is collected whole and parsed at the end: a tag cannot be cut safely mid-stream
        self.ssml: list[str] | None = [] if _is_ssml(text_format) else None
        self.voice_name = getattr(voice, "name", None) if voice is not None else None
        self.voice_language = getattr(voice, "language", None) if voice is not None else None
        self.streaming = streaming
        self.segmenter = TextSegmenter()
        self.job: Job = handler.ctx.scheduler.create_job(handler.ctx.speed)
        self.chars = 0
        self.got_text = False
        self.stopped = asyncio.Event()
        self.error: RequestError | None = None
        self.truncated = False  # a stream cut at --max-text-chars takes no more text
        self.created = time.monotonic()

    def feed(self, text: str) -> None:
        """More text (a stream delta, or the whole text of a one-shot request)."""
        if self.error is not None or self.stopped.is_set() or self.truncated:
            return
        self.got_text = self.got_text or bool(text)
        try:
            self.handler.ctx.check_text("", total=self.chars + len(text))
        except RequestError as err:
            if not self.streaming:
                self.fail(err)
                return
            text = self._cut_at_limit(text)
        self.chars += len(text)
        if self.ssml is not None:
            self.ssml.append(text)
            return
        for unit in self.segmenter.feed(text):
            self.job.add_text(unit)

    def _cut_at_limit(self, text: str) -> str:
        """The part of a stream delta within --max-text-chars, cut at a word; then the stream
        takes no more text.  Speaking the start beats refusing: a refused stream is silence
        that Home Assistant caches."""
        room = max(0, self.handler.ctx.max_text_chars - self.chars)
        kept = text[:room]
        if len(text) > room and " " in kept:
            kept = kept[: kept.rindex(" ")]
        if not self.truncated:
            self.truncated = True
            _LOGGER.warning(
                "stream longer than --max-text-chars (%d): spoken up to the limit",
                self.handler.ctx.max_text_chars,
            )
        return kept

    def stop(self) -> None:
        """The end of the text."""
        if self.stopped.is_set():
            return
        if self.error is None:
            units = self.segmenter.finish() if self.ssml is None else ssml.units("".join(self.ssml))
            for unit in units:
                self.job.add_text(unit)
        self.job.close()
        self.stopped.set()

    def fail(self, err: RequestError) -> None:
        """Refuse the rest of this request (the error is reported once)."""
        if self.error is None:
            self.error = err
            self.job.cancel()


class KokoroEventHandler(AsyncEventHandler):
    """Handles one client: describe at once, synthesis requests in order, audio as it comes."""

    def __init__(self, ctx: ServerContext, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx = ctx
        self._stream: _Request | None = None
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._runner: asyncio.Task | None = None
        self._current: _Request | None = None
        self._closed = False
        ctx.connections += 1

    async def run(self) -> None:
        """Serve the connection with bounded reads (limits.py).

        A malformed or oversized event gets an Error event and the connection is closed (the byte
        stream cannot be trusted after it); an event whose fields have the wrong types gets an
        Error event and the connection stays usable; a client that vanishes is a normal end.
        """
        limits = limits_for(self.ctx.max_text_chars)
        self._is_running = True
        try:
            while self._is_running:
                try:
                    event = await read_event(self.reader, limits)
                except ProtocolError as err:
                    await self._send_error(RequestError(err.text, err.code))
                    break
                if event is None:
                    break
                try:
                    event = check_event(event)
                except ProtocolError as err:
                    await self._send_error(RequestError(err.text, err.code))
                    continue
                if not await self.handle_event(event):
                    break
        except (ConnectionError, OSError) as err:
            _LOGGER.debug("connection ended: %s", err)
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.ctx.info_event())
            return True
        if Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
            return True
        try:
            if Synthesize.is_type(event.type):
                synthesize = Synthesize.from_event(event)
                if self._stream is not None:
                    # Home Assistant repeats the whole text inside a stream for servers without
                    # streaming: not spoken twice.  A client that streamed no text at all gets it.
                    if not self._stream.got_text:
                        self._stream.feed(synthesize.text)
                    return True
                request = _Request(self, synthesize.voice, False, synthesize.text_format)
                request.feed(synthesize.text)
                request.stop()
                await self._submit(request)
                return True
            # Stream events are answered even when streaming is not advertised: Home Assistant
            # keeps the describe it read first and streams to a server restarted without it.
            if SynthesizeStart.is_type(event.type):
                start = SynthesizeStart.from_event(event)
                if self._stream is not None:
                    self._stream.stop()  # a new stream ends an unfinished one
                    self._stream = None
                stream = _Request(self, start.voice, True, start.text_format)
                await self._submit(stream)  # refused: synthesize-stop still gets its answer
                self._stream = stream
                return True
            if SynthesizeChunk.is_type(event.type):
                if self._stream is not None:
                    self._stream.feed(SynthesizeChunk.from_event(event).text)
                return True
            if SynthesizeStop.is_type(event.type):
                if self._stream is not None:
                    self._stream.stop()
                    self._stream = None
                else:
                    await self.write_event(SynthesizeStopped().event())
                return True
        except RequestError as err:
            await self._send_error(err)
        return True

    async def _submit(self, request: _Request) -> None:
        if self._queue.qsize() >= MAX_QUEUED_REQUESTS:
            request.job.cancel()
            raise RequestError(
                f"too many requests queued on this connection (at most {MAX_QUEUED_REQUESTS})",
                "busy",
            )
        self.ctx.requests += 1
        self._queue.put_nowait(request)
        if self._runner is None:
            self._runner = asyncio.create_task(self._run_requests(), name="kokoro requests")

    async def _run_requests(self) -> None:
        while True:
            request = await self._queue.get()
            self._current = request
            try:
                await self._run_request(request)
            except (ConnectionError, OSError):
                _LOGGER.debug("client went away during synthesis")
                request.job.cancel()
                await self.stop()
                return
            except Exception as err:  # noqa: BLE001 - a bug must not wedge this connection
                _LOGGER.exception("request failed")
                with contextlib.suppress(Exception):
                    await self._send_error(RequestError(f"internal error: {err}", "internal"))
            finally:
                request.job.cancel()
                self._current = None

    async def _run_request(self, request: _Request) -> None:
        ctx = self.ctx
        audio_started = False
        first_audio: float | None = None
        timestamp = 0
        samples = 0
        try:
            if request.error is not None:
                raise request.error
            voice = await ctx.resolve_voice(request.voice_name, request.voice_language)
            request.job.start(voice)
            spc = ctx.samples_per_chunk
            async for audio in request.job.chunks():
                if not audio_started:
                    await self._audio_start()
                    audio_started = True
                    first_audio = time.monotonic() - request.created
                data = audio.astype("<i2", copy=False).tobytes()
                step = spc * SAMPLE_WIDTH * CHANNELS
                for offset in range(0, len(data), step):
                    part = data[offset : offset + step]
                    await self.write_event(
                        AudioChunk(
                            rate=SAMPLE_RATE,
                            width=SAMPLE_WIDTH,
                            channels=CHANNELS,
                            audio=part,
                            timestamp=timestamp,
                        ).event()
                    )
                    samples += len(part) // (SAMPLE_WIDTH * CHANNELS)
                    timestamp = samples * 1000 // SAMPLE_RATE
            if request.error is not None:
                raise request.error
            if not audio_started:
                await self._audio_start()  # empty text: a valid, empty audio stream
                audio_started = True
            await self.write_event(AudioStop(timestamp=timestamp).event())
            elapsed = time.monotonic() - request.created
            audio_s = samples / SAMPLE_RATE
            _LOGGER.info(
                "%s: %d chars, voice %s, %.2f s of audio in %.2f s (first audio after %s)",
                "stream" if request.streaming else "synthesize",
                request.chars,
                voice,
                audio_s,
                elapsed,
                f"{first_audio:.2f} s" if first_audio is not None else "-",
            )
        except RequestError as err:
            request.fail(err)
            await self._send_error(err)
            if not request.streaming:
                await self.stop()  # no audio-stop: a reader waiting for it sees the close
                return
            if audio_started:
                await self.write_event(AudioStop(timestamp=timestamp).event())
        if request.streaming:
            await request.stopped.wait()
            await self.write_event(SynthesizeStopped().event())

    async def _audio_start(self) -> None:
        await self.write_event(
            AudioStart(rate=SAMPLE_RATE, width=SAMPLE_WIDTH, channels=CHANNELS, timestamp=0).event()
        )

    async def _send_error(self, err: RequestError) -> None:
        _LOGGER.warning("request refused: %s", err.text)
        await self.write_event(Error(text=err.text, code=err.code).event())

    async def disconnect(self) -> None:
        """The client is gone: stop its synthesis at once (frees the engine for others)."""
        if self._closed:
            return
        self._closed = True
        self.ctx.connections -= 1
        if self._stream is not None:
            self._stream.job.cancel()
        if self._current is not None:
            self._current.job.cancel()
        while not self._queue.empty():
            self._queue.get_nowait().job.cancel()
        if self._runner is not None and self._runner is not asyncio.current_task():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
