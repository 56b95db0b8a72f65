"""Convert Kokoro weights to a GGUF file in TTS.cpp's layout (or CrispASR's).

    python -m wyoming_kokoro_gguf.convert SRC -o OUT.gguf --type TYPE [--voices V] [--quantize-convs]
        [--layout crispasr]

SRC: a kokoro-onnx / onnx-community ONNX export (fp32, fp16 or int8), the reference PyTorch
checkpoint (.pth, needs the ``torch`` extra), or an existing Kokoro GGUF in either layout
(re-quantize, or change the layout).
V: a kokoro-onnx voices file (.bin / .npz), a directory of voice .pt files (``torch`` extra), or
nothing to keep the voices of a GGUF source; for a CrispASR source, the directory of its
kokoro-voice-*.gguf files when they are not beside it.
``--layout crispasr`` writes CrispASR's layout (weights/crispasr_write.py): OUT and one
kokoro-voice-NAME.gguf per voice beside it.

Measuring modes (docs/QUANTIZATION.md): ``SRC --sensitivity -o TABLE.json`` measures what each
tensor group costs in each type; ``SRC -o OUT --type auto --max-lsd D [--table TABLE.json]`` writes
the smallest file of per-group types within D dB of log-spectral distance from SRC, checked by
speaking it (weights/sensitivity.py, budget.py, auto.py).

The output is written to a temporary file next to OUT and renamed when complete, so an interrupted
conversion never leaves a half-written .gguf; an existing OUT is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.weights import (
    budget,
    crispasr,
    crispasr_write,
    groups,
    layout,
    layouts,
    quants,
    torch_source,
)
from wyoming_kokoro_gguf.weights.model_file import ModelFileError, open_model

CONVERTER_VERSION = 1  # bump when the converter's output changes (test caches key on it)
T = GGMLQuantizationType


class ConvertError(Exception):
    """Bad input or an impossible request (one-line message, exit code 2)."""


@dataclass
class Source:
    """Everything needed to write a Kokoro GGUF."""

    tensors: dict[str, np.ndarray]  # TTS.cpp names (kokoro.*), float32, layout shapes
    voices: dict[str, np.ndarray]  # name -> float32 [510, 256]
    vocab: list[str]
    dims: layout.KokoroDims
    metadata: dict[str, object] = field(
        default_factory=dict
    )  # extra KV to carry over (GGUF source)
    phonemizer_type: int = layout.PHONEMIZER_ESPEAK
    description: str = ""


@dataclass
class Report:
    """What a conversion wrote."""

    path: Path
    size: int
    types: dict[str, int]  # type name -> tensor count
    fallbacks: dict[str, str]  # tensor -> reason it kept another type
    seconds: float


Progress = Callable[[str], None]


def _stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _quiet(msg: str) -> None:
    pass


# --------------------------------------------------------------------------------------------
# Sources


def read_voices(spec: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Voices from a .bin/.npz archive or a directory of .pt files."""
    p = Path(spec)
    if not p.exists():
        raise ConvertError(f"{p}: no such voices file or directory")
    if p.is_dir():
        try:
            return torch_source.read_voice_dir(p)
        except torch_source.TorchSourceError as exc:
            raise ConvertError(str(exc)) from None
    # Deferred by design (tests/test_layout.py), here and in load_source: onnx (1.1-1.4 s to
    # import here) only when an ONNX export or voices archive is read, never at every start of
    # the engine process, which imports this module through host/models.py.
    from wyoming_kokoro_gguf.weights import onnx_source

    try:
        return onnx_source.read_voices(p)
    except onnx_source.OnnxSourceError as exc:
        raise ConvertError(str(exc)) from None


def _check_voices(
    voices: Mapping[str, np.ndarray], dims: layout.KokoroDims
) -> dict[str, np.ndarray]:
    out = {}
    for name, v in voices.items():
        v = np.asarray(v, dtype=np.float32)
        if v.ndim == 3 and v.shape[1] == 1:
            v = v[:, 0, :]
        if v.ndim != 2 or v.shape[1] != 2 * dims.style:
            raise ConvertError(
                f"voice {name} has shape {list(v.shape)}, expected [510, {2 * dims.style}]"
            )
        out[name] = np.ascontiguousarray(v)
    return out


def load_source(
    src: str | os.PathLike[str], voices: str | os.PathLike[str] | None, progress: Progress
) -> Source:
    """Read SRC (ONNX, .pth or GGUF) and the voices into a Source."""
    p = Path(src)
    if not p.exists():
        raise ConvertError(f"{p}: no such file")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        return _load_gguf(p, voices, progress)
    suffix = p.suffix.lower()
    if suffix in (".pth", ".pt"):
        progress(f"reading PyTorch checkpoint {p}")
        try:
            state = torch_source.kokoro_state_dict(p)
        except torch_source.TorchSourceError as exc:
            raise ConvertError(str(exc)) from None
        kind = "pytorch"
    elif suffix == ".onnx" or p.is_file():
        progress(f"reading ONNX export {p}")
        from wyoming_kokoro_gguf.weights import onnx_source  # deferred: see read_voices

        try:
            state = onnx_source.kokoro_state_dict(p)
        except onnx_source.OnnxSourceError as exc:
            raise ConvertError(str(exc)) from None
        kind = "onnx"
    else:
        raise ConvertError(f"{p}: unsupported source (expected .onnx, .pth or .gguf)")
    if voices is None:
        raise ConvertError(
            f"--voices is required for a {kind} source (a voices .bin/.npz or a directory of .pt files)"
        )
    dims = layout.KokoroDims(vocab_size=state["bert.embeddings.word_embeddings.weight"].shape[0])
    tensors = layout.ttscpp_tensors(state)
    vocab = list(layout.KOKORO_VOCAB)
    progress(f"reading voices {voices}")
    vs = _check_voices(read_voices(voices), dims)
    return Source(
        tensors=tensors, voices=vs, vocab=vocab, dims=dims, description=f"{kind}:{p.name}"
    )


_OWN_KEYS = ("general.", "tokenizer.ggml.tokens", "kokoro.voices", "wyoming_kokoro_gguf.", "GGUF.")


def _crispasr_voices(spec: str | os.PathLike[str] | None) -> bool:
    """Whether --voices names CrispASR voice files (a .gguf, or a directory holding some)."""
    if spec is None:
        return False
    p = Path(spec)
    return p.suffix.lower() == ".gguf" or (
        p.is_dir() and any(p.glob(crispasr.VOICE_FILE_PREFIX + "*.gguf"))
    )


def _load_gguf(p: Path, voices: str | os.PathLike[str] | None, progress: Progress) -> Source:
    progress(f"reading GGUF {p}")
    own_voices = voices is None or _crispasr_voices(voices)
    try:
        mf = open_model(p, voices if own_voices else None)
    except ModelFileError as exc:
        raise ConvertError(str(exc)) from None
    quantized = sorted({mf.tensor_type(n).name for n in mf.tensor_names} - {"F32", "F16"})
    if quantized:
        progress(
            f"note: source is already quantized ({', '.join(quantized)}); re-quantizing adds error"
        )
    tensors = {n: mf.tensor(n) for n in mf.tensor_names if not n.startswith(layout.VOICE_PREFIX)}
    if own_voices:
        vs = {v: mf.voice_tensor(v) for v in mf.voices}
    else:
        vs = _check_voices(read_voices(voices), mf.dims)
    extra = {k: v for k, v in mf.metadata.items() if not k.startswith(_OWN_KEYS)}
    if mf.layout != layouts.TTSCPP:  # its keys are another layout's; the sizes are in mf.dims
        extra = {}
    src = Source(
        tensors=tensors,
        voices=vs,
        vocab=list(mf.vocab),
        dims=mf.dims,
        metadata=extra,
        phonemizer_type=mf.phonemizer_type,
        description=f"gguf:{p.name}",
    )
    mf.close()
    return src


# --------------------------------------------------------------------------------------------
# Writing


def _add_value(w: gguf.GGUFWriter, key: str, value: object) -> None:
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value) if 0 <= value < 2**32 else w.add_int64(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    elif isinstance(value, list):
        w.add_array(key, value)


def _write_metadata(
    w: gguf.GGUFWriter,
    src: Source,
    target: T,
    quantize_convs: bool,
    quantize_all: bool,
    n_params: int,
    mixed: bool = False,
) -> None:
    """KV pairs in TTS.cpp's order and types (kokoro_gguf_encoder.py), plus our provenance keys."""
    w.add_string("general.name", "kokoro")
    w.add_string("general.size_label", gguf.size_label(n_params, 0, 0, 0))
    w.add_type(gguf.GGUFType.MODEL)
    w.add_uint32("tokenizer.ggml.padding_token_id", 0)
    w.add_uint32("kokoro.decoder_start_token_id", 0)
    hp = layout.ttscpp_metadata(src.dims)
    written = set()
    for key, value in hp.items():
        value = src.metadata.get(key, value)
        _add_value(w, key, value)
        written.add(key)
    w.add_uint32("phonemizer.type", int(src.phonemizer_type))
    w.add_uint32(
        "phonemizer.phoneme_type",
        int(src.metadata.get("phonemizer.phoneme_type", layout.PHONEME_TYPE_IPA)),
    )
    written |= {"phonemizer.type", "phonemizer.phoneme_type", "tokenizer.ggml.padding_token_id",
                "kokoro.decoder_start_token_id", "tokenizer.ggml.eos_token_id"}  # fmt: skip
    for key, value in src.metadata.items():  # e.g. the phonemizer.* rules of no_espeak files
        if key not in written:
            _add_value(w, key, value)
    file_type = gguf.LlamaFileType.GUESSED if mixed else quants.FILE_TYPES.get(target)
    w.add_file_type(int(file_type or gguf.LlamaFileType.ALL_F32))
    w.add_token_list(src.vocab)
    w.add_uint32("tokenizer.ggml.eos_token_id", 0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if target != T.F32 and not mixed:
        w.add_uint32("general.quantization_type", int(target))  # as TTS.cpp's quantizer records it
    w.add_string(
        "wyoming_kokoro_gguf.converter",
        f"wyoming_kokoro_gguf {__version__} (converter {CONVERTER_VERSION})",
    )
    w.add_string("wyoming_kokoro_gguf.source", src.description)
    w.add_bool("wyoming_kokoro_gguf.quantize_convs", bool(quantize_convs or quantize_all))
    w.add_bool("wyoming_kokoro_gguf.quantize_all", bool(quantize_all))


def write_gguf(
    src: Source,
    out: str | os.PathLike[str],
    qtype: str | T = "f32",
    *,
    quantize_convs: bool = False,
    quantize_all: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    group_types: Mapping[str, T] | None = None,
    extra_metadata: Mapping[str, object] | None = None,
) -> Report:
    """Write ``src`` as a Kokoro GGUF at ``out`` (temp file + rename).

    ``group_types``: a mixed file (``convert --type auto``): each tensor group (weights/groups.py)
    in its own type, the tensors of no group F16 or F32 as in an f16 file; ``qtype`` is then
    only the type the file declares.  ``extra_metadata``: more KV pairs (the budget)."""
    t0 = time.monotonic()
    say = progress or _quiet
    target = quants.parse_type(qtype) if isinstance(qtype, str) else qtype
    out_path = Path(out)
    if out_path.exists() and not force:
        raise ConvertError(f"{out_path} exists; use --force to overwrite it")
    if out_path.is_dir():
        raise ConvertError(f"{out_path} is a directory")
    if target in quants.K_QUANTS:
        quants.libggml()  # fail early with the install hint
    out_path.parent.mkdir(parents=True, exist_ok=True)

    w = gguf.GGUFWriter(path=None, arch=layout.ARCHITECTURE)
    w.add_array("kokoro.voices", list(src.voices))
    n_params = sum(int(a.size) for a in src.tensors.values()) + sum(
        int(v.size) for v in src.voices.values()
    )
    _write_metadata(
        w, src, target, quantize_convs, quantize_all, n_params, mixed=group_types is not None
    )
    for key, value in (extra_metadata or {}).items():
        _add_value(w, key, value)

    counts: dict[str, int] = {}
    fallbacks: dict[str, str] = {}
    names = list(src.tensors)
    total = len(names)
    last = 0.0
    for i, name in enumerate(names, 1):
        a = np.ascontiguousarray(src.tensors[name], dtype=np.float32)
        if group_types is None:
            choice = quants.choose(name, tuple(a.shape), target, quantize_convs, quantize_all)
        else:
            choice = _mixed_choice(name, tuple(a.shape), group_types)
        if choice.reason:
            fallbacks[name] = choice.reason
        data = quants.quantize(a.reshape(choice.stored_shape), choice.qtype)
        w.add_tensor(name, data, raw_dtype=choice.qtype)
        counts[choice.qtype.name] = counts.get(choice.qtype.name, 0) + 1
        now = time.monotonic()
        if now - last > 1.0 or i == total:
            say(f"  tensors {i}/{total} ({target.name})")
            last = now
    for name, v in src.voices.items():
        w.add_tensor(
            layout.VOICE_PREFIX + name, np.ascontiguousarray(v, dtype=np.float32), raw_dtype=T.F32
        )
        counts["F32"] = counts.get("F32", 0) + 1

    # Named, not mkstemp: the writer creates it with the umask's mode (mkstemp's 0600 would make
    # a model converted by root unreadable to the add-on's unprivileged server).
    tmp = str(out_path.with_name(f".{out_path.name}.{os.getpid()}.part"))
    try:
        say(f"writing {out_path}")
        w.write_header_to_file(path=Path(tmp))
        w.write_kv_data_to_file()
        w.write_tensors_to_file(progress=False)
        w.close()
        if out_path.exists() and not force:  # appeared while we were working
            raise ConvertError(f"{out_path} exists; use --force to overwrite it")
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    size = out_path.stat().st_size
    say(f"done: {out_path} ({size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")
    return Report(
        path=out_path, size=size, types=counts, fallbacks=fallbacks, seconds=time.monotonic() - t0
    )


def _mixed_choice(name: str, shape: tuple[int, ...], group_types: Mapping[str, T]) -> quants.Choice:
    group = groups.group_of(name)
    if group is None or group not in group_types:
        return quants.choose(name, shape, T.F16)
    return groups.choose(name, shape, group_types[group])


def convert(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    qtype: str = "f32",
    *,
    voices: str | os.PathLike[str] | None = None,
    quantize_convs: bool = False,
    quantize_all: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    layout_name: str = "ttscpp",
) -> Report:
    """Convert SRC to a Kokoro GGUF (see module docstring).  Raises ConvertError / QuantError."""
    say = progress or _quiet
    target = quants.parse_type(qtype)
    out_path = Path(out)
    if out_path.exists() and not force:
        raise ConvertError(f"{out_path} exists; use --force to overwrite it")
    if layout_name == "crispasr":
        if quantize_convs or quantize_all:
            raise ConvertError("--quantize-convs and --quantize-all are for TTS.cpp's layout")
        if target not in crispasr_write.TYPES:
            names = ", ".join(t.name.lower() for t in crispasr_write.TYPES)
            raise ConvertError(f"CrispASR's layout is written as {names}, not {target.name}")
        return _write_crispasr(load_source(src, voices, say), out_path, target, force, say)
    if target in quants.K_QUANTS:
        quants.libggml()
    source = load_source(src, voices, say)
    return write_gguf(
        source,
        out_path,
        target,
        quantize_convs=quantize_convs,
        quantize_all=quantize_all,
        force=force,
        progress=say,
    )


def _write_crispasr(src: Source, out: Path, target: T, force: bool, say: Progress) -> Report:
    """SRC in CrispASR's layout: OUT and a kokoro-voice-NAME.gguf per voice beside it."""
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"writing {out} and its {len(src.voices)} voice files beside it (CrispASR layout)")
    try:
        counts = crispasr_write.write(
            src.tensors, src.voices, src.vocab, src.dims, out, target, force
        )
    except crispasr_write.CrispWriteError as exc:
        raise ConvertError(str(exc)) from None
    size = out.stat().st_size
    say(f"done: {out} ({size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")
    return Report(path=out, size=size, types=counts, fallbacks={}, seconds=time.monotonic() - t0)


def _names(arg: str | None) -> list[str] | None:
    return [n.strip() for n in arg.split(",") if n.strip()] if arg else None


def f32_model(src: str, voices: str | None, say: Progress, tmp: Path):
    """SRC opened as a model file: a GGUF as it is, another source converted to f32 in ``tmp``."""
    with open(src, "rb") as fh:
        if fh.read(4) == b"GGUF" and voices is None:
            try:
                return open_model(src)
            except ModelFileError as exc:
                raise ConvertError(str(exc)) from None
    path = tmp / "f32.gguf"
    write_gguf(load_source(src, voices, say), path, "f32", progress=say)
    return open_model(path)


def _sensitivity(args: argparse.Namespace, say: Progress) -> int:
    """``--sensitivity``: the table of what each group costs in each type."""
    import tempfile

    from wyoming_kokoro_gguf.weights import sensitivity  # deferred: imports the engine

    out = Path(args.output)
    if out.exists() and not args.force:
        raise ConvertError(f"{out} exists; use --force to overwrite it")
    if not Path(args.src).exists():
        raise ConvertError(f"{args.src}: no such file")
    options = sensitivity.default_options().with_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = f32_model(args.src, args.voices, say, Path(tmp))
        try:
            table = sensitivity.run(
                model,
                _names(args.types),
                _names(args.groups),
                options,
                args.voice,
                say,
                args.sentence or sensitivity.SENTENCES,
            )
        except ValueError as exc:
            raise ConvertError(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table.to_json())
    out.with_suffix(".md").write_text(table.to_markdown())
    say(f"{out} and {out.with_suffix('.md')} written in {table.seconds / 60:.1f} min")
    return 0


def _auto(args: argparse.Namespace, say: Progress) -> int:
    """``--type auto --max-lsd D``: per-group types for the smallest file within the budget."""
    from wyoming_kokoro_gguf.weights import auto  # deferred: imports the engine

    if args.max_lsd is None:
        raise ConvertError("--type auto needs --max-lsd (dB), e.g. --max-lsd 3")
    if not Path(args.src).exists():
        raise ConvertError(f"{args.src}: no such file")
    if args.table is not None and not Path(args.table).is_file():
        raise ConvertError(f"{args.table}: no such table (write one with --sensitivity)")
    try:
        plan, report = auto.convert_auto(
            args.src,
            args.output,
            args.max_lsd,
            table_path=args.table,
            voices=args.voices,
            voice=args.voice,
            threads=args.threads,
            max_duration_change=args.max_duration_change,
            force=args.force,
            progress=say,
        )
    except (budget.BudgetError, ValueError) as exc:
        raise ConvertError(str(exc)) from None
    lsd = plan.checks[-1][1].lsd_db
    say(f"{report.path}: {report.size} bytes, LSD {lsd:.2f} dB (budget {args.max_lsd} dB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_kokoro_gguf.convert",
        description="Convert Kokoro-82M weights (ONNX export, PyTorch .pth or GGUF) to a GGUF file "
        "in TTS.cpp's layout or CrispASR's.",
    )
    parser.add_argument(
        "src", help="ONNX export (.onnx), PyTorch checkpoint (.pth) or Kokoro GGUF (either layout)"
    )
    parser.add_argument("-o", "--output", required=True, help="output .gguf path")
    parser.add_argument(
        "--type",
        default="f32",
        help=f"tensor type: {', '.join(quants.TYPE_NAMES)} (default f32), or auto: each tensor "
        "group's type chosen under --max-lsd",
    )
    parser.add_argument(
        "--voices",
        help="voices .bin/.npz or a directory of voice .pt files (optional for a GGUF source; "
        "for a CrispASR source, the directory of its kokoro-voice-*.gguf when not beside it)",
    )
    parser.add_argument(
        "--layout",
        choices=("ttscpp", "crispasr"),
        default="ttscpp",
        help="tensor layout written: TTS.cpp's (default; what the server downloads) or CrispASR's "
        "/ kokoro.cpp's (OUT plus one kokoro-voice-NAME.gguf per voice beside it; types f32, f16, "
        "q8_0, q5_0, q4_0)",
    )
    parser.add_argument(
        "--quantize-convs",
        action="store_true",
        help="also quantize the decoder/generator convolution weights (smaller file; TTS.cpp leaves them F16/F32)",
    )
    parser.add_argument(
        "--quantize-all",
        action="store_true",
        help="quantize every weight matrix (also text-encoder/predictor convs and AdaIN style projections; "
        "convs whose row does not fit a block are stored with rows of several channels): smallest file",
    )
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="measure what each tensor group costs in each type instead of converting: OUTPUT is "
        "the table (.json, and .md beside it); see docs/QUANTIZATION.md",
    )
    parser.add_argument(
        "--types", help="--sensitivity: comma-separated candidate types (default: all available)"
    )
    parser.add_argument(
        "--groups", help="--sensitivity: comma-separated tensor groups (default: every group)"
    )
    parser.add_argument(
        "--max-lsd",
        type=float,
        help="--type auto: the budget, largest log-spectral distance from f32 in dB",
    )
    parser.add_argument(
        "--max-duration-change",
        type=float,
        default=0.05,
        help="--type auto: largest fraction of frames the durations may move (default 0.05)",
    )
    parser.add_argument(
        "--table", help="--type auto: a table --sensitivity wrote (default: measure it now)"
    )
    parser.add_argument(
        "--voice", help="--sensitivity / --type auto: calibration voice (default: the first)"
    )
    parser.add_argument(
        "--sentence",
        action="append",
        help="--sensitivity: a calibration sentence (repeat for more; default: two built-in ones)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="--sensitivity / --type auto: threads (0 = all)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    say = _quiet if args.quiet else _stderr_progress
    try:
        if args.sensitivity:
            return _sensitivity(args, say)
        if args.type.lower() == "auto":
            return _auto(args, say)
        report = convert(
            args.src,
            args.output,
            args.type,
            voices=args.voices,
            quantize_convs=args.quantize_convs,
            quantize_all=args.quantize_all,
            force=args.force,
            progress=say,
            layout_name=args.layout,
        )
    except (ConvertError, quants.QuantError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing written", file=sys.stderr)
        return 130
    if not args.quiet:
        types = ", ".join(f"{k} {v}" for k, v in sorted(report.types.items()))
        print(f"{report.path}: {report.size} bytes; tensors by type: {types}", file=sys.stderr)
        for name, why in report.fallbacks.items():
            print(f"  {name}: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
