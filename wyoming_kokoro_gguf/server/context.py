"""What the Wyoming handlers and the HTTP API share: engine, scheduler, cache, voice rules."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

from wyoming.event import Event

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.audio import SAMPLE_RATE
from wyoming_kokoro_gguf.host.data_dir import default_data_dir
from wyoming_kokoro_gguf.server.config import ServerConfig
from wyoming_kokoro_gguf.server.engine_process import EngineProcess
from wyoming_kokoro_gguf.server.errors import RequestError
from wyoming_kokoro_gguf.server.info import build_info
from wyoming_kokoro_gguf.server.phrase_cache import PhraseCache
from wyoming_kokoro_gguf.server.scheduler import Scheduler
from wyoming_kokoro_gguf.server.voices import clean_language_tag
from wyoming_kokoro_gguf.synth import lexicon
from wyoming_kokoro_gguf.weights.layout import DEFAULT_VOICES, voice_info

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
        self._warned_voices: set[str] = set()  # requested names that fell back, warned once
        self.engine.on_voices(self._voices_changed)
        self.engine.on_model(self._model_resolved)
        # the engine re-reads changed lexicon files; cached phrases may hold the old words
        self._lexicon_dirs = [Path(d) for d in config.data_dir] or [default_data_dir()]
        self._lexicon_stamps = lexicon.file_stamps(self._lexicon_dirs)
        self._lexicon_checked = time.monotonic()

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
        model = ((self.engine.plan or {}).get("reasons") or {}).get("model")
        self._info_event = build_info(voices, self.streaming, model).event()
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
            preferred = [name for name in DEFAULT_VOICES if name in self.engine.voices]
            self.default_voice = (preferred or names or [None])[0]
        if self.engine.voices_final:
            missing = [b for b in self.blends if b not in self.engine.voices]
            for name in missing:
                _LOGGER.warning("voice blend %s is not available", name)

    def info_event(self) -> Event:
        """The Info event for describe (prebuilt: answering costs one write)."""
        return self._info_event

    async def resolve_voice(
        self, name: str | None, language: str | None = None, strict: bool = False
    ) -> str:
        """The voice for a request: the requested name, else --voice (or one of ``language``).

        A name the model lacks falls back to a voice of that name's language (its prefix letter:
        ``af_x`` -> en-US), else --voice, with one warning per name: Home Assistant ignores
        errors on its streaming path and caches the silence it got, so speech is the only
        answer a user can hear (docs/HOMEASSISTANT.md).  ``strict`` (the HTTP API, whose caller
        sees a status) refuses an unknown name instead.  RequestError without any voice.
        """
        await self.engine.wait_voices()
        voices = self.engine.voices
        if self.default_voice is None or not voices:
            raise RequestError("the model has no voices", "no_voices")
        if name and name.strip():
            name = name.strip()
            if name in voices:
                return name
            if strict:
                available = ", ".join(sorted(voices))
                raise RequestError(
                    f"unknown voice {name!r}; available voices: {available}", "unknown_voice"
                )
            fallback = self._voice_of_language(voice_info(name).language)
            if name not in self._warned_voices:
                self._warned_voices.add(name)
                _LOGGER.warning("voice %s is not in the model; using %s", name, fallback)
            return fallback
        if language:
            return self._voice_of_language(clean_language_tag(language))
        return self.default_voice

    def _voice_of_language(self, tag: str) -> str:
        """--voice when it speaks ``tag`` (or nothing does), else the first voice that does."""
        voices = self.engine.voices
        default = voices.get(self.default_voice or "")
        if default is not None and default.language.lower() == tag.lower():
            return default.name
        for v in sorted(voices.values(), key=lambda v: v.name):
            if v.language.lower() == tag.lower():
                return v.name
        return self.default_voice or ""

    def check_text(self, text: str, total: int | None = None) -> None:
        """RequestError when a text is longer than --max-text-chars."""
        self._check_lexicon()
        length = len(text) if total is None else total
        if length > self.max_text_chars:
            raise RequestError(
                f"text too long: {length} characters, the limit is {self.max_text_chars} "
                "(--max-text-chars)",
                "text_too_long",
            )

    def _check_lexicon(self) -> None:
        """Empty the phrase cache when a lexicon file changed (checked every few seconds), so
        an edited pronunciation is heard on the next request, not after the cache forgets."""
        now = time.monotonic()
        if now - self._lexicon_checked < lexicon.CHECK_SECONDS:
            return
        self._lexicon_checked = now
        stamps = lexicon.file_stamps(self._lexicon_dirs)
        if stamps != self._lexicon_stamps:
            self._lexicon_stamps = stamps
            self.cache.clear()

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
