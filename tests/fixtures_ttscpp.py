"""Build GGUF files the way TTS.cpp writes its Kokoro models (the published Kokoro_GGUF files).

Written from TTS.cpp's sources, independently of ``wyoming_kokoro_gguf.weights.layout``: tensor names as
``src/models/kokoro/model.cpp`` assigns them, shapes as ``py-gguf/tts_encoders/kokoro_gguf_encoder.py``
produces them from the PyTorch modules, metadata keys and value types as that encoder writes them,
and tensor types as ``examples/quantize/quantize_impl.cpp`` leaves them (quantizable tensors in the
target type, other "f16 compatible" ones F16 with ``--convert-non-quantized-to-f16``, the rest F32;
``general.file_type`` stays ALL_F32 and ``general.quantization_type`` records the target).

The files cannot be downloaded here, so the weights are small random numbers and the model is
narrower than Kokoro-82M (every shape stays consistent with the metadata); the vocabulary, the 50
voice names and the [510, 256] voice tensors are the real sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

VOICES = [
    "af_alloy",
    "af_aoede",
    "af_bella",
    "af_heart",
    "af_jessica",
    "af_kore",
    "af_nicole",
    "af_nova",
    "af_river",
    "af_sarah",
    "af_sky",
    "am_adam",
    "am_echo",
    "am_eric",
    "am_fenrir",
    "am_liam",
    "am_michael",
    "am_onyx",
    "am_puck",
    "am_santa",
    "bf_alice",
    "bf_emma",
    "bf_isabella",
    "bf_lily",
    "bm_daniel",
    "bm_fable",
    "bm_george",
    "bm_lewis",
    "ef_dora",
    "em_alex",
    "em_santa",
    "ff_siwis",
    "hf_alpha",
    "hf_beta",
    "hm_omega",
    "hm_psi",
    "if_sara",
    "im_nicola",
    "jf_alpha",
    "jf_gongitsune",
    "jf_nezumi",
    "jf_tebukuro",
    "jm_kumo",
    "pf_dora",
    "pm_alex",
    "pm_santa",
    "zf_xiaobei",
    "zf_xiaoni",
    "zf_xiaoxiao",
    "zf_xiaoyi",
]


@dataclass(frozen=True)
class SmallKokoro:
    """A narrow Kokoro: same structure, fewer channels (rows stay multiples of 32 for Q4_0)."""

    vocab: int = 178
    embd: int = 32  # ALBERT embedding
    albert: int = 64  # ALBERT hidden
    heads: int = 2
    ffn: int = 128
    context: int = 512
    hidden: int = 64  # hidden_dim
    style: int = 128  # style_dim (voices are [510, 2 * style])
    max_dur: int = 6  # frames a phoneme at most: short audio, so tiny-model servers answer fast
    text_kernel: int = 5
    dec: int = 128  # decoder width (1024 in Kokoro-82M)
    asr: int = 16
    gen: int = 64  # generator initial channels (512)
    n_fft: int = 20
    hop: int = 5


def tensor_specs(d: SmallKokoro = SmallKokoro()) -> dict[str, tuple[int, ...]]:
    """Every tensor TTS.cpp's Kokoro loader assigns, with the numpy-order shape the encoder writes."""
    s: dict[str, tuple[int, ...]] = {}
    k = "kokoro."
    A, E, D, S, H = d.albert, d.embd, d.hidden, d.style, d.hidden // 2
    # ALBERT (assign_albert_weight)
    s[k + "albert.token_embd"] = (d.vocab, E)
    s[k + "albert.position_embd"] = (d.context, E)
    s[k + "albert.norm"] = (E,)
    s[k + "albert.norm_bias"] = (E,)
    s[k + "albert.embd"] = (A, E)
    s[k + "albert.embd_bias"] = (A,)
    s[k + "albert.token_type_embd"] = (E,)
    lay = k + "albert.layer.0."
    s[lay + "ffn"] = (d.ffn, A)
    s[lay + "ffn_bias"] = (d.ffn,)
    s[lay + "ffn_out"] = (A, d.ffn)
    s[lay + "ffn_out_bias"] = (A,)
    for n in ("attn_norm", "ffn_norm"):
        s[lay + n] = (A,)
        s[lay + n + "_bias"] = (A,)
    for n in "qkvo":
        s[lay + n] = (A, A)
        s[lay + n + "_bias"] = (A,)

    def lstm(base: str, n_in: int) -> None:
        for kind in ("weights", "reverse_weights"):
            for i in range(8):
                s[f"{base}.0.{kind}.{i}"] = (H, n_in if i % 2 == 0 else H)
        for kind in ("biases", "reverse_biases"):
            for i in range(8):
                s[f"{base}.0.{kind}.{i}"] = (H,)

    def ada_block(base: str, dim_in: int, dim_out: int, upsample: bool) -> None:
        s[f"{base}.conv1_weight"] = (dim_out, dim_in, 3)
        s[f"{base}.conv1_bias"] = (dim_out,)
        s[f"{base}.conv2_weight"] = (dim_out, dim_out, 3)
        s[f"{base}.conv2_bias"] = (dim_out,)
        for norm, dim in (("norm1", dim_in), ("norm2", dim_out)):
            for part in ("gamma", "beta"):
                s[f"{base}.{norm}_{part}_weight"] = (dim, S)
                s[f"{base}.{norm}_{part}_bias"] = (dim,)
        if dim_in != dim_out:
            s[f"{base}.conv1x1_weight"] = (dim_out, dim_in, 1)
        if upsample:
            s[f"{base}.pool_weight"] = (dim_in, 1, 3)
            s[f"{base}.pool_bias"] = (dim_in,)

    # duration predictor (assign_duration_weight)
    dp = k + "duration_predictor."
    s[dp + "encode"] = (D, A)
    s[dp + "encode_bias"] = (D,)
    s[dp + "duration_proj"] = (d.max_dur, D)
    s[dp + "duration_proj_bias"] = (d.max_dur,)
    for n in ("n_proj", "f0_proj"):
        s[dp + n + "_kernel"] = (1, D // 2, 1)
        s[dp + n + "_bias"] = (1,)
    lstm(dp + "shared_lstm", D + S)
    lstm(dp + "duration_lstm", D + S)
    for i in range(3):
        lstm(f"{dp}layers.{2 * i}.lstm", D + S)
        for part in ("gamma", "beta"):
            s[f"{dp}layers.{2 * i + 1}.{part}_weight"] = (D, S)
            s[f"{dp}layers.{2 * i + 1}.{part}_bias"] = (D,)
    for blocks in ("f0_blocks", "n_blocks"):
        ada_block(f"{dp}{blocks}.0", D, D, False)
        ada_block(f"{dp}{blocks}.1", D, D // 2, True)
        ada_block(f"{dp}{blocks}.2", D // 2, D // 2, False)

    # text encoder (assign_text_encoder_weight)
    te = k + "text_encoder."
    s[te + "embedding_weight"] = (d.vocab, D)
    for i in range(3):
        s[f"{te}layers.{i}.weight"] = (D, D, d.text_kernel)
        s[f"{te}layers.{i}.bias"] = (D,)
        s[f"{te}layers.{i}.gamma"] = (D,)
        s[f"{te}layers.{i}.beta"] = (D,)
    lstm(te + "lstm", D)

    # decoder (assign_decoder_weight / assign_ada_res_block)
    de = k + "decoder."
    s[de + "f0_conv_weight"] = (1, 1, 3)
    s[de + "f0_conv_bias"] = (1,)
    s[de + "n_conv_weight"] = (1, 1, 3)
    s[de + "n_conv_bias"] = (1,)
    s[de + "asr_conv_weight"] = (d.asr, D, 1)
    s[de + "asr_conv_bias"] = (d.asr,)
    ada_block(de + "encoder_block", D + 2, d.dec, False)
    for i in range(4):
        last = i == 3
        ada_block(f"{de}decoder_blocks.{i}", d.dec + 2 + d.asr, d.gen if last else d.dec, last)

    # generator (assign_generator_weight / assign_gen_resblock)
    g = de + "generator."

    def gen_res(base: str, ch: int, kernel: int) -> None:
        for j in range(3):
            for n in ("gamma1", "beta1", "gamma2", "beta2"):
                s[f"{base}.{j}.{n}_weight"] = (ch, S)
                s[f"{base}.{j}.{n}_bias"] = (ch,)
            for n in ("convs1", "convs2"):
                s[f"{base}.{j}.{n}_weight"] = (ch, ch, kernel)
                s[f"{base}.{j}.{n}_bias"] = (ch,)
            s[f"{base}.{j}.alpha1"] = (1, ch, 1)
            s[f"{base}.{j}.alpha2"] = (1, ch, 1)

    s[g + "m_source_weight"] = (1, 9)
    s[g + "m_source_bias"] = (1,)
    s[g + "conv_post_weight"] = (d.n_fft + 2, d.gen // 4, 7)
    s[g + "conv_post_bias"] = (d.n_fft + 2,)
    for i, kern in enumerate((20, 12)):
        s[f"{g}ups.{i}.weight"] = (d.gen // 2**i, d.gen // 2 ** (i + 1), kern)
        s[f"{g}ups.{i}.bias"] = (d.gen // 2 ** (i + 1),)
    s[g + "noise_blocks.0.conv_weight"] = (d.gen // 2, d.n_fft + 2, 12)
    s[g + "noise_blocks.0.conv_bias"] = (d.gen // 2,)
    s[g + "noise_blocks.1.conv_weight"] = (d.gen // 4, d.n_fft + 2, 1)
    s[g + "noise_blocks.1.conv_bias"] = (d.gen // 4,)
    gen_res(g + "noise_blocks.0.resblock", d.gen // 2, 7)
    gen_res(g + "noise_blocks.1.resblock", d.gen // 4, 11)
    for i, kern in enumerate((3, 7, 11, 3, 7, 11)):
        gen_res(f"{g}resblocks.{i}", d.gen // (2 if i < 3 else 4), kern)
    return s


def metadata(d: SmallKokoro = SmallKokoro()) -> dict[str, int]:
    """set_gguf_parameters() of the encoder, for this model (all uint32)."""
    m = {
        "kokoro.duration_predictor.albert.context_length": d.context,
        "kokoro.duration_predictor.albert.layers": 1,
        "kokoro.duration_predictor.albert.attn_heads": d.heads,
        "kokoro.duration_predictor.albert.hidden_size": d.albert,
        "kokoro.duration_predictor.albert.recurrence": 12,
        "kokoro.duration_predictor.hidden_size": d.hidden,
        "kokoro.duration_predictor.layers": 3,
        "kokoro.duration_predictor.f0_n_blocks": 3,
        "kokoro.text_encoder.layers": 3,
        "kokoro.decoder.generator.up_sampling_factor": 600,
        "kokoro.decoder.generator.kernels": 3,
        "kokoro.decoder.generator.upsamples": 2,
        "kokoro.decoder.generator.layers": 4,
        "kokoro.decoder.generator.padding": 3,
        "kokoro.decoder.generator.n_fft": d.n_fft,
        "kokoro.decoder.generator.hop": d.hop,
    }
    g = "kokoro.decoder.generator"
    for i, kern in enumerate((7, 11)):
        for j, dil in enumerate((1, 3, 5)):
            m[f"{g}.noise_blocks.{i}.res_block.{j}.padding"] = (kern * dil - dil) // 2
            m[f"{g}.noise_blocks.{i}.res_block.{j}.dilation"] = dil
    m[f"{g}.noise_blocks.0.stride"] = 6
    m[f"{g}.noise_blocks.0.padding"] = 3
    m[f"{g}.noise_blocks.1.stride"] = 1
    m[f"{g}.noise_blocks.1.padding"] = 0
    for i, kern in enumerate((3, 7, 11, 3, 7, 11)):
        for j, dil in enumerate((1, 3, 5)):
            m[f"{g}.res_blocks.{i}.{j}.padding"] = (kern * dil - dil) // 2
            m[f"{g}.res_blocks.{i}.{j}.dilation"] = dil
    m[f"{g}.up_convs.0.padding"] = 5
    m[f"{g}.up_convs.0.stride"] = 10
    m[f"{g}.up_convs.1.padding"] = 3
    m[f"{g}.up_convs.1.stride"] = 6
    return m


def ttscpp_quantizable(name: str) -> tuple[bool, bool]:
    """(kokoro_is_quantizable, kokoro_is_f16_compatible) transcribed from quantize_impl.cpp."""
    f16 = (
        "voice_tensors" not in name
        and "bias" not in name
        and "gamma" not in name
        and "beta" not in name
        and "alpha" not in name
        and not name.endswith("embd")
        and not name.endswith("norm")
    )
    q = False
    if f16:
        if name.startswith("kokoro.albert") or name.startswith("kokoro.text_encoder.lstm"):
            q = True
        elif name.startswith("kokoro.duration_predictor."):
            q = name.split(".")[2] in (
                "duration_proj",
                "encode",
                "shared_lstm",
                "duration_lstm",
                "layers",
            )
    return q, f16


def ggml_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The numpy-order shape ggml's own GGUF writer stores for a tensor of ``shape``.

    ggml writes ``n_dims = ggml_n_dims(tensor)`` (ggml/src/gguf.cpp, ``gguf_add_tensor``):
    the index of the last ``ne`` that is not 1, plus one, at least 1.  ``ne`` is the reversed
    numpy shape, so trailing ``ne == 1`` are leading size-1 dims here, and they are not written.
    TTS.cpp's quantizer (``examples/quantize/quantize_impl.cpp``) re-adds every tensor this way:
    (1, C, 1) -> (C, 1), (1, 1, 3) -> (3,), (1, 9) -> (9,)."""
    ne = list(reversed(shape))
    while len(ne) > 1 and ne[-1] == 1:
        ne.pop()
    return tuple(reversed(ne))


def _vocab() -> list[str]:
    from wyoming_kokoro_gguf.weights.layout import KOKORO_VOCAB

    return list(KOKORO_VOCAB)


def build(
    path: Path,
    qtype: str = "F32",
    *,
    espeak: bool = True,
    dims: SmallKokoro = SmallKokoro(),
    seed: int = 0,
    drop: tuple[str, ...] = (),
    voices: tuple[str, ...] = tuple(VOICES),
    writer: str = "",
    dictionary_words: int = 1,
) -> dict[str, np.ndarray]:
    """Write a TTS.cpp-style Kokoro GGUF at ``path``; return the float32 weights written
    (before quantization).  ``qtype`` is TTS.cpp quantize's type: F32 (converter output), F16,
    Q4_0, Q5_0 or Q8_0 (quantize run with --convert-non-quantized-to-f16).

    ``writer`` is who writes the shapes: "python" (TTS.cpp's Python encoder, every dimension
    kept) or "ggml" (its C++ quantizer: ``ggml_shape``).  By default the F32 file is the
    encoder's and the quantized ones the quantizer's, as for the published files.
    ``dictionary_words``: the size of a no_espeak file's phonemizer dictionary (TTS.cpp's files
    carry about 20 MB of such strings)."""
    trim = (writer or ("python" if qtype == "F32" else "ggml")) == "ggml"
    rng = np.random.default_rng(seed)
    target = {"F32": T.F32, "F16": T.F16, "Q4_0": T.Q4_0, "Q5_0": T.Q5_0, "Q8_0": T.Q8_0}[qtype]
    w = gguf.GGUFWriter(path=None, arch="kokoro")
    values: dict[str, np.ndarray] = {}
    specs = tensor_specs(dims)
    # encoder order: albert, duration predictor, text encoder, decoder, then voices
    for name, shape in specs.items():
        if name in drop:
            continue
        a = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        values[name] = a
        stored = a.reshape(ggml_shape(shape)) if trim else a
        quantizable, f16 = ttscpp_quantizable(name)
        if target != T.F32 and quantizable:
            w.add_tensor(name, gguf.quants.quantize(stored, target), raw_dtype=target)
        elif target != T.F32 and f16:
            w.add_tensor(name, stored.astype(np.float16), raw_dtype=T.F16)
        else:
            w.add_tensor(name, stored, raw_dtype=T.F32)
    w.add_array("kokoro.voices", list(voices))
    for v in voices:
        a = (rng.standard_normal((510, 2 * dims.style)) * 0.1).astype(np.float32)
        values[f"kokoro.voice_tensors.{v}"] = a
        w.add_tensor(f"kokoro.voice_tensors.{v}", a, raw_dtype=T.F32)
    # prepare_metadata(): general.* model metadata, set_gguf_parameters(), set_vocab()
    w.add_name("kokoro")
    w.add_size_label("82M")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_uint32("tokenizer.ggml.padding_token_id", 0)
    w.add_uint32("kokoro.decoder_start_token_id", 0)
    for key, val in metadata(dims).items():
        w.add_uint32(key, val)
    w.add_uint32("phonemizer.type", 1 if espeak else 0)
    w.add_uint32("phonemizer.phoneme_type", 1)
    if not espeak:  # the no_espeak files carry TTS.cpp's rule phonemizer
        w.add_array("phonemizer.graphemes", ["a", "b", "th"])
        w.add_array("phonemizer.rules.keys", ["a", "th"])
        w.add_array("phonemizer.rules.phonemes", ["æ", "θ"])
        words = ["the"] + [f"word{i}" for i in range(1, dictionary_words)]
        w.add_array("phonemizer.dictionary.keys", words)
        w.add_array("phonemizer.dictionary.values", ["ðə"] * dictionary_words)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_token_list(_vocab())
    w.add_uint32("tokenizer.ggml.eos_token_id", 0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if target != T.F32:
        w.add_uint32("general.quantization_type", int(target))
    w.write_header_to_file(path=Path(path))
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return values


def build_llama(path: Path) -> None:
    """A tiny GGUF of another architecture (an LLM file a user might point the server at)."""
    w = gguf.GGUFWriter(path=None, arch="llama")
    w.add_context_length(128)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_head_count(4)
    w.add_token_list(["<s>", "</s>", "a"])
    w.add_tensor("token_embd.weight", np.zeros((3, 32), np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    w.write_header_to_file(path=Path(path))
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rewrite_as_ggml(src: Path, dst: Path) -> None:
    """Copy a GGUF file as ggml's writer would store it: same metadata, types and bytes, each
    tensor's shape as ``ggml_shape`` (what TTS.cpp's quantizer does to a file it re-adds)."""
    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    w = gguf.GGUFWriter(path=None, arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        sub = field.types[1] if len(field.types) > 1 else None
        w.add_key_value(name, field.contents(), field.types[0], sub_type=sub)
    for t in reader.tensors:
        # quantized data comes as [*rows, bytes per row]: dropping leading 1s keeps the rows
        data = np.asarray(t.data)
        w.add_tensor(t.name, data.reshape(ggml_shape(data.shape)), raw_dtype=T(int(t.tensor_type)))
    w.write_header_to_file(path=Path(dst))
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
