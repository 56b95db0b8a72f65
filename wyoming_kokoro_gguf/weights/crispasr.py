"""CrispASR's Kokoro GGUF layout (the files of kokoro.cpp, CrispASR's Kokoro runtime), read as
TTS.cpp's.

Written from CrispASR (github CrispStrobe/CrispASR). Its converter,
``models/convert-kokoro-to-gguf.py``, keeps every KModel parameter under a shorter prefix
(``bert.*``, ``bert_proj.*``, ``pred.*``, ``dec.*``, ``dec.gen.*``, ``text_enc.*``). It keeps
PyTorch's shapes and packings: the LSTM gates i, f, g, o are stacked in one tensor, and AdaIN's
gamma and beta share one ``fc``. Weight norm is already folded. 1-D tensors are F32, the rest
F16 or F32. Its ``crispasr-quantize`` makes the Q8_0 file: 2-D weights whose rows fit the
blocks, with every shape rewritten by ggml, which drops trailing ``ne == 1`` dimensions. Its
loader ``src/kokoro.cpp`` reads these names and the ``kokoro.*``, ``kokoro.istft.*`` and
``kokoro.plbert.*`` keys. Voices are separate files (``models/convert-kokoro-voice-to-gguf.py``):
architecture ``kokoro-voice``, one F32 tensor ``voice.pack`` [510, 1, 256] and
``kokoro_voice.name``.

Reading maps each tensor onto the TTS.cpp names the engine uses without copying anything: a
TTS.cpp tensor is a view of rows of the CrispASR one. That is one LSTM gate, the gamma or beta
half, or row 0 of the token types.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

from wyoming_kokoro_gguf.weights import layout
from wyoming_kokoro_gguf.weights.layout import KokoroDims

NAME = "CrispASR (kokoro.cpp)"
MARKER = "bert.embd.tok.weight"  # the first tensor CrispASR's loader requires
VOICE_ARCH = "kokoro-voice"
VOICE_TENSOR = "voice.pack"
VOICE_FILE_PREFIX = "kokoro-voice-"  # kokoro-voice-af_heart.gguf
T = GGMLQuantizationType


class LayoutError(Exception):
    """A CrispASR-layout file or voice file cannot be used (one line, without the model's path)."""


def is_crispasr(names: Mapping[str, Any]) -> bool:
    """Whether a file's tensors are in CrispASR's layout."""
    return MARKER in names


# --------------------------------------------------------------------------------------------
# Names: KModel parameter (PyTorch) -> CrispASR tensor

_BERT_LAYER = "encoder.albert_layer_groups.0.albert_layers.0."
_BERT_MODULES = {
    "embeddings.word_embeddings": "embd.tok",
    "embeddings.position_embeddings": "embd.pos",
    "embeddings.token_type_embeddings": "embd.tt",
    "embeddings.LayerNorm": "embd.ln",
    "encoder.embedding_hidden_mapping_in": "embd_proj",
    _BERT_LAYER + "attention.query": "attn_q",
    _BERT_LAYER + "attention.key": "attn_k",
    _BERT_LAYER + "attention.value": "attn_v",
    _BERT_LAYER + "attention.dense": "attn_o",
    _BERT_LAYER + "attention.LayerNorm": "attn_ln",
    _BERT_LAYER + "full_layer_layer_norm": "ffn_ln",
    _BERT_LAYER + "ffn": "ffn_up",
    _BERT_LAYER + "ffn_output": "ffn_down",
    "pooler": "pooler",
}


def _adain_block(rest: str) -> str:
    """AdainResBlk1d: ``norm1.fc.weight`` is stored as ``adain1.weight``."""
    return re.sub(r"norm([12])\.fc\.", r"adain\1.", rest)


def _predictor(rest: str) -> str:
    m = re.fullmatch(r"text_encoder\.lstms\.(\d+)\.(.+)", rest)
    if m:  # DurationEncoder: even entries are LSTMs, odd ones AdaLayerNorms
        i, param = int(m[1]), m[2]
        if i % 2 == 0:
            return f"pred.dur_enc.{i // 2}.lstm.{param}"
        return f"pred.dur_enc.{i // 2}.adaln.{param.removeprefix('fc.')}"
    if rest.startswith("duration_proj.linear_layer."):
        return "pred.dur_proj." + rest.removeprefix("duration_proj.linear_layer.")
    return "pred." + _adain_block(rest)  # lstm, shared, F0.i, N.i, F0_proj, N_proj


def _decoder(rest: str) -> str:
    if rest.startswith("generator."):
        gen = rest.removeprefix("generator.").replace("m_source.l_linear.", "m_source.")
        return "dec.gen." + re.sub(r"(adain[12]\.\d+)\.fc\.", r"\1.", gen)
    if rest.startswith("asr_res.0."):
        return "dec.asr_res." + rest.removeprefix("asr_res.0.")
    return "dec." + _adain_block(rest)  # encode, decode.i, F0_conv, N_conv


def _text_encoder(rest: str) -> str:
    if rest.startswith("embedding."):
        return "text_enc.embd." + rest.removeprefix("embedding.")
    m = re.fullmatch(r"cnn\.(\d+)\.([01])\.(.+)", rest)
    if m:  # cnn.i.0 is the conv, cnn.i.1 its LayerNorm
        return f"text_enc.cnn.{m[1]}.{'conv' if m[2] == '0' else 'ln'}.{m[3]}"
    return "text_enc." + rest  # lstm


def crispasr_name(torch_name: str) -> str:
    """The CrispASR tensor name of a KModel parameter (``bert.encoder...`` -> ``bert.attn_q...``)."""
    top, _, rest = torch_name.partition(".")
    if top == "bert":
        module, _, param = rest.rpartition(".")
        return f"bert.{_BERT_MODULES[module]}.{param}"
    if top == "bert_encoder":
        return "bert_proj." + rest
    if top == "predictor":
        return _predictor(rest)
    if top == "decoder":
        return _decoder(rest)
    if top == "text_encoder":
        return _text_encoder(rest)
    raise KeyError(torch_name)


def torch_shapes(d: KokoroDims) -> dict[str, tuple[int, ...]]:
    """The KModel parameters a CrispASR file holds: ``layout.torch_shapes`` plus ALBERT's pooler,
    which Kokoro never runs but CrispASR's converter keeps and its loader checks for."""
    shapes = layout.torch_shapes(d)
    shapes["bert.pooler.weight"] = (d.albert_hidden, d.albert_hidden)
    shapes["bert.pooler.bias"] = (d.albert_hidden,)
    return shapes


# --------------------------------------------------------------------------------------------
# Metadata (the keys CrispASR's converter writes and src/kokoro.cpp reads)


def _numel(tensors: Mapping[str, Any], name: str) -> int:
    if name not in tensors:
        raise LayoutError(f"required tensor {name} is missing")
    return int(tensors[name].n_elements)


def dims_from_metadata(meta: Mapping[str, Any], tensors: Mapping[str, Any]) -> KokoroDims:
    """Kokoro's sizes from a CrispASR file: its ``kokoro.*`` keys (CrispASR's loader defaults when
    absent) and the sizes no key records (decoder width, ASR channels, harmonics)."""
    base = KokoroDims()

    def u32(key: str, default: int) -> int:
        return int(meta.get(key, default))

    def ints(key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = meta.get(key)
        return tuple(int(x) for x in value) if value else default

    if MARKER not in tensors:
        raise LayoutError(f"required tensor {MARKER} is missing")
    vocab, embd = (int(x) for x in reversed(tensors[MARKER].shape.tolist()))
    gen = u32("kokoro.istft.init_channel", base.gen_channels)
    rates = ints("kokoro.istft.upsample_rates", base.upsample_rates)
    n_dil = u32("kokoro.istft.resblock_n_dilations", len(base.resblock_dilations))
    blocks = 0
    while f"dec.decode.{blocks}.conv1.bias" in tensors:
        blocks += 1
    post_in = gen // 2 ** len(rates)
    post_out = _numel(tensors, "dec.gen.conv_post.bias")
    return KokoroDims(
        vocab_size=vocab,
        albert_embd=embd,
        albert_hidden=u32("kokoro.plbert.hidden_size", base.albert_hidden),
        albert_heads=u32("kokoro.plbert.num_attention_heads", base.albert_heads),
        albert_ffn=u32("kokoro.plbert.intermediate_size", base.albert_ffn),
        albert_recurrence=u32("kokoro.plbert.num_hidden_layers", base.albert_recurrence),
        context_length=u32("kokoro.plbert.max_position_embeddings", base.context_length),
        hidden=u32("kokoro.hidden_dim", base.hidden),
        style=u32("kokoro.style_dim", base.style),
        n_layer=u32("kokoro.n_layer", base.n_layer),
        max_dur=u32("kokoro.max_dur", base.max_dur),
        text_kernel=u32("kokoro.text_encoder_kernel_size", base.text_kernel),
        decoder_dim=_numel(tensors, "dec.encode.conv1.bias"),
        asr_dim=_numel(tensors, "dec.asr_res.bias"),
        decoder_blocks=blocks,
        gen_channels=gen,
        upsample_rates=rates,
        upsample_kernels=ints("kokoro.istft.upsample_kernel_sizes", base.upsample_kernels),
        resblock_kernels=ints("kokoro.istft.resblock_kernel_sizes", base.resblock_kernels),
        resblock_dilations=ints("kokoro.istft.resblock_dilation_sizes", base.resblock_dilations)[
            :n_dil
        ],
        n_fft=u32("kokoro.istft.n_fft", base.n_fft),
        hop=u32("kokoro.istft.hop_size", base.hop),
        harmonics=_numel(tensors, "dec.gen.m_source.weight"),
        conv_post_kernel=_numel(tensors, "dec.gen.conv_post.weight") // (post_out * post_in),
    )


# --------------------------------------------------------------------------------------------
# Tensors: views under TTS.cpp's names


@dataclass(frozen=True)
class MappedTensor:
    """A TTS.cpp-named view of a stored tensor, with the attributes of gguf's ReaderTensor that
    ``model_file`` reads."""

    name: str
    tensor_type: GGMLQuantizationType
    shape: np.ndarray  # ggml's ne: the numpy shape reversed
    n_elements: int
    n_bytes: int
    data: np.ndarray  # floats in numpy order, or uint8 [*rows, bytes_per_row] for block types


def _stored_shape(t: Any) -> list[int]:
    return [int(x) for x in reversed(t.shape.tolist())]


def _as_torch(t: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The stored data in the PyTorch shape: ggml drops trailing ``ne == 1`` dimensions, so only
    the element count and, for block types, the row length must agree."""
    if int(t.n_elements) != int(np.prod(shape)):
        raise LayoutError(f"tensor {t.name} has shape {_stored_shape(t)}, expected {list(shape)}")
    qtype = T(int(t.tensor_type))
    if qtype in (T.F32, T.F16):
        return t.data.reshape(shape)
    block, type_size = GGML_QUANT_SIZES[qtype]
    if int(t.shape[0]) != shape[-1] or shape[-1] % block:
        raise LayoutError(
            f"tensor {t.name} ({qtype.name}) has shape {_stored_shape(t)}, expected {list(shape)}"
        )
    return t.data.reshape(*shape[:-1], shape[-1] // block * type_size)


def _views(tname: str, data: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The TTS.cpp tensors made from one parameter, as views of ``data`` (rows of it): the
    layout's own mapping run on an array of row numbers says which rows each one takes."""
    rows = np.arange(shape[0]).reshape((shape[0],) + (1,) * (len(shape) - 1))
    out = {}
    for name, piece in layout.ttscpp_tensors({tname: np.broadcast_to(rows, shape)}).items():
        first = int(piece.reshape(-1)[0])
        out[name] = data[first] if piece.ndim < len(shape) else data[first : first + len(piece)]
    return out


def _mapped(name: str, qtype: GGMLQuantizationType, data: np.ndarray) -> MappedTensor:
    if qtype in (T.F32, T.F16):
        shape = data.shape
    else:
        block, type_size = GGML_QUANT_SIZES[qtype]
        shape = (*data.shape[:-1], data.shape[-1] // type_size * block)
    return MappedTensor(
        name=name,
        tensor_type=qtype,
        shape=np.array(list(reversed(shape)), dtype=np.uint64),
        n_elements=int(np.prod(shape)),
        n_bytes=int(data.nbytes),
        data=data,
    )


def ttscpp_view(
    tensors: Mapping[str, Any], meta: Mapping[str, Any]
) -> tuple[dict[str, MappedTensor], dict[str, int]]:
    """A CrispASR file's tensors under TTS.cpp's names and shapes, and the TTS.cpp metadata the
    engine reads (``layout.ttscpp_metadata``) for the same sizes.  Raises LayoutError."""
    dims = dims_from_metadata(meta, tensors)
    out: dict[str, MappedTensor] = {}
    for tname, shape in layout.torch_shapes(dims).items():
        cname = crispasr_name(tname)
        if cname not in tensors:
            raise LayoutError(f"required tensor {cname} is missing")
        t = tensors[cname]
        qtype = T(int(t.tensor_type))
        for name, view in _views(tname, _as_torch(t, shape), shape).items():
            out[name] = _mapped(name, qtype, view)
    return out, layout.ttscpp_metadata(dims)


# --------------------------------------------------------------------------------------------
# Voices: one kokoro-voice-NAME.gguf per voice


def voice_files(model: Path, voices: str | os.PathLike[str] | None) -> list[Path]:
    """The voice files of a CrispASR model: ``voices`` (a directory of kokoro-voice-*.gguf or one
    voice file) or, without it, the kokoro-voice-*.gguf files beside the model."""
    spec = Path(voices) if voices is not None else model.parent
    if spec.is_dir():
        found = sorted(spec.glob(VOICE_FILE_PREFIX + "*.gguf"))
        if not found:
            raise LayoutError(
                f"no voices: CrispASR keeps each voice in its own {VOICE_FILE_PREFIX}NAME.gguf, "
                f"and {spec} has none (put them beside the model or pass --voices DIR)"
            )
        return found
    if spec.is_file():
        return [spec]
    raise LayoutError(f"voices {spec}: no such file or directory")


def _field(reader: GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    return None if field is None else field.contents()


def read_voice(path: Path) -> tuple[str, MappedTensor]:
    """One CrispASR voice file: its name and its [rows, 256] style table (memory-mapped)."""
    try:
        reader = GGUFReader(path, "r")
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise LayoutError(f"voice file {path}: cannot read it as GGUF ({exc})") from None
    arch = _field(reader, "general.architecture")
    if arch != VOICE_ARCH:
        raise LayoutError(
            f"voice file {path}: general.architecture is {arch!r}, not {VOICE_ARCH!r}"
        )
    name = _field(reader, "kokoro_voice.name") or path.stem.removeprefix(VOICE_FILE_PREFIX)
    pack = next((t for t in reader.tensors if t.name == VOICE_TENSOR), None)
    if pack is None or T(int(pack.tensor_type)) not in (T.F32, T.F16):
        raise LayoutError(f"voice file {path}: no F32 tensor {VOICE_TENSOR}")
    table = pack.data.reshape(-1, int(pack.shape[0]))  # [510, 1, 256] -> [510, 256]
    return str(name), _mapped(layout.VOICE_PREFIX + str(name), T(int(pack.tensor_type)), table)


def read_voices(files: list[Path]) -> dict[str, MappedTensor]:
    """Voice name -> style table, from CrispASR voice files (the first file of a name wins)."""
    out: dict[str, MappedTensor] = {}
    for path in files:
        name, tensor = read_voice(path)
        out.setdefault(name, tensor)
    return out
