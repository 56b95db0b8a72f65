"""script/addon-check reads the add-on's own Dockerfile: the parts it relies on are checked here
(the check itself needs root, debootstrap and a few minutes: `script/addon-check amd64`)."""

from __future__ import annotations

import importlib.util
import json
import os
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
    from wyoming_kokoro_gguf.audio import snr_db  # the arm64 comparison's measure

    ref = np.sin(np.arange(24000) / 10) * 10000
    noisy = ref + np.random.default_rng(0).normal(0, 100, ref.shape)
    assert 36 < snr_db(ref, noisy) < 38  # 20 log10(7071 / 100)
    assert snr_db(ref, ref) == float("inf")


# Lines as the add-on's server logs a first start (server-amd64-real.log of a check run).
FIRST_START_LOG = """\
2026-12-02 19:41:09,198 INFO wyoming_kokoro_gguf.server.engine_process: Engine: loading
2026-12-02 19:41:09,238 INFO wyoming_kokoro_gguf.synth.build: building the text stage (ALBERT, prosody predictor) ...
2026-12-02 19:41:09,476 INFO wyoming_kokoro_gguf.synth.build: calibrating the int8 convolutions on a sample sentence ...
2026-12-02 19:41:13,031 INFO wyoming_kokoro_gguf.synth.build: building the audio stage (decoder, generator) ...
2026-12-02 19:41:13,881 INFO wyoming_kokoro_gguf.synth.build: graphs built in 4.6 s
2026-12-02 19:41:14,016 INFO wyoming_kokoro_gguf.server.engine_worker: graph cache: saved
onnxruntime cpuid_info warning: Unknown CPU vendor. cpuinfo_vendor value: 0
2026-12-02 19:41:14,277 INFO wyoming_kokoro_gguf.server.engine_process: Ready: 10 voices, engine loaded in 5.1 s
"""


def test_the_engine_load_is_split_into_its_logged_parts(addon_check, tmp_path):
    log = tmp_path / "server.log"
    log.write_text(FIRST_START_LOG)
    load = addon_check.load_steps(log)
    assert load["graph_cache"] == "saved"
    assert load["steps_s"] == {
        "opening the model / graph cache": 0.0,
        "text stage: graph + ORT optimization": 0.2,
        "int8 calibration (model passes)": 3.6,
        "audio stage: graph + ORT optimization": 0.9,
        "graph cache entry written": 0.1,
        "warm-up synthesis ('Ready.')": 0.3,
    }
    assert addon_check.last_log_line(log).startswith("Ready: 10 voices")
    warm = tmp_path / "warm.log"
    warm.write_text(
        "2026-12-02 19:41:09,198 INFO x: Engine: loading\n"
        "2026-12-02 19:41:10,000 INFO y: graph cache: loaded\n"
        "2026-12-02 19:41:12,500 INFO x: Ready: 10 voices, engine loaded in 3.3 s\n"
    )
    assert addon_check.load_steps(warm) == {
        "graph_cache": "loaded",
        "steps_s": {"opening the model / graph cache": 0.8, "warm-up synthesis ('Ready.')": 2.5},
    }


def test_a_spent_budget_is_a_skip_naming_the_step(addon_check):
    spent = addon_check.Budget(0)
    with pytest.raises(addon_check.Skip, match=r"budget of 0 s \(the engine load\)"):
        spent.left("the engine load")
    assert addon_check.Budget(3600).left("anything") > 0
    assert isinstance(spent.spent("a synthesis"), addon_check.Skip)


def _run_docker_check(path: str, cache: Path) -> subprocess.CompletedProcess:
    env = {"PATH": path, "HOME": str(Path.home()), "WKG_ADDON_CHECK_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, str(ROOT / "script" / "addon_check.py"), "--docker"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_docker_check_is_skipped_where_no_container_tool_exists(tmp_path):
    """Exit 77 and one line naming what is missing, before anything is built."""
    done = _run_docker_check(str(tmp_path), tmp_path / "cache")  # neither docker nor podman
    assert done.returncode == 77, done.stderr
    assert not (tmp_path / "cache").exists()  # nothing built, nothing cached
    assert done.stderr.strip().splitlines()[-1] == (
        "addon-check: skipped: no Docker or Podman engine to build and run the image "
        "(docker: not installed; podman: not installed)"
    )
    assert "Traceback" not in done.stderr


def test_docker_check_is_skipped_where_the_engine_does_not_answer(addon_check, tmp_path):
    """A docker (or podman) client whose engine is not running: skipped with its own words."""
    import shutil

    sys.path.insert(0, str(ROOT / "script"))
    import addon_check_docker

    if not any(shutil.which(t) for t in ("docker", "podman")):
        pytest.skip("no docker or podman client here")
    try:
        engine = addon_check_docker.find_engine()
    except addon_check.Skip as why:
        expected = f"addon-check: skipped: {why}"
    else:
        pytest.skip(f"{engine.tool} {engine.version} answers here: run script/addon-check --docker")
    done = _run_docker_check(os.environ["PATH"], tmp_path / "cache")
    assert done.returncode == 77, done.stderr
    assert done.stderr.strip().splitlines()[-1] == expected
    assert "not installed" not in expected.split(";")[0]  # the client's own answer is named


def test_the_measured_plan_is_read_from_the_log(addon_check, tmp_path):
    log = tmp_path / "server.log"
    log.write_text(FIRST_START_LOG)
    assert addon_check.measured_line(log).startswith("(none")
    line = "plan measured: conv int8, 4 threads, 2 at once (measuring took 51.9 s); conv fp32"
    log.write_text(FIRST_START_LOG + f"2026-12-02 19:41:14,100 INFO x: {line}\n")
    assert addon_check.measured_line(log) == line


# ---------------------------------------------------------------- arm64's calibration on amd64


@pytest.fixture(scope="module")
def calibration():
    sys.path.insert(0, str(ROOT / "script"))
    import addon_calibration

    return addon_calibration


def test_the_server_flags_come_from_the_run_script(calibration):
    script = ROOT / "addon" / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d" / "kokoro" / "run"
    flags = calibration.server_flags(script.read_text())
    assert flags[:2] == ["--addon-options", "/data/options.json"]
    assert "--data-dir" in flags and "/share/kokoro" in flags
    with pytest.raises(ValueError, match="single exec line"):
        calibration.server_flags("#!/bin/sh\necho no server\n")


def _in_tree(calibration, program: str, args: list[str]) -> dict:
    """A program of script/addon_calibration.py run with this tree's package (as in a root)."""
    done = subprocess.run(
        [sys.executable, "-c", program, *args], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return calibration.last_json(done.stdout)


def test_the_plan_program_answers_as_the_server_would_plan(calibration, tmp_path):
    """The add-on's flags and options.json, paths moved into tmp_path: the plan's engine
    options; the add-on's "convolutions: int8" (and int8s) reaches them."""
    import fixtures_ttscpp

    share, data = tmp_path / "share", tmp_path / "data"
    share.mkdir()
    data.mkdir()
    fixtures_ttscpp.build(share / "kokoro-tiny-f32.gguf", "F32")
    script = ROOT / "addon" / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d" / "kokoro" / "run"
    flags = [
        flag.replace("/share/kokoro", str(share)).replace("/data", str(data))
        for flag in calibration.server_flags(script.read_text())
    ]
    for convolutions, want in (("int8", "int8"), ("int8s", "int8s"), ("fp32", "fp32")):
        (data / "options.json").write_text(json.dumps({"convolutions": convolutions}))
        plan = _in_tree(calibration, calibration.PLAN_PROGRAM, flags)
        assert plan["model"] == str(share / "kokoro-tiny-f32.gguf")
        assert plan["options"]["conv"] == want
        assert calibration.needs_calibration(plan["options"]) == (want != "fp32")
        assert "reasons" not in plan["options"]


@pytest.mark.slow  # an engine build with int8 calibration passes
def test_the_calibrate_program_leaves_the_calibration_file(calibration, tmp_path):
    """An engine load with int8 convolutions and a graph cache directory writes the
    calibration file that arm64's graph cache then gets."""
    import fixtures_ttscpp

    from wyoming_kokoro_gguf.synth.graph_cache import CALIBRATION_PREFIX

    model = tmp_path / "kokoro-tiny-f32.gguf"
    fixtures_ttscpp.build(model, "F32")
    options = calibration.calibration_options({"conv": "int8", "linear": "fp32", "threads": 4})
    assert options["threads"] == 2
    done = _in_tree(
        calibration, calibration.CALIBRATE_PROGRAM, [str(model), json.dumps(options), str(tmp_path)]
    )
    assert done["int8_convs"] > 0 and done["graph_cache"] == "saved"
    assert len(list(tmp_path.glob(f"{CALIBRATION_PREFIX}*.npz"))) == 1
