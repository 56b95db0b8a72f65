"""Read a Kokoro GGUF file (TTS.cpp layout), memory-mapped, and check it before anything uses it.

Files in CrispASR's layout (kokoro.cpp's files, voices in their own files) are presented under
TTS.cpp's names and shapes (``weights/crispasr.py``); anything else is refused in one line
naming the layouts read (``weights/layouts.py``).

``open_model(path)`` validates the architecture, every required tensor and its shape, the
vocabulary and the voices, and raises ``ModelFileError`` with one line naming what is wrong.  Weights
are dequantized only when asked for (``tensor(name)``), so opening a file costs little memory.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import sys
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

from wyoming_kokoro_gguf.weights import crispasr, layout, layouts
from wyoming_kokoro_gguf.weights.layout import KokoroDims, VoiceInfo


class ModelFileError(Exception):
    """A model file cannot be used; the message is one line naming the file and the problem."""


# Types the reader can hand out dequantized: what TTS.cpp writes plus what our converter writes.
SUPPORTED_TYPES = frozenset(
    {
        GGMLQuantizationType.F32,
        GGMLQuantizationType.F16,
        GGMLQuantizationType.BF16,
        GGMLQuantizationType.Q4_0,
        GGMLQuantizationType.Q4_1,
        GGMLQuantizationType.Q5_0,
        GGMLQuantizationType.Q5_1,
        GGMLQuantizationType.Q8_0,
        GGMLQuantizationType.Q4_K,
        GGMLQuantizationType.Q5_K,
        GGMLQuantizationType.Q6_K,
        GGMLQuantizationType.MXFP4,
        GGMLQuantizationType.TQ2_0,
        GGMLQuantizationType.TQ1_0,
    }
)


# The key a mixed file (``convert --type auto``, weights/budget.py) lists its groups' types in.
MIXED_KEY = "wyoming_kokoro_gguf.group_types"

# String arrays longer than this are stepped over, not parsed (``_Reader``).
LONG_STRING_ARRAY = 4096


class _Reader(GGUFReader):
    """gguf's reader, stepping over long string arrays instead of parsing them.

    GGUFReader makes two numpy views per string: the ~20 MB of phonemizer tables in TTS.cpp's
    no_espeak files (about a million strings) took 50 s and 1.5 GB to open.  This project
    phonemizes with espeak-ng and never reads them; their length is kept (``skipped``)."""

    def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
        if raw_type == GGUFValueType.ARRAY:
            item_type = self._get(orig_offs, np.uint32)
            count = self._get(orig_offs + 4, np.uint64)
            if item_type[0] == GGUFValueType.STRING and count[0] > LONG_STRING_ARRAY:
                end = self._step_over_strings(orig_offs + 12, int(count[0]))
                types = [GGUFValueType.ARRAY, GGUFValueType.STRING]
                return end - orig_offs, [item_type, count], [], types
        return super()._get_field_parts(orig_offs, raw_type)

    def _step_over_strings(self, offs: int, count: int) -> int:
        little = (sys.byteorder == "little") == (self.byte_order == "I")
        length = struct.Struct("<Q" if little else ">Q").unpack_from
        view = memoryview(self.data)
        for _ in range(count):
            offs += 8 + length(view, offs)[0]
        return offs


def _field_value(field: Any) -> Any:
    """A GGUF metadata value as plain Python (str, int, float, bool or list)."""
    types = field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        return field.contents()
    if types[0] == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    value = field.parts[field.data[0]][0]
    if types[0] == GGUFValueType.BOOL:
        return bool(value)
    if types[0] in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(value)
    return int(value)


class KokoroModelFile:
    """An opened, validated Kokoro GGUF file.  Use ``open_model`` to get one."""

    def __init__(self, path: Path, reader: GGUFReader):
        self.path = path
        self._reader = reader
        self._tensors = {t.name: t for t in reader.tensors}
        self.metadata: dict[str, Any] = {}
        # string arrays stepped over (_Reader): name -> number of strings
        self.skipped: dict[str, int] = {}
        for name, field in reader.fields.items():
            if name.startswith("GGUF."):
                continue
            if field.types[:1] == [GGUFValueType.ARRAY] and not field.data and field.parts[-1][0]:
                self.skipped[name] = int(field.parts[-1][0])
                continue
            self.metadata[name] = _field_value(field)
        self.architecture: str = str(self.metadata.get("general.architecture", ""))
        self.hparams: dict[str, Any] = {
            k: v
            for k, v in self.metadata.items()
            if not isinstance(v, list) and k != "general.architecture"
        }
        self.vocab: list[str] = [str(t) for t in self.metadata.get("tokenizer.ggml.tokens", [])]
        self.phoneme_to_id: dict[str, int] = {t: i for i, t in enumerate(self.vocab) if t}
        self.phonemizer_type: int = int(
            self.metadata.get("phonemizer.type", layout.PHONEMIZER_ESPEAK)
        )
        names = self.metadata.get("kokoro.voices")
        if not names:  # fall back to the tensors when the list is missing
            names = [
                n[len(layout.VOICE_PREFIX) :]
                for n in self._tensors
                if n.startswith(layout.VOICE_PREFIX)
            ]
        self.voices: dict[str, VoiceInfo] = {str(n): layout.voice_info(str(n)) for n in names}
        self.dims: KokoroDims = KokoroDims()
        self.layout: str = layouts.TTSCPP  # the layout stored; tensors are always TTS.cpp's
        self.voice_files: list[Path] = []  # CrispASR: the voice files read
        # Layout shapes of tensors stored in another shape (``_stores``).
        self._logical: dict[str, tuple[int, ...]] = {}

    # ---- tensors -----------------------------------------------------------------------------

    @property
    def tensor_names(self) -> list[str]:
        """All tensor names in file order."""
        return list(self._tensors)

    def _get(self, name: str) -> Any:
        try:
            return self._tensors[name]
        except KeyError:
            raise ModelFileError(f"{self.path}: no tensor named {name!r}") from None

    def tensor_type(self, name: str) -> GGMLQuantizationType:
        """The GGML type the tensor is stored as."""
        return GGMLQuantizationType(int(self._get(name).tensor_type))

    def tensor_shape(self, name: str) -> tuple[int, ...]:
        """Shape in numpy / PyTorch order (the reverse of GGUF's ne)."""
        return tuple(int(x) for x in reversed(self._get(name).shape.tolist()))

    def logical_shape(self, name: str) -> tuple[int, ...]:
        """Shape in the Kokoro layout (differs from tensor_shape for conv weights that were
        quantized, stored flattened to [out, in * k], and for tensors ggml's writer stored
        without their size-1 dims: ``_stores``)."""
        return self._logical.get(name) or self.tensor_shape(name)

    def raw_tensor(self, name: str) -> np.ndarray:
        """The stored bytes (memory-mapped, read-only): for quantized types one row of blocks per
        row of the tensor, i.e. shape ``[*rows, bytes_per_row]`` as uint8; float types as their
        own dtype in numpy order."""
        return self._get(name).data

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as float32 in numpy / PyTorch order (layout shape), dequantized if needed
        (a new array)."""
        t = self._get(name)
        qtype = GGMLQuantizationType(int(t.tensor_type))
        shape = self.logical_shape(name)
        if qtype == GGMLQuantizationType.F32:
            return np.array(t.data, dtype=np.float32).reshape(shape)
        if qtype == GGMLQuantizationType.F16:
            return np.asarray(t.data).astype(np.float32).reshape(shape)
        try:
            out = gguf.quants.dequantize(np.asarray(t.data), qtype)
        except (NotImplementedError, ValueError) as exc:
            raise ModelFileError(
                f"{self.path}: cannot dequantize {name} ({qtype.name}): {exc}"
            ) from None
        return np.ascontiguousarray(out, dtype=np.float32).reshape(shape)

    def voice_tensor(self, name: str) -> np.ndarray:
        """The voice pack, float32 [510, 256]: row n-1 is the style for n phonemes."""
        if name not in self.voices:
            raise ModelFileError(
                f"{self.path}: no voice {name!r} (voices: {', '.join(self.voices)})"
            )
        return self.tensor(layout.VOICE_PREFIX + name).reshape(-1, 2 * self.dims.style)

    @cached_property
    def type_summary(self) -> dict[str, dict[str, int]]:
        """Tensor count and bytes per GGML type."""
        out: dict[str, dict[str, int]] = {}
        for t in self._tensors.values():
            key = GGMLQuantizationType(int(t.tensor_type)).name
            entry = out.setdefault(key, {"tensors": 0, "bytes": 0, "elements": 0})
            entry["tensors"] += 1
            entry["bytes"] += int(t.n_bytes)
            entry["elements"] += int(t.n_elements)
        return out

    @property
    def file_type(self) -> str:
        """A short description of how the weights are stored, e.g. "Q4_0 (+F16, F32)".

        Not read from general.file_type: TTS.cpp's quantizer leaves that at ALL_F32.  A file
        ``convert --type auto`` made says "mixed" and lists every type it holds."""
        summary = self.type_summary
        if MIXED_KEY in self.metadata:
            return "mixed (" + ", ".join(sorted(summary)) + ")"
        weights = {
            GGMLQuantizationType(int(t.tensor_type)).name
            for n, t in self._tensors.items()
            if not n.startswith(layout.VOICE_PREFIX) and len(t.shape) > 1
        }
        order = [
            k
            for k in (
                "TQ1_0",
                "TQ2_0",
                "MXFP4",
                "Q4_K",
                "Q4_0",
                "Q4_1",
                "Q5_K",
                "Q5_0",
                "Q5_1",
                "Q6_K",
                "Q8_0",
                "BF16",
                "F16",
                "F32",
            )
            if k in weights
        ]
        if not order:
            return "empty"
        rest = [k for k in summary if k != order[0]]
        return order[0] + (f" (+{', '.join(sorted(rest))})" if rest else "")

    def drop_pages(self) -> None:
        """Let go of the file's pages read so far (they stay in the page cache, re-read on
        use): a read-only map, so nothing is lost, and the process stops counting ~190 MB
        (q8_0) of them once the graphs hold what they need."""
        mm = getattr(self._reader, "data", None)
        if mm is not None and getattr(mm, "_mmap", None) is not None:
            with contextlib.suppress(ValueError, OSError):
                mm._mmap.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Drop the memory map (tensors already returned stay valid: they are copies)."""
        mm = getattr(self._reader, "data", None)
        if mm is not None and hasattr(mm, "_mmap") and mm._mmap is not None:
            with contextlib.suppress(BufferError, ValueError):
                mm._mmap.close()

    def __enter__(self) -> KokoroModelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KokoroModelFile({str(self.path)!r}, {self.file_type}, {len(self.voices)} voices)"


# --------------------------------------------------------------------------------------------


def _check_bounds(path: Path, reader: GGUFReader) -> None:
    size = os.path.getsize(path)
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise ModelFileError(
                f"{path}: file is truncated (tensor {t.name} ends at byte {end}, file has {size} bytes)"
            )


def _stores(got: tuple[int, ...], want: tuple[int, ...], qtype: GGMLQuantizationType) -> bool:
    """Whether a tensor stored as ``got`` holds the layout's ``want`` in another shape.

    Two forms are written in practice: ggml's own writer (TTS.cpp's quantizer, which wrote the
    published F16/Q8/Q5/Q4 files) drops trailing ``ne == 1``, i.e. leading size-1 dims in numpy
    order, for every type ((1, C, 1) is stored (C, 1)); and quantized conv weights are stored
    2-D, [out, in * k], because GGML blocks run along the row."""
    if int(np.prod(got)) != int(np.prod(want)):
        return False
    if [d for d in got if d != 1] == [d for d in want if d != 1]:
        return True
    floats = (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
    return len(got) == 2 and qtype not in floats


def _validate(mf: KokoroModelFile) -> None:
    path = mf.path
    if mf.architecture != layout.ARCHITECTURE:
        raise ModelFileError(
            f"{path}: {layouts.other_architecture(mf.architecture, mf.tensor_names)}"
        )
    if layout.PREFIX + "albert.token_embd" not in mf._tensors:
        raise ModelFileError(f"{path}: {layouts.other_layout(mf.architecture, mf.tensor_names)}")
    for name in mf.tensor_names:
        qtype = mf.tensor_type(name)
        if qtype not in SUPPORTED_TYPES:
            raise ModelFileError(f"{path}: tensor {name} has unsupported type {qtype.name}")

    def shape(name: str) -> tuple[int, ...]:
        if name not in mf._tensors:
            raise ModelFileError(f"{path}: required tensor {name} is missing")
        return mf.tensor_shape(name)

    hp: Mapping[str, Any] = mf.hparams
    try:
        dims = layout.dims_from_tensors(shape, hp)
    except (IndexError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: tensor shapes do not fit the Kokoro layout ({exc})"
        ) from None
    for name, want in layout.expected_shapes(dims).items():
        got = shape(name)
        if got != want and _stores(got, want, mf.tensor_type(name)):
            mf._logical[name] = want
        elif got != want:
            raise ModelFileError(
                f"{path}: tensor {name} has shape {list(got)}, expected {list(want)}"
            )
    mf.dims = dims
    hidden = hp.get("kokoro.duration_predictor.albert.hidden_size")
    if hidden is not None and int(hidden) != dims.albert_hidden:
        raise ModelFileError(
            f"{path}: metadata albert.hidden_size {hidden} does not match tensor size {dims.albert_hidden}"
        )

    if not mf.vocab:
        raise ModelFileError(f"{path}: no vocabulary (tokenizer.ggml.tokens is missing)")
    if len(mf.vocab) > dims.vocab_size:
        raise ModelFileError(
            f"{path}: vocabulary has {len(mf.vocab)} tokens but the embedding has {dims.vocab_size} rows"
        )
    if not mf.voices:
        raise ModelFileError(f"{path}: no voices (kokoro.voices and voice_tensors.* are missing)")
    for voice in mf.voices:
        name = layout.VOICE_PREFIX + voice
        if name not in mf._tensors:
            raise ModelFileError(f"{path}: voice {voice!r} is listed but tensor {name} is missing")
        got = mf.tensor_shape(name)
        if len(got) < 2 or got[-1] != 2 * dims.style or int(np.prod(got)) % (2 * dims.style):
            raise ModelFileError(
                f"{path}: voice tensor {name} has shape {list(got)}, expected [510, {2 * dims.style}]"
            )


def _read_crispasr(mf: KokoroModelFile, voices: str | os.PathLike[str] | None) -> None:
    """Present a CrispASR-layout file and its voice files under TTS.cpp's names (views, no copy)."""
    try:
        tensors, hparams = crispasr.ttscpp_view(mf._tensors, mf.metadata)
        files = crispasr.voice_files(mf.path, voices)
        voice_tensors = crispasr.read_voices(files)
    except crispasr.LayoutError as exc:
        raise ModelFileError(f"{mf.path}: {exc}") from None
    mf._tensors = {**tensors, **{layout.VOICE_PREFIX + n: t for n, t in voice_tensors.items()}}
    mf.hparams = {**mf.hparams, **hparams}
    mf.voices = {n: layout.voice_info(n) for n in voice_tensors}
    mf.layout, mf.voice_files = layouts.CRISPASR, files


def open_model(
    path: str | os.PathLike[str], voices: str | os.PathLike[str] | None = None
) -> KokoroModelFile:
    """Open and validate a Kokoro GGUF file (memory-mapped).  Raises ModelFileError.

    ``voices``: where a CrispASR-layout model's voice files are (a directory or one file; default
    the model's directory); TTS.cpp files carry their voices and ignore it."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a GGUF file")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelFileError(f"{p}: not a GGUF file (bad magic {magic!r})")
    try:
        reader = _Reader(p, "r")
    except (ValueError, IndexError, OverflowError, UnicodeDecodeError, KeyError) as exc:
        size = p.stat().st_size
        raise ModelFileError(
            f"{p}: cannot read GGUF ({size} bytes): truncated or corrupt ({exc})"
        ) from None
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot open: {exc.strerror or exc}") from None
    _check_bounds(p, reader)
    mf = KokoroModelFile(p, reader)
    if mf.architecture == layout.ARCHITECTURE and crispasr.is_crispasr(mf._tensors):
        _read_crispasr(mf, voices)
    _validate(mf)
    return mf
