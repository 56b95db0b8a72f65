"""Home Assistant core (2026.2.3) drives this project's server through its own `wyoming`
integration and `tts` component, as the voice pipeline calls them.

Runs inside the Debian trixie root built by script/ha-root (script/test-ha), with Home
Assistant's test harness (pytest-homeassistant-custom-component); the server runs outside the
root on loopback with the small test model (server_control.py). Nothing is mocked: real Home
Assistant, real sockets, real audio checked for speech-like content.

What Home Assistant does (components/wyoming/tts.py, components/tts/__init__.py): when the
server advertises streaming, every request is streamed (synthesize-start, chunks, synthesize,
synthesize-stop) and read until synthesize-stopped or a closed connection, ignoring `error`
events; without streaming it sends `synthesize` and reads until audio-stop or a closed
connection, with no timeout. A one-shot result is cached on disk under text + voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
import pytest
from conftest import control, record, server_log
from homeassistant.components import tts
from homeassistant.components.tts.const import DATA_COMPONENT, DATA_TTS_MANAGER
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

TIMEOUT = 180.0  # bound on every Home Assistant request that should succeed (busy CI machine)
HANG_TIMEOUT = 60.0  # a request that has not ended by then is a hang
EN_VOICE = "af_jf_alpha"
TEXT = "The living room lights are on and the front door is locked."
REPLY = (
    "Good evening! The living room is at twenty one degrees and the heating is off. "
    "I turned on the lights in the kitchen, as you asked. "
    "The front door is locked, and the garage door is closed. "
    "Tomorrow will be sunny, with a high of eighteen degrees."
)
# Plain WAV: no ffmpeg conversion, so what Home Assistant returns and caches is exactly what the
# server sent (mp3, HA's default, and the satellites' 16 kHz WAV go through ffmpeg).
WAV = {tts.ATTR_PREFERRED_FORMAT: "wav"}
SATELLITE = {
    tts.ATTR_PREFERRED_FORMAT: "wav",
    tts.ATTR_PREFERRED_SAMPLE_RATE: 16000,
    tts.ATTR_PREFERRED_SAMPLE_CHANNELS: 1,
    tts.ATTR_PREFERRED_SAMPLE_BYTES: 2,
}
DEPENDENCIES = ("ffmpeg", "intent", "conversation", "assist_pipeline", "assist_satellite")


# ------------------------------------------------------------------------------------ helpers


def parse_wav(data: bytes) -> tuple[dict, bytes]:
    """(format, PCM) of a WAV as Home Assistant produces it: a streamed WAV has a header with
    0 frames and ffmpeg's piped WAV has placeholder sizes, so chunk sizes are not trusted for
    the data chunk (it runs to the end)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", f"not a WAV: {data[:16]!r}"
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if cid == b"fmt ":
            _tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[pos + 8 : pos + 24])
            fmt = {"rate": rate, "channels": channels, "bits": bits}
        elif cid == b"data":
            assert fmt is not None, "data before fmt"
            return fmt, data[pos + 8 :]
        pos += 8 + size + (size & 1)
    raise AssertionError("WAV without a data chunk")


def check_speech(pcm: bytes, rate: int, text: str) -> float:
    """Speech-like 16-bit mono audio for ``text``: plausible length, loud enough, mostly voiced,
    not clipped. Returns the duration in seconds."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    duration = len(samples) / rate
    assert 0.025 * len(text) < duration < 0.25 * len(text), (
        f"{duration:.2f} s of audio for {len(text)} characters"
    )
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 300, f"audio too quiet (RMS {rms:.0f}): not speech"
    frames = samples[: len(samples) // (rate // 50) * (rate // 50)].reshape(-1, rate // 50)
    voiced = float(np.mean(np.sqrt(np.mean(frames**2, axis=1)) > 0.1 * rms))
    assert voiced > 0.4, f"only {voiced:.0%} of 20 ms frames carry sound"
    clipped = float(np.mean(np.abs(samples) >= 32767))
    assert clipped < 0.01, f"{clipped:.1%} of samples clipped"
    return duration


async def decode_mp3(data: bytes, rate: int) -> bytes:
    """MP3 -> 16-bit mono PCM at ``rate`` with ffmpeg (the root's, as Home Assistant uses)."""
    proc = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "mp3", "-i", "pipe:0"),
        *("-f", "s16le", "-ac", "1", "-ar", str(rate), "pipe:1"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(data)
    assert proc.returncode == 0, "ffmpeg could not decode Home Assistant's mp3"
    return out


async def setup_entry(hass: HomeAssistant, port: int, tmp_path: Path) -> tuple[str, float]:
    """Home Assistant with the core integration and the wyoming integration's dependencies,
    then a config entry for the server: (tts entity id, seconds the entry setup took)."""
    hass.config.config_dir = str(tmp_path)  # the TTS disk cache goes to tmp_path/tts
    assert await async_setup_component(hass, "homeassistant", {})
    for domain in DEPENDENCIES:
        assert await async_setup_component(hass, domain, {}), domain
    await hass.async_block_till_done()
    entry = MockConfigEntry(
        domain="wyoming", data={"host": "127.0.0.1", "port": port}, title="Kokoro"
    )
    entry.add_to_hass(hass)
    started = time.monotonic()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    took = time.monotonic() - started
    assert entry.state is ConfigEntryState.LOADED
    entity_id = er.async_get(hass).async_get_entity_id("tts", "wyoming", f"{entry.entry_id}-tts")
    assert entity_id is not None, "no TTS entity for the entry"
    return entity_id, took


def entry_of(hass: HomeAssistant):
    (entry,) = hass.config_entries.async_entries("wyoming")
    return entry


async def one_shot(
    hass: HomeAssistant, entity_id: str, text: str, options: dict | None = None
) -> tuple[bytes, float]:
    """What the pipeline does for a plain message: a result stream with the whole text."""
    stream = tts.async_create_stream(hass, entity_id, None, options or {})
    started = time.monotonic()
    stream.async_set_message(text)
    data = b"".join([chunk async for chunk in stream.async_stream_result()])
    return data, time.monotonic() - started


async def cached_files(hass: HomeAssistant) -> dict[str, int]:
    """Home Assistant's TTS disk cache once its background tasks are done: name -> bytes."""
    await hass.async_block_till_done(wait_background_tasks=True)
    manager = hass.data[DATA_TTS_MANAGER]
    cache_dir = Path(manager.cache_dir)
    return {
        name: (cache_dir / name).stat().st_size
        for name in manager.file_cache.values()
        if (cache_dir / name).exists()
    }


async def speech_or_visible_failure(
    hass: HomeAssistant, entity_id: str, text: str, options: dict, path: str
) -> str:
    """The contract for a request the server cannot do as asked: speech, or an error that
    reaches the caller; never a hang, never a silent result cached for good."""
    try:
        async with asyncio.timeout(HANG_TIMEOUT):
            data, _ = await one_shot(hass, entity_id, text, options)
    except TimeoutError:
        pytest.fail(
            f"{path}: Home Assistant still waiting after {HANG_TIMEOUT:.0f} s (it reads until "
            "audio-stop or a closed connection, with no timeout): the server must end the "
            "request"
        )
    except Exception as err:  # noqa: BLE001 - any error that reaches the caller is visible
        outcome = f"visible failure: {type(err).__name__}: {err}"
    else:
        if len(data) <= 44:
            files = await cached_files(hass)
            pytest.fail(
                f"{path}: Home Assistant got {len(data)} bytes and no error (it ignores `error` "
                f"events), and cached it on disk: {files}; the user hears nothing for this "
                "text and voice until the cache is cleared"
            )
        fmt, pcm = parse_wav(data)
        check_speech(pcm, fmt["rate"], text)
        outcome = "speech"
    files = await cached_files(hass)
    assert all(size > 44 for size in files.values()), f"silent result cached: {files}"
    return outcome


# -------------------------------------------------------------------------------------- tests


async def test_config_entry_and_entity(hass: HomeAssistant, main_server: dict, tmp_path: Path):
    """The entry loads from describe; the entity offers voice options and streaming input."""
    entity_id, took = await setup_entry(hass, main_server["port"], tmp_path)
    record("config entry setup (describe + TTS entity)", f"{took:.2f} s")
    entity = hass.data[DATA_COMPONENT].get_entity(entity_id)
    assert entity is not None
    assert hass.states.get(entity_id) is not None
    assert entity.async_supports_streaming_input() is True
    assert set(entity.supported_languages) == {"en-US", "ja-JP"}
    assert tts.ATTR_VOICE in entity.supported_options
    assert entity.name and "kokoro" in entity.name.lower()


async def test_voices_per_language(hass: HomeAssistant, hass_ws_client, main_server, tmp_path):
    """As the pipeline editor lists them: an engine per language, voices per language."""
    entity_id, _ = await setup_entry(hass, main_server["port"], tmp_path)
    client = await hass_ws_client(hass)

    async def ws(**msg) -> dict:
        await client.send_json_auto_id(msg)
        reply = await client.receive_json()
        assert reply["success"], reply
        return reply["result"]

    engines = await ws(type="tts/engine/list", language="en-US")
    (ours,) = [p for p in engines["providers"] if p["engine_id"] == entity_id]
    assert ours["supported_languages"] == ["en-US"]
    engines = await ws(type="tts/engine/list", language="de-DE")
    (ours,) = [p for p in engines["providers"] if p["engine_id"] == entity_id]
    assert ours["supported_languages"] == []

    en = await ws(type="tts/engine/voices", engine_id=entity_id, language="en-US")
    ja = await ws(type="tts/engine/voices", engine_id=entity_id, language="ja-JP")
    en_ids = {v["voice_id"] for v in en["voices"]}
    ja_ids = {v["voice_id"] for v in ja["voices"]}
    assert en_ids == {
        "af_jf_alpha",
        "af_jf_gongitsune",
        "af_jf_nezumi",
        "af_jf_tebukuro",
        "am_jm_kumo",
    }
    assert ja_ids == {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}
    # Names shown to the user are the descriptions, sorted.
    names = [v["name"] for v in en["voices"]]
    assert names == sorted(names) and all("American English" in n for n in names)


async def test_one_shot(hass: HomeAssistant, main_server: dict, tmp_path: Path):
    """A plain message: speech, one WAV, cached on disk with its audio; and the same text as
    Home Assistant's default mp3 (through ffmpeg) has the same length."""
    entity_id, _ = await setup_entry(hass, main_server["port"], tmp_path)
    options = {tts.ATTR_VOICE: EN_VOICE, **WAV}
    async with asyncio.timeout(TIMEOUT):
        data, took = await one_shot(hass, entity_id, TEXT, options)
    fmt, pcm = parse_wav(data)
    assert fmt == {"rate": 24000, "channels": 1, "bits": 16}
    duration = check_speech(pcm, 24000, TEXT)
    record("one-shot (60 characters, wav)", f"{took:.2f} s for {duration:.2f} s of audio")
    files = await cached_files(hass)
    assert list(files.values()) == [len(data)]
    # The second time comes from Home Assistant's cache: same bytes.
    async with asyncio.timeout(TIMEOUT):
        again, took_again = await one_shot(hass, entity_id, TEXT, options)
    assert again == data and took_again < took

    async with asyncio.timeout(TIMEOUT):
        mp3, _ = await one_shot(hass, entity_id, TEXT, {tts.ATTR_VOICE: EN_VOICE})
    assert mp3[:3] == b"ID3" or mp3[:2] in (b"\xff\xfb", b"\xff\xf3"), mp3[:16]
    mp3_s = check_speech(await decode_mp3(mp3, 24000), 24000, TEXT)
    assert abs(mp3_s - duration) < 0.1, f"mp3 {mp3_s:.3f} s vs wav {duration:.3f} s"


async def test_streaming_chunked_reply(hass: HomeAssistant, main_server: dict, tmp_path: Path):
    """A language-model reply streamed in small deltas: audio starts before the reply ends,
    one WAV header for the whole reply, every sentence spoken."""
    entity_id, _ = await setup_entry(hass, main_server["port"], tmp_path)
    stream = tts.async_create_stream(hass, entity_id, "en-US", {tts.ATTR_VOICE: EN_VOICE, **WAV})
    first_pcm = asyncio.Event()
    sent = {"chars": 0}
    rng = np.random.default_rng(7)

    async def reply() -> AsyncGenerator[str]:
        i = 0
        first_sentence = REPLY.index(". ") + 2
        while i < len(REPLY):
            n = int(rng.integers(1, 9))
            yield REPLY[i : i + n]
            i += n
            sent["chars"] = i
            await asyncio.sleep(0.03)
            if i >= first_sentence + 40 and not first_pcm.is_set():
                # Hold the rest of the reply until audio comes: proves the first sentence is
                # spoken while the reply is still being written.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TIMEOUT):
                        await first_pcm.wait()

    started = time.monotonic()
    stream.async_set_message_stream(reply())
    chunks: list[tuple[float, bytes]] = []
    received = 0
    async with asyncio.timeout(TIMEOUT):
        async for chunk in stream.async_stream_result():
            chunks.append((time.monotonic() - started, chunk))
            received += len(chunk)
            if received > 44 and not first_pcm.is_set():
                first_pcm.set()
                first_audio = time.monotonic() - started
                chars_at_first_audio = sent["chars"]
    data = b"".join(c for _, c in chunks)
    assert first_pcm.is_set(), "no audio at all"
    assert chars_at_first_audio < len(REPLY), "audio only came after the whole reply"
    assert data.count(b"RIFF") == 1 and data.count(b"WAVEfmt ") == 1, "more than one WAV header"
    fmt, pcm = parse_wav(data)
    assert fmt == {"rate": 24000, "channels": 1, "bits": 16}
    duration = check_speech(pcm, 24000, REPLY)
    # Playback that starts with the first audio: how far ahead of it the audio stayed.
    lead, have = float("inf"), 0.0
    for t, chunk in chunks:
        lead = min(lead, have - (t - first_audio))
        have += len(chunk) / 2 / 24000
    record(
        "streaming first audio",
        f"{first_audio:.2f} s after the first delta ({chars_at_first_audio} of {len(REPLY)} "
        f"characters sent); {duration:.1f} s of audio in {chunks[-1][0]:.1f} s; "
        f"least lead over playback {lead:.2f} s",
    )
    assert all(size > 44 for size in (await cached_files(hass)).values())


async def test_satellite_format(hass: HomeAssistant, main_server: dict, tmp_path: Path):
    """A Voice PE / ESPHome satellite asks for 16 kHz mono 16-bit WAV: ffmpeg converts, the
    speech keeps its length."""
    entity_id, _ = await setup_entry(hass, main_server["port"], tmp_path)
    options = {tts.ATTR_VOICE: EN_VOICE, **SATELLITE}
    async with asyncio.timeout(TIMEOUT):
        sat, _ = await one_shot(hass, entity_id, TEXT, options)
        native, _ = await one_shot(hass, entity_id, TEXT, {tts.ATTR_VOICE: EN_VOICE, **WAV})
    fmt, pcm = parse_wav(sat)
    assert fmt == {"rate": 16000, "channels": 1, "bits": 16}
    sat_s = check_speech(pcm, 16000, TEXT)
    nfmt, npcm = parse_wav(native)
    native_s = check_speech(npcm, nfmt["rate"], TEXT)
    assert abs(sat_s - native_s) < 0.05, f"16 kHz {sat_s:.3f} s vs 24 kHz {native_s:.3f} s"


@pytest.mark.parametrize("audio", ["wav", "satellite"])
async def test_unknown_voice_streaming(
    hass: HomeAssistant, main_server: dict, tmp_path: Path, audio: str
):
    """A pipeline still names a voice the model lacks (the model file changed), on the path
    Home Assistant uses with this server (streaming). Must be speech or a visible failure.

    Plain WAV fails today: the server sends `error` then `synthesize-stopped`; Home Assistant
    ignores the error, returns 0 bytes and caches them on disk under this text and voice.
    With ffmpeg in between (satellite 16 kHz WAV, mp3) the empty audio makes ffmpeg fail: a
    visible failure, but one that names ffmpeg instead of the voice."""
    entity_id, _ = await setup_entry(hass, main_server["port"], tmp_path)
    options = {tts.ATTR_VOICE: "af_no_such_voice", **(WAV if audio == "wav" else SATELLITE)}
    outcome = await speech_or_visible_failure(hass, entity_id, TEXT, options, "streaming path")
    record(f"unknown voice, streaming, {audio}", outcome)


async def test_unknown_voice_no_streaming(
    hass: HomeAssistant, nostream_server: dict, tmp_path: Path
):
    """The same with --no-streaming (Home Assistant sends only `synthesize`).

    Fails today: the server sends `error` and keeps the connection open; Home Assistant reads
    until audio-stop or a closed connection with no timeout, so the request hangs (here: until
    HANG_TIMEOUT)."""
    entity_id, _ = await setup_entry(hass, nostream_server["port"], tmp_path)
    entity = hass.data[DATA_COMPONENT].get_entity(entity_id)
    assert entity.async_supports_streaming_input() is False
    outcome = await speech_or_visible_failure(
        hass, entity_id, TEXT, {tts.ATTR_VOICE: "af_no_such_voice", **WAV}, "non-streaming path"
    )
    record("unknown voice, --no-streaming", outcome)


async def test_server_restart_while_entry_loaded(hass: HomeAssistant, tmp_path: Path):
    """The add-on restarts (update, options change) while Home Assistant holds the entry:
    while it is down a request fails visibly and nothing is cached; once it is back the same
    entry speaks again, without a reload."""
    info = control("/start", name="restart", model="en")
    try:
        entity_id, _ = await setup_entry(hass, info["port"], tmp_path)
        async with asyncio.timeout(TIMEOUT):
            data, _ = await one_shot(hass, entity_id, "First, before the restart.", WAV)
        check_speech(parse_wav(data)[1], 24000, "First, before the restart.")

        stopped = control("/stop", name="restart")
        assert stopped["code"] == 0 and not stopped["traceback"], server_log("restart")[-3000:]
        with pytest.raises(Exception) as failure:  # noqa: B017,PT011 - any visible error
            async with asyncio.timeout(HANG_TIMEOUT):
                await one_shot(hass, entity_id, TEXT, WAV)
        assert not isinstance(failure.value, TimeoutError), "hung while the server was down"
        files = await cached_files(hass)
        assert all(size > 44 for size in files.values()), files

        again = control("/start", name="restart", model="en")
        assert again["port"] == info["port"]
        assert entry_of(hass).state is ConfigEntryState.LOADED
        async with asyncio.timeout(TIMEOUT):
            data, _ = await one_shot(hass, entity_id, TEXT, WAV)  # the text that failed
        check_speech(parse_wav(data)[1], 24000, TEXT)
    finally:
        control("/stop", name="restart")


async def test_streaming_turned_off_while_entry_loaded(hass: HomeAssistant, tmp_path: Path):
    """The server restarts with --no-streaming (the add-on's option changed) while Home
    Assistant holds an entry made when it advertised streaming: Home Assistant keeps the
    describe it read at setup, so it still streams, and waits for synthesize-stopped. A plain
    message must still be spoken (or fail visibly), not hang."""
    info = control("/start", name="toggle", model="en")
    try:
        entity_id, _ = await setup_entry(hass, info["port"], tmp_path)
        control("/start", name="toggle", model="en", args=["--no-streaming"])
        entity = hass.data[DATA_COMPONENT].get_entity(entity_id)
        assert entity.async_supports_streaming_input() is True  # Home Assistant's cached view
        outcome = await speech_or_visible_failure(
            hass, entity_id, TEXT, {tts.ATTR_VOICE: EN_VOICE, **WAV}, "streaming turned off"
        )
        assert outcome == "speech", outcome  # the voice exists: nothing can excuse a failure
    finally:
        control("/stop", name="toggle")


async def test_model_swap_renames_voices(hass: HomeAssistant, hass_ws_client, tmp_path: Path):
    """The model file changes and its voices have other names: after the server restarts with
    it and the entry is reloaded, Home Assistant lists the new voices and speaks with them.
    (A pipeline that still names an old voice is test_unknown_voice_*.)"""
    info = control("/start", name="swap", model="en")
    try:
        entity_id, _ = await setup_entry(hass, info["port"], tmp_path)
        client = await hass_ws_client(hass)

        async def en_voices() -> set[str]:
            await client.send_json_auto_id(
                {"type": "tts/engine/voices", "engine_id": entity_id, "language": "en-US"}
            )
            reply = await client.receive_json()
            assert reply["success"], reply
            return {v["voice_id"] for v in reply["result"]["voices"]}

        assert "af_jf_alpha" in await en_voices()
        swapped = control("/start", name="swap", model="renamed")
        assert swapped["port"] == info["port"]
        assert "af_alpha" in swapped["voices"] and "af_jf_alpha" not in swapped["voices"]
        assert await hass.config_entries.async_reload(entry_of(hass).entry_id)
        await hass.async_block_till_done()
        assert entry_of(hass).state is ConfigEntryState.LOADED
        voices = await en_voices()
        assert "af_alpha" in voices and "af_jf_alpha" not in voices, voices
        async with asyncio.timeout(TIMEOUT):
            data, _ = await one_shot(hass, entity_id, TEXT, {tts.ATTR_VOICE: "af_alpha", **WAV})
        check_speech(parse_wav(data)[1], 24000, TEXT)
    finally:
        control("/stop", name="swap")


def test_servers_log_no_traceback(main_server: dict):
    """Last: the shared servers logged no traceback while Home Assistant drove them."""
    for name in ("main", "nostream"):
        log = server_log(name)
        assert "Traceback" not in log, log[-4000:]
    assert os.environ.get("WKG_HA_CONTROL")
