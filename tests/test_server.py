"""The Wyoming server: unit checks of its parts, then the real server on loopback.

The integration tests start `python -m wyoming_kokoro_gguf` as a subprocess with a real
converted model (conftest's ``kokoro_gguf`` fixture) and the real engine, and talk to it with
the wyoming package's client, as Home Assistant does.  Intelligibility is judged by the
offline Whisper ASR judge (tests/asr.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)
from wyoming_helpers import (
    INT8S_SERVER_FLAGS,
    Exchange,
    ServerProcess,
    audio_format_ok,
    describe,
    free_port,
    predicted_plan_flags,
    read_until,
    run_server_to_exit,
    running_server,
    stream_like_ha,
    synthesize,
)

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.server.config import parse_blends
from wyoming_kokoro_gguf.server.info import build_info
from wyoming_kokoro_gguf.server.phrase_cache import PhraseCache, make_key
from wyoming_kokoro_gguf.server.segmenter import TextSegmenter
from wyoming_kokoro_gguf.server.voices import (
    VoiceDesc,
    blend_summary,
    clean_language_tag,
    voice_description,
    voice_title,
)

MAX_WER = 0.30
ONE_SHOT = "The weather today is sunny and warm. Please turn off the lights in the kitchen."
STREAM_TEXT = "Good morning. The front door is locked, and the garage is closed. Have a nice day."
LONG_SENTENCES = [
    "This is a long announcement for the whole house.",
    "The washing machine has finished its cycle.",
    "The dishwasher will start in ten minutes.",
    "The temperature in the living room is twenty one degrees.",
    "The front door has been locked for the night.",
    "Tomorrow will be cloudy with a little rain in the afternoon.",
    "Remember to take out the recycling before eight.",
    "The car is charging in the garage.",
    "All the windows upstairs are closed.",
    "The alarm is set for six thirty.",
]


def long_text(tag: str, count: int = 10) -> str:
    """Ten sentences that no other test uses (the phrase cache would serve repeats at once)."""
    return " ".join(f"{s[:-1]}, says the {tag} test." for s in LONG_SENTENCES[:count])


# ============================================================================ unit: parts


def _segment_whole(text: str) -> list[str]:
    seg = TextSegmenter()
    return seg.feed(text) + seg.finish()


def _segment_pieces(pieces: list[str]) -> list[str]:
    seg = TextSegmenter()
    units: list[str] = []
    for p in pieces:
        units += seg.feed(p)
    return units + seg.finish()


def test_segmenter_splits_sentences_and_keeps_abbreviations_and_numbers() -> None:
    text = "Dr. Smith paid $3.50 at 5 p.m. today. Is J. R. R. Tolkien here? Yes!\nNext line"
    assert _segment_whole(text) == [
        "Dr. Smith paid $3.50 at 5 p.m. today.",
        "Is J. R. R. Tolkien here?",
        "Yes!",
        "Next line",
    ]


def test_segmenter_gives_the_same_units_whatever_the_deltas() -> None:
    text = 'He said "stop." Then 3.5 seconds passed… Really? The end'
    whole = _segment_whole(text)
    rng = np.random.default_rng(1)
    for _ in range(20):
        cuts = sorted(set(rng.integers(1, len(text), size=12).tolist()))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert _segment_pieces(pieces) == whole
    assert _segment_pieces(list(text)) == whole  # one character at a time


def test_segmenter_emits_a_sentence_before_the_text_ends() -> None:
    seg = TextSegmenter()
    assert seg.feed("Good morning. The fr") == ["Good morning."]
    assert seg.feed("ont door is open") == []
    assert seg.finish() == ["The front door is open"]


def test_segmenter_cuts_long_sentences_at_clauses() -> None:
    seg = TextSegmenter(first_clause_chars=30, clause_chars=60, max_chars=120)
    units = seg.feed("When the sun goes down over the hills, the lights in the garden turn on ")
    assert units == ["When the sun goes down over the hills,"]
    words = seg.feed("word " * 40)
    assert words and all(len(u) <= 120 for u in words)


def test_language_tags_titles_and_descriptions() -> None:
    assert clean_language_tag("en_us") == "en-US"
    assert clean_language_tag("EN-gb") == "en-GB"
    assert clean_language_tag("cmn") == "cmn"
    assert clean_language_tag("pt-br") == "pt-BR"
    assert voice_title("af_heart") == "Heart"
    assert voice_title("my-mix") == "My Mix"
    assert voice_title("af_jf_alpha") == "Alpha"
    heart = VoiceDesc("af_heart", "en-US", "American English", "female")
    assert voice_description(heart) == "Heart - American English, female"
    mix = VoiceDesc("mix", "en-US", "American English", "", blend="af_heart:0.7,af_bella:0.3")
    assert voice_description(mix) == "Mix - American English, blend of af_heart 70% + af_bella 30%"
    assert blend_summary("a:1,b:3") == "a 25% + b 75%"


def test_parse_blends_accepts_the_documented_form_and_rejects_others() -> None:
    assert parse_blends(["mix=af_heart:0.7, af_bella:0.3"]) == [
        ("mix", "af_heart:0.7,af_bella:0.3")
    ]
    for bad in ["mix", "mix=af_heart", "mix=af_heart:0", "mix=af_heart:x", "=a:1"]:
        with pytest.raises(ValueError, match="--voice-blend"):
            parse_blends([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_blends(["m=a:1", "m=b:1"])


def test_info_carries_attribution_streaming_and_every_voice() -> None:
    voices = [
        VoiceDesc("af_heart", "en-US", "American English", "female"),
        VoiceDesc("bm_george", "en-GB", "British English", "male"),
    ]
    event = build_info(voices, streaming=True).event()
    info = Info.from_event(event)
    (program,) = info.tts
    assert program.installed and program.version == __version__
    assert program.supports_synthesize_streaming is True
    assert "hexgrad" in program.attribution.name
    assert program.attribution.url == "https://github.com/hexgrad/kokoro"
    assert [(v.name, v.languages, v.installed) for v in program.voices] == [
        ("af_heart", ["en-US"], True),
        ("bm_george", ["en-GB"], True),
    ]
    assert program.voices[1].description == "George - British English, male"
    assert Info.from_event(build_info([], streaming=False).event()).tts[0].voices == []
    assert not Info.from_event(build_info([], False).event()).tts[0].supports_synthesize_streaming


def test_phrase_cache_is_lru_and_bounded_in_bytes() -> None:
    second = np.zeros(24000, dtype=np.int16)  # 48,000 bytes
    cache = PhraseCache(max_bytes=4 * 48_000)
    keys = [make_key(f"text {i}", "v", 1.0) for i in range(6)]
    for k in keys[:4]:
        assert cache.put(k, [second])
    assert cache.get(keys[0]) is not None  # keys[0] is now the most recent
    cache.put(keys[4], [second])  # evicts keys[1], the least recently used
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None
    assert cache.stats().bytes <= cache.max_bytes
    assert not cache.put(keys[5], [np.zeros(48_000, dtype=np.int16)])  # > a quarter: not kept
    assert make_key("  Hello \n world ", "v", 1.0) == make_key("Hello world", "v", 1.0)
    assert make_key("Hello", "v", 1.0) != make_key("Hello", "v", 1.1)
    assert PhraseCache(0).put(keys[0], [second]) is False


@pytest.mark.slow
def test_bad_flags_exit_2_with_one_line(tmp_path: Path) -> None:
    for flags, needle in [
        (["--speed", "3"], "--speed"),
        (["--voice-blend", "mix=oops"], "--voice-blend"),
        (["--uri", "http://x:1"], "tcp://"),
        (["--passes", "many"], "--passes"),
        (["--passes", "9"], "--passes"),
        (["--threads", "-1"], "--threads"),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "wyoming_kokoro_gguf", "--model", str(tmp_path / "m.gguf")]
            + flags,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, run.stderr
        assert needle in run.stderr and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1


# ============================================================================ real server


@pytest.fixture(scope="module")
def model(english_model: Path) -> Path:
    return english_model


@pytest.fixture(scope="module")
def model_voices(model: Path) -> dict:
    from wyoming_kokoro_gguf.weights.model_file import open_model

    return open_model(model).voices


@pytest.fixture(scope="module")
def voice(model_voices: dict) -> str:
    for name in ("af_heart", "af_jf_alpha"):
        if name in model_voices:
            return name
    return sorted(model_voices)[0]


@pytest.fixture(scope="module")
def server(model: Path, model_voices: dict, tmp_path_factory: pytest.TempPathFactory):
    a, b = sorted(model_voices)[:2]
    extra = ("--voice-blend", f"mix={a}:0.6,{b}:0.4", "--max-text-chars", "2000")
    extra += ("--samples-per-chunk", "1024", *INT8S_SERVER_FLAGS)
    with running_server(model, tmp_path_factory.mktemp("server"), *extra) as srv:
        yield srv


@pytest.fixture(scope="module")
def judge(asr_judge):
    return asr_judge


def _wer(judge, pcm: np.ndarray, reference: str) -> tuple[float, str]:
    from asr import wer

    text = judge.transcribe(pcm, 24000)
    return wer(reference, text), text


@pytest.mark.slow
def test_info_lists_every_voice_with_its_language(server, model_voices) -> None:
    info, _ = asyncio.run(describe(server.port))
    (program,) = info.tts
    assert program.installed and program.supports_synthesize_streaming
    assert program.version == __version__ and "hexgrad" in program.attribution.name
    voices = {v.name: v for v in program.voices}
    assert set(voices) == set(model_voices) | {"mix"}
    for name, meta in model_voices.items():
        v = voices[name]
        (tag,) = v.languages
        assert re.fullmatch(r"[a-z]{2,3}-[A-Z]{2}", tag), tag
        assert tag == clean_language_tag(meta.language)
        assert v.installed
        assert v.description == f"{voice_title(name)} - {meta.language_name}, {meta.gender}"
    assert "blend of" in voices["mix"].description
    assert voices["mix"].languages and voices["mix"].installed


@pytest.mark.slow
def test_one_shot_synthesis_is_intelligible_with_the_right_events(server, voice, judge) -> None:
    ex = asyncio.run(synthesize(server.port, ONE_SHOT, voice))
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop"], ex.types()
    assert audio_format_ok(ex)
    chunks = [AudioChunk.from_event(e) for e in ex.events if e.type == "audio-chunk"]
    assert all(0 < len(c.audio) <= 1024 * 2 for c in chunks)
    pcm = ex.pcm()
    assert len(pcm) > 24000 * 2
    error, heard = _wer(judge, pcm, ONE_SHOT)
    assert error <= MAX_WER, heard


@pytest.mark.slow
def test_one_shot_audio_starts_before_the_synthesis_ends(server, voice) -> None:
    """Chunks go out clause by clause: the first arrives while the server is still working."""
    text = long_text("early audio")

    async def scenario() -> tuple[int, Exchange]:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice)).event())
            ex = Exchange(started=time.monotonic())
            await read_until(c, ex, "audio-chunk")
            busy = (await asyncio.to_thread(server.health))["active_jobs"]
            return busy, ex  # leaving now also cancels the rest of the synthesis

    busy, ex = asyncio.run(scenario())
    assert busy >= 1  # the synthesis was still running when the first audio arrived
    assert ex.types() == ["audio-start", "audio-chunk"]


@pytest.mark.slow
def test_home_assistant_streaming_sequence(server, voice, judge) -> None:
    async def scenario() -> tuple[Exchange, str]:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            ex = await stream_like_ha(c, STREAM_TEXT, voice)
            # Nothing else was queued behind synthesize-stopped: the next answer is Info.
            await c.write_event(Describe().event())
            after = await asyncio.wait_for(c.read_event(), timeout=5)
            return ex, after.type

    ex, after = asyncio.run(scenario())
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"]
    assert after == "info"
    assert audio_format_ok(ex)
    error, heard = _wer(judge, ex.pcm(), STREAM_TEXT)
    assert error <= MAX_WER, heard
    # The full `synthesize` inside the stream is not spoken again: same length as one-shot.
    once = asyncio.run(synthesize(server.port, STREAM_TEXT, voice)).pcm()
    assert 0.75 <= len(ex.pcm()) / len(once) <= 1.33


@pytest.mark.slow
def test_streaming_speaks_a_sentence_before_the_text_is_finished(server, voice) -> None:
    async def scenario() -> Exchange:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            v = SynthesizeVoice(name=voice)
            await c.write_event(SynthesizeStart(voice=v).event())
            for delta in ["Hello the", "re, this is the ", "first sentence. And th"]:
                await c.write_event(SynthesizeChunk(text=delta).event())
            ex = Exchange(started=time.monotonic())
            await read_until(c, ex, "audio-chunk")  # before the rest of the text is even sent
            for delta in ["is is the second", " one."]:
                await c.write_event(SynthesizeChunk(text=delta).event())
            await c.write_event(SynthesizeStop().event())
            return await read_until(c, ex, "synthesize-stopped")

    ex = asyncio.run(scenario())
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"]


@pytest.mark.slow
def test_unknown_voice_is_spoken_with_a_voice_of_its_language(server, voice) -> None:
    """A voice the model lacks (a pipeline still naming a voice of an older file) is spoken with a
    voice of its language, on both paths, with one warning: Home Assistant ignores errors while
    streaming and caches the silence it got, and hangs on a one-shot error that leaves the
    connection open."""

    async def scenario() -> tuple[Exchange, Exchange]:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(
                Synthesize(text="Hello.", voice=SynthesizeVoice(name="no_such_voice")).event()
            )
            one_shot = await read_until(c, Exchange(), "audio-stop", "error")
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nope")).event())
            await c.write_event(SynthesizeChunk(text="Hello there.").event())
            await c.write_event(Synthesize(text="Hello there.").event())
            await c.write_event(SynthesizeStop().event())
            stream = await read_until(c, Exchange(), "synthesize-stopped")
            return one_shot, stream

    one_shot, stream = asyncio.run(scenario())
    assert one_shot.shape() == ["audio-start", "audio-chunk+", "audio-stop"]
    assert len(one_shot.pcm()) > 4800  # real speech, not a header
    assert stream.shape() == ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"]
    log = server.log()
    assert log.count("voice no_such_voice is not in the model; using") == 1
    assert "voice nope is not in the model; using" in log


@pytest.mark.slow
def test_a_failed_one_shot_request_ends_with_error_and_a_closed_connection(server, voice) -> None:
    """Text over --max-text-chars in a one-shot synthesize: error, then the connection closes
    without audio-stop (a client reading until audio-stop sees the failure, never a hang or an
    empty result); a new connection is served."""

    async def scenario() -> tuple[Exchange, Event | None, Exchange]:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(Synthesize(text="word " * 500).event())  # 2500 > 2000
            bad = await read_until(c, Exchange(), "error", "audio-stop")
            after = await asyncio.wait_for(c.read_event(), timeout=30)
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(Synthesize(text="Short.").event())
            good = await read_until(c, Exchange(), "audio-stop", "error")
        return bad, after, good

    bad, after, good = asyncio.run(scenario())
    err = bad.error()
    assert bad.types() == ["error"] and err is not None
    assert err.code == "text_too_long" and "2000" in err.text and "2500" in err.text
    assert after is None  # closed, no audio-stop
    assert good.shape() == ["audio-start", "audio-chunk+", "audio-stop"]


@pytest.mark.slow
def test_a_stream_over_the_limit_is_spoken_up_to_it(server, voice) -> None:
    """A streamed text longer than --max-text-chars is spoken up to the limit and ends normally:
    refusing it would be silence that Home Assistant caches."""

    async def scenario() -> Exchange:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(voice)).event())
            await c.write_event(SynthesizeChunk(text=" " * 1985).event())  # counts, says nothing
            # 15 characters of room: "The hall light" is spoken, the rest is not
            await c.write_event(SynthesizeChunk(text="The hall light is on. Goodbye.").event())
            await c.write_event(SynthesizeChunk(text=" More text.").event())
            await c.write_event(SynthesizeStop().event())
            return await read_until(c, Exchange(), "synthesize-stopped")

    ex = asyncio.run(scenario())
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"]
    seconds = len(ex.pcm()) / 2 / 24000
    assert 0.4 < seconds < 2.0, seconds  # three words, not the whole text
    assert "stream longer than --max-text-chars (2000): spoken up to the limit" in server.log()


@pytest.mark.slow
def test_ping_is_answered_with_pong(server) -> None:
    from wyoming.ping import Ping, Pong

    async def scenario() -> Pong:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(Ping(text="hi").event())
            return Pong.from_event((await read_until(c, Exchange(), "pong")).events[-1])

    assert asyncio.run(scenario()).text == "hi"


@pytest.mark.slow
def test_empty_text_gives_an_empty_audio_stream(server) -> None:
    ex = asyncio.run(synthesize(server.port, "   "))
    assert ex.types() == ["audio-start", "audio-stop"]


@pytest.mark.slow
def test_repeated_phrase_comes_from_the_cache(server, voice) -> None:
    text = "The garage door is open."
    first = asyncio.run(synthesize(server.port, text, voice)).pcm()
    hits = server.health()["cache"]["hits"]
    second = asyncio.run(synthesize(server.port, text, voice)).pcm()
    assert server.health()["cache"]["hits"] > hits
    assert np.array_equal(first, second)


@pytest.mark.slow
def test_describe_is_answered_while_another_client_synthesizes(server, voice) -> None:
    text = long_text("describe")

    async def scenario() -> tuple[list[float], Exchange, float, float, bool]:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(Synthesize(text=text, voice=SynthesizeVoice(voice)).event())
            ex = Exchange(started=time.monotonic())
            reader = asyncio.create_task(read_until(c, ex, "audio-stop"))
            while not any(e.type == "audio-chunk" for e in ex.events):
                await asyncio.sleep(0.01)
            window_start = time.monotonic()
            latencies: list[float] = []
            events_before = len(ex.events)
            # Describe until more audio has come (the synthesis really ran meanwhile).
            while len(latencies) < 25 or len(ex.events) == events_before:
                if reader.done():
                    break
                latencies.append((await describe(server.port))[1])
                await asyncio.sleep(0.04)
            window_end = time.monotonic()
            finished = reader.done()
            reader.cancel()
            return latencies, ex, window_start, window_end, finished

    latencies, ex, t0, t1, finished = asyncio.run(scenario())
    assert not finished, "the synthesis ended before the describes: text too short"
    during = [t for e, t in zip(ex.events, ex.times, strict=True) if e.type == "audio-chunk"]
    # Every describe was answered while the synthesis was still running: none waited for it.
    assert any(t0 <= t <= t1 for t in during), "no audio was produced during the describes"
    assert len(latencies) >= 25, latencies


@pytest.mark.slow
def test_describe_is_answered_while_the_model_loads(model: Path, tmp_path: Path) -> None:
    # an empty data directory: no graph-cache entry, so the engine builds (seconds of loading)
    srv = ServerProcess(model, tmp_path, "--data-dir", str(tmp_path))
    try:
        srv.wait_port()
        records = []  # (state before describe, state after it, voices listed)
        deadline = time.monotonic() + 600
        state = srv.health()["state"]
        while state != "ready" and time.monotonic() < deadline:
            info, _ = asyncio.run(describe(srv.port))
            after = srv.health()["state"]
            records.append((state, after, len(info.tts[0].voices)))
            assert after != "failed", srv.log()
            state = after
            time.sleep(0.02)
        info, _ = asyncio.run(describe(srv.port))
        records.append((state, state, len(info.tts[0].voices)))
    finally:
        assert srv.stop() == 0, srv.log()
    # Describes answered with the engine still loading before and after: none waited for it.
    answered_while_loading = [r for r in records if r[0] == r[1] == "loading"]
    assert len(answered_while_loading) >= 3, records
    # The voice list comes from the GGUF metadata before the engine is built.
    assert all(r[2] > 0 for r in records if r[0] == "loading"), records
    assert records[-1][2] > 0


@pytest.mark.slow
def test_four_clients_at_once_all_complete(server, voice) -> None:
    texts = [
        "The first client asks about the weather.",
        "The second client wants the lights on in the hall.",
        "The third client streams its answer. It has two sentences.",
        "The fourth client streams, too. Goodbye for now.",
    ]

    async def one(i: int) -> Exchange:
        if i < 2:
            return await synthesize(server.port, texts[i], voice)
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            return await stream_like_ha(c, texts[i], voice, seed=i)

    async def scenario() -> list[Exchange]:
        return await asyncio.gather(*(one(i) for i in range(4)))

    results = asyncio.run(scenario())
    for i, ex in enumerate(results):
        tail = ["audio-stop"] if i < 2 else ["audio-stop", "synthesize-stopped"]
        assert ex.shape() == ["audio-start", "audio-chunk+", *tail], (i, ex.types())
        assert len(ex.pcm()) > 24000
    assert server.health()["active_jobs"] == 0


@pytest.mark.slow
def test_a_short_request_is_not_starved_by_a_long_one(server, voice) -> None:
    """Round-robin at clause granularity: B's one sentence finishes long before A's ten."""
    text = long_text("fairness")

    async def scenario() -> tuple[Exchange, bool]:
        async with AsyncTcpClient("127.0.0.1", server.port) as a:
            await a.write_event(Synthesize(text=text, voice=SynthesizeVoice(voice)).event())
            ex_a = Exchange()
            reader = asyncio.create_task(read_until(a, ex_a, "audio-stop"))
            while not any(e.type == "audio-chunk" for e in ex_a.events):
                await asyncio.sleep(0.01)
            ex_b = await synthesize(server.port, "Is the oven still on?", voice)
            a_finished = reader.done()
            reader.cancel()
            return ex_b, a_finished

    ex_b, a_finished = asyncio.run(scenario())
    assert ex_b.shape() == ["audio-start", "audio-chunk+", "audio-stop"]
    assert not a_finished  # B's sentence was served while A's ten were still in progress


@pytest.mark.slow
def test_client_disconnecting_mid_stream_leaves_the_server_healthy(server, voice) -> None:
    async def scenario() -> None:
        client = AsyncTcpClient("127.0.0.1", server.port)
        await client.connect()
        v = SynthesizeVoice(name=voice)
        await client.write_event(SynthesizeStart(voice=v).event())
        await client.write_event(SynthesizeChunk(text=long_text("disconnect", 6)).event())
        await read_until(client, Exchange(), "audio-chunk")
        client._writer.transport.abort()  # vanish without a goodbye, mid-stream
        await client.disconnect()

    asyncio.run(scenario())
    deadline = time.monotonic() + 60
    while server.health()["active_jobs"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.health()["active_jobs"] == 0
    assert server.health()["state"] == "ready"
    ex = asyncio.run(synthesize(server.port, "Still here.", voice))
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop"]
    assert "Traceback" not in server.log()


@pytest.mark.slow
def test_wyoming_bench_runs_without_errors(server, voice, tmp_path: Path) -> None:
    bench = shutil.which("wyoming-bench") or str(Path(sys.executable).parent / "wyoming-bench")
    if not Path(bench).exists():
        pytest.skip("wyoming-bench is not installed (pip install 'wyoming_kokoro_gguf[test]')")
    run = subprocess.run(
        [
            bench,
            "tts",
            f"127.0.0.1:{server.port}",
            "--no-unique",
            "--mode",
            "both",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--timeout",
            "180",
            "--config",
            json.dumps({"voice": voice}),
            "--texts",
            "Turn on the kitchen lights.",
            "The weather today is sunny with a high of twenty degrees.",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    (tmp_path / "bench.txt").write_text(run.stdout + run.stderr)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "error" not in (run.stdout + run.stderr).lower(), run.stdout + run.stderr


@pytest.mark.slow
def test_zeroconf_registration_is_discoverable(model: Path, tmp_path: Path) -> None:
    """--zeroconf: the service appears as _wyoming._tcp.local. (in a private network namespace
    that has only loopback, so no multicast leaves the machine)."""
    pytest.importorskip("zeroconf", reason="zeroconf is not installed (extra [zeroconf])")
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a private network namespace")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {probe.stderr.decode().strip()}")
    port = free_port()
    script = tmp_path / "discover.py"
    script.write_text(_DISCOVER_SCRIPT)
    setup = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"
    flags = " ".join(predicted_plan_flags(model, []))
    cmd = f"{setup} && exec {sys.executable} {script} {port} {model} {tmp_path} {flags}"
    run = subprocess.run(
        ["unshare", "-rn", "sh", "-c", cmd], capture_output=True, text=True, timeout=900
    )
    log = (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else ""
    assert run.returncode == 0, run.stdout + run.stderr + log
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["port"] == port and found["addresses"] == ["127.0.0.1"], found
    assert "Zeroconf: registered kokoro-test" in log


_DISCOVER_SCRIPT = r"""
import asyncio, json, socket, subprocess, sys, time
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

port, model, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open(f"{out}/server.log", "wb")
server = subprocess.Popen(
    [sys.executable, "-m", "wyoming_kokoro_gguf", "--uri", f"tcp://127.0.0.1:{port}",
     "--model", model, "--zeroconf", "kokoro-test", *sys.argv[4:]],
    stdout=log, stderr=subprocess.STDOUT)

async def main():
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"server exited {server.returncode}")
            info = await zc.async_get_service_info(
                "_wyoming._tcp.local.", "kokoro-test._wyoming._tcp.local.", timeout=2000)
            if info is not None:
                return {"port": info.port,
                        "addresses": [socket.inet_ntoa(a) for a in info.addresses]}
        raise SystemExit("not discovered")
    finally:
        await zc.async_close()

try:
    print(json.dumps(asyncio.run(main())))
finally:
    server.terminate()
    server.wait(30)
"""


@pytest.mark.slow
def test_stdio_transport_carries_clean_events(model: Path, voice: str) -> None:
    """--uri stdio://: the engine process must never print onto the event stream."""
    from wyoming.event import async_read_event, async_write_event

    async def scenario() -> tuple[list[str], int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wyoming_kokoro_gguf",
            "--uri",
            "stdio://",
            "--model",
            str(model),
            *predicted_plan_flags(model, []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        types = []
        await async_write_event(Describe().event(), proc.stdin)
        await async_write_event(
            Synthesize(text="Hello over a pipe.", voice=SynthesizeVoice(voice)).event(), proc.stdin
        )
        while True:
            event = await asyncio.wait_for(async_read_event(proc.stdout), timeout=600)
            assert event is not None, types
            types.append(event.type)
            if event.type in ("audio-stop", "error"):
                break
        proc.stdin.close()  # end of input: the server stops
        return types, await asyncio.wait_for(proc.wait(), timeout=60)

    types, code = asyncio.run(scenario())
    assert types[0] == "info"
    assert Exchange(events=[Event(t) for t in types[1:]]).shape() == [
        "audio-start",
        "audio-chunk+",
        "audio-stop",
    ]
    assert code == 0


@pytest.mark.slow
def test_model_load_failure_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a model")
    run = run_server_to_exit(bad)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Could not load the model" in errors[0] and str(bad) in errors[0]
    assert "Traceback" not in run.stderr


def test_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "wyoming_kokoro_gguf",
                "--uri",
                f"tcp://127.0.0.1:{port}",
                "--model",
                str(tmp_path / "unused.gguf"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 1
    assert f"cannot listen on tcp://127.0.0.1:{port}: address already in use" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_engine_crash_mid_synthesis_is_retried_without_a_gap(
    model: Path, voice: str, tmp_path: Path
) -> None:
    """Killing the engine process mid-synthesis: the engine comes back, the clause in flight is
    synthesized again and only the samples the client lacks are sent, so the one-shot client
    gets the whole answer (``audio-stop``), as long as a run without the crash, only later."""
    import os
    import signal

    text = long_text("crash", count=4)
    # no phrase cache: the second request must really be synthesized
    with running_server(model, tmp_path, "--cache-mb", "0", *INT8S_SERVER_FLAGS) as srv:
        reference = asyncio.run(synthesize(srv.port, text, voice)).pcm()
        before = srv.health()
        assert before["engine_restarts"] == 0

        async def scenario() -> Exchange:
            async with AsyncTcpClient("127.0.0.1", srv.port) as c:
                await c.write_event(Synthesize(text=text, voice=SynthesizeVoice(voice)).event())
                ex = await read_until(c, Exchange(), "audio-chunk")
                os.kill(before["engine_pid"], signal.SIGKILL)
                return await read_until(c, ex, "error", "audio-stop")

        ex = asyncio.run(scenario())
        after = srv.wait_ready()
        assert "synthesizing the clause again" in srv.log()
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop"], (ex.types(), ex.error())
    assert after["engine_restarts"] == 1 and after["engine_pid"] != before["engine_pid"]
    heard = ex.pcm().astype(np.float64)
    assert heard.size == reference.size
    noise = np.sum((heard - reference) ** 2)
    assert noise == 0 or 10 * np.log10(np.sum(heard**2) / noise) > 30


@pytest.mark.slow
def test_unix_socket_and_no_streaming(model: Path, voice: str, tmp_path: Path) -> None:
    """--uri unix://PATH works, and --no-streaming stops advertising streams (a stream sent anyway
    is still answered: see the Home Assistant tier)."""
    from wyoming.client import AsyncUnixClient

    sock = tmp_path / "kokoro.sock"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wyoming_kokoro_gguf",
                "--uri",
                f"unix://{sock}",
                "--model",
                str(model),
                "--no-streaming",
                *predicted_plan_flags(model, []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    async def scenario() -> tuple[Info, Exchange]:
        deadline = time.monotonic() + 120
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.05)
        async with AsyncUnixClient(str(sock)) as c:
            await c.write_event(Describe().event())
            answer = await read_until(c, Exchange(), "info")
            info = Info.from_event(answer.events[-1])
            # Stream events are not answered; the one-shot request after them is.
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(voice)).event())
            await c.write_event(SynthesizeChunk(text="Ignored. ").event())
            await c.write_event(SynthesizeStop().event())
            await c.write_event(Synthesize(text="Hello.", voice=SynthesizeVoice(voice)).event())
            return info, await read_until(c, Exchange(), "audio-stop", "error")

    try:
        info, ex = asyncio.run(scenario())
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
    assert info.tts[0].supports_synthesize_streaming is False
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop"]
    assert not sock.exists()  # removed on shutdown


@pytest.mark.slow
def test_engine_worker_starts_the_next_unit_beside_the_current(model: Path, voice: str) -> None:
    """The engine process's step loop, on a real engine and a real pipe: with plan.passes=2 a
    step names the job's next units, which start once the first audio is out, the next one and
    the longest of the others first; from then on two units compute at once; the audio is the
    same as one unit at a time."""
    import multiprocessing
    import threading
    from dataclasses import replace

    from wyoming_kokoro_gguf.server.engine_process import Chunk, Step, Stop, UnitEnd
    from wyoming_kokoro_gguf.server.engine_worker import _serve_steps
    from wyoming_kokoro_gguf.server.scheduler import UPCOMING_UNITS
    from wyoming_kokoro_gguf.synth.engine import Engine
    from wyoming_kokoro_gguf.synth.lowering import default_options

    units = [
        "Good morning.",
        "The front door is locked and the garage is closed.",
        "The dishwasher finished its cycle.",
        "The washing machine has twenty minutes to go and the dryer is done in an hour.",
    ]
    engine = Engine.load(model, replace(default_options(), threads=2, passes=2))
    expected, frames = [], []
    for u in units:
        expected.append(np.concatenate(list(engine.synthesize(u, voice))))
        frames.append(engine.last_timings[-1].frames)
    assert len(set(frames)) == len(units)
    ours, theirs = multiprocessing.Pipe()
    worker = threading.Thread(
        target=_serve_steps,
        args=(theirs, engine, logging.getLogger("test"), 0.5),  # idle_release_s
        daemon=True,
    )
    worker.start()
    engine.last_timings.clear()
    got = []

    def step(job: int, unit: int, text: str, upcoming: tuple = ()) -> Chunk | UnitEnd:
        ours.send(Step(job, unit, text, voice, 1.0, upcoming))
        reply = ours.recv()
        assert isinstance(reply, Chunk | UnitEnd), reply
        return reply

    try:
        for i, unit in enumerate(units):
            chunks = []
            upcoming = tuple(units[i + 1 : i + 1 + UPCOMING_UNITS])
            while isinstance(reply := step(7, i, unit, upcoming), Chunk):
                chunks.append(reply.audio)
            got.append(np.concatenate(chunks))
        timings = list(engine.last_timings)
        # The job has ended: after idle_release_s the worker gives the activations back.
        grown = psutil.Process().memory_info().rss
        time.sleep(1.5)
        assert grown - psutil.Process().memory_info().rss > 50 * 2**20
        # Two requests at once: nothing starts early, each step is one pass (round robin).
        assert isinstance(step(8, 0, units[0]), Chunk)  # request 8 is open (not ended)
        assert isinstance(step(9, 0, units[1], (units[2], units[3])), Chunk)
        time.sleep(3.0)  # (two early units would be done by now: ~1 s each)
        assert len(engine.last_timings) == len(timings) + 2
    finally:
        ours.send(Stop())
        worker.join(timeout=30)
    for audio, reference in zip(got, expected, strict=True):
        np.testing.assert_array_equal(audio, reference)
    runs = sorted(timings, key=lambda p: p.started)
    ends = [p.ended for p in runs]
    assert len(runs) == len(units)
    assert runs[1].started >= ends[0]  # the first unit ran alone
    assert runs[2].started < ends[1]  # then two at once
    assert [p.frames for p in runs] == [frames[0], frames[1], frames[3], frames[2]]  # longest 2nd
    overlap = sum(min(ends[i], ends[i + 1]) - runs[i + 1].started for i in range(1, 3))
    assert overlap > 0.5 * sum(ends[i] - runs[i].started for i in range(2, 4))


async def test_published_voice_set_has_50_voices_and_zm_falls_back(tmp_path: Path) -> None:
    """The published files carry Kokoro v1.0's 54 voices less the four zm_*: a request for one
    is spoken with a Mandarin voice the file has, as for any missing voice."""
    import fixtures_ttscpp as fx

    model = tmp_path / "Kokoro_espeak_Q8.gguf"
    fx.build(model, "Q8_0")
    srv = ServerProcess(model, tmp_path)
    try:
        srv.wait_ready()
        info, _ = await describe(srv.port)
        names = [v.name for v in info.tts[0].voices]
        assert len(names) == 50 and not [n for n in names if n.startswith("zm_")]
        assert audio_format_ok(await synthesize(srv.port, "你好。", "zm_yunxi"))
    finally:
        assert srv.stop() == 0
    assert re.search(r"voice zm_yunxi is not in the model; using zf_\w+", srv.log())
