"""Host capability probe: what this machine (or container) offers the synthesis engine.

The plan (plan.py) turns this profile into concrete choices: which GGUF variant, how tensors are
lowered, how many threads.  Every reader here takes text or a root directory so tests can feed
real sample files (``/proc/cpuinfo`` of a Raspberry Pi, a cgroup tree of a container) without
running on that hardware.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Instruction-set features that matter for the kernels ONNX Runtime (MLAS) picks.
X86_FEATURES = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
ARM_FEATURES = ("asimd", "asimddp", "asimdhp", "fphp", "i8mm", "sve", "sve2", "bf16")
INT8_DOT_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")

# ARM "CPU part" numbers (implementer 0x41) of the cores found in Home Assistant hardware.
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}
ARCH_ALIASES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv8": "aarch64",
}
# cgroup v1 reports "no limit" as a huge page-aligned number (LONG_MAX rounded down).
_UNLIMITED = 1 << 60


@dataclass
class CpuInfo:
    """What /proc/cpuinfo says about the processor."""

    arch: str = ""
    model: str = ""
    vendor: str = ""
    flags: frozenset[str] = frozenset()
    logical_cpus: int = 0
    physical_cores: int = 0
    board: str = ""
    arm_parts: tuple[str, ...] = ()


@dataclass
class CgroupLimits:
    """CPU quota and memory limit of the cgroup this process runs in (None: no limit)."""

    version: int = 0
    cpu_quota: float | None = None
    memory_limit: int | None = None
    memory_usage: int | None = None


@dataclass
class HostProfile:
    """Everything the plan needs to know about the host; JSON-serialisable through as_dict()."""

    arch: str
    cpu_model: str
    board: str
    features: list[str]
    logical_cpus: int
    physical_cores: int
    affinity_cpus: int
    cgroup_version: int
    cgroup_cpu_quota: float | None
    usable_cores: int
    mem_total_mb: int
    mem_available_mb: int
    cgroup_mem_limit_mb: int | None
    cgroup_mem_usage_mb: int | None
    effective_mem_available_mb: int
    data_dir: str
    disk_free_mb: int | None
    ort_version: str
    ort_providers: list[str]
    ggml: dict[str, Any] | None = None
    simulated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def int8_dot(self) -> bool:
        """Fast int8 dot products (VNNI, AMX, Arm dotprod/i8mm): the int8 conv path pays off."""
        return any(f in self.features for f in INT8_DOT_FEATURES)

    @property
    def fp16_arith(self) -> bool:
        return any(f in self.features for f in ("asimdhp", "fphp", "avx512_fp16"))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["int8_dot"] = self.int8_dot
        data["fp16_arith"] = self.fp16_arith
        return data


# ----------------------------------------------------------------------------- parsers


def normalize_arch(arch: str) -> str:
    """x86_64 or aarch64 for the usual spellings (amd64, arm64); anything else lower-cased."""
    return ARCH_ALIASES.get(arch.strip().lower(), arch.strip().lower())


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo of x86 or Arm Linux."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    trailer: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        current[key] = value
    if current:
        blocks.append(current)
    cpus = [b for b in blocks if "processor" in b and b["processor"].isdigit()]
    # Arm puts Hardware/Revision/Model in a block of its own after the processors.
    for b in blocks:
        if b not in cpus:
            trailer.update(b)
    info = CpuInfo()
    info.logical_cpus = len(cpus)
    flags: set[str] = set()
    for b in cpus:
        flags.update((b.get("flags") or b.get("features") or "").split())
    info.flags = frozenset(flags)
    first = cpus[0] if cpus else trailer
    if "flags" in first or "vendor_id" in first:
        info.arch = "x86_64" if "lm" in flags or not flags else "i686"
        info.vendor = first.get("vendor_id", "")
        info.model = first.get("model name", "")
        cores = {(b.get("physical id", "0"), b.get("core id", b["processor"])) for b in cpus}
        info.physical_cores = len(cores) if cpus else 0
    elif "features" in first or "cpu implementer" in first:
        arch_field = first.get("cpu architecture", "8")
        info.arch = "aarch64" if arch_field.startswith("8") or "asimd" in flags else "armv7l"
        parts = []
        for b in cpus:
            part = b.get("cpu part", "").lower()
            if b.get("cpu implementer", "").lower() == "0x41" and part:
                parts.append(ARM_PARTS.get(part, f"Arm part {part}"))
        info.arm_parts = tuple(parts)
        names = sorted(set(parts), key=parts.index)
        info.model = trailer.get("model name") or first.get("model name", "")
        if names and (not info.model or info.model.startswith("ARMv")):
            info.model = " + ".join(names)
        info.vendor = "ARM" if parts else first.get("cpu implementer", "")
        info.physical_cores = len(cpus)
    info.board = trailer.get("model", "")
    return info


def parse_device_tree_model(data: bytes | str) -> str:
    """/proc/device-tree/model is a NUL-terminated string, e.g. 'Raspberry Pi 5 Model B Rev 1.0'."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return data.replace("\x00", "").strip()


def parse_meminfo(text: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            values[key.strip()] = int(parts[0]) * scale
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = sum(values.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return total, available


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 cpu.max ('max 100000' or '150000 100000') -> CPUs, None when unlimited."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = int(parts[1]) if len(parts) > 1 else 100_000
    return int(parts[0]) / period if period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us -> CPUs, None when unlimited (-1)."""
    quota, period = int(quota_text.strip()), int(period_text.strip())
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_memory_value(text: str) -> int | None:
    """A cgroup memory limit ('max', a byte count, or v1's huge 'unlimited' value)."""
    text = text.strip()
    if not text or text == "max":
        return None
    value = int(text)
    return None if value >= _UNLIMITED else value


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_dirs(root: Path) -> dict[str, list[Path]]:
    """Map controller ('cpu', 'memory', or '' for v2) to this process's cgroup dirs, own first.

    Uses /proc/self/cgroup and /proc/self/mountinfo; a limit may sit on any ancestor, so every
    ancestor up to the mount point is listed.
    """
    result: dict[str, list[Path]] = {}
    own = _read(root / "proc/self/cgroup") or ""
    mounts = _read(root / "proc/self/mountinfo") or ""
    mount_points: dict[str, tuple[Path, str]] = {}
    for line in mounts.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2]
        mnt_root, mnt_point = fields[3], fields[4]
        if fstype == "cgroup2":
            mount_points.setdefault("", (root / mnt_point.lstrip("/"), mnt_root))
        elif fstype == "cgroup":
            for controller in ("cpu", "memory"):
                if controller in options.split(","):
                    mount_points.setdefault(controller, (root / mnt_point.lstrip("/"), mnt_root))
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        keys = [""] if controllers == "" else [c for c in controllers.split(",") if c]
        for key in keys:
            if key not in mount_points:
                continue
            mount, mnt_root = mount_points[key]
            rel = path
            if mnt_root != "/" and rel.startswith(mnt_root):
                rel = rel[len(mnt_root) :]
            dirs = []
            node = mount / rel.lstrip("/")
            while True:
                dirs.append(node)
                if node == mount or mount not in node.parents:
                    break
                node = node.parent
            if mount not in dirs:
                dirs.append(mount)
            result[key] = dirs
    # Without /proc (or in a cgroup namespace), fall back to the standard mount points.
    fs = root / "sys/fs/cgroup"
    if "" not in result and (fs / "cgroup.controllers").exists():
        result[""] = [fs]
    for controller in ("cpu", "memory"):
        if controller not in result and (fs / controller).is_dir():
            result[controller] = [fs / controller]
    return result


def read_cgroup_limits(root: Path = Path("/")) -> CgroupLimits:
    """CPU quota and memory limit that apply to this process (the tightest along its cgroup path)."""
    dirs = _cgroup_dirs(Path(root))
    limits = CgroupLimits()
    v2 = dirs.get("")
    if v2 and any((d / "cpu.max").exists() or (d / "memory.max").exists() for d in v2):
        limits.version = 2
        for d in v2:
            text = _read(d / "cpu.max")
            if text is not None:
                quota = parse_cpu_max(text)
                if quota is not None:
                    limits.cpu_quota = min(quota, limits.cpu_quota or quota)
            text = _read(d / "memory.max")
            if text is not None:
                mem = parse_memory_value(text)
                if mem is not None:
                    limits.memory_limit = min(mem, limits.memory_limit or mem)
        usage = _read(v2[0] / "memory.current")
        if usage is not None and usage.strip().isdigit():
            limits.memory_usage = int(usage)
        return limits
    cpu_dirs, mem_dirs = dirs.get("cpu", []), dirs.get("memory", [])
    if cpu_dirs or mem_dirs:
        limits.version = 1
    for d in cpu_dirs:
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            value = parse_cfs_quota(quota, period)
            if value is not None:
                limits.cpu_quota = min(value, limits.cpu_quota or value)
    for d in mem_dirs:
        text = _read(d / "memory.limit_in_bytes")
        if text is not None:
            mem = parse_memory_value(text)
            if mem is not None:
                limits.memory_limit = min(mem, limits.memory_limit or mem)
    if mem_dirs:
        usage = _read(mem_dirs[0] / "memory.usage_in_bytes")
        if usage is not None and usage.strip().isdigit():
            limits.memory_usage = int(usage)
    return limits


# ggml's names (llama_print_system_info) -> the /proc/cpuinfo names used here.
GGML_FEATURES = {
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx_vnni": "avx_vnni",
    "amx_int8": "amx_int8",
    "neon": "asimd",
    "dotprod": "asimddp",
    "fp16_va": "asimdhp",
    "matmul_int8": "i8mm",
    "sve": "sve",
}


def ggml_features(info: dict[str, int]) -> list[str]:
    """Our feature names for what ggml reports as present."""
    return sorted({GGML_FEATURES[k] for k, v in info.items() if v and k in GGML_FEATURES})


def parse_ggml_system_info(text: str) -> dict[str, int]:
    """ggml's 'AVX2 = 1 | AVX512_VNNI = 1 | ...' (llama_print_system_info) -> {'avx2': 1, ...}."""
    result: dict[str, int] = {}
    for item in re.split(r"[|;]", text):
        key, sep, value = item.partition("=")
        value = value.strip()
        if sep and value.lstrip("-").isdigit():
            result[key.strip().lower().replace("cpu : ", "")] = int(value)
    return result


def usable_cores(
    physical: int, logical: int, affinity: int | None, quota: float | None
) -> tuple[int, str]:
    """Cores worth one compute thread each, and why (physical cores, CPU affinity, cgroup quota)."""
    count = physical or logical or 1
    why = f"{count} physical cores"
    if affinity and affinity < count:
        count, why = affinity, f"{affinity} CPUs in this process's affinity mask"
    if quota is not None:
        allowed = max(1, math.floor(quota + 1e-9))
        if allowed < count:
            count, why = allowed, f"cgroup CPU quota of {quota:g} CPUs"
    return count, why


# ----------------------------------------------------------------------------- live probe


def _ort_info() -> tuple[str, list[str]]:
    """ONNX Runtime's version and execution providers.

    Imported here, not at the top: the server's front end imports this module for the plan's
    types and stays free of ONNX Runtime (~34 MB of RSS), which only the engine process needs.
    """
    import onnxruntime as ort

    return ort.__version__, list(ort.get_available_providers())


def _ggml_info() -> dict[str, Any] | None:
    """ggml's own view of the CPU/GPU when llama-cpp-python is installed (optional extra)."""
    try:
        import llama_cpp  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - any failure to load the optional extra means "absent"
        return None
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        raw = llama_cpp.llama_print_system_info()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        info["system_info"] = text.strip()
        info["features"] = parse_ggml_system_info(text)
    for name in ("llama_supports_gpu_offload", "llama_supports_mmap", "llama_supports_mlock"):
        fn = getattr(llama_cpp, name, None)
        if fn is not None:
            with contextlib.suppress(Exception):
                info[name.removeprefix("llama_")] = bool(fn())
    return info


def _disk_free_mb(path: Path) -> int | None:
    node = Path(path).absolute()
    while not node.exists() and node != node.parent:
        node = node.parent
    try:
        return shutil.disk_usage(node).free // (1 << 20)
    except OSError:
        return None


def probe(data_dir: Path | str | None = None, root: Path = Path("/")) -> HostProfile:
    """Probe the running host (root is for tests: a directory laid out like /)."""
    root = Path(root)
    notes: list[str] = []
    cpu = parse_cpuinfo(_read(root / "proc/cpuinfo") or "")
    arch = normalize_arch(cpu.arch or platform.machine())
    dt = root / "proc/device-tree/model"
    board = cpu.board
    with contextlib.suppress(OSError):
        board = parse_device_tree_model(dt.read_bytes()) or board
    logical = cpu.logical_cpus or os.cpu_count() or 1
    physical = cpu.physical_cores or logical
    affinity = None
    if hasattr(os, "sched_getaffinity") and root == Path("/"):
        with contextlib.suppress(OSError):
            affinity = len(os.sched_getaffinity(0))
    cg = read_cgroup_limits(root)
    cores, why = usable_cores(physical, logical, affinity, cg.cpu_quota)
    notes.append(f"usable cores: {cores} ({why})")
    total, available = parse_meminfo(_read(root / "proc/meminfo") or "")
    mb = 1 << 20
    effective = available
    if cg.memory_limit is not None:
        room = cg.memory_limit - (cg.memory_usage or 0)
        if room < effective:
            effective = max(room, 0)
            notes.append(f"memory: cgroup limit {cg.memory_limit // mb} MB caps what is available")
    ort_version, providers = _ort_info()
    ggml = _ggml_info()
    features = sorted(f for f in cpu.flags if f in X86_FEATURES + ARM_FEATURES)
    if ggml and ggml.get("features") and not features:
        # No /proc/cpuinfo flags (not Linux): take ggml's view instead.
        features = ggml_features(ggml["features"])
        notes.append("CPU features from ggml (no /proc/cpuinfo flags)")
    data_dir = Path(data_dir) if data_dir else Path.cwd()
    return HostProfile(
        arch=arch,
        cpu_model=cpu.model or platform.processor() or arch,
        board=board,
        features=features,
        logical_cpus=logical,
        physical_cores=physical,
        affinity_cpus=affinity or logical,
        cgroup_version=cg.version,
        cgroup_cpu_quota=cg.cpu_quota,
        usable_cores=cores,
        mem_total_mb=total // mb,
        mem_available_mb=available // mb,
        cgroup_mem_limit_mb=None if cg.memory_limit is None else cg.memory_limit // mb,
        cgroup_mem_usage_mb=None if cg.memory_usage is None else cg.memory_usage // mb,
        effective_mem_available_mb=effective // mb,
        data_dir=str(data_dir),
        disk_free_mb=_disk_free_mb(data_dir),
        ort_version=ort_version,
        ort_providers=providers,
        ggml=ggml,
        notes=notes,
    )


# Share of a simulated host's memory taken by the OS and Home Assistant itself (an assumption
# for simulations only: a Pi 4 with 2 GB running Home Assistant OS has roughly 1.2-1.5 GB free).
SIMULATED_FREE_SHARE = 0.7


def simulate(
    arch: str,
    cpu_flags: list[str] | None = None,
    cores: int = 4,
    mem_mb: int = 4096,
    avail_mb: int | None = None,
    cgroup_mem_mb: int | None = None,
    cgroup_cpus: float | None = None,
    cpu_model: str = "",
    board: str = "",
    disk_free_mb: int | None = None,
    base: HostProfile | None = None,
) -> HostProfile:
    """A profile for another host (probe --arch ...): what the plan would do there."""
    arch = normalize_arch(arch)
    flags = sorted({f.strip().lower() for f in (cpu_flags or []) if f.strip()})
    if arch == "aarch64" and "asimd" not in flags:
        flags = sorted({*flags, "asimd"})  # every ARMv8-A core has Advanced SIMD
    available = avail_mb if avail_mb is not None else int(mem_mb * SIMULATED_FREE_SHARE)
    effective = available
    notes = ["simulated host"]
    if avail_mb is None:
        notes.append(
            f"available memory assumed {SIMULATED_FREE_SHARE:.0%} of {mem_mb} MB "
            "(the OS and Home Assistant use the rest); set --avail-mb to change"
        )
    if cgroup_mem_mb is not None and cgroup_mem_mb < effective:
        effective = cgroup_mem_mb
        notes.append(f"memory: cgroup limit {cgroup_mem_mb} MB caps what is available")
    usable, why = usable_cores(cores, cores, None, cgroup_cpus)
    notes.append(f"usable cores: {usable} ({why})")
    return HostProfile(
        arch=arch,
        cpu_model=cpu_model or ("simulated " + arch),
        board=board,
        features=flags,
        logical_cpus=cores,
        physical_cores=cores,
        affinity_cpus=cores,
        cgroup_version=2 if (cgroup_mem_mb is not None or cgroup_cpus is not None) else 0,
        cgroup_cpu_quota=cgroup_cpus,
        usable_cores=usable,
        mem_total_mb=mem_mb,
        mem_available_mb=available,
        cgroup_mem_limit_mb=cgroup_mem_mb,
        cgroup_mem_usage_mb=0 if cgroup_mem_mb is not None else None,
        effective_mem_available_mb=effective,
        data_dir=base.data_dir if base else "",
        disk_free_mb=disk_free_mb
        if disk_free_mb is not None
        else (base.disk_free_mb if base else None),
        ort_version=base.ort_version if base else "",
        ort_providers=base.ort_providers if base else ["CPUExecutionProvider"],
        ggml=None,
        simulated=True,
        notes=notes,
    )


@dataclass(frozen=True)
class HostOverrides:
    """--arch, --cpu-flags, --mem-mb ...: plan for another host than this one.

    The probe and the server take the same flags (``add_host_arguments``), so a 2 GB board's
    plan can be run, and its memory measured, on a larger machine; without them both plan for
    this host as probed."""

    arch: str | None = None
    cpu_flags: tuple[str, ...] | None = None
    cores: int | None = None
    mem_mb: int | None = None
    avail_mb: int | None = None
    cgroup_mem_mb: int | None = None
    cgroup_cpus: float | None = None
    disk_mb: int | None = None
    cpu_model: str = ""
    board: str = ""

    @property
    def simulating(self) -> bool:
        return any(
            v is not None
            for v in (
                self.arch,
                self.cpu_flags,
                self.cores,
                self.mem_mb,
                self.avail_mb,
                self.cgroup_mem_mb,
                self.cgroup_cpus,
            )
        )

    @classmethod
    def from_args(cls, args: Any) -> HostOverrides:
        """From flags parsed with ``add_host_arguments`` (absent flags: this host's values)."""
        flags = getattr(args, "cpu_flags", None)
        return cls(
            arch=getattr(args, "arch", None),
            cpu_flags=None
            if flags is None
            else tuple(f for f in flags.replace(" ", ",").split(",") if f),
            cores=getattr(args, "cores", None),
            mem_mb=getattr(args, "mem_mb", None),
            avail_mb=getattr(args, "avail_mb", None),
            cgroup_mem_mb=getattr(args, "cgroup_mem_mb", None),
            cgroup_cpus=getattr(args, "cgroup_cpus", None),
            disk_mb=getattr(args, "disk_mb", None),
            cpu_model=getattr(args, "cpu_model", None) or "",
            board=getattr(args, "board", None) or "",
        )

    def apply(self, real: HostProfile) -> HostProfile:
        """This host's profile with the overrides applied (``real`` itself without any)."""
        if not self.simulating:
            return real
        return simulate(
            arch=self.arch or real.arch,
            cpu_flags=list(self.cpu_flags) if self.cpu_flags is not None else real.features,
            cores=self.cores or real.physical_cores,
            mem_mb=self.mem_mb or real.mem_total_mb,
            avail_mb=self.avail_mb,
            cgroup_mem_mb=self.cgroup_mem_mb,
            cgroup_cpus=self.cgroup_cpus,
            cpu_model=self.cpu_model or (real.cpu_model if self.arch is None else ""),
            board=self.board,
            disk_free_mb=self.disk_mb,
            base=real,
        )


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``HostOverrides``, shared by the probe and the server."""
    sim = parser.add_argument_group(
        "plan for another host (any of --arch ... --cgroup-cpus switches simulation on)"
    )
    sim.add_argument("--arch", help="x86_64 (amd64) or aarch64 (arm64)")
    sim.add_argument(
        "--cpu-flags",
        help="comma-separated features, e.g. avx2,fma,f16c,avx_vnni or asimd,asimddp,asimdhp",
    )
    sim.add_argument("--cores", type=int, help="physical cores")
    sim.add_argument(
        "--mem-mb", type=int, help="total memory in MB (e.g. 2048 for a 2 GB Raspberry Pi)"
    )
    sim.add_argument(
        "--avail-mb",
        type=int,
        help=f"available memory in MB (default {SIMULATED_FREE_SHARE * 100:.0f}%% of --mem-mb)",
    )
    sim.add_argument("--cgroup-mem-mb", type=int, help="container memory limit in MB")
    sim.add_argument("--cgroup-cpus", type=float, help="container CPU quota in CPUs")
    sim.add_argument("--disk-mb", type=int, help="free disk in the data directory, in MB")
    sim.add_argument("--cpu-model", default="", help="CPU model name, e.g. Cortex-A72")
    sim.add_argument("--board", default="", help="board name, e.g. 'Raspberry Pi 4 Model B'")
