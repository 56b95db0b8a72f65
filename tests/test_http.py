"""The HTTP side door (--http-port): /health, /api/tts, and the test page in a real browser.

The page test drives Debian's headless Chromium over the DevTools protocol (a websocket,
spoken with aiohttp): it waits for the voice list, picks a voice, types a text, presses
Speak and checks that the <audio> element loaded a WAV of the right length.  It is skipped,
with the reason, when Chromium is not installed (apt-get install chromium).
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from wyoming_helpers import ServerProcess, running_server

pytestmark = pytest.mark.slow  # every test here talks to a real server

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",
]


@pytest.fixture(scope="module")
def model(english_model: Path) -> Path:
    return english_model


@pytest.fixture(scope="module")
def server(model: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_server(model, tmp_path_factory.mktemp("http-server")) as srv:
        yield srv


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _tts_url(server: ServerProcess, **params: str) -> str:
    return f"http://127.0.0.1:{server.http_port}/api/tts?{urllib.parse.urlencode(params)}"


def test_http_binds_loopback_by_default(server) -> None:
    assert f"HTTP on http://127.0.0.1:{server.http_port}/" in server.log()


def test_health_reports_state_model_plan_and_voices(server, model) -> None:
    status, headers, body = _get(f"http://127.0.0.1:{server.http_port}/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["state"] == "ready"
    assert Path(doc["model"]).resolve() == model.resolve()
    assert "plan" in doc
    assert doc["voices"] and doc["default_voice"] in doc["voices"]
    assert doc["sample_rate"] == 24000


def test_api_tts_returns_a_wav(server) -> None:
    voice = json.loads(_get(f"http://127.0.0.1:{server.http_port}/health")[2])["voices"][0]
    status, headers, body = _get(_tts_url(server, text="Hello from the web page.", voice=voice))
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert headers["X-Voice"] == voice
    with wave.open(io.BytesIO(body)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (24000, 2, 1)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(audio) / 24000 == pytest.approx(float(headers["X-Audio-Seconds"]), abs=0.01)
    assert len(audio) > 24000 and np.sqrt(np.mean(audio.astype(float) ** 2)) > 300
    assert f"/api/tts: 24 chars, voice {voice}," in server.log()  # logged like a Wyoming request


def test_api_tts_accepts_a_json_post(server) -> None:
    body = json.dumps({"text": "Posted text works too.", "speed": 1.2}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/api/tts",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
        assert float(r.headers["X-Audio-Seconds"]) > 0.8


def test_api_tts_speed_changes_the_length(server) -> None:
    text = "Speed makes this sentence shorter or longer."
    lengths = {}
    for speed in ("1.0", "1.5"):
        status, headers, _ = _get(_tts_url(server, text=text, speed=speed))
        assert status == 200
        lengths[speed] = float(headers["X-Audio-Seconds"])
    assert lengths["1.5"] < 0.8 * lengths["1.0"]


def test_api_tts_errors_are_json(server) -> None:
    for params, code in [
        ({"text": "Hi.", "voice": "no_such_voice"}, "unknown_voice"),
        ({"text": "  "}, "no_text"),
        ({"text": "Hi.", "speed": "9"}, "bad_speed"),
    ]:
        status, _, body = _get(_tts_url(server, **params))
        assert status == 400
        doc = json.loads(body)
        assert doc["code"] == code and doc["error"]


# ----------------------------------------------------------------------------- real browser


class DevTools:
    """A minimal Chrome DevTools protocol session on one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: object) -> dict:
        msg_id = next(self._ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), timeout=120)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expression: str) -> object:
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 300) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")


def _start_chromium(url: str, profile: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): page test skipped")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited with {proc.returncode}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("chromium did not open its DevTools port")


def test_page_lets_a_person_try_a_voice_in_a_real_browser(server, tmp_path: Path) -> None:
    page_url = f"http://127.0.0.1:{server.http_port}/"
    proc, devtools_port = _start_chromium(page_url, tmp_path / "profile")

    async def scenario() -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as r:
                targets = await r.json()
            page = next(t for t in targets if t["type"] == "page" and t["url"].startswith(page_url))
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                dt = DevTools(ws)
                await dt.call("Runtime.enable")
                voices = int(await dt.wait_for("document.body && document.body.dataset.voices"))
                options = await dt.js(
                    "[...document.querySelectorAll('#voice option')].map(o => o.value)"
                )
                chosen = options[-1]
                await dt.js(
                    f"(() => {{ const s = document.getElementById('voice'); s.value = {json.dumps(chosen)};"
                    " document.getElementById('text').value = 'Hello from a real browser.';"
                    " document.getElementById('speak').click(); return true; })()"
                )
                await dt.wait_for(
                    "document.getElementById('result').dataset.audioSeconds"
                    " || document.getElementById('error').textContent"
                )
                error = await dt.js("document.getElementById('error').textContent")
                duration = await dt.js(
                    "new Promise(r => { const p = document.getElementById('player');"
                    " if (p.readyState >= 1) r(p.duration); else p.onloadedmetadata = () => r(p.duration); })"
                )
                shot = await dt.call("Page.captureScreenshot", format="png")
                (tmp_path / "page.png").write_bytes(base64.b64decode(shot["data"]))
                return {
                    "voices": voices,
                    "options": options,
                    "chosen": chosen,
                    "error": error,
                    "duration": duration,
                    "status": await dt.js("document.getElementById('status').textContent"),
                    "reported": await dt.js(
                        "document.getElementById('result').dataset.audioSeconds"
                    ),
                }

    try:
        result = asyncio.run(scenario())
    finally:
        proc.terminate()
        proc.wait(30)
    health = json.loads(_get(f"http://127.0.0.1:{server.http_port}/health")[2])
    assert result["error"] == "", result
    assert result["voices"] == len(health["voices"]) == len(result["options"])
    assert sorted(result["options"]) == sorted(health["voices"])
    assert result["status"].startswith("ready")
    assert result["duration"] == pytest.approx(float(result["reported"]), abs=0.05)
    assert result["duration"] > 0.8
