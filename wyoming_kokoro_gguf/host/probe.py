"""Print this host's profile and the plan the server would follow (or another host's, simulated).

python -m wyoming_kokoro_gguf.probe [--json]
python -m wyoming_kokoro_gguf.probe --arch aarch64 --cpu-flags asimd --cores 4 --mem-mb 2048
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from wyoming_kokoro_gguf.host import models as model_store
from wyoming_kokoro_gguf.host import plan
from wyoming_kokoro_gguf.host import profile as host
from wyoming_kokoro_gguf.synth.engine import Engine


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_kokoro_gguf.probe",
        description="Show the host profile and the plan: model and how to run it (optionally for a simulated host).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    sim = parser.add_argument_group("simulate another host (any of these switches simulation on)")
    sim.add_argument("--arch", help="x86_64 (amd64) or aarch64 (arm64)")
    sim.add_argument(
        "--cpu-flags",
        help="comma-separated features, e.g. avx2,fma,f16c,avx_vnni or asimd,asimddp,asimdhp",
    )
    sim.add_argument("--cores", type=int, help="physical cores")
    sim.add_argument("--mem-mb", type=int, help="total memory in MB")
    sim.add_argument(
        "--avail-mb",
        type=int,
        help=f"available memory in MB (default {host.SIMULATED_FREE_SHARE * 100:.0f}%% of --mem-mb)",
    )
    sim.add_argument("--cgroup-mem-mb", type=int, help="container memory limit in MB")
    sim.add_argument("--cgroup-cpus", type=float, help="container CPU quota in CPUs")
    sim.add_argument("--disk-mb", type=int, help="free disk in the data directory, in MB")
    sim.add_argument("--cpu-model", default="", help="CPU model name, e.g. Cortex-A72")
    sim.add_argument("--board", default="", help="board name, e.g. 'Raspberry Pi 4 Model B'")
    parser.add_argument(
        "--data-dir", action="append", default=[], help="where model files are looked for"
    )
    parser.add_argument("--model", default="auto", help="auto, a variant name, or a .gguf path")
    parser.add_argument("--quant", default="auto", help="auto, fp32, int8, or conv=...,linear=...")
    parser.add_argument("--threads", default="auto", help="auto or a number")
    parser.add_argument(
        "--measure",
        metavar="GGUF",
        help="load this model with the plan's lowering and report memory (after load, load peak, "
        "growth per second of audio) and speed",
    )
    parser.add_argument("--voice", help="voice for --measure (default: the first English voice)")
    return parser


def _simulating(args: argparse.Namespace) -> bool:
    return any(
        getattr(args, k) is not None
        for k in (
            "arch",
            "cpu_flags",
            "cores",
            "mem_mb",
            "avail_mb",
            "cgroup_mem_mb",
            "cgroup_cpus",
        )
    )


def profile_for(args: argparse.Namespace) -> host.HostProfile:
    data_dir = Path(args.data_dir[0]) if args.data_dir else model_store.default_data_dir()
    real = host.probe(data_dir)
    if not _simulating(args):
        return real
    flags = [f for f in (args.cpu_flags or "").replace(" ", ",").split(",") if f]
    return host.simulate(
        arch=args.arch or real.arch,
        cpu_flags=flags if args.cpu_flags is not None else real.features,
        cores=args.cores or real.physical_cores,
        mem_mb=args.mem_mb or real.mem_total_mb,
        avail_mb=args.avail_mb,
        cgroup_mem_mb=args.cgroup_mem_mb,
        cgroup_cpus=args.cgroup_cpus,
        cpu_model=args.cpu_model,
        board=args.board,
        disk_free_mb=args.disk_mb,
        base=real,
    )


def make(args: argparse.Namespace) -> tuple[host.HostProfile, plan.Plan | None, str | None]:
    profile = profile_for(args)
    dirs = [Path(d) for d in args.data_dir] or [model_store.default_data_dir()]
    try:
        if args.model not in ("auto", *plan.VARIANT_NAMES):
            path = Path(args.model)
            result = plan.make_plan(
                profile,
                model_path=str(path),
                path_variant=model_store.detect_variant(path),
                quant=args.quant,
                threads=args.threads,
            )
        else:
            local = model_store.local_variants(model_store.scan(dirs))
            result = plan.make_plan(
                profile,
                model=args.model,
                local_variants=local,
                quant=args.quant,
                threads=args.threads,
            )
    except plan.PlanError as err:
        return profile, None, str(err)
    return profile, result, None


def format_text(profile: host.HostProfile, result: plan.Plan | None, error: str | None) -> str:
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
    if result.fetch:
        lines.append(f"  fetch:     {plan.VARIANTS[result.variant].filename} (not on disk yet)")
    elif result.model_path:
        lines.append(f"  file:      {result.model_path}")
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
    try:
        profile, result, error = make(args)
    except (plan.PlanError, model_store.ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        out = {"profile": profile.as_dict(), "plan": result.as_dict() if result else None}
        if error:
            out["error"] = error
        print(json.dumps(out, indent=2))
    else:
        print(format_text(profile, result, error))
    return 0 if result is not None else 1


def _main_measure(args: argparse.Namespace) -> int:
    path = Path(args.measure)
    try:
        model_store.check_gguf(path)
        profile = host.probe(path.parent)
        model_plan = plan.make_plan(
            profile,
            model_path=str(path),
            path_variant=model_store.detect_variant(path),
            quant=args.quant,
            threads=args.threads,
        )
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


if __name__ == "__main__":
    sys.exit(main())
