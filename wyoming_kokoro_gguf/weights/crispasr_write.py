"""Write Kokoro weights in CrispASR's layout: a model file and one voice file per voice.

Follows CrispASR's tools (github CrispStrobe/CrispASR), written from their source:
``models/convert-kokoro-to-gguf.py`` for the model, ``models/convert-kokoro-voice-to-gguf.py`` for
the voices and ``examples/crispasr-quantize`` for the quantized files. So the names, shapes,
metadata keys and tensor order match theirs:

- Every KModel parameter is stored under its CrispASR name (``weights/crispasr.py``) in PyTorch's
  shape. The order is bert, bert_encoder, predictor, decoder, text_encoder, each sorted by
  parameter name. ALBERT's pooler, which Kokoro never runs, is included because CrispASR's loader
  checks for it. It is written as zeros when the source has none (an ONNX export has none).
- 1-D tensors are F32. The rest are F16, or F32 for ``f32``.
- A quantized type is what ``crispasr-quantize`` makes from the F16 file. 2-D weights get the
  type when their row fits the blocks and their name has no "norm". Every shape is as ggml
  writes it: trailing ``ne == 1`` dimensions dropped.
- Voices: ``kokoro-voice-NAME.gguf`` beside the model, architecture ``kokoro-voice``, one F32
  tensor ``voice.pack`` [510, 1, 256].
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import gguf
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from wyoming_kokoro_gguf.weights import crispasr, layout, quants
from wyoming_kokoro_gguf.weights.layout import KokoroDims

T = GGMLQuantizationType
TYPES = (T.F32, T.F16, T.Q8_0, T.Q5_0, T.Q4_0)  # converter (f32, f16) and crispasr-quantize
COMPONENTS = ("bert", "bert_encoder", "predictor", "decoder", "text_encoder")  # converter order


class CrispWriteError(Exception):
    """The weights cannot be written in CrispASR's layout (one-line message)."""


def ggml_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A numpy shape as ggml stores it: ``ggml_n_dims`` drops trailing ``ne == 1`` dimensions,
    i.e. leading 1s in numpy order, keeping at least one."""
    s = list(shape)
    while len(s) > 1 and s[0] == 1:
        s.pop(0)
    return tuple(s)


def stored_type(name: str, shape: tuple[int, ...], target: GGMLQuantizationType) -> T:
    """The type a CrispASR tensor gets for the file type ``target``."""
    if len(shape) <= 1 or target == T.F32:
        return T.F32
    if target == T.F16:
        return T.F16
    rows = ggml_shape(shape)
    weight = "weight" in name or "_proj" in name  # crispasr-quantize's name test, for Kokoro
    fits = len(rows) == 2 and rows[-1] % GGML_QUANT_SIZES[target][0] == 0
    return target if weight and fits and "norm" not in name else T.F16


def crispasr_state(get: Callable[[str], np.ndarray], dims: KokoroDims) -> dict[str, np.ndarray]:
    """CrispASR name -> float32 array in PyTorch shape, in the converter's order, from TTS.cpp
    tensors (``get`` by ``kokoro.`` name)."""
    state = layout.torch_from_ttscpp(get, dims)
    shapes = crispasr.torch_shapes(dims)
    for name in ("bert.pooler.weight", "bert.pooler.bias"):
        state.setdefault(name, np.zeros(shapes[name], np.float32))

    def order(name: str) -> tuple[int, str]:
        top, _, rest = name.partition(".")
        return COMPONENTS.index(top), rest

    return {crispasr.crispasr_name(n): state[n] for n in sorted(state, key=order)}


def _metadata(w: gguf.GGUFWriter, d: KokoroDims, vocab: list[str]) -> None:
    """The converter's keys, types and order (kokoro.*, kokoro.istft.*, kokoro.plbert.*)."""
    w.add_name("kokoro")
    for key, value in (
        ("dim_in", d.asr_dim), ("hidden_dim", d.hidden), ("style_dim", d.style),
        ("max_conv_dim", 512), ("max_dur", d.max_dur), ("n_token", d.vocab_size),
        ("n_mels", 80), ("n_layer", d.n_layer), ("text_encoder_kernel_size", d.text_kernel),
        ("sample_rate", 24000), ("istft.init_channel", d.gen_channels),
        ("istft.n_fft", d.n_fft), ("istft.hop_size", d.hop),
    ):  # fmt: skip
        w.add_uint32(f"kokoro.{key}", int(value))
    w.add_array("kokoro.istft.upsample_rates", list(d.upsample_rates))
    w.add_array("kokoro.istft.upsample_kernel_sizes", list(d.upsample_kernels))
    w.add_array("kokoro.istft.resblock_kernel_sizes", list(d.resblock_kernels))
    w.add_uint32("kokoro.istft.resblock_n_dilations", len(d.resblock_dilations))
    w.add_array(
        "kokoro.istft.resblock_dilation_sizes",
        [x for _ in d.resblock_kernels for x in d.resblock_dilations],
    )
    for key, value in (
        ("embedding_size", d.albert_embd), ("hidden_size", d.albert_hidden),
        ("num_hidden_layers", d.albert_recurrence), ("num_attention_heads", d.albert_heads),
        ("intermediate_size", d.albert_ffn), ("max_position_embeddings", d.context_length),
        ("vocab_size", d.vocab_size),
    ):  # fmt: skip
        w.add_uint32(f"kokoro.plbert.{key}", int(value))
    w.add_token_list(vocab)
    w.add_uint32("kokoro.vocab_size", len(vocab))


def _write(w: gguf.GGUFWriter, path: Path) -> None:
    """Write to a temporary name beside ``path``, then rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        w.write_header_to_file(path=tmp)
        w.write_kv_data_to_file()
        w.write_tensors_to_file(progress=False)
        w.close()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def voice_path(model: Path, name: str) -> Path:
    """Where CrispASR looks for a voice: ``kokoro-voice-NAME.gguf`` beside the model."""
    return model.with_name(f"{crispasr.VOICE_FILE_PREFIX}{name}.gguf")


def write_voice(path: Path, name: str, table: np.ndarray) -> None:
    """One voice file as convert-kokoro-voice-to-gguf.py writes it: ``voice.pack`` [N, 1, 256]."""
    pack = np.ascontiguousarray(table, dtype=np.float32).reshape(len(table), 1, -1)
    w = gguf.GGUFWriter(path=None, arch=crispasr.VOICE_ARCH)
    w.add_name(f"{crispasr.VOICE_FILE_PREFIX}{name}")
    w.add_string("kokoro_voice.name", name)
    w.add_uint32("kokoro_voice.max_phonemes", pack.shape[0])
    w.add_uint32("kokoro_voice.style_dim", pack.shape[2])
    w.add_tensor(crispasr.VOICE_TENSOR, pack, raw_dtype=T.F32)
    _write(w, path)


def write_model(
    get: Callable[[str], np.ndarray],
    dims: KokoroDims,
    vocab: list[str],
    path: Path,
    target: GGMLQuantizationType,
) -> dict[str, int]:
    """The model file; returns tensors written by type name."""
    if target not in TYPES:
        names = ", ".join(t.name.lower() for t in TYPES)
        raise CrispWriteError(f"CrispASR's layout is written as {names}, not {target.name}")
    w = gguf.GGUFWriter(path=None, arch=layout.ARCHITECTURE)
    _metadata(w, dims, vocab)
    if target not in (T.F32, T.F16):  # crispasr-quantize sets these two
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_file_type(int(quants.FILE_TYPES[target]))
    counts: dict[str, int] = {}
    for name, a in crispasr_state(get, dims).items():
        qtype = stored_type(name, a.shape, target)
        shape = a.shape if target in (T.F32, T.F16) else ggml_shape(a.shape)
        w.add_tensor(name, quants.quantize(a.reshape(shape), qtype), raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    _write(w, path)
    return counts


def write(
    tensors: Mapping[str, np.ndarray],
    voices: Mapping[str, np.ndarray],
    vocab: list[str],
    dims: KokoroDims,
    path: Path,
    target: GGMLQuantizationType,
    force: bool = False,
) -> dict[str, int]:
    """The model at ``path`` and its voices beside it (``voice_path``); returns the model's
    tensors by type name.  A voice file already there with the same table is kept, so the f16
    and q8_0 models can share one folder of voices, as CrispASR's do."""
    if path.exists() and not force:
        raise CrispWriteError(f"{path} exists; use --force to overwrite it")
    new = {n: t for n, t in voices.items() if force or not _same_voice(voice_path(path, n), t)}
    clash = next((voice_path(path, n) for n in new if voice_path(path, n).exists()), None)
    if clash is not None:
        raise CrispWriteError(f"{clash} exists with another table; use --force to overwrite it")
    counts = write_model(tensors.__getitem__, dims, vocab, path, target)
    for name, table in new.items():
        write_voice(voice_path(path, name), name, table)
    return counts


def _same_voice(path: Path, table: np.ndarray) -> bool:
    """Whether ``path`` is a voice file holding exactly ``table``."""
    if not path.is_file():
        return False
    try:
        _, stored = crispasr.read_voice(path)
    except crispasr.LayoutError:
        return False
    return np.array_equal(np.asarray(stored.data, np.float32), np.asarray(table, np.float32))
