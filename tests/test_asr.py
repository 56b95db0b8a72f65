"""The offline ASR judge (tests/asr.py) itself: front end, decoding, scoring, and real speech."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from asr import (
    N_MELS,
    SAMPLE_RATE,
    WINDOW_FRAMES,
    corpus_wer,
    decode_tokens,
    log_mel,
    mel_filters,
    normalize,
    pack_windows,
    resample,
    wer,
    word_errors,
)


def test_wer_ignores_case_punctuation_and_number_spelling() -> None:
    assert wer("The cat sat.", "the cat sat") == 0.0
    assert wer("at seven in the morning", "At 7 in the morning!") == 0.0
    assert wer("the cat sat", "the dog sat") == pytest.approx(1 / 3)
    assert wer("the cat sat", "the cat") == pytest.approx(1 / 3)
    assert wer("a b", "a x b y") == pytest.approx(1.0)
    assert normalize("It’s 2,000 well-known facts") == [
        "its",
        "two",
        "thousand",
        "well",
        "known",
        "facts",
    ]
    assert corpus_wer([("a b c d", "a b c d"), ("a b", "a")]) == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    "reference,transcript,errors",
    [
        # digits heard one by one, written by Whisper as one number: no error
        (
            "Call five five five, one two three, four five six seven for the plumber.",
            "Call 555123-4567 for the plumber.",
            0,
        ),
        # ... but a wrong digit is still a wrong word
        (
            "Call five five five, one two three, four five six seven for the plumber.",
            "Call 555123-4568 for the plumber.",
            1,
        ),
        # Whisper's other symbol for the same unit
        (
            "The sensor signal is minus sixty-seven decibel milliwatts.",
            "The sensor signal is minus 67 dBmW.",
            0,
        ),
        # Whisper's titles without the period are the words heard
        ("Mister and Missus Lee are at the door.", "Mr and Mrs Lee are at the door.", 0),
        # the normalizer's reading in the sentence stays where it is closer, and a wrong year
        # is wrong however it is read
        (
            "The garbage is collected on December second, twenty twenty-six.",
            "The garbage is collected on December 2, 2016.",
            2,
        ),
        ("The router is at one nine two dot one six eight dot one dot one.", "at 192.168.1.1", 3),
        ("The battery is at one hundred percent.", "The battery is at 100%.", 0),
        ("The battery is at one hundred percent.", "The battery is at 1 0 0 percent.", 2),
    ],
)
def test_english_transcripts_scored_as_heard(reference: str, transcript: str, errors: int) -> None:
    from corpora import english_pair

    assert word_errors(*english_pair(reference, transcript))[0] == errors


def test_resample_keeps_frequency_and_level() -> None:
    t = np.arange(24000) / 24000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(tone, 24000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out[1000:-1000]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / (len(out) - 2000)
    assert abs(peak_hz - 1000) < 2
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.01)
    # content above the new Nyquist frequency is filtered out, not folded back
    high = np.sin(2 * np.pi * 10000 * t).astype(np.float32)
    assert np.sqrt(np.mean(resample(high, 24000)[1000:-1000] ** 2)) < 0.01


def test_mel_filterbank_and_features() -> None:
    filters = mel_filters()
    assert filters.shape == (N_MELS, 201)
    assert (filters >= 0).all() and (filters.max(axis=1) > 0).all()
    # triangles are in increasing frequency order and end at 8 kHz
    centres = filters.argmax(axis=1)
    assert (np.diff(centres) >= 0).all() and centres[-1] > 190
    features = log_mel(np.zeros(8000, dtype=np.float32))
    assert features.shape == (N_MELS, WINDOW_FRAMES)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    features = log_mel(tone)
    assert features.max() <= (np.log10(features.size) + 4) / 4 + 1
    assert features[:, :90].mean() > features[:, 200:].mean()  # the tone, then padding


def test_byte_level_bpe_decoding() -> None:
    assert decode_tokens(["<|startoftranscript|>", "Hello", "Ġworld", ".", "<|endoftext|>"]) == (
        "Hello world."
    )
    # multi-byte UTF-8 characters arrive as several byte symbols
    assert decode_tokens(["Ġcaf", "Ã©"]) == "café"


def test_the_judges_openmp_threads_wait_passively() -> None:
    """CTranslate2's libgomp loads with OMP_WAIT_POLICY=PASSIVE: no spinning before a thread
    sleeps (300 000 spins by default tripled the judge's time on a busy 2-core machine); the
    process's environment is left as it was."""
    import subprocess
    import sys

    code = (
        "import os, asr; asr._import_ctranslate2(); "
        "print('left in environment:', os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        env={**env, "OMP_DISPLAY_ENV": "VERBOSE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "GOMP_SPINCOUNT = '0'" in run.stderr, run.stderr  # libgomp's own report
    assert "left in environment: None" in run.stdout


@pytest.fixture(scope="module")
def peer(asset_cache: Path, kokoro_onnx: Path, kokoro_voices: Path):
    """kokoro-onnx (the PyPI export): clear speech that does not depend on this project."""
    from peer_speech import kokoro_onnx_peer

    return kokoro_onnx_peer(asset_cache, kokoro_onnx, kokoro_voices)


@pytest.mark.slow
def test_judge_transcribes_real_speech(asr_judge, peer) -> None:
    """Clear speech (kokoro-onnx, the PyPI export) comes back with a low word error rate."""
    text = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
    audio, rate = peer.create(text, voice="jf_alpha", lang="en-us")
    heard = asr_judge.transcribe(audio, rate)
    assert wer(text, heard) <= 0.1, heard


@pytest.mark.slow
def test_a_window_whisper_cannot_finish_is_judged_again_in_halves(
    asr_judge, peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A packed window whose text runs past MAX_TOKENS is cut by Whisper: it is judged again
    as two halves, so no clip's words are lost (Japanese fills 224 tokens in under 30 s)."""
    import asr

    texts = ["Open the kitchen window.", "Close the garage door.", "Start the dishwasher."]
    clips = [peer.create(text, voice="jm_kumo", lang="en-us")[0] for text in texts]
    assert pack_windows([len(clip) / 24000 for clip in clips]) == [[0, 1, 2]]
    monkeypatch.setattr(asr, "MAX_TOKENS", 8)
    cut, finished = asr_judge._window(resample(np.concatenate(clips), 24000), "en")
    assert not finished and len(normalize(cut)) <= 8, cut  # decoding stops at MAX_TOKENS
    heard = asr_judge.transcribe_packed(clips, 24000)
    assert [indices for indices, _ in heard] == [[0], [1], [2]]
    assert corpus_wer([(texts[i[0]], text) for i, text in heard]) <= 0.1, heard


@pytest.mark.slow
def test_the_judge_remembers_only_the_exact_samples_it_heard(
    asr_judge, peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window heard before is not decoded again (the suite's second run judges nothing anew);
    one changed sample, another language or a damaged entry is decoded."""
    from asr import HeardMemo

    memo = HeardMemo(tmp_path, {"beam_size": 5})
    monkeypatch.setattr(asr_judge, "memo", memo)
    audio, rate = peer.create("Turn off the porch light.", voice="jf_alpha", lang="en-us")

    def decoded(clip: np.ndarray, language: str = "en") -> tuple[str, int]:
        before = asr_judge.judged
        return asr_judge.transcribe(clip, rate, language), asr_judge.judged - before

    first, count = decoded(audio)
    assert count == 1 and wer("Turn off the porch light.", first) == 0, first
    assert decoded(audio) == (first, 0) and len(list(memo.directory.glob("*.json"))) == 1
    changed = audio.copy()
    changed[len(changed) // 2] += 1e-3
    assert decoded(changed)[1] == 1
    assert decoded(audio, "de")[1] == 1
    for entry in memo.directory.glob("*.json"):
        entry.write_text("{")
    assert decoded(audio) == (first, 1)
    monkeypatch.setenv("WKG_JUDGE_MEMO", "0")
    monkeypatch.setattr(asr_judge, "memo", HeardMemo(tmp_path, {"beam_size": 5}))
    assert decoded(audio) == (first, 1)


@pytest.mark.slow
def test_a_peers_clip_is_made_once_and_is_what_the_peer_says(
    kokoro_onnx: Path, kokoro_voices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peers' clips kept between runs (tests/peer_speech.py) are read back without loading
    the peer, and are bit for bit what the peer says again: the premise of keeping them."""
    from peer_speech import kokoro_onnx_peer

    def spoken(peer, text: str = "Lock the front door.") -> tuple[np.ndarray, int]:
        return peer.create(text, voice="jf_alpha", speed=1.0, lang="en-us")

    made = kokoro_onnx_peer(tmp_path, kokoro_onnx, kokoro_voices)
    audio, rate = spoken(made)
    assert made.spoken == 1 and rate == 24000 and np.abs(audio).max() > 0.1
    again = kokoro_onnx_peer(tmp_path, kokoro_onnx, kokoro_voices)
    kept, _ = spoken(again)
    assert again.spoken == 0 and again._speaker is None
    np.testing.assert_array_equal(kept, audio)
    spoken(again, "Unlock the front door.")
    assert again.spoken == 1  # another text is another clip
    monkeypatch.setenv("WKG_PEER_MEMO", "0")
    fresh = kokoro_onnx_peer(tmp_path, kokoro_onnx, kokoro_voices)
    np.testing.assert_array_equal(spoken(fresh)[0], audio)
    assert fresh.spoken == 1


def judged_windows(judge, clips: list, corpus: list[tuple[str, str]]) -> list:
    """Whisper's hearing of a corpus's audio, a packed window at a time (AsrJudge.
    transcribe_packed): ((joined reference, heard), texts) per window; a window with an error is
    printed.  Windows judge a corpus in a third of the time clip by clip; measured on the home
    corpus at engine level (jm_kumo): WER 0.012 by windows, 0.004 clip by clip, Whisper hearing
    a few words from their neighbours' context ("buttery", "Main's")."""
    from corpora import english_pair

    judged = []
    for indices, heard in judge.transcribe_packed(clips, 24000):
        texts = [corpus[i][0] for i in indices]
        pair = english_pair(" ".join(corpus[i][1] for i in indices), heard)
        if wer(*pair) > 0:
            print(f"{texts!r}\n  want {pair[0]!r}\n  hear {pair[1]!r}")
        judged.append((pair, texts))
    return judged


def test_clips_are_packed_in_order_into_windows_whisper_can_take() -> None:
    """Consecutive clips fill a window up to PACK_WINDOW_S with their pauses; a longer clip
    stands alone; none is lost, reordered or cut."""
    from asr import PACK_GAP_S, PACK_WINDOW_S

    seconds = [4.0, 5.5, 3.0, 30.0, 2.0, 9.0, 9.0, 9.0, 0.5]
    windows = pack_windows(seconds)
    assert [i for window in windows for i in window] == list(range(len(seconds)))
    assert windows[:3] == [[0, 1, 2], [3], [4, 5, 6]]
    for window in windows:
        length = sum(seconds[i] + PACK_GAP_S for i in window)
        assert length <= PACK_WINDOW_S or len(window) == 1
    assert pack_windows([]) == []


# The bar for the home-automation corpus with an English-speaking voice.  Measured
# (docs/TEXT.md): am_jm_kumo 0.006 at engine level; af_jf_alpha, the default before, 0.045.
SERVER_CORPUS_MAX_WER = 0.05


@pytest.mark.slow
def test_home_automation_corpus_through_the_server(
    english_model: Path, tmp_path_factory: pytest.TempPathFactory, asr_judge
) -> None:
    """The English corpus (tests/corpora.py) through the real Wyoming server on the offline
    weights, in its default voice (no voice named, as Home Assistant's default), judged by
    Whisper against what a listener should hear."""
    import asyncio
    import json
    import urllib.request

    from corpora import HOME_AUTOMATION
    from wyoming_helpers import INT8S_SERVER_FLAGS, running_server, synthesize

    clips = []
    corpus_dir = tmp_path_factory.mktemp("en-corpus")
    with running_server(english_model, corpus_dir, *INT8S_SERVER_FLAGS) as server:
        url = f"http://127.0.0.1:{server.http_port}/api/voices"
        with urllib.request.urlopen(url, timeout=60) as response:
            assert json.load(response)["default"] == "am_jm_kumo"
        for text, _ in HOME_AUTOMATION:
            exchange = asyncio.run(synthesize(server.port, text))
            assert exchange.error() is None, text
            clips.append(exchange.pcm())
    pairs = [pair for pair, _ in judged_windows(asr_judge, clips, HOME_AUTOMATION)]
    score = corpus_wer(pairs)
    print(f"server corpus WER {score:.3f}: {len(HOME_AUTOMATION)} sentences, {len(pairs)} windows")
    assert score <= SERVER_CORPUS_MAX_WER


# The bar for language-model replies (tests/corpora.py REPLIES), as for the home corpus.
REPLY_CORPUS_MAX_WER = 0.05


@pytest.mark.slow
def test_reply_corpus_streamed_through_the_server(
    english_model: Path, tmp_path_factory: pytest.TempPathFactory, asr_judge
) -> None:
    """Markdown replies streamed as Home Assistant streams a conversation agent's reply (5
    characters a delta) through the real Wyoming server in its default voice, judged by
    Whisper: no mark's name is heard, and the words are within the bar."""
    import asyncio

    from corpora import REPLIES, SYMBOL_NAMES
    from wyoming.client import AsyncTcpClient
    from wyoming_helpers import INT8S_SERVER_FLAGS, running_server, stream_like_ha

    async def stream(port: int, text: str):
        async with AsyncTcpClient("127.0.0.1", port) as client:
            return await stream_like_ha(client, text, None, delay=0.0, delta_chars=5)

    clips = []
    names = re.compile(rf"\b(?:{'|'.join(SYMBOL_NAMES)})\b", re.I)
    replies_dir = tmp_path_factory.mktemp("replies")
    with running_server(english_model, replies_dir, *INT8S_SERVER_FLAGS) as server:
        for text, _ in REPLIES:
            exchange = asyncio.run(stream(server.port, text))
            assert exchange.error() is None, text
            clips.append(exchange.pcm())
    judged = judged_windows(asr_judge, clips, REPLIES)
    pairs = [pair for pair, _ in judged]
    symbols = [(texts, pair[1]) for pair, texts in judged if names.search(pair[1])]
    score = corpus_wer(pairs)
    print(f"reply corpus WER {score:.3f}: {len(REPLIES)} replies, {len(pairs)} windows")
    print(f"symbols heard: {symbols}")
    assert not symbols
    assert score <= REPLY_CORPUS_MAX_WER
