"""Faults, input limits and security, on the real server over loopback.

Covered elsewhere (not repeated here): the engine process crashing mid-synthesis
(test_server.py::test_engine_crash_is_reported_and_the_engine_restarts), a file that is not a
model (test_server.py::test_model_load_failure_exits_1_with_one_line), --max-text-chars for a
one-shot request (test_server.py::test_too_long_text_is_an_error), downloads cut off, corrupted
or filling the disk (test_download.py::test_interrupted_transfer_resumes_with_range,
test_corrupted_download_is_rejected_and_removed, test_disk_filling_up_midway_leaves_no_partial_file,
test_disk_too_small_refused_up_front), model names outside the data directories
(test_download.py::test_model_names_cannot_escape_the_data_dir), add-on option values
(test_addon.py::test_bad_option_values_name_the_option), model file structure checks
(test_model_file.py::test_truncated, test_missing_tensor, test_wrong_shape, test_not_gguf).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from reliability_helpers import (
    assert_no_traceback,
    raw_exchange,
    record,
    wait_idle,
)
from wyoming.client import AsyncTcpClient
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)
from wyoming_helpers import (
    ROOT,
    Exchange,
    ServerProcess,
    read_until,
    run_server_to_exit,
    running_server,
    synthesize,
)

from wyoming_kokoro_gguf.server.engine_process import STEP_TIMEOUT_ENV, step_timeout

VOICE = "af_jf_alpha"
# A hang guard, not a speed bound (script/benchmark measures speed): the server must exit on
# SIGTERM, engine process and all; how long it took is recorded as a figure.
SHUTDOWN_HANG_S = 30.0
MAX_TEXT = 10_000  # the server's default --max-text-chars
LONG_TEXT = " ".join(
    f"Sentence number {n} of a long announcement, read to the whole house." for n in range(30)
)


@pytest.fixture(scope="module")
def model(english_model: Path) -> Path:
    return english_model


@pytest.fixture(scope="module")
def server(model: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_server(model, tmp_path_factory.mktemp("reliability")) as srv:
        yield srv


# ============================================================================ SIGTERM


def _sigterm_seconds(srv: ServerProcess) -> tuple[float, int | None]:
    engine_pid = srv.health()["engine_pid"]
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        srv.proc.wait(SHUTDOWN_HANG_S)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait(10)
        return float("inf"), engine_pid
    return time.monotonic() - started, engine_pid


def _engine_gone(pid: int | None) -> bool:
    if pid is None:
        return True
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigterm_when_idle_stops_the_server_and_its_engine(model: Path, tmp_path: Path) -> None:
    srv = ServerProcess(model, tmp_path)
    try:
        srv.wait_ready()
        seconds, engine_pid = _sigterm_seconds(srv)
    finally:
        srv.stop()
    record("sigterm_idle_seconds", round(seconds, 3))
    assert srv.proc.returncode == 0, srv.log()[-3000:]
    assert seconds < SHUTDOWN_HANG_S, srv.log()[-3000:]
    assert _engine_gone(engine_pid)
    assert "Traceback" not in srv.log()


@pytest.mark.slow
def test_sigterm_during_a_synthesis_stops_without_finishing_it(model: Path, tmp_path: Path) -> None:
    """The request in flight is cut (no audio-stop: Home Assistant caches nothing of it), not
    spoken to its end (LONG_TEXT is minutes of audio) before the server exits."""
    srv = ServerProcess(model, tmp_path)
    try:
        srv.wait_ready()

        async def scenario() -> tuple[float, int | None, list[str]]:
            async with AsyncTcpClient("127.0.0.1", srv.port) as c:
                await c.write_event(
                    Synthesize(text=LONG_TEXT, voice=SynthesizeVoice(VOICE)).event()
                )
                ex = await read_until(c, Exchange(), "audio-chunk")
                assert srv.health()["active_jobs"] == 1  # the engine is still at work
                seconds, engine_pid = await asyncio.to_thread(_sigterm_seconds, srv)
                while (event := await asyncio.wait_for(c.read_event(), 10)) is not None:
                    ex.events.append(event)
                return seconds, engine_pid, ex.types()

        seconds, engine_pid, types = asyncio.run(scenario())
    finally:
        srv.stop()
    record("sigterm_during_synthesis_seconds", round(seconds, 3))
    assert srv.proc.returncode == 0, srv.log()[-3000:]
    assert seconds < SHUTDOWN_HANG_S, srv.log()[-3000:]
    assert "audio-stop" not in types, types
    assert _engine_gone(engine_pid)
    assert "Traceback" not in srv.log()
    assert "audio-chunk" in types  # the client was told nothing false; its connection closed


# ============================================================================ bad model files


def _copy_head(src: Path, dest: Path, size: int) -> None:
    with src.open("rb") as f, dest.open("wb") as out:
        out.write(f.read(size))


# ============================================================================ a hung engine


def test_a_hung_engine_is_replaced_after_the_step_timeout(tmp_path: Path, monkeypatch) -> None:
    """An engine that stops answering (SIGSTOP here; a wedged kernel or a board swapping in
    life) is killed after the step timeout and the request is spoken by its replacement.  The
    timeout comes from the environment: an emulator's passes take minutes."""
    import fixtures_ttscpp as fx

    model = tmp_path / "tiny.gguf"
    fx.build(model, voices=("af_heart",))
    monkeypatch.setenv(STEP_TIMEOUT_ENV, "2")
    with running_server(model, tmp_path, "--cache-mb", "0") as srv:
        before = srv.health()
        os.kill(before["engine_pid"], signal.SIGSTOP)
        ex = asyncio.run(synthesize(srv.port, "Hello there.", "af_heart"))
        after = srv.wait_ready()
        log = srv.log()
    assert "the engine did not answer within 2 s; restarting it" in log
    assert after["engine_restarts"] == 1 and after["engine_pid"] != before["engine_pid"]
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop"], (ex.types(), ex.error())
    assert np.abs(ex.pcm()).max() > 0


def test_the_step_timeout_is_a_positive_number_of_seconds() -> None:
    assert step_timeout({STEP_TIMEOUT_ENV: "1800"}) == 1800.0
    for bad in ("", "soon", "-5", "0", "nan", "inf"):
        assert step_timeout({STEP_TIMEOUT_ENV: bad}) == step_timeout({})


@pytest.mark.parametrize("damage", ["empty", "cut in the header", "cut in the weights", "garbled"])
@pytest.mark.slow
def test_a_damaged_model_file_stops_the_server_with_one_line(
    model: Path, tmp_path: Path, damage: str
) -> None:
    bad = tmp_path / "kokoro-damaged.gguf"
    size = model.stat().st_size
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "cut in the header":
        _copy_head(model, bad, 4096)
    elif damage == "cut in the weights":
        _copy_head(model, bad, size // 3)
    else:  # the magic is intact, the metadata and tensor table after it are noise
        _copy_head(model, bad, 16 * 1024 * 1024)
        with bad.open("r+b") as f:
            f.seek(24)
            f.write(bytes(range(256)) * 64)
    run = run_server_to_exit(bad)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line or "error:" in line]
    assert len(errors) == 1, run.stderr[-3000:]
    assert str(bad) in errors[0] or bad.name in errors[0], errors[0]


# ============================================================================ input limits


@pytest.mark.slow
def test_streamed_text_over_the_limit_is_spoken_up_to_it_and_the_stream_ends(server) -> None:
    """Home Assistant caches a refused stream's silence: the text within --max-text-chars is
    spoken (cut at a word), the rest dropped with a warning, and the stream ends normally."""

    async def scenario() -> tuple[Exchange, Exchange]:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(SynthesizeStart(voice=SynthesizeVoice(VOICE)).event())
            await c.write_event(SynthesizeChunk(text=" " * (MAX_TEXT - 10)).event())
            for _ in range(11):  # 11 x 1000 characters more: only "word word" fits
                await c.write_event(SynthesizeChunk(text="word " * 200).event())
            await c.write_event(SynthesizeStop().event())
            cut = await read_until(c, Exchange(), "synthesize-stopped")
            await c.write_event(Synthesize(text="Short.", voice=SynthesizeVoice(VOICE)).event())
            good = await read_until(c, Exchange(), "audio-stop", "error")
            return cut, good

    cut, good = asyncio.run(scenario())
    assert cut.shape() == ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"]
    assert 0.3 < len(cut.pcm()) / 2 / 24000 < 2.5  # two words, not 2,200
    assert f"stream longer than --max-text-chars ({MAX_TEXT}): spoken up to the limit" in (
        server.log()
    )
    assert good.shape() == ["audio-start", "audio-chunk+", "audio-stop"]


@pytest.mark.slow
def test_http_text_over_the_limit_is_a_json_error(server) -> None:
    query = urllib.parse.urlencode({"text": "a" * (MAX_TEXT + 1)})
    url = f"http://127.0.0.1:{server.http_port}/api/tts?{query}"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=60)
    assert info.value.code == 400
    doc = json.loads(info.value.read())
    assert doc["code"] == "text_too_long" and "--max-text-chars" in doc["error"]


ODD_TEXTS = {  # short: each is synthesized for real
    "control characters": "Hi\x00 there\x07\x1b[31m.\r\n\x0b\x7f",
    "markup": "<speak><b>Door</b> &amp; [x](http://a)</speak>",
    "emoji only": "🌙👍🏽🇯🇵❤️‍🔥",
    "emoji in words": "Good night 🌙.",
    "mixed scripts": "Hi Привет 你好 مرحبا.",
    "invisible and bidi marks": "\u202eabc\u202c\u200b\u200d\ufeff\u2066x\u2069.",
    "punctuation only": "?!... --- ;;;",
    "combining marks": "Z\u0351\u0364a\u036b\u0357l\u0368g\u0310o",
}


@pytest.mark.slow
def test_odd_texts_are_spoken_or_refused_cleanly(server) -> None:
    async def scenario() -> dict[str, list[str]]:
        out = {}
        for name, text in ODD_TEXTS.items():
            ex = await synthesize(server.port, text, VOICE)
            out[name] = ex.shape()
        # Lone surrogates can only arrive as JSON escapes (no client can encode them).
        raw = b'{"type": "synthesize", "data": {"text": "Hi \\udcff there \\ud800."}}\n'
        reply = await raw_exchange(
            server.port, raw, wait=120, then_describe=True, until=("audio-stop", "error")
        )
        out["lone surrogates"] = [t for t in reply.types() if t != "audio-chunk"]
        return out

    shapes = asyncio.run(scenario())
    for name, shape in shapes.items():
        assert shape in (
            ["audio-start", "audio-chunk+", "audio-stop"],
            ["audio-start", "audio-stop"],
            ["audio-start", "audio-stop", "info"],
            ["error"],
            ["error", "info"],
        ), (name, shape)
    assert server.proc.poll() is None and server.health()["state"] == "ready"
    assert server.health()["engine_restarts"] == 0
    assert_no_traceback(server)


@pytest.mark.slow
def test_a_ten_thousand_character_word_does_not_stall_the_server(server) -> None:
    """The longest text the default limit lets through, without a single space: the server
    speaks it (first audio arrives), serves another client meanwhile, and drops it cleanly
    when its client leaves."""
    word = "".join("abcdefghijklmnopqrstuvwxyz"[(i * 7) % 26] for i in range(MAX_TEXT))

    async def scenario() -> tuple[Exchange, list[str]]:
        client = AsyncTcpClient("127.0.0.1", server.port)
        await client.connect()
        try:
            await client.write_event(Synthesize(text=word, voice=SynthesizeVoice(VOICE)).event())
            ex = Exchange(started=time.monotonic())
            reader = asyncio.create_task(read_until(client, ex, "audio-chunk", "error"))
            other = await synthesize(server.port, "Is the oven off?", VOICE)
            await reader
            return ex, other.shape()
        finally:
            client._writer.transport.abort()
            await client.disconnect()

    ex, other = asyncio.run(scenario())
    assert ex.types()[-1] == "audio-chunk", ex.types()
    assert other == ["audio-start", "audio-chunk+", "audio-stop"]
    health = wait_idle(server)
    assert health["active_jobs"] == 0 and health["state"] == "ready"
    assert_no_traceback(server)


# ============================================================================ security


def _listening_addresses(pid: int, port: int) -> set[str]:
    conns = psutil.Process(pid).net_connections(kind="inet")
    return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


@pytest.mark.slow
def test_http_listens_on_loopback_only_by_default(server) -> None:
    assert _listening_addresses(server.proc.pid, server.http_port) == {"127.0.0.1"}


@pytest.mark.slow
def test_the_engine_is_the_servers_only_child_process(server) -> None:
    """No helper process beside the engine (multiprocessing's resource tracker held 13 MB),
    and the engine still speaks."""
    engine_pid = server.health()["engine_pid"]
    children = psutil.Process(server.proc.pid).children(recursive=True)
    assert [c.pid for c in children] == [engine_pid], [c.cmdline() for c in children]
    ex = asyncio.run(synthesize(server.port, "The engine is the only child.", VOICE))
    assert ex.types()[-1] == "audio-stop" and len(ex.pcm()) > 24000  # over a second of audio


@pytest.mark.parametrize(
    "name",
    ["../../../../etc/passwd", "/etc/passwd", f"{VOICE}/../{VOICE}", "..", "voices/af", "\\..\\x"],
)
@pytest.mark.slow
def test_voice_names_cannot_reach_outside_the_model(server, name: str) -> None:
    """Voices are the model's voice tensors: a name that looks like a path is unknown (spoken with
    a fallback voice over Wyoming, refused over HTTP), and nothing is read from the file system."""
    ex = asyncio.run(synthesize(server.port, "Hi.", name))
    assert ex.types()[0] == "audio-start" and ex.types()[-1] == "audio-stop"
    assert f"voice {name} is not in the model; using" in server.log()
    query = urllib.parse.urlencode({"text": "Hi.", "voice": name})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/api/tts?{query}", timeout=60)
    assert info.value.code == 400 and json.loads(info.value.read())["code"] == "unknown_voice"


def test_voice_blend_names_are_plain_names() -> None:
    from wyoming_kokoro_gguf.server.config import parse_blends

    for bad in ["../x=af_heart:1", "x=../af_heart:1", "a/b=af_heart:1", "x=af_heart:1,/etc/p:1"]:
        with pytest.raises(ValueError):
            parse_blends([bad])


def test_model_names_with_path_parts_are_not_looked_up_in_data_dirs(tmp_path: Path) -> None:
    """A bare --model name is a file name in a data directory; anything else is refused.
    (A name with a slash is an explicit path the administrator gave, checked as a GGUF.)"""
    from wyoming_kokoro_gguf.__main__ import build_parser
    from wyoming_kokoro_gguf.host import models as model_store

    secret = tmp_path / "secret.gguf"
    secret.write_bytes(b"GGUF")
    data = tmp_path / "data"
    data.mkdir()
    for name in ["..", "...", ".hidden", "x\x00y", "a b", "secret.gguf\n"]:
        args = build_parser().parse_args(["--model", name, "--data-dir", str(data)])
        with pytest.raises(model_store.ModelError):
            model_store.resolve(args)
    not_gguf = tmp_path / "passwd"
    not_gguf.write_text("root:x:0:0")
    args = build_parser().parse_args(["--model", str(not_gguf), "--data-dir", str(data)])
    with pytest.raises(model_store.ModelError, match="not a GGUF file"):
        model_store.resolve(args)


ADDON = ROOT / "addon"


def test_addon_runs_the_server_as_a_non_root_user() -> None:
    """The run script hands /data to the system user the Dockerfile makes and execs the server
    through s6-setuidgid; test_addon.py runs that command line as an unprivileged uid."""
    from test_addon import run_command_line

    user, words = run_command_line()
    assert user not in ("root", "0") and words[:3] == ["python3", "-m", "wyoming_kokoro_gguf"]
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert not re.search(r"^USER\s+(root|0)\b", dockerfile, re.M)


@pytest.mark.slow
def test_model_files_are_checked_before_use(tmp_path: Path, model: Path) -> None:
    """Structure checks before anything is loaded: the reader refuses a file whose tensor data
    is shorter than its tensor table says, without reading the weights (fast even for big
    files)."""
    from wyoming_kokoro_gguf.weights.model_file import ModelFileError, open_model

    bad = tmp_path / "short.gguf"
    _copy_head(model, bad, model.stat().st_size - 1)
    started = time.monotonic()
    with pytest.raises(ModelFileError) as info:
        open_model(bad)
    assert "\n" not in str(info.value)
    assert time.monotonic() - started < 30
    shutil.copyfile(model, tmp_path / "ok.gguf")
    assert open_model(tmp_path / "ok.gguf").voices


def test_a_partial_download_is_never_taken_for_a_model(tmp_path: Path) -> None:
    """An interrupted download keeps only NAME.gguf.part (for resuming: test_download.py::
    test_interrupted_download_resumes_on_next_start); the model search never loads it."""
    from wyoming_kokoro_gguf.host import models as model_store
    from wyoming_kokoro_gguf.host import plan

    variant = next(iter(plan.VARIANTS.values()))
    part = tmp_path / f"{variant.filename}.part"
    part.write_bytes(b"GGUF" + b"\0" * 4096)  # looks like the start of a GGUF file
    assert model_store.scan([tmp_path]) == []
    assert model_store.local_variants(model_store.scan([tmp_path])) == {}


def test_a_word_without_spaces_is_cut_into_engine_sized_units() -> None:
    """A 10,000-character word becomes units of at most max_chars, whatever the deltas."""
    from wyoming_kokoro_gguf.server.segmenter import TextSegmenter

    word = "abcdefghij" * 1000
    seg = TextSegmenter()
    whole = seg.feed(word) + seg.finish()
    assert "".join(whole) == word and max(len(u) for u in whole) <= seg.max_chars
    seg = TextSegmenter()
    pieces = [word[i : i + 7] for i in range(0, len(word), 7)]
    assert [u for p in pieces for u in seg.feed(p)] + seg.finish() == whole
