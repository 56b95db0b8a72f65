"""The first unit of a streamed text (server/segmenter.py): once its sentence is known to be
long (3 x FIRST_PIECE_MIN_CHARS), it ends at the first clause mark after FIRST_PIECE_MIN_CHARS
characters, since the listener waits for the whole first unit and a pass takes time in
proportion to its audio; a short sentence stays whole; later units stay long.  Through a real server, the
text cut this way is heard whole and without a gap longer than a clause pause."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming_helpers import running_server, stream_like_ha

from wyoming_kokoro_gguf.server.segmenter import TextSegmenter
from wyoming_kokoro_gguf.synth.text import FIRST_PIECE_MIN_CHARS

# the benchmark's "20 words" text: one sentence of three clauses
TEXT = (
    "The front door is locked, the garage is closed, and the living room "
    "temperature is twenty one degrees right now."
)
FIRST = "The front door is locked,"


def units_of(pieces: list[str], segmenter: TextSegmenter | None = None) -> list[str]:
    seg = segmenter or TextSegmenter()
    return [u for p in pieces for u in seg.feed(p)] + seg.finish()


def test_the_first_unit_ends_at_its_first_long_enough_clause() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        cuts = sorted(set(rng.integers(1, len(TEXT), size=15).tolist()))
        pieces = [TEXT[a:b] for a, b in zip([0, *cuts], [*cuts, len(TEXT)], strict=True)]
        units = units_of(pieces)
        assert units[0] == FIRST and len(FIRST) >= FIRST_PIECE_MIN_CHARS
        # the rest is one unit: only the first is cut early
        assert units[1:] == [TEXT[len(FIRST) :].strip()]


def test_a_clause_shorter_than_the_minimum_is_not_cut() -> None:
    text = "Hi, the front door is locked and the garage is closed right now. Bye."
    assert units_of(list(text)) == [text[:-5], "Bye."]
    # a sentence that ends first is the first unit, however short
    assert units_of(["Good morning. Today, at nine thirty, you meet Anna."])[0] == "Good morning."


def test_the_first_clause_is_cut_only_once_the_sentence_is_known_to_be_long() -> None:
    seg = TextSegmenter()
    assert seg.feed("The front door is locked,") == []  # "3,5": the mark needs a space after
    assert seg.feed(" the gar") == []  # the sentence may still end soon: keep it whole
    assert seg.feed("age is closed, and the living") == [FIRST]  # over 3 x the minimum


def test_a_short_sentence_stays_whole_however_it_arrives() -> None:
    """A clause spoken alone loses the sentence's intonation: "Turn on the kitchen lights,"
    alone was heard "Tau Nong Keijun Lights" (jf_alpha), the whole sentence "Turn on ..."."""
    text = "Turn on the kitchen lights, please."
    assert units_of([text]) == [text]
    assert units_of(list(text)) == [text]
    assert units_of([text[:27], text[27:]]) == [text]


@pytest.fixture(scope="module")
def model(english_model: Path) -> Path:
    return english_model


def _longest_gap_s(pcm: np.ndarray, rate: int = 24000) -> float:
    """The longest run of 10 ms frames below -50 dBFS between the first and last sound."""
    hop = rate // 100
    n = len(pcm) // hop
    rms = np.sqrt(np.mean((pcm[: n * hop].astype(np.float64) / 32768).reshape(n, hop) ** 2, 1))
    loud = np.nonzero(rms > 10 ** (-50 / 20))[0]
    gaps = np.diff(loud) - 1
    return float(gaps.max(initial=0)) / 100


@pytest.mark.slow
def test_a_stream_cut_at_its_first_clause_is_heard_whole_without_a_gap(
    model: Path, tmp_path: Path, asr_judge
) -> None:
    from asr import wer

    async def stream(port: int):
        async with AsyncTcpClient("127.0.0.1", port) as client:
            return await stream_like_ha(client, TEXT, "af_jf_alpha")

    with running_server(model, tmp_path, "--cache-mb", "0") as srv:
        ex = asyncio.run(stream(srv.port))
    pcm = ex.pcm()
    assert pcm.size > 3 * 24000, "less than 3 s of audio for a 20-word sentence"
    # the cut leaves a clause pause (0.15 s kept after the clause, 0.05 s before the next);
    # a lost or doubled unit, or a stalled one, would leave a longer hole or missing words
    assert _longest_gap_s(pcm) < 0.45
    heard = asr_judge.transcribe(pcm, 24000)
    assert wer(TEXT, heard) <= 0.1, heard
