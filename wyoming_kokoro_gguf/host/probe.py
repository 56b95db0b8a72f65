"""Print this host's profile and the plan the server would follow (or another host's, simulated).

python -m wyoming_kokoro_gguf.probe [--json]
python -m wyoming_kokoro_gguf.probe --arch aarch64 --cpu-flags asimd --cores 4 --mem-mb 2048
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.tts import Synthesize, SynthesizeVoice

from wyoming_kokoro_gguf.host import models as model_store
from wyoming_kokoro_gguf.host import plan
from wyoming_kokoro_gguf.host import profile as host
from wyoming_kokoro_gguf.host.data_dir import default_data_dir
from wyoming_kokoro_gguf.synth import tune
from wyoming_kokoro_gguf.synth.engine import Engine


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_kokoro_gguf.probe",
        description="Show the host profile and the plan: model and how to run it (optionally for a simulated host).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    host.add_host_arguments(parser)
    # the server's model flags, with its defaults: the probe resolves exactly as it does
    parser.add_argument(
        "--data-dir", action="append", default=[], help="where model files are looked for"
    )
    parser.add_argument("--download-dir", help="where downloads go (default: first --data-dir)")
    parser.add_argument("--local-files-only", action="store_true", help="as the server's flag")
    parser.add_argument("--model", default="auto", help="auto, a variant name, or a .gguf path")
    parser.add_argument(
        "--quant", default="auto", help="auto, fp32, int8, or conv=...,linear=...,weights=..."
    )
    parser.add_argument("--threads", default="auto", help="auto or a number")
    parser.add_argument("--passes", default="auto", help="auto or a number")
    parser.add_argument(
        "--measure",
        metavar="GGUF",
        help="load this model with the plan's lowering and report memory (after load, load peak, "
        "growth per second of audio) and speed",
    )
    parser.add_argument(
        "--measure-server",
        action="store_true",
        help="start the server with these flags (twice: a first start, then a warm one) and "
        "report the memory of it and its engine process against the plan's prediction",
    )
    parser.add_argument(
        "--text-file",
        help="for --measure-server: speak this text (default: passes as long as the plan allows)",
    )
    parser.add_argument("--voice", help="voice for --measure (default: the first English voice)")
    return parser


def make(
    args: argparse.Namespace,
) -> tuple[host.HostProfile, plan.Plan | None, str | None, model_store.Located | None]:
    """What the server would do with these flags: ``host.models.locate``, the server's own path."""
    choice = model_store.Choice.from_args(args)
    try:
        found = model_store.locate(choice)
    except model_store.ModelError as err:
        _, download_dir = model_store._dirs(choice)
        return model_store.host_profile(choice, download_dir), None, str(err), None
    found.host_plan.model_path = None if found.path is None else str(found.path)
    _show_measured(found, args)
    return found.profile, found.host_plan, None, found


def _show_measured(found: model_store.Located, args: argparse.Namespace) -> None:
    """Put the choice a server start measured on this host (synth/tune.py) into the plan, when
    the cache beside the model's data directory holds one for exactly this plan."""
    result = found.host_plan
    if found.path is None or found.profile.simulated or not result.tune:
        return
    data_dirs = [Path(d) for d in args.data_dir] or [default_data_dir()]
    candidates = tune.Candidates.from_dict(result.tune)
    if candidates.levers == 0:
        return
    path = tune.choice_path(data_dirs[0] / "cache", found.path, result.engine_options(), candidates)
    choice = tune.cached_choice(path)
    if choice is not None:
        result.measured = choice.as_dict()
        result.reasons.update(choice.reasons())
        result.conv, result.threads, result.passes = choice.conv, choice.threads, choice.passes


def format_text(
    profile: host.HostProfile,
    result: plan.Plan | None,
    error: str | None,
    found: model_store.Located | None = None,
) -> str:
    lines = ["Host" + (" (simulated)" if profile.simulated else "")]
    cpu = profile.cpu_model + (f" on {profile.board}" if profile.board else "")
    lines.append(f"  cpu:       {profile.arch}, {cpu}")
    lines.append(f"  features:  {' '.join(profile.features) or '-'}")
    lines.append(
        f"  cores:     {profile.usable_cores} usable ({profile.physical_cores} physical, "
        f"{profile.logical_cpus} logical"
        + (f", cgroup quota {profile.cgroup_cpu_quota:g}" if profile.cgroup_cpu_quota else "")
        + ")"
    )
    limit = (
        f", cgroup limit {profile.cgroup_mem_limit_mb} MB" if profile.cgroup_mem_limit_mb else ""
    )
    lines.append(
        f"  memory:    {profile.effective_mem_available_mb} MB usable "
        f"({profile.mem_available_mb} of {profile.mem_total_mb} MB available{limit})"
    )
    if profile.disk_free_mb is not None:
        lines.append(f"  disk:      {profile.disk_free_mb} MB free in {profile.data_dir or '-'}")
    lines.append(
        f"  runtime:   onnxruntime {profile.ort_version or 'missing'} "
        f"({', '.join(profile.ort_providers) or '-'})"
    )
    if profile.ggml:
        lines.append(f"  ggml:      {profile.ggml.get('system_info', '')}")
    for note in profile.notes:
        lines.append(f"  note:      {note}")
    lines.append("")
    if result is None:
        lines.append(f"Plan: none fits: {error}")
        return "\n".join(lines)
    lines.append("Plan")
    lines.append(f"  {result.summary()}")
    if found is not None and found.path is None:
        lines.append(f"  fetch:     {found.note}")
    elif result.model_path:
        how = f" ({found.note})" if found is not None else ""
        lines.append(f"  file:      {result.model_path}{how}")
    if result.measured is not None:
        seconds = result.measured["seconds"]
        lines.append(f"  measured:        on this host at a first start ({seconds:g} s); see conv")
    elif any(len(v) > 1 for v in result.tune.values()):
        tried = ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in result.tune.items())
        lines.append(f"  measured:        not yet: the server's first start times {tried}")
    for key, reason in result.reasons.items():
        lines.append(f"  {key + ':':<17}{reason}")
    for warning in result.warnings:
        lines.append(f"  warning:   {warning}")
    return "\n".join(lines)


def _memory_mb() -> dict[str, int]:
    """VmRSS and VmHWM (the high-water mark) of this process, in MB (Linux)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return out


SHORT_TEXT = "Turn on the kitchen lights."
# One clause (no sentence breaks) of about 20 seconds: the largest pass a normal answer makes.
LONG_TEXT = (
    "the weather this afternoon will be mostly sunny with a light breeze from the west and "
    "temperatures rising to about twenty degrees before clouds move in from the coast later in "
    "the evening bringing a chance of light rain after midnight"
)


def measure(
    path: Path,
    model_plan: plan.Plan,
    voice: str | None = None,
    texts: tuple[str, ...] = (SHORT_TEXT, LONG_TEXT),
) -> dict[str, Any]:
    """Memory and speed of the engine on one model file, as the plan runs it."""
    before = _memory_mb()
    started = time.monotonic()
    engine = Engine.load(path, model_plan.engine_options())
    load_s = time.monotonic() - started
    loaded = _memory_mb()
    names = list(engine.voices)
    voice = voice or next((n for n in names if n[:1] in "ab"), names[0])
    runs = []
    for text in texts:
        t0 = time.monotonic()
        lengths = [len(chunk) for chunk in engine.synthesize(text, voice)]
        elapsed = time.monotonic() - t0
        seconds = sum(lengths) / engine.sample_rate
        runs.append(
            {
                "chars": len(text),
                "audio_s": round(seconds, 2),
                "longest_pass_s": round(max(lengths, default=0) / engine.sample_rate, 2),
                "rtf": round(elapsed / seconds, 3) if seconds else None,
                "rss_mb": _memory_mb().get("VmRSS"),
            }
        )
    # Activations are held for the longest pass (the arena keeps them): growth per second of it.
    grow = None
    longest = max(r["longest_pass_s"] for r in runs)
    if longest and runs[-1]["rss_mb"] and loaded.get("VmRSS"):
        grow = round((max(r["rss_mb"] for r in runs) - loaded["VmRSS"]) / longest, 1)
    return {
        "model": str(path),
        "variant": model_plan.variant,
        "lowering": {
            "linear": model_plan.linear,
            "conv": model_plan.conv,
            "threads": model_plan.threads,
        },
        "voice": voice,
        "load_s": round(load_s, 2),
        "before_load_mb": before.get("VmRSS"),
        "after_load_mb": loaded.get("VmRSS"),
        "load_peak_mb": loaded.get("VmHWM"),
        "mb_per_audio_s": grow,
        "runs": runs,
    }


# ----------------------------------------------------------------------------- the server's memory

# Run-on sentences (no clause marks) of ~505 phonemes each, so each model pass is as long as
# the plan allows (510 at most): the speaking peak the plan predicts.  Four different ones (the
# phrase cache would answer repeats), so that two passes at once are both long.
RUN_ON_SENTENCE = (
    f"{LONG_TEXT} and the temperatures falling "
    "slowly towards morning when the wind turns to the north and the first showers reach the "
    "hills before the sun comes back in the afternoon with a light breeze from the west and "
    "temperatures rising to about twenty degrees before clouds move in from the coast."
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def longest_pass_text(passes: int, first_day: int = 0) -> str:
    """Enough run-on sentences for ``passes`` passes at once, each as long as allowed: a text's
    first pass runs alone, the next ``passes`` together.  Another ``first_day`` gives another
    text, which the phrase cache does not already hold."""
    count = 1 if passes <= 1 else passes + 1
    days = DAYS[first_day:] + DAYS[:first_day]
    return " ".join(f"On {day} {RUN_ON_SENTENCE}" for day in days[:count])


MIB = 1 << 20


def process_tree(pid: int) -> list[int]:
    """A process (first) and its living descendants, read from /proc (Linux; [] once gone):
    the server's engine runs in a child process."""
    pids, tree = [pid], []
    while pids:
        p = pids.pop()
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
            children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
        except OSError:
            continue
        tree.append(p)
        pids += children
    return tree


def status_bytes(pid: int, field: str = "VmHWM") -> int | None:
    """VmHWM (the peak resident set) or another /proc status field such as VmRSS of one
    process, in bytes; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) * 1024 if match else None


def tree_bytes(pid: int, field: str = "VmHWM") -> int:
    """``status_bytes`` summed over a process and its descendants (read before stopping it:
    a process's VmHWM goes with it)."""
    return sum(status_bytes(p, field) or 0 for p in process_tree(pid))


def tree_mib(pid: int, field: str = "VmHWM") -> int:
    """``tree_bytes`` in MiB."""
    return round(tree_bytes(pid, field) / MIB)


def reset_tree_peaks(pid: int) -> bool:
    """Restart VmHWM counting at the current RSS for the whole tree (Linux clear_refs "5"), so
    the next reading is the peak of what follows; False where that cannot be done."""
    pids = process_tree(pid)
    try:
        for p in pids:
            Path(f"/proc/{p}/clear_refs").write_text("5")
    except OSError:
        return False
    return bool(pids)


def _wait_ready(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Ready: " in text:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s")


def _speak(port: int, text: str, voice: str | None) -> float:
    """One one-shot synthesis through Wyoming, read to its end; seconds of audio."""

    async def run() -> float:
        samples = 0
        async with AsyncClient.from_uri(f"tcp://127.0.0.1:{port}") as cli:
            name = SynthesizeVoice(name=voice) if voice else None
            await cli.write_event(Synthesize(text=text, voice=name).event())
            while True:
                event = await asyncio.wait_for(cli.read_event(), timeout=1800)
                if event is None or AudioStop.is_type(event.type):
                    return samples / 24000
                if Error.is_type(event.type):
                    raise RuntimeError(Error.from_event(event).text)
                if AudioChunk.is_type(event.type):
                    chunk = AudioChunk.from_event(event)
                    samples += len(chunk.audio) // (chunk.width * chunk.channels)

    return asyncio.run(run())


def serve_once(
    server_args: list[str], texts: dict[str, str], voice: str | None, log: Path
) -> dict[str, Any]:
    """Start ``python -m wyoming_kokoro_gguf`` with these flags on a free loopback port, wait
    for Ready, and measure the whole process tree: load peak, ready RSS, the peak while
    speaking each text (VmHWM reset before it).  Stopped afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "wyoming_kokoro_gguf", "--uri", f"tcp://127.0.0.1:{port}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, *server_args], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, log, 1800)
        result: dict[str, Any] = {"load_peak_mib": tree_mib(proc.pid)}
        result["ready_mib"] = tree_mib(proc.pid, "VmRSS")
        for name, text in texts.items():
            reset_tree_peaks(proc.pid)
            result[f"{name}_audio_s"] = round(_speak(port, text, voice), 1)
            result[f"{name}_peak_mib"] = tree_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    text = log.read_text(errors="replace")
    for key, pattern in (("model", r"model: (\S+)"), ("plan", r"plan: (.*)")):
        found = re.search(pattern, text)
        result[key] = found.group(1) if found else None
    found = re.search(r"graph cache: (\w+)", text)
    result["graph_cache"] = found.group(1) if found else None
    return result


def measure_server(
    server_args: list[str],
    texts: dict[str, str] | None = None,
    voice: str | None = None,
    passes: int = 2,
) -> dict[str, Any]:
    """The server's memory with these flags: a first start (building the graph cache when it
    is cold), then a warm start speaking ``texts``.  By default two texts of ``passes`` passes
    at once, as long as the plan allows; ``longest_pass_peak_mib`` is the higher of their peaks
    (where concurrent passes' peaks meet varies from run to run) and ``longest_pass_audio_s``
    the audio of both."""
    rounds = {"longest_pass": longest_pass_text(passes)}
    rounds["longest_pass_again"] = longest_pass_text(passes, first_day=passes + 1)
    with tempfile.TemporaryDirectory() as tmp:
        first = serve_once(server_args, {}, voice, Path(tmp) / "first.log")
        warm = serve_once(server_args, texts or rounds, voice, Path(tmp) / "warm.log")
    if not texts:
        again = warm.pop("longest_pass_again_peak_mib")
        warm["longest_pass_peak_mib"] = max(warm["longest_pass_peak_mib"], again)
        warm["longest_pass_audio_s"] += warm.pop("longest_pass_again_audio_s")
    warm["first_start_peak_mib"] = first["load_peak_mib"]
    warm["first_start_graph_cache"] = first["graph_cache"]
    return warm


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan.parse_quant(args.quant)
        plan.parse_count(args.threads, "--threads")
    except plan.PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.measure:
        return _main_measure(args)
    if args.measure_server:
        return _main_measure_server(args)
    profile, result, error, found = make(args)
    if args.json:
        out: dict[str, Any] = {
            "profile": profile.as_dict(),
            "plan": result.as_dict() if result else None,
        }
        if found is not None:
            path = None if found.path is None else str(found.path)
            out["model"] = {"path": path, "how": found.how, "note": found.note}
        if error:
            out["error"] = error
        print(json.dumps(out, indent=2))
    else:
        print(format_text(profile, result, error, found))
    return 0 if result is not None else 1


def _main_measure(args: argparse.Namespace) -> int:
    path = Path(args.measure)
    args.model = str(path.resolve())
    try:
        model_plan = model_store.locate(model_store.Choice.from_args(args)).host_plan
        result = measure(path, model_plan, args.voice)
    except (model_store.ModelError, plan.PlanError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['model']} ({result['variant']}, linear {result['lowering']['linear']}, "
            f"conv {result['lowering']['conv']}, {result['lowering']['threads']} threads)\n"
            f"  load: {result['load_s']} s; memory after load {result['after_load_mb']} MB, "
            f"load peak {result['load_peak_mb']} MB (before load {result['before_load_mb']} MB)\n"
            f"  serving: +{result['mb_per_audio_s']} MB per second of audio in the longest pass"
        )
        for run in result["runs"]:
            print(
                f"  {run['chars']} chars -> {run['audio_s']} s audio, RTF {run['rtf']}, RSS {run['rss_mb']} MB"
            )
        print(
            f"  plan.MEASURED_LOAD_MB entry: {result['variant']!r}: "
            f"({result['after_load_mb']}, {result['load_peak_mb']})"
        )
    return 0


# the probe's flags that the server takes too (the model's and the host's)
SERVER_FLAGS = (
    "model", "data_dir", "download_dir", "local_files_only", "quant", "threads", "passes",
    *(f.name for f in dataclasses.fields(host.HostOverrides)),
)  # fmt: skip


def server_args(args: argparse.Namespace) -> list[str]:
    """The server's command line for the probe's flags: the same model, data and host flags."""
    out: list[str] = []
    for name in SERVER_FLAGS:
        value = getattr(args, name, None)
        flag = "--" + name.replace("_", "-")
        if value in (None, "", [], False):
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            for item in value:
                out += [flag, str(item)]
        else:
            out += [flag, str(value)]
    return out


def _main_measure_server(args: argparse.Namespace) -> int:
    """Predicted (the plan) against measured (the real server) memory, in MiB."""
    profile, result, error, _ = make(args)
    if result is None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    texts = None
    if args.text_file:
        texts = {"text": Path(args.text_file).read_text(encoding="utf-8")}
    measured = measure_server(server_args(args), texts, args.voice, result.passes)
    name = "text" if texts else "longest_pass"
    speaking = result.peak_with_cache_holding(measured[name + "_audio_s"])
    out = {
        "predicted": {
            "speaking_peak_mib": speaking,
            "first_start_peak_mib": result.predicted_load_peak_mb,
        },
        "measured": measured,
        "plan": result.summary(),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"plan:      {result.summary()}")
    print(f"server:    {measured['plan']}")
    print(
        f"speaking:  predicted {speaking} MiB (phrase cache holding what was spoken), measured "
        f"{measured[name + '_peak_mib']} MiB ({measured[name + '_audio_s']} s of audio)"
    )
    print(
        f"ready:     {measured['ready_mib']} MiB (warm start's load peak "
        f"{measured['load_peak_mib']} MiB, graph cache {measured['graph_cache']})"
    )
    print(
        f"first:     predicted {result.predicted_load_peak_mb} MiB, measured "
        f"{measured['first_start_peak_mib']} MiB (graph cache {measured['first_start_graph_cache']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
