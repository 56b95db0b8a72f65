"""SSML, inline phonemes and the lexicon end to end: a real server, Wyoming and HTTP, audio checked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)
from wyoming_helpers import Exchange, read_until, running_server

from wyoming_kokoro_gguf.synth.normalize import speakable
from wyoming_kokoro_gguf.synth.phonemes import Phonemizer
from wyoming_kokoro_gguf.weights.model_file import open_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(english_model: Path) -> Path:
    return english_model


@pytest.fixture(scope="module")
def voices(model: Path) -> list[str]:
    names = sorted(open_model(model).voices)
    english = [n for n in names if n.startswith(("af_", "am_"))]
    return english + [n for n in names if n not in english]


@pytest.fixture(scope="module")
def potato(model: Path) -> str:
    """The phonemes the server gives the word "potato" (American English)."""
    phonemizer = Phonemizer(open_model(model).phoneme_to_id)
    return phonemizer.phonemize(speakable("potato", "en-us"), "en-us")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, potato: str) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "lexicon.en.txt").write_text(f"tomato = /{potato}/\nnot a line\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server(model: Path, data_dir: Path, voices: list[str], tmp_path_factory, asset_cache: Path):
    # The first data directory holds the graph cache (kept between runs in the asset cache, no
    # lexicon there); the lexicon comes from the second, this module's own.
    graphs = asset_cache / "ssml-server-data"
    extra = ("--data-dir", str(graphs), "--data-dir", str(data_dir), "--voice", voices[0])
    with running_server(model, tmp_path_factory.mktemp("server"), *extra) as srv:
        yield srv


async def _say(port: int, text: str, ssml: bool = False, voice: str | None = None) -> np.ndarray:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        ex = Exchange(started=time.monotonic())
        syn_voice = SynthesizeVoice(name=voice) if voice else None
        event = Synthesize(text=text, voice=syn_voice, text_format="ssml" if ssml else None)
        await client.write_event(event.event())
        await read_until(client, ex, "audio-stop", "error")
    assert ex.error() is None, ex.error()
    return ex.pcm()


def say(server, text: str, ssml: bool = False, voice: str | None = None) -> np.ndarray:
    return asyncio.run(_say(server.port, text, ssml, voice))


def longest_zero_run(pcm: np.ndarray) -> int:
    """The longest run of exact zero samples (model audio is never exactly zero for long)."""
    zero = np.concatenate([[0], (pcm == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def test_a_break_adds_exact_silence(server) -> None:
    plain = say(server, "<speak>Hello there. Goodbye now.</speak>", ssml=True)
    pcm = say(server, '<speak>Hello there.<break time="1500ms"/>Goodbye now.</speak>', ssml=True)
    assert len(pcm) - len(plain) == 36000  # the same two sentences, 1.5 s of zeros between
    assert longest_zero_run(pcm) >= 36000
    huge = say(server, '<speak>Hello there.<break time="99999s"/>Goodbye now.</speak>', True)
    assert len(huge) - len(plain) == 10 * 24000  # capped at 10 s


def test_a_phoneme_override_is_spoken_as_given(server, potato: str) -> None:
    reference = say(server, "potato")
    tomato = say(server, "tomatoes")
    inline = say(server, f"[tomato](/{potato}/)")
    element = say(server, f'<speak><phoneme alphabet="ipa" ph="{potato}">x</phoneme></speak>', True)
    assert np.array_equal(inline, reference) and np.array_equal(element, reference)
    assert not np.array_equal(tomato, reference)


def test_the_lexicon_overrides_a_word_and_reloads(server, data_dir: Path, potato: str) -> None:
    assert np.array_equal(say(server, "Tomato"), say(server, "potato"))
    assert "line 2" in server.log() and "lexicon.en.txt" in server.log()
    path = data_dir / "lexicon.en.txt"
    path.write_text(f"tomato = tomatoes\nbasil = /{potato}/\n", encoding="utf-8")
    time.sleep(3.5)  # the engine looks at the files at most every 3 s
    assert np.array_equal(say(server, "basil"), say(server, "potato"))
    # "Tomato" was in the phrase cache with the old pronunciation: the change empties it
    assert np.array_equal(say(server, "Tomato"), say(server, "tomatoes"))


def test_say_as_characters_spells(server) -> None:
    spelled = say(server, '<speak><say-as interpret-as="characters">KIT</say-as></speak>', True)
    assert np.array_equal(spelled, say(server, "K, I, T"))
    assert len(spelled) > 1.5 * len(say(server, "KIT"))


def test_a_voice_element_switches_voice(server, voices: list[str]) -> None:
    other = voices[1]
    switched = say(server, f'<speak><voice name="{other}">Hello there.</voice></speak>', True)
    assert np.array_equal(switched, say(server, "Hello there.", voice=other))
    assert not np.array_equal(switched, say(server, "Hello there."))


def test_broken_ssml_is_spoken_as_text(server) -> None:
    pcm = say(server, "<speak>Hello there <break", ssml=True)
    assert np.array_equal(pcm, say(server, "Hello there"))
    assert "SSML not parsed" in server.log()


def test_an_ssml_stream_is_spoken_at_synthesize_stop(server) -> None:
    doc = '<speak>Hello.<break time="1s"/>Bye.</speak>'

    async def stream() -> Exchange:
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            ex = Exchange(started=time.monotonic())
            await client.write_event(SynthesizeStart(text_format="ssml").event())
            for n in range(0, len(doc), 4):
                await client.write_event(SynthesizeChunk(text=doc[n : n + 4]).event())
            await client.write_event(Synthesize(text=doc).event())
            await client.write_event(SynthesizeStop().event())
            return await read_until(client, ex, SynthesizeStopped().event().type)

    ex = asyncio.run(stream())
    assert ex.error() is None
    assert longest_zero_run(ex.pcm()) >= 24000


def test_the_http_api_takes_ssml(server) -> None:
    doc = '<speak>Hi.<break time="1s"/>Yes.</speak>'
    base = f"http://127.0.0.1:{server.http_port}/api/tts"
    url = f"{base}?{urllib.parse.urlencode({'text': doc, 'ssml': '1'})}"
    with urllib.request.urlopen(url, timeout=60) as response:
        first = response.read()
    post = urllib.request.Request(
        base, data=doc.encode(), headers={"Content-Type": "application/ssml+xml"}
    )
    with urllib.request.urlopen(post, timeout=60) as response:
        second = response.read()
    assert first == second
    pcm = np.frombuffer(first[44:], dtype="<i2")
    assert longest_zero_run(pcm) >= 24000


def test_the_client_sends_ssml(server, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    doc = '<speak>Hi.<break time="1s"/>Yes.</speak>'
    cmd = [sys.executable, "-m", "wyoming_kokoro_gguf.client", "--uri", server.uri, "--ssml"]
    subprocess.run([*cmd, "-o", str(out), doc], check=True, capture_output=True, timeout=120)
    with wave.open(str(out)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert longest_zero_run(pcm) >= 24000
