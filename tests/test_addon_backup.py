"""What a Home Assistant backup of the add-on holds: only what must survive a restore.

The server runs as the add-on's run script runs it (its own command line, HOME=/data), against
a data directory of its own: it downloads its model from a real HTTP server on loopback, builds
and writes the graph cache with the int8 calibration, and speaks English, Japanese and Mandarin
(their front ends may keep files under HOME).  Then the data directory is walked the way the
Supervisor writes an add-on backup, with the add-on's `backup_exclude` patterns:

- home-assistant/supervisor, supervisor/apps/app.py `App._is_excluded_by_filter`: for each item
  it builds the full path as the Supervisor sees it (`path_data / relative path`, i.e.
  /data/apps/data/<slug>/...) and tests every pattern with `PurePath.match` (relative patterns
  match from the right, so `*.gguf` matches at any depth and a pattern starting with `/` would
  have to name the Supervisor's own path, not the add-on's /data);
- home-assistant-libs/securetar `atomic_contents_add`: the filter is asked for every directory
  and file; an excluded directory is skipped with everything under it.

Every file left in the backup must be one that must survive a restore; every model and cache
file must have been written (so the check cannot pass on an empty directory).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path, PurePath

import pytest
import yaml
from test_addon import ADDON, free_port, run_command_line

# What a restore must bring back. options.json is the Supervisor's (it rewrites it from its own
# store at every start), kept in the backup as every add-on's is; nothing the server writes is.
MUST_SURVIVE = {"options.json"}
# The Supervisor's path of an add-on's data (supervisor/config.py APPS_DATA under /data).
SUPERVISOR_DATA = PurePath("/data/apps/data/kokoro_gguf")
TEXTS = {
    "af_heart": "The kitchen lights are on.",
    "jf_alpha": "こんにちは、今日はいい天気です。",
    "zf_xiaobei": "你好，今天天气很好。",
}


def backup_members(data: Path, patterns: list[str]) -> list[str]:
    """The files of ``data`` an add-on backup holds (relative paths), walked and filtered as
    securetar's atomic_contents_add with the Supervisor's filter does."""

    def excluded(relative: PurePath) -> bool:
        full = SUPERVISOR_DATA / relative
        return any(full.match(pattern) for pattern in patterns)

    kept: list[str] = []

    def walk(directory: Path, relative: PurePath) -> None:
        for item in sorted(directory.iterdir()):
            rel = relative / item.name
            if excluded(rel):
                continue
            if item.is_dir() and not item.is_symlink():
                walk(item, rel)
            else:
                kept.append(rel.as_posix())

    walk(data, PurePath())
    return kept


def test_backup_walk_matches_as_the_supervisor_does(tmp_path):
    """The walk above: patterns match from the right, an excluded directory takes its tree."""
    (tmp_path / "cache" / "graphs-1").mkdir(parents=True)
    (tmp_path / "cache" / "graphs-1" / "stage1.onnx").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.gguf").write_bytes(b"x")
    (tmp_path / "keep.json").write_text("{}")
    assert backup_members(tmp_path, ["*.gguf", "cache"]) == ["keep.json"]
    assert backup_members(tmp_path, ["graphs-*"]) == ["keep.json", "sub/a.gguf"]
    # An absolute pattern names the Supervisor's path, never the add-on's /data.
    assert backup_members(tmp_path, ["/data/cache"]) == [
        "cache/graphs-1/stage1.onnx",
        "keep.json",
        "sub/a.gguf",
    ]


def test_backup_exclude_patterns_mean_the_same_in_every_python():
    """PurePath.match changed between Python versions (the Supervisor runs 3.14, `**` acts as
    `*` since 3.13, case sensitivity is a flag since 3.12): plain relative patterns, without
    `**` or a leading `/`, match alike in all of them."""
    patterns = yaml.safe_load((ADDON / "config.yaml").read_text())["backup_exclude"]
    for pattern in patterns:
        assert not pattern.startswith("/") and "**" not in pattern, pattern


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def model_hub(tmp_path):
    """A real HTTP server on loopback serving a small random Kokoro GGUF under the published
    name of the f16 variant (what the add-on downloads for `model: f16`)."""
    import fixtures_ttscpp

    from wyoming_kokoro_gguf.host import plan

    served = tmp_path / "hub"
    served.mkdir()
    fixtures_ttscpp.build(served / plan.VARIANTS["f16"].filename, "F16")
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _client(uri: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wyoming_kokoro_gguf.client", "--uri", uri, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_loaded(uri: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        done = _client(uri, "--list-voices", "--json", "--timeout", "10", timeout=60)
        if done.returncode == 0:
            voices = json.loads(done.stdout)["voices"]
            if voices and all(v["installed"] for v in voices):
                return
        time.sleep(1)
    raise AssertionError(f"the engine did not load:\n{log.read_text()}")


def _serve_once(data: Path, share: Path, hub: str) -> str:
    """Start the run script's server on ``data``, speak each text, stop it; its log."""
    _user, words = run_command_line()
    port = free_port()
    replace = {
        "/data/options.json": str(data / "options.json"),
        "/data": str(data),
        "/share/kokoro": str(share),
        "tcp://0.0.0.0:10200": f"tcp://127.0.0.1:{port}",
    }
    # with the options' threads and convolutions, every lever fixed: no first-start plan timing
    cmd = [sys.executable, *(replace.get(w, w) for w in words[1:]), "--passes", "2"]
    env = dict(os.environ, HOME=str(data), WYOMING_KOKORO_GGUF_BASE_URL=hub)
    env.pop("XDG_DATA_HOME", None)  # as in the container: nothing points elsewhere
    env.pop("XDG_CACHE_HOME", None)
    log = data.parent / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd="/")
    uri = f"tcp://127.0.0.1:{port}"
    try:
        _wait_loaded(uri, proc, log)
        for voice, text in TEXTS.items():
            wav = data.parent / f"{voice}.wav"
            done = _client(uri, "--voice", voice, "-o", str(wav), text)
            assert done.returncode == 0, done.stderr + log.read_text()
            assert wav.stat().st_size > 44 + 2400  # a header and at least 50 ms of audio
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    return log.read_text()


def test_a_backup_holds_nothing_the_server_rebuilds(tmp_path, model_hub):
    config = yaml.safe_load((ADDON / "config.yaml").read_text())
    data, share = tmp_path / "data", tmp_path / "share-kokoro"
    data.mkdir()
    share.mkdir()
    options = dict(config["options"], model="f16", convolutions="int8", threads="2")
    (data / "options.json").write_text(json.dumps(options))
    log = _serve_once(data, share, model_hub)
    assert "Traceback" not in log, log
    assert "graph cache: saved" in log, log

    written = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    # The check sees every kind of file the server writes, or it proves nothing.
    assert "Kokoro_espeak_F16.gguf" in written, written
    assert any(w.startswith("cache/graphs-") and w.endswith("stage2.onnx.data") for w in written)
    assert any(w.startswith("cache/calibration-") for w in written), written
    kept = backup_members(data, config["backup_exclude"])
    assert set(kept) <= MUST_SURVIVE, f"in every backup, rebuilt on start: {kept}"
    assert set(kept) == MUST_SURVIVE  # and the patterns do not drop what must stay

    # An interrupted download (its .part) and a build that died (its temporary directory):
    # left out too.
    (data / "Kokoro_espeak_Q8.gguf.part").write_bytes(b"GGUF")
    from wyoming_kokoro_gguf.synth.graph_cache import TMP_PREFIX

    died = data / "cache" / f"{TMP_PREFIX}0123abcd-1-abcd1234"
    died.mkdir()
    (died / "stage1.onnx").write_bytes(b"x")
    assert set(backup_members(data, config["backup_exclude"])) == MUST_SURVIVE
