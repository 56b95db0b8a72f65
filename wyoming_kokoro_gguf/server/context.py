"""What the Wyoming handlers and the HTTP API share: engine, scheduler, cache, voice rules."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import Any

from wyoming.event import Event

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.audio import SAMPLE_RATE
from wyoming_kokoro_gguf.server.config import ServerConfig
from wyoming_kokoro_gguf.server.engine_process import EngineProcess
from wyoming_kokoro_gguf.server.errors import RequestError
from wyoming_kokoro_gguf.server.info import build_info
from wyoming_kokoro_gguf.server.phrase_cache import PhraseCache
from wyoming_kokoro_gguf.server.scheduler import Scheduler
from wyoming_kokoro_gguf.server.voices import clean_language_tag

_LOGGER = logging.getLogger(__name__)

DEFAULT_CACHE_MB = 32.0  # about 11 minutes of 24 kHz int16 speech


class ServerContext:
    """Everything the Wyoming handlers and the HTTP API share."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.blends = dict(config.blends)
        self.engine = EngineProcess(config)
        cache_mb = DEFAULT_CACHE_MB if config.cache_mb is None else config.cache_mb
        self.cache = PhraseCache(int(cache_mb * 1024 * 1024))
        self.scheduler = Scheduler(self.engine, self.cache)
        self.streaming = config.streaming
        self.samples_per_chunk = config.samples_per_chunk
        self.max_text_chars = config.max_text_chars
        self.speed = config.speed
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
        if self.config.cache_mb is None and plan_cache_mb is not None:
            self.cache.max_bytes = max(0, int(plan_cache_mb * 1024 * 1024))
            _LOGGER.info("Phrase cache: %.0f MB (host plan)", plan_cache_mb)

    def _voices_changed(self) -> None:
        voices = list(self.engine.voices.values())
        self._info_event = build_info(voices, self.streaming).event()
        names = sorted(self.engine.voices)
        wanted = self.config.voice
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
            # Leak checks: both return to their idle values when clients go away.
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "cache": dataclasses.asdict(cache),
        }
