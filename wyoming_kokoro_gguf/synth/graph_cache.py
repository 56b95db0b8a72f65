"""On-disk cache of the engine's ONNX Runtime-optimized graphs, so a warm start skips the build.

Why: building both stages, calibrating the int8 convolutions and optimizing the graphs took
~10 s of a start on a 2-core x86 machine (docs/PERFORMANCE.md, "Start-up"), and Home
Assistant restarts add-ons on every update and reboot.  ORT writes each stage as it optimized
it (``SessionOptions.optimized_model_filepath``) with its weights in a side file, which ORT
memory-maps when the graph is loaded again: no copy of the weights is built in Python.

An entry is one directory named by a hash of every input: the model file's identity (size,
mtime and a hash of its head and tail, where GGUF keeps its metadata and tensor index), the
engine options, the versions of ORT, NumPy and this package, the graph builder's sources and
version, and the CPU (the optimized graph has CPU-specific layouts).  It is written into a
temporary directory and renamed into place, so a reader sees a whole entry or none; two
processes building at once both succeed and one rename wins.  Every file's size and CRC-32
are in the manifest and checked on load; a damaged entry is removed and rebuilt.

The int8 calibration (output ratios and channel gains, 76 KB) has a file of its own beside the
entries, keyed without the CPU and the ORT/NumPy versions: it depends on the model and the
graph only, and is most of a first build on a slow CPU (789 s of 815 s under QEMU arm64), so a
new CPU or ORT rebuilds the graphs but reuses it (docs/PERFORMANCE.md section 8).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import platform
import shutil
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import wyoming_kokoro_gguf
from wyoming_kokoro_gguf.synth.lowering import EngineOptions, is_int8

_LOG = logging.getLogger(__name__)

STAGES = ("stage1", "stage2")
MANIFEST = "manifest.json"
RATIOS = "conv_ratios.npy"
ENTRY_PREFIX = "graphs-"
CALIBRATION_PREFIX = "calibration-"
KEEP_CALIBRATIONS = 4  # 76 KB each: the current one and a few other models / option sets
TMP_PREFIX = ".tmp-graphs-"
KEEP_ENTRIES = 2  # the current entry and one more (a rollback, or another option set)
STALE_TMP_S = 3600.0  # a temporary directory or file this old belongs to a process that died
HEAD_BYTES = 4 << 20  # GGUF metadata and tensor index are at the start of the file
TAIL_BYTES = 1 << 20
# An entry holds the weights as ORT runs them (fp32 mostly): up to ~2x a quantized file.  Write
# one only when that leaves this much free too (a full disk breaks more than this cache).
SPARE_DISK_BYTES = 512 << 20
# Bump when the built graphs change in a way their sources do not show (SOURCES are hashed
# too): entries built by an older builder are then rebuilt.  Here, not in synth/graph, so that a
# warm start reads it without importing onnx.
GRAPH_VERSION = 1
# The sources whose change changes what is built: the graph package, the lowering options, the
# build (int8 calibration) and what it runs, the engine (session options) and this module.
_SYNTH_DIR = Path(__file__).resolve().parent
_BUILDER_SOURCES = (
    *sorted((_SYNTH_DIR / "graph").glob("*.py")),
    _SYNTH_DIR / "lowering.py",
    _SYNTH_DIR / "build.py",
    _SYNTH_DIR / "stages.py",
)
SOURCES = (*_BUILDER_SOURCES, _SYNTH_DIR / "engine.py", Path(__file__).resolve())
# What the calibration is computed from: the graph, its options, the build and the sentence's
# phonemes (not the engine's session options nor this cache's format).
CALIBRATION_SOURCES = (*_BUILDER_SOURCES, _SYNTH_DIR / "phonemes.py")
# The options that change the graph the calibration measures (threads, arena, passes and
# max_phonemes only change how it runs).
CALIBRATION_OPTIONS = ("linear", "conv", "weights", "rewrites", "stft")
# The options that change the graph an entry holds: the same ones.  Threads, arena, spinning,
# passes and pass length are session or engine settings, so an entry serves them all (the
# host's plan measurement, synth/tune.py, opens one entry with several thread counts).
GRAPH_OPTIONS = CALIBRATION_OPTIONS


class CacheDamaged(Exception):
    """An entry exists but cannot be used (missing, truncated or changed files)."""


@dataclass
class Built:
    """What Engine.load needs besides the two sessions: built now or read from an entry."""

    notes: list[str] = field(default_factory=list)
    nbits_used: int = 0
    int8_convs: int = 0
    style_width: int = 256
    conv_ratios: np.ndarray | None = None
    # the int8 calibration: "" (none), "computed in N s", or "reused" (its own cache file)
    calibration: str = ""


@dataclass
class Calibration:
    """The int8 calibration (build.py): per int8 conv its output/input range ratio and its
    output channels' gains; for conv="int8s" also its input's measured [min, max] (``ranges``,
    [Q, 2]) and its output's peak with the gains applied (``peaks``, [Q]), over several voices.
    """

    ratios: np.ndarray
    gains: list[np.ndarray]
    ranges: np.ndarray | None = None
    peaks: np.ndarray | None = None


def _file_identity(path: Path) -> dict[str, Any]:
    """Size, mtime and a hash of the head and tail: a changed or touched file differs."""
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(HEAD_BYTES))
        if st.st_size > HEAD_BYTES + TAIL_BYTES:
            f.seek(-TAIL_BYTES, os.SEEK_END)
        digest.update(f.read(TAIL_BYTES))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def _cpu_identity() -> str:
    """The CPU's model and feature flags (ORT lays out weights for the CPU it optimizes on)."""
    lines = []
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f,
    ):
        for line in f:
            key = line.split(":", 1)[0].strip()
            if key in ("model name", "flags", "Features", "CPU part") and line not in lines:
                lines.append(line)
            if not line.strip() and lines:
                break  # the first processor's block is enough
    return hashlib.sha256("".join([platform.machine(), *lines]).encode()).hexdigest()


def _sources_hash(sources: tuple[Path, ...] = SOURCES) -> str:
    digest = hashlib.sha256()
    for source in sources:
        with contextlib.suppress(OSError):
            digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def cache_inputs(model_path: Path, options: EngineOptions) -> dict[str, Any]:
    """Everything an entry depends on (its directory name is a hash of this)."""
    return {
        "model": _file_identity(model_path),
        "options": {name: getattr(options, name) for name in GRAPH_OPTIONS},
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "package": wyoming_kokoro_gguf.__version__,
        "graph_version": GRAPH_VERSION,
        "sources": _sources_hash(),
        "cpu": _cpu_identity(),
    }


def calibration_inputs(model: dict[str, Any], options: EngineOptions) -> dict[str, Any]:
    """What the int8 calibration depends on: no CPU, ORT or NumPy version (it is reused).
    Both int8 types share one file: "int8s" calibrates on the same per-call graph as "int8",
    and adds its input ranges to the file (the plan's measurement builds both)."""
    chosen = {name: getattr(options, name) for name in CALIBRATION_OPTIONS}
    if is_int8(chosen["conv"]):
        chosen["conv"] = "int8"
    return {
        "model": model,
        "options": chosen,
        "graph_version": GRAPH_VERSION,
        "sources": _sources_hash(CALIBRATION_SOURCES),
    }


def _digest(inputs: dict[str, Any]) -> str:
    """The key of a set of inputs: a hash of their canonical JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _crc32(path: Path) -> int:
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return 0
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return zlib.crc32(m)


def _open(directory: Path, stage: str, so: ort.SessionOptions) -> ort.InferenceSession:
    """A stage's session from a graph ORT optimized already (its advice: optimize no more)."""
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    path = str(directory / f"{stage}.onnx")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _remove(path: Path) -> None:
    """Move a directory aside, then delete it (a concurrent reader never sees half of one)."""
    trash = path.with_name(f"{TMP_PREFIX}trash-{uuid.uuid4().hex}")
    try:
        os.replace(path, trash)
    except OSError:
        return  # gone already (another process), or not ours to remove
    shutil.rmtree(trash, ignore_errors=True)


class GraphCache:
    """The entry for one model file and option set in ``cache_dir``: load it, or write it while
    the engine builds.  ``status`` says what happened: "miss", "loaded", "damaged" (removed,
    rebuilt), "saved", "unwritable" (the engine runs without the cache)."""

    def __init__(self, cache_dir: str | os.PathLike[str], model_path: Path, options: EngineOptions):
        self.dir = Path(cache_dir)
        self.model_size = model_path.stat().st_size
        self.inputs = cache_inputs(model_path, options)
        self.key = _digest(self.inputs)
        self.entry = self.dir / f"{ENTRY_PREFIX}{self.key[:32]}"
        self.calibration_key = _digest(calibration_inputs(self.inputs["model"], options))
        self.calibration = self.dir / f"{CALIBRATION_PREFIX}{self.calibration_key[:32]}.npz"
        self.status = "miss"
        self._tmp: Path | None = None

    # ---- reading

    def load(
        self, make_options: Any
    ) -> tuple[ort.InferenceSession, ort.InferenceSession, Built] | None:
        """Both sessions and the build's results from the entry, or None (build it then).

        ``make_options()`` gives fresh SessionOptions; graph optimization is turned off for
        graphs ORT already optimized (ORT's advice for offline-optimized models)."""
        if not self.entry.exists():
            return None
        try:
            manifest = self._checked_manifest()
            sessions = [_open(self.entry, stage, make_options()) for stage in STAGES]
            ratios = np.load(self.entry / RATIOS) if manifest["conv_ratios"] else None
            built = Built(**manifest["built"], conv_ratios=ratios)
        except Exception as err:  # noqa: BLE001 - any unreadable entry is rebuilt
            _LOG.warning("graph cache %s is damaged (%s); rebuilding it", self.entry, err)
            _remove(self.entry)
            self.status = "damaged"
            return None
        with contextlib.suppress(OSError):
            os.utime(self.entry / MANIFEST)  # recently used: kept by _prune
        self.status = "loaded"
        return sessions[0], sessions[1], built

    def _checked_manifest(self) -> dict[str, Any]:
        with open(self.entry / MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("key") != self.key:
            raise CacheDamaged("its manifest is for other inputs")
        for name, want in manifest["files"].items():
            path = self.entry / name
            if path.stat().st_size != want["size"] or _crc32(path) != want["crc32"]:
                raise CacheDamaged(f"{name} changed since it was written")
        return manifest

    def load_calibration(self) -> Calibration | None:
        """The int8 calibration an earlier build saved, or None (then calibrate).  A damaged
        file (np.load checks each member's CRC-32) is removed."""
        if not self.calibration.is_file():
            return None
        try:
            with np.load(self.calibration, allow_pickle=False) as f:
                if str(f["key"]) != self.calibration_key:
                    raise CacheDamaged("it is for other inputs")
                ratios, gains, channels = f["ratios"], f["gains"], f["channels"]
                ranges = f["ranges"] if "ranges" in f.files else None
                peaks = f["peaks"] if "peaks" in f.files else None
            if len(ratios) != len(channels) or gains.size != channels.sum():
                raise CacheDamaged("its arrays do not fit each other")
            if ranges is not None and (ranges.shape != (len(ratios), 2) or peaks is None):
                raise CacheDamaged("its input ranges do not fit its convolutions")
        except Exception as err:  # noqa: BLE001 - any unreadable file is recalibrated
            _LOG.warning("int8 calibration %s is damaged (%s); calibrating", self.calibration, err)
            with contextlib.suppress(OSError):
                self.calibration.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(self.calibration)  # recently used: kept by _prune
        starts = np.cumsum([0, *channels[:-1]])
        gain_list = [
            gains[s : s + n].astype(np.float32) for s, n in zip(starts, channels, strict=True)
        ]
        return Calibration(ratios.astype(np.float32), gain_list, ranges, peaks)

    def save_calibration(self, calibration: Calibration) -> None:
        """Write the calibration beside the entries: a temporary file renamed into place."""
        tmp = self.dir / f"{TMP_PREFIX}{self.calibration.stem}-{uuid.uuid4().hex[:8]}.npz"
        gains = calibration.gains
        arrays = {
            "key": np.array(self.calibration_key),
            "ratios": np.asarray(calibration.ratios, dtype=np.float32),
            "gains": np.concatenate(gains).astype(np.float32) if gains else np.zeros(0),
            "channels": np.array([len(g) for g in gains], dtype=np.int64),
        }
        if calibration.ranges is not None and calibration.peaks is not None:
            arrays["ranges"] = np.asarray(calibration.ranges, dtype=np.float32)
            arrays["peaks"] = np.asarray(calibration.peaks, dtype=np.float32)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **arrays)
            os.replace(tmp, self.calibration)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            _LOG.warning("int8 calibration not saved (%s)", getattr(err, "strerror", None) or err)

    # ---- writing

    def start_writing(self) -> bool:
        """Make the temporary directory the build writes into; False when it cannot."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.dir).free
            if free < 2 * self.model_size + SPARE_DISK_BYTES:
                raise OSError(f"only {free >> 20} MB free")
            tmp = self.dir / f"{TMP_PREFIX}{self.key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
        except OSError as err:
            self._unwritable(err)
            return False
        self._tmp = tmp
        return True

    def save_to(self, so: ort.SessionOptions, stage: str) -> None:
        """Have ORT write ``stage``'s optimized graph (weights in a side file) as it loads it."""
        if self._tmp is None:
            return
        so.optimized_model_filepath = str(self._tmp / f"{stage}.onnx")
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", f"{stage}.onnx.data"
        )
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "4096"
        )

    def reopen(self, stage: str, so: ort.SessionOptions) -> ort.InferenceSession:
        """The session for ``stage`` from the graph ORT just wrote: a session that saved its
        graph keeps a copy of the weights (~145 MB more once ready, measured), one loaded from
        the file maps them, and a later start loads exactly this graph."""
        return _open(self._tmp, stage, so)

    @property
    def writing(self) -> bool:
        """True while a build writes an entry."""
        return self._tmp is not None

    def abandon(self, err: BaseException) -> None:
        """Stop writing (ORT could not save a graph): the engine goes on without the cache."""
        self._unwritable(err)

    def commit(self, built: Built) -> None:
        """Finish the entry: manifest last, then one rename makes it visible."""
        tmp = self._tmp
        if tmp is None:
            return
        self._tmp = None
        try:
            if built.conv_ratios is not None:
                np.save(tmp / RATIOS, built.conv_ratios)
            files = {
                p.name: {"size": p.stat().st_size, "crc32": _crc32(p)}
                for p in sorted(tmp.iterdir())
            }
            extra = asdict(built)
            extra.pop("conv_ratios")
            extra.pop("calibration")  # how this build got it, not part of the entry
            manifest = {
                "key": self.key,
                "inputs": self.inputs,
                "created": time.time(),
                "files": files,
                "conv_ratios": built.conv_ratios is not None,
                "built": extra,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            try:
                os.rename(tmp, self.entry)
            except OSError:
                if not (self.entry / MANIFEST).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process wrote it first
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            self._unwritable(err)
            return
        self.status = "saved"
        self._prune()

    def _unwritable(self, err: BaseException) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        reason = getattr(err, "strerror", None) or err
        _LOG.warning(
            "graph cache %s not written (%s); the next start builds again", self.dir, reason
        )
        self.status = "unwritable"

    def _prune(self) -> None:
        """Keep the KEEP_ENTRIES most recently used entries; drop dead processes' leftovers."""
        try:
            children = list(self.dir.iterdir())
        except OSError:
            return
        entries, calibrations = [], []
        for child in children:
            with contextlib.suppress(OSError):
                if child.name.startswith(CALIBRATION_PREFIX) and child != self.calibration:
                    calibrations.append((child.stat().st_mtime, child))
                elif child.name.startswith(ENTRY_PREFIX) and child != self.entry:
                    manifest = child / MANIFEST  # none: a damaged entry, pruned first
                    entries.append((manifest.stat().st_mtime if manifest.exists() else 0, child))
                elif (
                    child.name.startswith(TMP_PREFIX)
                    and time.time() - child.stat().st_mtime > STALE_TMP_S
                ):
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    else:  # a calibration file being written
                        child.unlink()
        for _, child in sorted(entries, reverse=True)[KEEP_ENTRIES - 1 :]:
            _remove(child)
        for _, child in sorted(calibrations, reverse=True)[KEEP_CALIBRATIONS - 1 :]:
            with contextlib.suppress(OSError):
                child.unlink()
