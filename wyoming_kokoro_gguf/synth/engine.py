"""Synthesis engine: text -> 24 kHz int16 audio, clause by clause, from a Kokoro GGUF file.

Pipeline per request: text.py cuts the text into pieces (sentences, long ones at clauses, a
short first piece), phonemes.py turns each piece into model phonemes (<= 510 per pass), then
two ONNX Runtime sessions built by synth/graph run the model: stage 1 gives durations and
features, the host repeats feature rows by the durations, stage 2 gives the waveform.  Each
piece is yielded as soon as it is done, so callers can stream, and memory stays bounded by one
pass (options.passes of them where passes run side by side), whatever the length of the text.

Thread safety: ORT sessions may run concurrently (and release the GIL), espeak-ng is serialized
inside phonemes.Phonemizer, and the voice table is only replaced, never mutated in place.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wyoming_kokoro_gguf.audio import SAMPLE_RATE, to_int16
from wyoming_kokoro_gguf.synth import markdown, markup
from wyoming_kokoro_gguf.synth import normalize as normalize_mod
from wyoming_kokoro_gguf.synth import text as text_mod
from wyoming_kokoro_gguf.synth.blend import BlendError, parse_blend
from wyoming_kokoro_gguf.synth.graph_cache import GraphCache
from wyoming_kokoro_gguf.synth.lexicon import Lexicon
from wyoming_kokoro_gguf.synth.lowering import EngineOptions, default_options
from wyoming_kokoro_gguf.synth.phonemes import (
    Phonemizer,
    PhonemizerError,
    keep_known,
    language_for_text,
    language_for_voice,
    split_phonemes,
)
from wyoming_kokoro_gguf.synth.stages import align, release_heap, return_freed_blocks_at_once
from wyoming_kokoro_gguf.weights.layout import MAX_PHONEMES, VoiceInfo
from wyoming_kokoro_gguf.weights.model_file import KokoroModelFile, open_model

_LOG = logging.getLogger(__name__)

MIN_SPEED = 0.5
_CLOSING = '.,;:!?…)”"»'
MAX_SPEED = 2.0


def session_options(options: EngineOptions) -> ort.SessionOptions:
    """ONNX Runtime session options for the engine's two sessions under ``options``."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1  # the graph is one chain of ops, run sequentially
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if options.allow_spinning else "0"
    )
    so.enable_cpu_mem_arena = options.mem_arena
    if options.mem_arena:
        _register_shared_arena()
        so.add_session_config_entry("session.use_env_allocators", "1")
    else:
        # Without the arena every tensor is malloc'ed and freed: glibc keeps the freed
        # activations unless told otherwise (2,000 characters, q8_0: speaking peak 1,422 MB
        # without this, 433 MB with it).
        return_freed_blocks_at_once()
    # Memory patterns only pay for repeated identical shapes; every pass here has its own
    # length, and the planned blocks raised the peak while speaking (491 -> 438 MB, same speed).
    so.enable_mem_pattern = False
    # Flush denormals to zero: the vocoder's decaying signals hit them (~6% faster, same audio
    # within the SNR the tests check).
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.log_severity_level = 3
    return so


@functools.cache
def _register_shared_arena() -> None:
    """One CPU arena in ORT's environment for every session of this process that asks for it.

    Each session otherwise grows its own arena to its own high-water mark and keeps it: the two
    stages' peaks do not overlap in time, so one arena serves both.  Measured (q8_0, fp32
    convolutions, int8 weights, 2,000 characters, engine process, four alternating runs each):
    speaking peak 355-368 MiB against 375-384 with an arena per session, same speed.  Growth
    stays ORT's default (doubling); growing by exactly each request fragmented the arena
    (610 MiB).
    """
    cpu = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, 0, -1, -1))


class UnknownVoiceError(KeyError):
    """The requested voice is not in the model file (nor a defined blend)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else "unknown voice"


@dataclass
class PassTiming:
    """Where the time of one model pass went (for the CLI and logs)."""

    phonemes: int
    frames: int
    started: float  # time.perf_counter() at the start of the pass
    stage1_s: float
    stage2_s: float
    audio_s: float

    @property
    def ended(self) -> float:
        """time.perf_counter() at the end of the pass."""
        return self.started + self.stage1_s + self.stage2_s


class Engine:
    """Kokoro on ONNX Runtime for one model file.  Create with ``Engine.load``."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: KokoroModelFile,
        stage1: ort.InferenceSession,
        stage2: ort.InferenceSession,
        options: EngineOptions,
        notes: list[str],
    ) -> None:
        self.model = model
        self.options = options
        self.notes = notes
        self._stage1 = stage1
        self._stage2 = stage2
        self._packs: dict[str, np.ndarray] = {}
        self._pack_lock = threading.Lock()
        self._blends: dict[str, tuple[VoiceInfo, np.ndarray]] = {}
        self.voices: dict[str, VoiceInfo] = dict(model.voices)
        self._phonemizer = Phonemizer(model.phoneme_to_id)
        # pronunciation overrides (synth/lexicon.py); set from the data directories
        self.lexicon: Lexicon | None = None
        self.last_timings: list[PassTiming] = []
        self.nbits_used = 0  # Linear weights running packed in MatMulNBits
        self.int8_convs = 0  # int8 dot-product convolutions (conv="int8")
        self.conv_ratios: np.ndarray | None = None  # their calibrated output ranges
        # where the sessions came from: "off" (no cache dir), or GraphCache.status ("loaded"...)
        self.graph_cache = "off"
        self.style_width = 256  # decoder | predictor halves of a voice's style row
        # Trim each piece's silences (Kokoro pads ~0.3 s before and ~0.7 s after): pieces are
        # played back to back, and a shorter lead makes the first audio come sooner.
        self.trim = True
        # passes of a text computed ahead of the one being returned (options.passes > 1)
        self._ahead_pool = (
            ThreadPoolExecutor(options.passes, thread_name_prefix="kokoro-pass")
            if options.passes > 1
            else None
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        options: EngineOptions | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        warm_up: bool = True,
        voices: str | os.PathLike[str] | None = None,
    ) -> Engine:
        """Open a Kokoro GGUF file and build its ONNX Runtime sessions.

        With ``cache_dir``, the optimized graphs an earlier load left there for the same file,
        options and versions are loaded instead (synth/graph_cache.py: ~10 s -> <1 s), and a
        build leaves them there; ``engine.graph_cache`` says which happened.  ``warm_up=False``
        skips the tiny first pass, for callers that warm up with a real synthesis anyway.
        ``voices``: a CrispASR-layout model's voice files (weights/crispasr.py), when they are
        not beside it.
        """
        options = options or default_options()
        model = open_model(Path(path), voices)
        cache = None if cache_dir is None else GraphCache(cache_dir, Path(path), options)
        found = None if cache is None else cache.load(lambda: session_options(options))
        if found is None:
            # The one import deferred by design (tests/test_layout.py): the graph builder and
            # onnx (1.1-1.4 s of a warm start here) only when there is something to build.
            from wyoming_kokoro_gguf.synth import build

            found = build.build_sessions(model, options, cache, lambda: session_options(options))
            # ORT holds its own copy of the weights now: unmap the file (only voices are read
            # later, lazily) and give the freed heap back to the system.
            model.close()
            model = open_model(Path(path), voices)
        stage1, stage2, built = found
        for note in built.notes:
            _LOG.info("%s", note)
        release_heap()
        engine = cls(model, stage1, stage2, options, built.notes)
        engine.nbits_used = built.nbits_used
        engine.int8_convs = built.int8_convs
        engine.conv_ratios = built.conv_ratios
        engine.style_width = built.style_width
        engine.graph_cache = "off" if cache is None else cache.status
        if warm_up:
            engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """One tiny pass so the first request does not pay ORT's first-run setup (allocations,
        kernel choices): that request is the one a user waits on."""
        self._tiny_pass()
        self.last_timings.clear()

    def release_memory(self) -> None:
        """Give the activation memory of finished passes back to the system; call when idle.

        ORT's arena keeps its high-water mark for the life of the session: after a 2,000-
        character text the engine stayed at ~615 MB instead of ~340 MB until it restarted,
        memory a small board's other services could use.  A tiny pass with arena shrinkage on
        frees the unused regions (shrinking after every pass instead cost 2-7% speed), then
        glibc returns its free pages.
        """
        if self.options.mem_arena:
            shrink = ort.RunOptions()
            shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            self._tiny_pass(shrink)
            del self.last_timings[-1:]
        release_heap()

    def _tiny_pass(self, run_options=None) -> None:
        ids = [i for i in range(1, len(self.model.vocab)) if self.model.vocab[i].isalpha()][:8]
        if ids:
            style = np.zeros((1, self.style_width), dtype=np.float32)
            tokens = np.array([[0, *ids, 0]], dtype=np.int64)
            self.run_tokens(tokens, style, 1.0, run_options=run_options)

    # ------------------------------------------------------------ voices

    def _pack(self, name: str) -> np.ndarray:
        """The [510, 256] style pack of a voice or blend."""
        blend = self._blends.get(name)
        if blend is not None:
            return blend[1]
        with self._pack_lock:
            pack = self._packs.get(name)
            if pack is None:
                if name not in self.model.voices:
                    raise self._unknown(name)
                pack = np.ascontiguousarray(self.model.voice_tensor(name), dtype=np.float32)
                self._packs[name] = pack
            return pack

    def _unknown(self, name: str) -> UnknownVoiceError:
        return UnknownVoiceError(
            f"unknown voice {name!r}; available voices: {', '.join(sorted(self.voices))}"
        )

    def add_blend(self, name: str, formula: str) -> VoiceInfo:
        """Define a voice mixing the style vectors of others, e.g. ``af_heart:0.7,af_bella:0.3``.

        The blend speaks the language of its heaviest component.
        """
        parts = parse_blend(formula)
        if name in self.model.voices:
            raise BlendError(f"blend name {name!r} is already a voice of the model")
        for voice, _ in parts:
            if voice not in self.voices:
                raise self._unknown(voice)
        pack = sum(weight * self._pack(voice) for voice, weight in parts)
        main = max(parts, key=lambda p: p[1])[0]
        base = self.voices[main]
        info = VoiceInfo(
            name=name,
            language=base.language,
            espeak=base.espeak,
            language_name=base.language_name,
            gender=base.gender,
        )
        self._blends = {**self._blends, name: (info, np.asarray(pack, dtype=np.float32))}
        self.voices = {**self.voices, name: info}
        return info

    def _resolve(self, voice: str) -> tuple[VoiceInfo, np.ndarray]:
        if voice in self.voices:
            return self.voices[voice], self._pack(voice)
        if ":" in voice or "," in voice:  # an inline blend formula
            parts = parse_blend(voice)
            for name, _ in parts:
                if name not in self.voices:
                    raise self._unknown(name)
            pack = sum(w * self._pack(n) for n, w in parts)
            main = max(parts, key=lambda p: p[1])[0]
            return self.voices[main], np.asarray(pack, dtype=np.float32)
        raise self._unknown(voice)

    # ------------------------------------------------------------ synthesis

    def synthesize(
        self, text: str, voice: str, speed: float = 1.0, language: str | None = None
    ) -> Iterator[np.ndarray]:
        """Audio for ``text`` as int16 mono arrays at 24 kHz, one per piece, as each is done.

        The voice is checked now (UnknownVoiceError), the audio is made lazily.  Speed is clamped
        to 0.5..2.0; empty or unspeakable text yields nothing.  ``language`` (an espeak-ng
        language such as "en-us") overrides the voice's own; without it, text with none of the
        voice language's script (English sent to a Japanese voice) is read as English.
        """
        return self._generate(*self._request(text, voice, speed, language), ahead=True)

    def synthesize_later(
        self, text: str, voice: str, speed: float = 1.0
    ) -> Future[list[np.ndarray]] | None:
        """Start synthesizing ``text`` in the background, or None when the options run one pass
        at a time: the server computes a request's next sentence while the current one is
        being sent.  Its passes run one after another; errors come out of the future."""
        pool = self._ahead_pool
        if pool is None:
            return None
        request = self._request(text, voice, speed, None)
        return pool.submit(lambda: list(self._generate(*request, ahead=False)))

    def _request(
        self, text: str, voice: str, speed: float, language: str | None
    ) -> tuple[str, str, np.ndarray, float, bool]:
        """Checked arguments of _generate: text, language, style pack, speed, language fixed."""
        info, pack = self._resolve(voice)
        speed = float(speed)
        if not math.isfinite(speed):
            raise ValueError(f"speed must be a number between {MIN_SPEED} and {MAX_SPEED}")
        clamped = min(MAX_SPEED, max(MIN_SPEED, speed))
        if clamped != speed:
            _LOG.warning(
                "speed %s is outside %s..%s, using %s", speed, MIN_SPEED, MAX_SPEED, clamped
            )
        if language:
            return text or "", language, pack, clamped, True
        language = language_for_voice(info.name, getattr(info, "espeak", None))
        return text or "", language, pack, clamped, False

    def _generate(
        self,
        text: str,
        language: str,
        pack: np.ndarray,
        speed: float,
        fixed: bool,
        ahead: bool,
    ) -> Iterator[np.ndarray]:
        passes = self._passes(text, language, pack, speed, fixed)
        if ahead and self._ahead_pool is not None:
            audio = self._run_ahead(passes)
        else:  # one after another (pool tasks never wait on the pool: no deadlock)
            audio = (run() for run in passes)
        for chunk in audio:
            if chunk.size:
                yield chunk

    def _passes(
        self, text: str, language: str, pack: np.ndarray, speed: float, fixed: bool
    ) -> Iterator[Callable[[], np.ndarray]]:
        """The text's model passes, in order, as calls giving int16 audio (phonemized lazily).

        Directives (synth/markup.py) switch voice, speed or language for the text after them
        and insert pauses, as exact runs of zero samples."""
        for span in markup.spans(text):
            if span.pause:
                silence = np.zeros(round(span.pause * SAMPLE_RATE), dtype=np.int16)
                yield lambda silence=silence: silence
                continue
            span_lang, span_pack, span_fixed = language, pack, fixed
            if span.voice is not None:
                try:
                    info, span_pack = self._resolve(span.voice)
                    if not fixed:
                        span_lang = language_for_voice(info.name, getattr(info, "espeak", None))
                except (UnknownVoiceError, BlendError) as err:
                    _LOG.warning("voice switch ignored: %s", err)
            if span.language:
                span_lang, span_fixed = self._span_language(span.language, span_lang, span_fixed)
            rate = min(MAX_SPEED, max(MIN_SPEED, speed * span.rate))
            yield from self._text_passes(span.text, span_lang, span_pack, rate, span_fixed)

    def _span_language(self, wanted: str, language: str, fixed: bool) -> tuple[str, bool]:
        """The espeak-ng language a directive asks for ("de-de" may be "de"), or the one in
        use when espeak-ng speaks neither: a language tag never fails a request."""
        for candidate in dict.fromkeys((wanted, wanted.split("-")[0])):
            try:
                self._phonemizer.phonemize("a", candidate)
                return candidate, True
            except PhonemizerError as err:
                error = err
        _LOG.warning("language %r ignored: %s", wanted, error)
        return language, fixed

    def _text_passes(
        self, text: str, language: str, pack: np.ndarray, speed: float, fixed: bool
    ) -> Iterator[Callable[[], np.ndarray]]:
        """One span's passes: Markdown read as a listener hears it, lexicon and inline phonemes,
        then pieces, normalizer, G2P."""
        text = markdown.speech_text(text, language)
        if self.lexicon is not None:
            text = self.lexicon.apply(text, language)
        text, given = markup.protect(markup.expand_say_as(text, language))
        for piece in text_mod.iter_pieces(text):
            lang = language if fixed else language_for_text(piece, language)
            phonemes = self._piece_phonemes(piece, given, lang)
            chunks = split_phonemes(phonemes, self.options.max_phonemes)
            for n, chunk in enumerate(chunks):
                ids = self._phonemizer.ids(chunk)
                if not ids or not any(ch.isalpha() for ch in chunk):
                    continue  # nothing speakable (only punctuation or spaces)
                ends_sentence = (
                    n == len(chunks) - 1 and chunk.rstrip('”" ')[-1:] in text_mod.SENTENCE_END
                )
                yield lambda ids=ids, ends=ends_sentence: self._speak(ids, pack, speed, ends)

    def _piece_phonemes(self, piece: str, given: list[str], language: str) -> str:
        """A piece's phonemes: its text normalized and phonemized, given phonemes as they are."""
        out = []
        for is_phonemes, part in markup.parts(piece, given):
            if is_phonemes:
                kept = keep_known(part, self._phonemizer.vocab)
                if len(kept.replace(" ", "")) != len(part.replace(" ", "")):
                    _LOG.debug("phonemes outside the vocabulary dropped from %r", part)
                out.append(kept)
            else:
                speakable = normalize_mod.speakable(part, language)
                out.append(self._phonemizer.phonemize(speakable, language))
        joined = ""
        for phonemes in filter(None, out):  # closing punctuation sticks to the word before it
            glue = not joined or phonemes[0] in _CLOSING
            joined += phonemes if glue else " " + phonemes
        return joined

    def _speak(
        self, ids: list[int], pack: np.ndarray, speed: float, ends_sentence: bool
    ) -> np.ndarray:
        audio = self.infer(ids, pack, speed)
        if self.trim:
            audio = trim_silence(audio, TRAIL_SENTENCE if ends_sentence else TRAIL_CLAUSE)
        return to_int16(audio)

    def _run_ahead(self, passes: Iterator[Callable[[], np.ndarray]]) -> Iterator[np.ndarray]:
        """The passes' audio in order, with up to options.passes of them computing at once.

        The first pass runs alone: it is the one the listener waits on.  One pass more than the
        pool's workers is submitted, so a worker whose pass ends before an earlier one (a short
        sentence after a long one) starts the next at once instead of idling until the earlier
        one is returned.  When the caller stops early (a cancelled request), passes not started
        are dropped; a running one finishes.
        """
        first = next(passes, None)
        if first is None:
            return
        audio = first()
        pool = self._ahead_pool
        queued = itertools.islice(passes, self.options.passes + 1)
        in_flight = deque(pool.submit(run) for run in queued)
        try:
            yield audio
            while in_flight:
                audio = in_flight.popleft().result()
                run = next(passes, None)
                if run is not None:
                    in_flight.append(pool.submit(run))
                yield audio
        finally:
            for future in in_flight:
                future.cancel()

    def infer(self, ids: list[int], pack: np.ndarray, speed: float = 1.0) -> np.ndarray:
        """One model pass: token ids (<= 510, without pads) -> float32 audio."""
        if len(ids) > MAX_PHONEMES:
            raise ValueError(f"{len(ids)} phonemes in one pass; at most {MAX_PHONEMES}")
        style = pack[min(len(ids), len(pack)) - 1].reshape(1, -1).astype(np.float32)
        tokens = np.array([[0, *ids, 0]], dtype=np.int64)
        return self.run_tokens(tokens, style, speed)

    def run_tokens(
        self,
        tokens: np.ndarray,
        style: np.ndarray,
        speed: float,
        durations: np.ndarray | None = None,
        run_options: ort.RunOptions | None = None,
    ) -> np.ndarray:
        """Both stages for padded tokens [1, n] and a style row [1, 256] -> float32 audio.

        ``durations`` (frames per token) replaces the predicted ones: tests use it to compare
        the acoustic stage of differently quantized files on the same alignment.
        """
        t0 = time.perf_counter()
        durations, feed = align(self._stage1, tokens, style, speed, durations, run_options)
        t1 = time.perf_counter()
        if self.conv_ratios is not None:
            feed["conv_ratios"] = self.conv_ratios
        (audio,) = self._stage2.run(["audio"], feed, run_options)
        t2 = time.perf_counter()
        self.last_timings.append(
            PassTiming(
                phonemes=int(tokens.shape[1] - 2),
                frames=int(durations.sum()),
                started=t0,
                stage1_s=t1 - t0,
                stage2_s=t2 - t1,
                audio_s=len(audio) / SAMPLE_RATE,
            )
        )
        del self.last_timings[:-64]
        return audio

    def durations(self, tokens: np.ndarray, style: np.ndarray, speed: float = 1.0) -> np.ndarray:
        """Stage 1 only: frames per token (for equivalence tests and timing marks)."""
        (durations, _, _) = self._stage1.run(
            None,
            {"tokens": tokens, "style": style, "speed": np.array([speed], dtype=np.float32)},
        )
        return durations


# Silence handling (10 ms frames below -60 dBFS count as silence): keep 50 ms before the
# speech, and after it a pause that fits where the piece ends.
SILENCE_DBFS = -60.0
LEAD_KEEP = 0.05
TRAIL_SENTENCE = 0.35
TRAIL_CLAUSE = 0.15


def trim_silence(audio: np.ndarray, trail_keep: float, lead_keep: float = LEAD_KEEP) -> np.ndarray:
    """Cut leading/trailing silence down to ``lead_keep`` / ``trail_keep`` seconds."""
    audio = np.asarray(audio, dtype=np.float32).ravel()
    hop = SAMPLE_RATE // 100
    n = len(audio) // hop
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > 10 ** (SILENCE_DBFS / 20))[0]
    if loud.size == 0:
        return audio[:0]
    start = max(0, loud[0] * hop - int(lead_keep * SAMPLE_RATE))
    end = min(len(audio), (loud[-1] + 1) * hop + int(trail_keep * SAMPLE_RATE))
    return audio[start:end]
