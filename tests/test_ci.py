"""The CI entry point's add-on checks stay within the run's time: a check with no time left is
skipped and said so, never handed to `timeout` as a negative number (which failed the run)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / ".ci" / "addon-checks"


def _run_checks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECKS), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("left", ["-420", "0", "59"])
def test_checks_without_a_minute_left_are_skipped_not_failed(left, tmp_path):
    times = tmp_path / "times"
    done = _run_checks(left, str(times))
    assert done.returncode == 0, done.stderr
    for arch in ("amd64", "arm64"):
        assert f"add-on check {arch} skipped: {left} s left" in done.stderr
    lines = times.read_text().splitlines()
    assert [line.split()[:4] for line in lines] == [
        ["add-on", "amd64", "no", "time"],
        ["add-on", "arm64", "no", "time"],
    ]


@pytest.mark.parametrize("left", ["", "ten", "5.5"])
def test_a_bad_time_left_is_a_usage_error(left):
    done = _run_checks(left)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: .ci/addon-checks SECONDS_LEFT")


def test_ci_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    shellcheck = shellcheck or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install the 'test' extra on x86_64)")
    scripts = [str(ROOT / ".ci" / "run"), str(CHECKS), str(ROOT / "script" / "test")]
    done = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _collected_in_order(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


def _collected(*args: str) -> set[str]:
    return set(_collected_in_order(*args))


def test_the_fast_tier_leaves_out_tests_that_use_the_real_model_unmarked():
    """test_convert's conversions carry no slow mark; their kokoro_gguf fixture puts them in the
    slow tier (conftest), so script/test never converts the real model."""
    files = ("tests/test_convert.py", "tests/test_foundation.py")
    fast = _collected("-m", "not slow", *files)
    every = _collected(*files)
    unmarked_heavy = {
        "tests/test_convert.py::test_f32_metadata_and_voices",
        "tests/test_convert.py::test_lstm_gate_order_matches_onnx",
        "tests/test_foundation.py::test_joined_export_is_verified",
    }
    assert unmarked_heavy <= every and not unmarked_heavy & fast
    assert "tests/test_convert.py::test_refuses_overwrite_and_bad_input" in fast


def test_files_with_the_most_slow_tests_are_handed_out_first():
    """The workers take whole files in collection order (script/test: no xdist reorder), so the
    heavy files come first and the fast tier's many small tests fill the end: test_engine (35
    slow tests) before test_plan (3) before test_markdown (none), whatever order they are named
    in, and each file's own tests in their order."""
    files = ("tests/test_markdown.py", "tests/test_plan.py", "tests/test_engine.py")
    order = _collected_in_order(*files)
    firsts = list(dict.fromkeys(nodeid.split("::")[0] for nodeid in order))
    assert firsts == list(reversed(files)), firsts
    plan = [nodeid for nodeid in order if nodeid.startswith("tests/test_plan.py")]
    assert plan == _collected_in_order("tests/test_plan.py")
    assert "--no-loadscope-reorder" in (ROOT / "script" / "test").read_text()


def test_a_marker_of_the_callers_own_replaces_the_fast_tier():
    """`script/test -m slow` runs the slow tier and does not announce the fast one."""
    done = subprocess.run(
        [str(ROOT / "script" / "test"), "-m", "slow", "--collect-only", "-q", "tests/test_asr.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the fast tier" not in done.stderr
    assert "tests/test_asr.py::test_home_automation_corpus_through_the_server" in done.stdout


def test_the_asset_cache_lives_outside_the_checkout(monkeypatch, tmp_path):
    """A fresh clone reuses what earlier runs built: the cache is under XDG_CACHE_HOME (or
    ~/.cache), never in the tree; WKG_TEST_CACHE overrides it."""
    from asset_cache import default_cache

    monkeypatch.delenv("WKG_TEST_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache() == tmp_path / "xdg" / "wyoming_kokoro_gguf" / "test-assets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache() == tmp_path / "home" / ".cache" / "wyoming_kokoro_gguf" / "test-assets"
    monkeypatch.setenv("WKG_TEST_CACHE", str(tmp_path / "mine"))
    assert default_cache() == tmp_path / "mine"


def test_each_engine_option_set_has_its_own_graph_cache_directory():
    """The graph cache keeps 2 entries a directory: the tests' engines (tests/engine_cache.py)
    get one directory per model file and option set, so none evicts another's entry."""
    from dataclasses import replace

    from engine_cache import graph_cache_dir

    from wyoming_kokoro_gguf.synth.lowering import default_options

    base = default_options().with_threads(2)
    same = replace(base, reasons={"conv": "another reason"})
    dirs = {
        graph_cache_dir(Path("kokoro-f32.gguf"), base),
        graph_cache_dir(Path("kokoro-f32.gguf"), replace(base, passes=2)),
        graph_cache_dir(Path("kokoro-f32.gguf"), replace(base, conv="int8")),
        graph_cache_dir(Path("kokoro-q4_0.gguf"), base),
    }
    assert len(dirs) == 4
    assert graph_cache_dir(Path("kokoro-f32.gguf"), same) in dirs
