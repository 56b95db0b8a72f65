"""script/addon-check reads the add-on's own Dockerfile: the parts it relies on are checked here
(the check itself needs root, debootstrap and a few minutes: `script/addon-check amd64`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def addon_check():
    spec = importlib.util.spec_from_file_location("addon_check", ROOT / "script" / "addon_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["addon_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dockerfile(addon_check):
    return addon_check.Dockerfile.parse((ROOT / "addon" / "Dockerfile").read_text())


def test_the_dockerfile_parses_into_the_steps_the_check_runs(dockerfile):
    keywords = [k for k, _ in dockerfile.instructions]
    assert keywords.count("RUN") == 1 and "COPY" in keywords and "WORKDIR" in keywords
    args = [rest for k, rest in dockerfile.instructions if k == "ARG"]
    assert "BUILD_VERSION" in args  # set by the check as the Supervisor sets it
    copies = [rest for k, rest in dockerfile.instructions if k == "COPY"]
    assert "wheels /usr/src/wheels" in copies and "rootfs /" in copies
    assert dockerfile.shell == ["/bin/bash", "-o", "pipefail", "-c"]
    assert dockerfile.healthcheck[:3] == ["python3", "-m", "wyoming_kokoro_gguf.client"]


def test_the_run_step_is_valid_shell_and_its_wheel_only_form_too(addon_check, dockerfile):
    run = next(rest for k, rest in dockerfile.instructions if k == "RUN")
    assert "\n" not in run  # continuation lines joined as Docker joins them
    for command in (run, addon_check.reinstall_only(run)):
        done = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    short = addon_check.reinstall_only(run)
    assert "apt-get" not in short and "useradd" not in short
    assert '--no-deps --force-reinstall --no-cache-dir --progress-bar off "wheels/${wheel}' in short
    assert short.startswith('wheel="wyoming_kokoro_gguf-${BUILD_VERSION:?')


def test_substitution_and_snr(addon_check):
    env = {"PATH": "/usr/bin"}
    assert (
        addon_check.substitute("/usr/src/.venv/bin:${PATH}", env) == "/usr/src/.venv/bin:/usr/bin"
    )
    ref = np.sin(np.arange(24000) / 10) * 10000
    noisy = ref + np.random.default_rng(0).normal(0, 100, ref.shape)
    assert 36 < addon_check.snr_db(ref, noisy) < 38  # 20 log10(7071 / 100)
    assert addon_check.snr_db(ref, ref) == float("inf")
