"""The Home Assistant tier: fixtures for tests that run inside the trixie root (script/test-ha).

These tests import Home Assistant core (Python 3.13+), so outside that root (the main test
run) they are not collected at all. The server they talk to runs outside the root and is
started and stopped through server_control.py's loopback API (WKG_HA_CONTROL).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import urllib.error
import urllib.request

import pytest

if importlib.util.find_spec("pytest_homeassistant_custom_component") is None:
    # Main test run (Python 3.11, no Home Assistant): this folder is script/test-ha's.
    collect_ignore_glob = ["test_*.py"]

CONTROL_TIMEOUT = 900.0  # a cold model load on a busy 2-core machine, plus the stop before it

FIGURES: dict[str, str] = {}


def allow_loopback_sockets() -> None:
    """The harness blocks socket creation for every test (pytest-socket) and lets connect()
    reach 127.0.0.1 only; these tests need real sockets, so creation is allowed again while the
    connect guard stays: everything here talks to loopback only."""
    with contextlib.suppress(ImportError):
        import pytest_socket

        pytest_socket.enable_socket()


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    allow_loopback_sockets()


def control(path: str, **body) -> dict:
    """POST to server_control.py; raises with the server's own message on failure."""
    allow_loopback_sockets()
    base = os.environ.get("WKG_HA_CONTROL")
    if not base:
        pytest.fail("WKG_HA_CONTROL is not set: run these tests with script/test-ha")
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"server_control {path}: {err.read().decode()}") from None


def server_log(name: str) -> str:
    allow_loopback_sockets()
    base = os.environ["WKG_HA_CONTROL"]
    with urllib.request.urlopen(f"{base}/log?name={name}", timeout=30) as response:
        return response.read().decode(errors="replace")


def record(name: str, value: str) -> None:
    """A figure for the summary at the end of the run (setup time, first audio ...)."""
    FIGURES[name] = value


@pytest.fixture(scope="session")
def main_server() -> dict:
    """The streaming server with the test model, shared by the tests that do not restart it."""
    info = control("/start", name="main", model="en")
    record("server ready (model load)", f"{info['ready_s']:.1f} s")
    return info


@pytest.fixture(scope="session")
def nostream_server() -> dict:
    """The same server with --no-streaming (Home Assistant's one-shot path)."""
    return control("/start", name="nostream", model="en", args=["--no-streaming"])


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("Home Assistant figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
