"""The command-line client (python -m wyoming_kokoro_gguf.client) against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from wyoming_helpers import free_port, running_server

from wyoming_kokoro_gguf.client import split_deltas

CLIENT = [sys.executable, "-m", "wyoming_kokoro_gguf.client"]


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLIENT, *args], capture_output=True, text=True, timeout=600, input=stdin
    )


def test_deltas_ignore_word_boundaries() -> None:
    assert split_deltas("Hello world", 4) == ["Hell", "o wo", "rld"]
    assert "".join(split_deltas("x" * 101, 5)) == "x" * 101


def test_connection_failure_is_one_clear_line() -> None:
    port = free_port()
    run = _run("--uri", f"tcp://127.0.0.1:{port}", "Hello.")
    assert run.returncode == 1
    assert (
        run.stderr.strip() == f"error: cannot connect to tcp://127.0.0.1:{port}: connection refused"
    )


def test_missing_text_is_a_usage_error() -> None:
    run = _run("--uri", "tcp://127.0.0.1:1")
    assert run.returncode == 2 and "TEXT" in run.stderr


@pytest.fixture(scope="module")
def server(english_model: Path, tmp_path_factory: pytest.TempPathFactory):
    log_dir = tmp_path_factory.mktemp("client-server")
    with running_server(english_model, log_dir, "--max-text-chars", "500") as srv:
        yield srv


@pytest.mark.slow
def test_list_voices(server) -> None:
    run = _run("--uri", server.uri, "--list-voices", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["program"] == "kokoro-gguf" and doc["streaming"] is True
    assert doc["voices"] and all(v["languages"] and v["installed"] for v in doc["voices"])
    text = _run("--uri", server.uri, "--list-voices")
    assert text.returncode == 0 and doc["voices"][0]["name"] in text.stdout


@pytest.mark.slow
def test_one_shot_writes_a_wav_and_prints_the_figures(server, tmp_path: Path) -> None:
    out = tmp_path / "one.wav"
    run = _run("--uri", server.uri, "-o", str(out), "Turn on the porch light, please.")
    assert run.returncode == 0, run.stderr
    for label in ("first audio", "total time", "audio", "RTF", "events"):
        assert label in run.stdout
    assert "audio-start, audio-chunk x" in run.stdout and run.stdout.count("audio-stop") == 1
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (24000, 2, 1)
        assert w.getnframes() > 24000


@pytest.mark.slow
def test_stream_like_home_assistant_with_json_figures(server, tmp_path: Path) -> None:
    out = tmp_path / "stream.wav"
    run = _run(
        "--uri",
        server.uri,
        "--stream",
        "--json",
        "-o",
        str(out),
        "The lights are off. The doors are locked, and the heating is down.",
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["streaming"] is True
    events = doc["events"]
    assert events[0] == "audio-start" and events[1].startswith("audio-chunk")
    assert events[2:] == ["audio-stop", "synthesize-stopped"]
    assert doc["first_audio_seconds"] > 0 and doc["audio_seconds"] > 2
    assert doc["rtf"] == pytest.approx(doc["total_seconds"] / doc["audio_seconds"])
    assert (doc["rate"], doc["width"], doc["channels"]) == (24000, 2, 1)
    assert out.stat().st_size > 44 + 2 * 24000


@pytest.mark.slow
def test_server_error_event_exits_1_with_its_text(server) -> None:
    run = _run("--uri", server.uri, "-", stdin="word " * 200)  # 1000 > --max-text-chars 500
    assert run.returncode == 1
    assert run.stderr.startswith("error: server error [text_too_long]: text too long")
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_unknown_voice_exits_1(server) -> None:
    """The client checks the voice against the server's describe before asking for speech."""
    run = _run("--uri", server.uri, "--voice", "no_such_voice", "Hello.")
    assert run.returncode == 1 and "no_such_voice" in run.stderr


def test_list_voices_fails_while_a_server_has_none(tmp_path: Path) -> None:
    """A server still fetching its model answers describe with no voices: --list-voices exits 1,
    which is what the add-on's discovery waits on before announcing the server."""
    import asyncio
    import threading

    from wyoming.info import Describe
    from wyoming.server import AsyncEventHandler, AsyncTcpServer

    from wyoming_kokoro_gguf.server.info import build_info

    class Empty(AsyncEventHandler):
        async def handle_event(self, event):  # type: ignore[no-untyped-def]
            if Describe.is_type(event.type):
                await self.write_event(build_info([], streaming=True).event())
            return True

    port = free_port()
    loop = asyncio.new_event_loop()
    server = AsyncTcpServer("127.0.0.1", port)
    loop.run_until_complete(server.start(Empty))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        run = _run("--uri", f"tcp://127.0.0.1:{port}", "--list-voices")
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert run.returncode == 1
    assert (
        run.stderr.strip() == "error: the server lists no voices yet (is its model still loading?)"
    )
