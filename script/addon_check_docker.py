"""script/addon-check --docker: build addon/Dockerfile with Docker or Podman and run the image.

What the Debian-root check (addon_check.py) cannot see, because it runs the Dockerfile's steps
and the run script itself: the real base image, its s6-overlay as PID 1 bringing up the
services (kokoro, discovery), the drop to the unprivileged user inside the container, Docker's
own HEALTHCHECK verdict, and the published port. So this builds the image from a build context
like the Supervisor's (addon/ with this tree's wheel in wheels/, BUILD_VERSION and BUILD_ARCH
as the Supervisor passes them), starts it with /data and /share/kokoro mounted (the real model
in /share/kokoro; the model hub unreachable, so nothing is downloaded), and from outside the
container asks for a Wyoming describe and a synthesis on the published port. Then: the
server's processes run as the image's `kokoro` user, s6 lists both services as up, the
container reports healthy, and the log has no traceback.

Without Docker or Podman whose engine answers, the check is skipped (exit 77) saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import addon_check as base
import numpy as np

IMAGE = "local/kokoro_gguf-addon-check"
# Run inside the container: the user of every process whose command line names the server.
PROCESS_USERS = (
    "import os, pwd\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
    "        uid = os.stat(f'/proc/{pid}').st_uid\n"
    "    except OSError:\n"
    "        continue\n"
    "    if 'wyoming_kokoro_gguf' in cmd and 'client' not in cmd:\n"
    "        print(pwd.getpwuid(uid).pw_name, cmd[:80])\n"
)


@dataclass
class Engine:
    """A container tool whose engine answers."""

    tool: str
    version: str

    def run(self, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.tool, *args], capture_output=True, text=True, timeout=timeout, **kw
        )


def find_engine() -> Engine:
    """Docker or Podman with a working engine, or Skip saying what each one answered."""
    tried = []
    # what each prints only when its engine answers (podman has no daemon: its info)
    probes = {
        "docker": ["version", "--format", "{{.Server.Version}}"],
        "podman": ["info", "--format", "{{.Version.Version}}"],
    }
    for tool, probe in probes.items():
        path = shutil.which(tool)
        if path is None:
            tried.append(f"{tool}: not installed")
            continue
        try:
            done = subprocess.run(
                [path, *probe],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            tried.append(f"{tool}: no answer from its engine within 30 s")
            continue
        if done.returncode == 0 and done.stdout.strip():
            return Engine(path, done.stdout.strip())
        why = (done.stderr.strip().splitlines() or ["its engine does not answer"])[-1]
        tried.append(f"{tool}: {why}")
    raise base.Skip(
        "no Docker or Podman engine to build and run the image (" + "; ".join(tried) + ")"
    )


def build_image(engine: Engine, wheel: Path, version: str, budget: base.Budget) -> str:
    """addon/Dockerfile built from a context like the Supervisor's, with this tree's wheel."""
    context = Path(tempfile.mkdtemp(prefix="addon-docker-context-"))
    try:
        shutil.copytree(base.ADDON, context, dirs_exist_ok=True)
        for old in (context / "wheels").glob("*.whl"):
            old.unlink()
        shutil.copy(wheel, context / "wheels" / wheel.name)
        tag = f"{IMAGE}:{version}"
        done = engine.run(
            "build",
            "--build-arg",
            f"BUILD_VERSION={version}",
            "--build-arg",
            "BUILD_ARCH=amd64",
            "-t",
            tag,
            str(context),
            timeout=budget.left("the image build"),
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    if done.returncode != 0:
        raise base.Failed(
            f"{engine.tool} build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return tag


def start(engine: Engine, tag: str, model: Path, work: Path) -> tuple[str, base.Service]:
    """The container with /data (options) and /share/kokoro (the model) mounted, its port
    published on loopback; a Service whose process follows the container's log."""
    data, share = work / "data", work / "share-kokoro"
    data.mkdir(parents=True)
    share.mkdir()
    shutil.copy(model, share / model.name)
    (share / model.name).chmod(0o644)
    options = {
        "voice": base.VOICE,
        "speed": 1.0,
        "model": "auto",
        "threads": "2",
        "convolutions": "auto",
        "voice_blends": [],
        "streaming": True,
        "debug_logging": False,
    }
    (data / "options.json").write_text(json.dumps(options))
    port = base.free_port()
    name = f"kokoro-addon-check-{port}"
    done = engine.run(
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        f"127.0.0.1:{port}:10200",
        "--volume",
        f"{data}:/data",
        "--volume",
        f"{share}:/share/kokoro:ro",
        "--env",
        f"WYOMING_KOKORO_GGUF_BASE_URL=http://127.0.0.1:{base.free_port()}/none",
        tag,
    )
    if done.returncode != 0:
        raise base.Failed(f"{engine.tool} run failed: {done.stderr.strip()}")
    log = work / "container.log"
    out = open(log, "wb")  # noqa: SIM115 (the log follower writes to it until the end)
    follower = subprocess.Popen(
        [engine.tool, "logs", "--follow", name], stdout=out, stderr=subprocess.STDOUT
    )
    out.close()
    return name, base.Service(follower, port, log, "kokoro")


def check_inside(engine: Engine, name: str, service: base.Service) -> dict:
    """s6's services up, the server's processes as kokoro, the container healthy."""
    services = engine.run("exec", name, "/command/s6-rc", "-a", "list")
    if services.returncode != 0 or "kokoro" not in services.stdout.split():
        raise base.Failed(f"s6-rc does not list kokoro as up: {services.stdout}{services.stderr}")
    users = engine.run("exec", name, "python3", "-c", PROCESS_USERS)
    lines = [ln for ln in users.stdout.splitlines() if ln.strip()]
    if len(lines) < 2 or any(not ln.startswith("kokoro ") for ln in lines):
        raise base.Failed(
            f"the server's processes must run as kokoro:\n{users.stdout}{users.stderr}"
        )
    base.say(f"s6 services up: {services.stdout.split()}; server processes: {len(lines)} as kokoro")
    health = wait_healthy(engine, name, service)
    text = service.log.read_text(errors="replace")
    if "Traceback" in text:
        raise base.Failed(f"the container log has a traceback:\n{base.tail(service.log, 60)}")
    return {"s6_services": services.stdout.split(), "server_processes": lines, "health": health}


def wait_healthy(engine: Engine, name: str, service: base.Service, limit_s: float = 150) -> str:
    """Docker's own HEALTHCHECK verdict (its first run comes one interval after the start)."""
    deadline = time.monotonic() + limit_s
    status = "unknown"
    while time.monotonic() < deadline:
        done = engine.run("inspect", "--format", "{{json .State.Health}}", name)
        health = json.loads(done.stdout or "null") if done.returncode == 0 else None
        status = (health or {}).get("Status", "none")
        if status == "healthy":
            return status
        if status == "unhealthy":
            raise base.Failed(f"the container is unhealthy: {health.get('Log', [])[-1:]}")
        if service.proc.poll() is not None:
            raise base.Failed(f"the container stopped:\n{base.tail(service.log)}")
        time.sleep(5)
    raise base.Failed(f"the container was not reported healthy within {limit_s:.0f} s ({status})")


def check(opts: base.Options) -> dict:
    """Build the image, run it, talk to it; the report."""
    budget = base.Budget(opts.budget)
    engine = find_engine()
    base.say(f"{Path(engine.tool).name} engine {engine.version}")
    base.CACHE.mkdir(parents=True, exist_ok=True)
    timings = base.Timings()
    version = base.release_version()
    with timings.step("wheel (script/release" + (" --worktree)" if opts.worktree else ")")):
        wheel = base.build_wheel(base.CACHE / "dist", opts.worktree)
    with timings.step(f"{Path(engine.tool).name} build of addon/Dockerfile"):
        tag = build_image(engine, wheel, version, budget)
    with timings.step("models"):
        model = base.real_model()
    work = Path(tempfile.mkdtemp(prefix="addon-docker-"))
    name, service = start(engine, tag, model, work)
    try:
        with timings.step("container start to describe"):
            info = base.wait_ready(service, budget, 900)
        wav = base.CACHE / "out-docker.wav"
        with timings.step(f"synthesis of {base.SENTENCE!r}"):
            result = base.synthesize(service, base.SENTENCE, wav, budget, 900)
        pcm, rate = base.read_wav(wav)
        if rate != 24000 or len(pcm) < rate * 0.3 or np.abs(pcm.astype(np.int32)).max() < 100:
            raise base.Failed(f"implausible audio: {len(pcm)} samples at {rate} Hz")
        with timings.step("inside the container"):
            inside = check_inside(engine, name, service)
    finally:
        engine.run("rm", "--force", name)
        service.proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    report = {"engine": f"{Path(engine.tool).name} {engine.version}", "image": tag}
    report.update(describe=f"{info['program']} {info['version']}", **inside)
    report["audio_seconds"] = result["audio_seconds"]
    report["steps"] = {step: round(took, 1) for step, took in timings.steps}
    return report
