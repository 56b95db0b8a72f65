"""TTS.cpp's Kokoro GGUF layout: tensor names, shapes, metadata keys and voice languages.

Everything here follows TTS.cpp (github mmwillet/TTS.cpp): the converter
``py-gguf/tts_encoders/kokoro_gguf_encoder.py`` (how PyTorch parameters become GGUF tensors), the
loader ``src/models/kokoro/model.cpp`` (which names and metadata keys it reads) and the quantizer
``examples/quantize/quantize_impl.cpp`` (which tensors it quantizes).  Keeping exactly that layout
is what lets the published ``Kokoro_*.gguf`` files load unchanged.

Shapes are given in numpy / PyTorch order (GGUF stores the reversed ``ne``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

ARCHITECTURE = "kokoro"
PREFIX = "kokoro."
VOICE_PREFIX = "kokoro.voice_tensors."
# Kokoro's longest model pass in phonemes: 512 positions minus the two pad tokens.
MAX_PHONEMES = 510
VOICE_ROWS = MAX_PHONEMES  # one style row per phoneme count (reference implementation: row n-1)

# phonemizer.type values written by TTS.cpp's converter (TTS_PHONEMIZER / ESPEAK_PHONEMIZER).
PHONEMIZER_TTS = 0
PHONEMIZER_ESPEAK = 1
PHONEME_TYPE_IPA = 1

# The Kokoro-82M vocabulary (config.json "vocab" of hexgrad/Kokoro-82M, the same table kokoro-onnx
# ships): character at index i is the phoneme of token id i; "\x00" marks an unused id.  TTS.cpp
# writes it as ``tokenizer.ggml.tokens`` with "" for unused ids.
_VOCAB_STRING = (
    '\x00;:,.!?\x00\x00\u2014\u2026"()\u201c\u201d \u0303\u02a3\u02a5\u02a6\u02a8\u1d5d\uab67AI'
    "\x00\x00\x00\x00\x00O\x00Q\x00ST\x00\x00W\x00Y\u1d4aabcdef\x00hijklmnopqrstuvwxyz\u0251\u0250"
    "\u0252\xe6\x00\x00\u03b2\u0254\u0255\xe7\x00\u0256\xf0\u02a4\u0259\x00\u025a\u025b\u025c\x00"
    "\x00\u025f\x00\u0261\x00\x00\x00\x00\x00\x00\u0265\x00\u0268\u026a\u029d\x00\x00\x00\x00\x00"
    "\x00\u026f\u0270\u014b\u0273\u0272\u0274\xf8\x00\u0278\u03b8\u0153\x00\x00\u0279\x00\u027e"
    "\u027b\x00\u0281\u027d\u0282\u0283\u0288\u02a7\x00\u028a\u028b\x00\u028c\u0263\u0264\x00\u03c7"
    "\u028e\x00\x00\x00\u0292\u0294\x00\x00\x00\x00\x00\x00\x00\u02c8\u02cc\u02d0\x00\x00\x00\u02b0"
    "\x00\u02b2\x00\x00\x00\x00\u2193\x00\u2192\u2197\u2198\x00\x00\x00\u1d7b"
)
KOKORO_VOCAB: tuple[str, ...] = tuple("" if c == "\x00" else c for c in _VOCAB_STRING)

# The 50 voices TTS.cpp's converter packs by default (upstream set without zm_*).
TTSCPP_VOICES: tuple[str, ...] = (
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
    "af_nova", "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir",
    "am_liam", "am_michael", "am_onyx", "am_puck", "am_santa", "bf_alice", "bf_emma",
    "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george", "bm_lewis", "ef_dora",
    "em_alex", "em_santa", "ff_siwis", "hf_alpha", "hf_beta", "hm_omega", "hm_psi", "if_sara",
    "im_nicola", "jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo", "pf_dora",
    "pm_alex", "pm_santa", "zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi",
)  # fmt: skip


@dataclass(frozen=True)
class VoiceInfo:
    """What a voice name says about the voice (Kokoro encodes language and gender in the prefix)."""

    name: str
    language: str  # BCP-47 style tag, e.g. "en-US"
    espeak: str  # espeak-ng voice, e.g. "en-us"
    language_name: str
    gender: str  # "female" / "male" / "unknown"


# Kokoro voice prefix letter -> (language tag, espeak-ng voice, English name).  The letters are the
# hexgrad/Kokoro-82M convention (also TTS.cpp's KOKORO_LANG_TO_ESPEAK_ID in model.h).
VOICE_LANGUAGES: dict[str, tuple[str, str, str]] = {
    "a": ("en-US", "en-us", "American English"),
    "b": ("en-GB", "en-gb", "British English"),
    "e": ("es-ES", "es", "Spanish"),
    "f": ("fr-FR", "fr-fr", "French"),
    "h": ("hi-IN", "hi", "Hindi"),
    "i": ("it-IT", "it", "Italian"),
    "j": ("ja-JP", "ja", "Japanese"),
    "p": ("pt-BR", "pt-br", "Brazilian Portuguese"),
    "z": ("zh-CN", "cmn", "Mandarin Chinese"),
}


# The default voice, best first, when --voice is not in the model: af_heart in the published
# files; the offline weights have only Japanese voices and their English-speaking aliases, of
# which am_jm_kumo is heard best reading English (docs/TEXT.md: corpus word error rate 0.004,
# af_jf_alpha 0.045).
DEFAULT_VOICES: tuple[str, ...] = ("af_heart", "am_jm_kumo")


def voice_info(name: str) -> VoiceInfo:
    """Language and gender from a Kokoro voice name such as ``af_heart`` (unknown prefix: en-US)."""
    lang, espeak, lang_name = VOICE_LANGUAGES.get(name[:1], VOICE_LANGUAGES["a"])
    gender = (
        {"f": "female", "m": "male"}.get(name[1:2], "unknown") if name[2:3] == "_" else "unknown"
    )
    return VoiceInfo(
        name=name, language=lang, espeak=espeak, language_name=lang_name, gender=gender
    )


# --------------------------------------------------------------------------------------------
# Dimensions


@dataclass(frozen=True)
class KokoroDims:
    """Every size the layout depends on.  Defaults are Kokoro-82M (hexgrad/Kokoro-82M config.json)."""

    vocab_size: int = 178
    albert_embd: int = 128
    albert_hidden: int = 768
    albert_heads: int = 12
    albert_ffn: int = 2048
    albert_recurrence: int = 12
    context_length: int = 512
    hidden: int = 512  # hidden_dim
    style: int = 128  # style_dim (a voice row is 2 * style)
    n_layer: int = 3
    max_dur: int = 50
    text_kernel: int = 5
    decoder_dim: int = 1024
    asr_dim: int = 64
    decoder_blocks: int = 4  # len(decoder.decode)
    gen_channels: int = 512  # upsample_initial_channel
    upsample_rates: tuple[int, ...] = (10, 6)
    upsample_kernels: tuple[int, ...] = (20, 12)
    resblock_kernels: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[int, ...] = (1, 3, 5)
    n_fft: int = 20
    hop: int = 5
    harmonics: int = 9  # harmonic_num + 1
    conv_post_kernel: int = 7
    extra: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def up_sampling_factor(self) -> int:
        """Audio samples per duration frame (600 for Kokoro: 10 * 6 * hop 5 * 2)."""
        prod = 1
        for r in self.upsample_rates:
            prod *= r
        return prod * self.hop * 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


def _conv_padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


# --------------------------------------------------------------------------------------------
# Reference PyTorch parameter shapes (KModel with weight norm folded, unused params left out)


def _lstm_shapes(prefix: str, n_in: int, hidden: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    for rev in ("", "_reverse"):
        yield f"{prefix}.weight_ih_l0{rev}", (4 * hidden, n_in)
        yield f"{prefix}.weight_hh_l0{rev}", (4 * hidden, hidden)
        yield f"{prefix}.bias_ih_l0{rev}", (4 * hidden,)
        yield f"{prefix}.bias_hh_l0{rev}", (4 * hidden,)


def _adain_block_shapes(
    prefix: str, dim_in: int, dim_out: int, style: int, upsample: bool
) -> Iterator[tuple[str, tuple[int, ...]]]:
    yield f"{prefix}.conv1.weight", (dim_out, dim_in, 3)
    yield f"{prefix}.conv1.bias", (dim_out,)
    yield f"{prefix}.conv2.weight", (dim_out, dim_out, 3)
    yield f"{prefix}.conv2.bias", (dim_out,)
    yield f"{prefix}.norm1.fc.weight", (2 * dim_in, style)
    yield f"{prefix}.norm1.fc.bias", (2 * dim_in,)
    yield f"{prefix}.norm2.fc.weight", (2 * dim_out, style)
    yield f"{prefix}.norm2.fc.bias", (2 * dim_out,)
    if dim_in != dim_out:
        yield f"{prefix}.conv1x1.weight", (dim_out, dim_in, 1)
    if upsample:
        yield f"{prefix}.pool.weight", (dim_in, 1, 3)
        yield f"{prefix}.pool.bias", (dim_in,)


def _gen_resblock_shapes(
    prefix: str, channels: int, kernel: int, style: int
) -> Iterator[tuple[str, tuple[int, ...]]]:
    for j in range(3):
        for conv in ("convs1", "convs2"):
            yield f"{prefix}.{conv}.{j}.weight", (channels, channels, kernel)
            yield f"{prefix}.{conv}.{j}.bias", (channels,)
        for ada in ("adain1", "adain2"):
            yield f"{prefix}.{ada}.{j}.fc.weight", (2 * channels, style)
            yield f"{prefix}.{ada}.{j}.fc.bias", (2 * channels,)
        yield f"{prefix}.alpha1.{j}", (1, channels, 1)
        yield f"{prefix}.alpha2.{j}", (1, channels, 1)


Shapes = dict[str, tuple[int, ...]]


def torch_shapes(d: KokoroDims = KokoroDims()) -> Shapes:
    """Shapes of the KModel parameters the GGUF is made from, by PyTorch name."""
    s: Shapes = {}
    parts = (_albert_shapes, _text_encoder_shapes, _predictor_shapes, _decoder_shapes)
    for part in (*parts, _generator_shapes):
        s.update(part(d))
    return s


def _albert_shapes(d: KokoroDims) -> Shapes:
    s: Shapes = {}
    E, A, D = d.albert_embd, d.albert_hidden, d.hidden
    b = "bert."
    s[b + "embeddings.word_embeddings.weight"] = (d.vocab_size, E)
    s[b + "embeddings.position_embeddings.weight"] = (d.context_length, E)
    s[b + "embeddings.token_type_embeddings.weight"] = (2, E)
    s[b + "embeddings.LayerNorm.weight"] = (E,)
    s[b + "embeddings.LayerNorm.bias"] = (E,)
    s[b + "encoder.embedding_hidden_mapping_in.weight"] = (A, E)
    s[b + "encoder.embedding_hidden_mapping_in.bias"] = (A,)
    lay = b + "encoder.albert_layer_groups.0.albert_layers.0."
    s[lay + "full_layer_layer_norm.weight"] = (A,)
    s[lay + "full_layer_layer_norm.bias"] = (A,)
    for p in ("query", "key", "value", "dense"):
        s[lay + f"attention.{p}.weight"] = (A, A)
        s[lay + f"attention.{p}.bias"] = (A,)
    s[lay + "attention.LayerNorm.weight"] = (A,)
    s[lay + "attention.LayerNorm.bias"] = (A,)
    s[lay + "ffn.weight"] = (d.albert_ffn, A)
    s[lay + "ffn.bias"] = (d.albert_ffn,)
    s[lay + "ffn_output.weight"] = (A, d.albert_ffn)
    s[lay + "ffn_output.bias"] = (A,)
    s["bert_encoder.weight"] = (D, A)
    s["bert_encoder.bias"] = (D,)
    return s


def _text_encoder_shapes(d: KokoroDims) -> Shapes:
    D = d.hidden
    s: Shapes = {"text_encoder.embedding.weight": (d.vocab_size, D)}
    for i in range(d.n_layer):
        s[f"text_encoder.cnn.{i}.0.weight"] = (D, D, d.text_kernel)
        s[f"text_encoder.cnn.{i}.0.bias"] = (D,)
        s[f"text_encoder.cnn.{i}.1.gamma"] = (D,)
        s[f"text_encoder.cnn.{i}.1.beta"] = (D,)
    s.update(_lstm_shapes("text_encoder.lstm", D, D // 2))
    return s


def _predictor_shapes(d: KokoroDims) -> Shapes:
    s: Shapes = {}
    D, S = d.hidden, d.style
    p = "predictor."
    for i in range(d.n_layer):
        s.update(_lstm_shapes(f"{p}text_encoder.lstms.{2 * i}", D + S, D // 2))
        s[f"{p}text_encoder.lstms.{2 * i + 1}.fc.weight"] = (2 * D, S)
        s[f"{p}text_encoder.lstms.{2 * i + 1}.fc.bias"] = (2 * D,)
    s.update(_lstm_shapes(f"{p}lstm", D + S, D // 2))
    s[f"{p}duration_proj.linear_layer.weight"] = (d.max_dur, D)
    s[f"{p}duration_proj.linear_layer.bias"] = (d.max_dur,)
    s.update(_lstm_shapes(f"{p}shared", D + S, D // 2))
    for branch in ("F0", "N"):
        s.update(_adain_block_shapes(f"{p}{branch}.0", D, D, S, False))
        s.update(_adain_block_shapes(f"{p}{branch}.1", D, D // 2, S, True))
        s.update(_adain_block_shapes(f"{p}{branch}.2", D // 2, D // 2, S, False))
        s[f"{p}{branch}_proj.weight"] = (1, D // 2, 1)
        s[f"{p}{branch}_proj.bias"] = (1,)
    return s


def _decoder_shapes(d: KokoroDims) -> Shapes:
    s: Shapes = {}
    D, S, Dd = d.hidden, d.style, d.decoder_dim
    dec = "decoder."
    s.update(_adain_block_shapes(f"{dec}encode", D + 2, Dd, S, False))
    dec_in = Dd + 2 + d.asr_dim
    for i in range(d.decoder_blocks):
        last = i == d.decoder_blocks - 1
        s.update(
            _adain_block_shapes(f"{dec}decode.{i}", dec_in, d.gen_channels if last else Dd, S, last)
        )
    s[f"{dec}F0_conv.weight"] = (1, 1, 3)
    s[f"{dec}F0_conv.bias"] = (1,)
    s[f"{dec}N_conv.weight"] = (1, 1, 3)
    s[f"{dec}N_conv.bias"] = (1,)
    s[f"{dec}asr_res.0.weight"] = (d.asr_dim, D, 1)
    s[f"{dec}asr_res.0.bias"] = (d.asr_dim,)
    return s


def _generator_shapes(d: KokoroDims) -> Shapes:
    s: Shapes = {}
    S = d.style
    g = "decoder.generator."
    s[g + "m_source.l_linear.weight"] = (1, d.harmonics)
    s[g + "m_source.l_linear.bias"] = (1,)
    ch = d.gen_channels
    n_up = len(d.upsample_rates)
    for i, k in enumerate(d.upsample_kernels):
        s[g + f"ups.{i}.weight"] = (ch // 2**i, ch // 2 ** (i + 1), k)
        s[g + f"ups.{i}.bias"] = (ch // 2 ** (i + 1),)
    for i in range(n_up):
        c_cur = ch // 2 ** (i + 1)
        stride = int(np.prod(d.upsample_rates[i + 1 :])) if i + 1 < n_up else 1
        kernel = stride * 2 if i + 1 < n_up else 1
        s[g + f"noise_convs.{i}.weight"] = (c_cur, d.n_fft + 2, kernel)
        s[g + f"noise_convs.{i}.bias"] = (c_cur,)
        s.update(_gen_resblock_shapes(g + f"noise_res.{i}", c_cur, 7 if i + 1 < n_up else 11, S))
    for i in range(n_up):
        c_cur = ch // 2 ** (i + 1)
        for j, k in enumerate(d.resblock_kernels):
            s.update(
                _gen_resblock_shapes(
                    g + f"resblocks.{i * len(d.resblock_kernels) + j}", c_cur, k, S
                )
            )
    s[g + "conv_post.weight"] = (d.n_fft + 2, ch // 2**n_up, d.conv_post_kernel)
    s[g + "conv_post.bias"] = (d.n_fft + 2,)
    return s


# --------------------------------------------------------------------------------------------
# PyTorch names -> TTS.cpp names (kokoro_gguf_encoder.py semantics)

_ALBERT_PARTS = {
    "embeddings.word_embeddings.weight": "token_embd",
    "embeddings.position_embeddings.weight": "position_embd",
    "embeddings.LayerNorm.weight": "norm",
    "embeddings.LayerNorm.bias": "norm_bias",
    "encoder.embedding_hidden_mapping_in.weight": "embd",
    "encoder.embedding_hidden_mapping_in.bias": "embd_bias",
}
_ALBERT_LAYER_PARTS = {
    "full_layer_layer_norm.weight": "attn_norm",
    "full_layer_layer_norm.bias": "attn_norm_bias",
    "attention.query.weight": "q",
    "attention.query.bias": "q_bias",
    "attention.key.weight": "k",
    "attention.key.bias": "k_bias",
    "attention.value.weight": "v",
    "attention.value.bias": "v_bias",
    "attention.dense.weight": "o",
    "attention.dense.bias": "o_bias",
    "attention.LayerNorm.weight": "ffn_norm",
    "attention.LayerNorm.bias": "ffn_norm_bias",
    "ffn.weight": "ffn",
    "ffn.bias": "ffn_bias",
    "ffn_output.weight": "ffn_out",
    "ffn_output.bias": "ffn_out_bias",
}
_ALBERT_LAYER = "encoder.albert_layer_groups.0.albert_layers.0."
_PREDICTOR_PARTS = {
    "F0_proj.weight": "f0_proj_kernel",
    "F0_proj.bias": "f0_proj_bias",
    "N_proj.weight": "n_proj_kernel",
    "N_proj.bias": "n_proj_bias",
    "duration_proj.linear_layer.weight": "duration_proj",
    "duration_proj.linear_layer.bias": "duration_proj_bias",
}
_LSTM_PARAM = re.compile(r"(weight|bias)_(ih|hh)_l(\d+)(_reverse)?")

Put = Callable[[str, np.ndarray], None]


def _halves(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = a.shape[0] // 2
    return a[:n], a[n:]


def _lstm(put: Put, base: str, pname: str, a: np.ndarray) -> None:
    """PyTorch packs the gates (i, f, g, o) along dim 0; TTS.cpp stores one tensor per gate.

    Index 2*gate is the input-hidden part, 2*gate + 1 the hidden-hidden part.
    """
    m = _LSTM_PARAM.fullmatch(pname)
    if m is None:
        raise KeyError(f"not an LSTM parameter: {base}.{pname}")
    kind = "weights" if m.group(1) == "weight" else "biases"
    if m.group(4):
        kind = "reverse_" + kind
    odd = 0 if m.group(2) == "ih" else 1
    n = a.shape[0] // 4
    for gate in range(4):
        put(f"{base}.{m.group(3)}.{kind}.{2 * gate + odd}", a[gate * n : (gate + 1) * n])


def _ada_block(put: Put, base: str, rest: str, a: np.ndarray) -> None:
    parts = rest.split(".")
    if parts[0] in ("norm1", "norm2"):
        if parts[1] == "norm":  # InstanceNorm affine params: unused by the model
            return
        gamma, beta = _halves(a)
        put(f"{base}.{parts[0]}_gamma_{parts[-1]}", gamma)
        put(f"{base}.{parts[0]}_beta_{parts[-1]}", beta)
    else:
        put(f"{base}.{'_'.join(parts)}", a)


def _gen_resblock(put: Put, base: str, rest: str, a: np.ndarray) -> None:
    parts = rest.split(".")
    idx = parts[1]
    if parts[0] in ("adain1", "adain2"):
        if parts[2] == "norm":
            return
        gamma, beta = _halves(a)
        n = parts[0][-1]
        put(f"{base}.{idx}.gamma{n}_{parts[-1]}", gamma)
        put(f"{base}.{idx}.beta{n}_{parts[-1]}", beta)
    elif parts[-1] in ("weight", "bias"):
        put(f"{base}.{idx}.{parts[0]}_{parts[-1]}", a)
    else:  # alpha1.N / alpha2.N
        put(f"{base}.{idx}.{parts[0]}", a)


def _map_generator(put: Put, name: str, a: np.ndarray) -> None:
    base = "decoder.generator"
    parts = name.split(".")
    if parts[0] == "m_source":
        put(f"{base}.m_source_{parts[-1]}", a)
    elif parts[0] == "noise_convs":
        put(f"{base}.noise_blocks.{parts[1]}.conv_{parts[-1]}", a)
    elif parts[0] == "noise_res":
        _gen_resblock(put, f"{base}.noise_blocks.{parts[1]}.resblock", ".".join(parts[2:]), a)
    elif parts[0] == "ups":
        put(f"{base}.{name}", a)
    elif parts[0] == "resblocks":
        _gen_resblock(put, f"{base}.resblocks.{parts[1]}", ".".join(parts[2:]), a)
    elif parts[0] == "conv_post":
        put(f"{base}.{'_'.join(parts)}", a)


def _map_one(put: Put, name: str, a: np.ndarray) -> None:
    top, _, rest = name.partition(".")
    if top == "bert":
        if rest in _ALBERT_PARTS:
            put(f"albert.{_ALBERT_PARTS[rest]}", a)
        elif rest.startswith(_ALBERT_LAYER) and rest[len(_ALBERT_LAYER) :] in _ALBERT_LAYER_PARTS:
            put(f"albert.layer.0.{_ALBERT_LAYER_PARTS[rest[len(_ALBERT_LAYER) :]]}", a)
        elif rest == "embeddings.token_type_embeddings.weight":
            put("albert.token_type_embd", a[0])  # Kokoro only ever uses token type 0
    elif top == "bert_encoder":
        put("duration_predictor.encode" + ("_bias" if rest == "bias" else ""), a)
    elif top == "text_encoder":
        parts = rest.split(".")
        if parts[0] == "embedding":
            put("text_encoder.embedding_weight", a)
        elif parts[0] == "lstm":
            _lstm(put, "text_encoder.lstm", parts[1], a)
        elif parts[0] == "cnn":
            put(f"text_encoder.layers.{int(parts[1])}.{parts[-1]}", a)
    elif top == "predictor":
        parts = rest.split(".")
        base = "duration_predictor"
        if parts[0] == "text_encoder":
            idx = int(parts[2])
            if idx % 2 == 1:
                gamma, beta = _halves(a)
                put(f"{base}.layers.{idx}.gamma_{parts[-1]}", gamma)
                put(f"{base}.layers.{idx}.beta_{parts[-1]}", beta)
            else:
                _lstm(put, f"{base}.layers.{idx}.lstm", parts[-1], a)
        elif parts[0] == "lstm":
            _lstm(put, f"{base}.duration_lstm", parts[1], a)
        elif parts[0] == "shared":
            _lstm(put, f"{base}.shared_lstm", parts[1], a)
        elif rest in _PREDICTOR_PARTS:
            put(f"{base}.{_PREDICTOR_PARTS[rest]}", a)
        elif parts[0] == "N":
            _ada_block(put, f"{base}.n_blocks.{parts[1]}", ".".join(parts[2:]), a)
        elif parts[0] == "F0":
            _ada_block(put, f"{base}.f0_blocks.{parts[1]}", ".".join(parts[2:]), a)
    elif top == "decoder":
        parts = rest.split(".")
        if parts[0] == "generator":
            _map_generator(put, ".".join(parts[1:]), a)
        elif parts[0] == "decode":
            _ada_block(put, f"decoder.decoder_blocks.{parts[1]}", ".".join(parts[2:]), a)
        elif parts[0] == "encode":
            _ada_block(put, "decoder.encoder_block", ".".join(parts[1:]), a)
        elif parts[0] in ("F0_conv", "N_conv"):
            put(f"decoder.{'_'.join(parts).lower()}", a)
        elif parts[0] == "asr_res":
            put(f"decoder.asr_conv_{parts[-1]}", a)


def ttscpp_tensors(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map a KModel state dict (weight norm folded) to TTS.cpp's tensors (``kokoro.`` names)."""
    out: dict[str, np.ndarray] = {}

    def put(name: str, a: np.ndarray) -> None:
        out[PREFIX + name] = a

    for name, a in state.items():
        _map_one(put, name, a)
    return out


def expected_shapes(d: KokoroDims = KokoroDims()) -> dict[str, tuple[int, ...]]:
    """Every weight tensor (not voices) of a TTS.cpp Kokoro file with its numpy-order shape."""
    zero = np.zeros((), np.float32)
    fake = {n: np.broadcast_to(zero, shp) for n, shp in torch_shapes(d).items()}
    return {n: tuple(a.shape) for n, a in ttscpp_tensors(fake).items()}


def torch_from_ttscpp(
    get: Callable[[str], np.ndarray],
    d: KokoroDims = KokoroDims(),
    base: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Inverse of ``ttscpp_tensors``: rebuild KModel parameters from TTS.cpp tensors (``get(name)``).

    The forward mapping only slices along the first axis (LSTM gates, AdaIN gamma/beta halves) or
    keeps row 0 (token types); rows TTS.cpp does not store are taken from ``base`` (zeros without)."""
    out: dict[str, np.ndarray] = {}
    for tname, shp in torch_shapes(d).items():
        rows = np.arange(shp[0], dtype=np.float64).reshape((shp[0],) + (1,) * (len(shp) - 1))
        probe = np.broadcast_to(rows, shp)
        pieces: list[tuple[int, str, bool]] = []

        def put(name: str, a: np.ndarray, pieces: list = pieces, ndim: int = len(shp)) -> None:
            whole_row = a.ndim < ndim  # a[0]: one row of the parameter
            pieces.append((int(a.reshape(-1)[0]) if a.size else 0, PREFIX + name, whole_row))

        _map_one(put, tname, probe)
        if not pieces:
            continue
        if len(pieces) == 1 and pieces[0][2]:
            full = (
                np.array(base[tname], np.float32)
                if base and tname in base
                else np.zeros(shp, np.float32)
            )
            full[pieces[0][0]] = get(pieces[0][1])
            out[tname] = full
            continue
        pieces.sort()
        out[tname] = np.concatenate(
            [np.asarray(get(n), np.float32).reshape(-1, *shp[1:]) for _, n, _ in pieces]
        )
    return out


# --------------------------------------------------------------------------------------------
# Metadata


def ttscpp_metadata(d: KokoroDims = KokoroDims()) -> dict[str, int]:
    """The model hyper-parameters TTS.cpp's converter writes (all uint32), keyed as it keys them."""
    kv: dict[str, int] = {}
    al = "kokoro.duration_predictor.albert"
    kv[f"{al}.context_length"] = d.context_length
    kv[f"{al}.layers"] = 1
    kv[f"{al}.attn_heads"] = d.albert_heads
    kv[f"{al}.hidden_size"] = d.albert_hidden
    kv[f"{al}.recurrence"] = d.albert_recurrence
    kv["kokoro.duration_predictor.hidden_size"] = d.hidden
    kv["kokoro.duration_predictor.layers"] = d.n_layer
    kv["kokoro.duration_predictor.f0_n_blocks"] = 3
    kv["kokoro.text_encoder.layers"] = d.n_layer
    g = "kokoro.decoder.generator"
    n_up = len(d.upsample_rates)
    kv[f"{g}.up_sampling_factor"] = d.up_sampling_factor
    kv[f"{g}.kernels"] = len(d.resblock_kernels)
    kv[f"{g}.upsamples"] = n_up
    kv[f"{g}.layers"] = d.decoder_blocks
    kv[f"{g}.padding"] = _conv_padding(d.conv_post_kernel)
    kv[f"{g}.n_fft"] = d.n_fft
    kv[f"{g}.hop"] = d.hop
    for i in range(n_up):
        k = 7 if i + 1 < n_up else 11
        for j, dil in enumerate(d.resblock_dilations):
            kv[f"{g}.noise_blocks.{i}.res_block.{j}.padding"] = _conv_padding(k, dil)
            kv[f"{g}.noise_blocks.{i}.res_block.{j}.dilation"] = dil
    for i in range(n_up):
        stride = int(np.prod(d.upsample_rates[i + 1 :])) if i + 1 < n_up else 1
        kv[f"{g}.noise_blocks.{i}.stride"] = stride
        kv[f"{g}.noise_blocks.{i}.padding"] = (stride + 1) // 2 if i + 1 < n_up else 0
    for i in range(n_up):
        for j, k in enumerate(d.resblock_kernels):
            for jj, dil in enumerate(d.resblock_dilations):
                kv[f"{g}.res_blocks.{i * len(d.resblock_kernels) + j}.{jj}.padding"] = (
                    _conv_padding(k, dil)
                )
                kv[f"{g}.res_blocks.{i * len(d.resblock_kernels) + j}.{jj}.dilation"] = dil
    for i, (k, u) in enumerate(zip(d.upsample_kernels, d.upsample_rates, strict=True)):
        kv[f"{g}.up_convs.{i}.padding"] = (k - u) // 2
        kv[f"{g}.up_convs.{i}.stride"] = u
    return kv


def dims_from_tensors(shape: Callable[[str], tuple[int, ...]], hp: Mapping[str, int]) -> KokoroDims:
    """Recover the dimensions from a file's tensor shapes and metadata (so smaller test models and
    future variants validate the same way).  ``shape(name)`` raises KeyError for a missing tensor.

    Sizes are read from tensors that are never stored reshaped (embeddings, biases, the matrices
    TTS.cpp quantizes); kernel sizes from element counts, since quantized convs are stored 2-D."""
    p = PREFIX
    g = "kokoro.decoder.generator"

    def size(name: str) -> int:
        return int(np.prod(shape(p + name)))

    def first(name: str) -> int:
        return shape(p + name)[0]

    vocab, embd = shape(p + "albert.token_embd")
    hidden = first("duration_predictor.encode_bias")
    n_up = int(hp.get(f"{g}.upsamples", 2))
    n_k = int(hp.get(f"{g}.kernels", 3))
    gen = 2 * first("decoder.generator.ups.0.bias")
    res_ch = [first(f"decoder.generator.resblocks.{j}.0.convs1_bias") for j in range(n_k)]
    return KokoroDims(
        vocab_size=vocab,
        albert_embd=embd,
        albert_hidden=first("albert.embd_bias"),
        albert_heads=int(hp.get("kokoro.duration_predictor.albert.attn_heads", 12)),
        albert_ffn=first("albert.layer.0.ffn_bias"),
        albert_recurrence=int(hp.get("kokoro.duration_predictor.albert.recurrence", 12)),
        context_length=first("albert.position_embd"),
        hidden=hidden,
        style=shape(p + "duration_predictor.layers.0.lstm.0.weights.0")[-1] - hidden,
        n_layer=int(hp.get("kokoro.duration_predictor.layers", 3)),
        max_dur=first("duration_predictor.duration_proj_bias"),
        text_kernel=size("text_encoder.layers.0.weight") // (hidden * hidden),
        decoder_dim=first("decoder.encoder_block.conv1_bias"),
        asr_dim=first("decoder.asr_conv_bias"),
        decoder_blocks=int(hp.get(f"{g}.layers", 4)),
        gen_channels=gen,
        upsample_rates=tuple(int(hp.get(f"{g}.up_convs.{i}.stride", 0)) for i in range(n_up)),
        upsample_kernels=tuple(
            size(f"decoder.generator.ups.{i}.weight") // ((gen // 2**i) * (gen // 2 ** (i + 1)))
            for i in range(n_up)
        ),
        resblock_kernels=tuple(
            size(f"decoder.generator.resblocks.{j}.0.convs1_weight") // (c * c)
            for j, c in enumerate(res_ch)
        ),
        resblock_dilations=tuple(
            int(hp.get(f"{g}.res_blocks.0.{j}.dilation", 0)) for j in range(3)
        ),
        n_fft=int(hp.get(f"{g}.n_fft", 20)),
        hop=int(hp.get(f"{g}.hop", 5)),
        harmonics=size("decoder.generator.m_source_weight"),
        conv_post_kernel=size("decoder.generator.conv_post_weight")
        // (first("decoder.generator.conv_post_bias") * (gen // 2**n_up)),
    )


# --------------------------------------------------------------------------------------------
# Which tensors get which type (TTS.cpp quantize_impl.cpp)


def is_f16_compatible(name: str) -> bool:
    """TTS.cpp's kokoro_is_f16_compatible: weights, not voices/biases/norm/AdaIN/Snake parameters."""
    return (
        "voice_tensors" not in name
        and "bias" not in name
        and "gamma" not in name
        and "beta" not in name
        and "alpha" not in name
        and not name.endswith("embd")
        and not name.endswith("norm")
    )


_PREDICTOR_QUANTIZABLE = ("duration_proj", "encode", "shared_lstm", "duration_lstm", "layers")


def is_ttscpp_quantizable(name: str) -> bool:
    """TTS.cpp's kokoro_is_quantizable: ALBERT, the LSTMs and the predictor's projections."""
    if not is_f16_compatible(name):
        return False
    if name.startswith("kokoro.albert") or name.startswith("kokoro.text_encoder.lstm"):
        return True
    if name.startswith("kokoro.duration_predictor."):
        parts = name.split(".")
        return len(parts) > 2 and parts[2] in _PREDICTOR_QUANTIZABLE
    return False


def is_decoder_conv_weight(name: str) -> bool:
    """Convolution weights of the decoder and generator (the bulk of the model, ~53M parameters)
    that TTS.cpp leaves unquantized; ``--quantize-convs`` quantizes these too."""
    if not name.startswith("kokoro.decoder.") or not is_f16_compatible(name):
        return False
    return name.endswith("_weight") or (".ups." in name and name.endswith(".weight"))


def is_extra_quantizable(name: str) -> bool:
    """Weights only ``--quantize-all`` quantizes: the text encoder's and the predictor's convolutions
    and the style projections (AdaIN / AdaLayerNorm ``*gamma*_weight`` / ``*beta*_weight``), which
    TTS.cpp keeps F16 (convs) or F32 (style projections)."""
    leaf = name.rsplit(".", 1)[-1]
    if "bias" in leaf or "alpha" in leaf or "voice_tensors" in name:
        return False
    if ("gamma" in leaf or "beta" in leaf) and leaf.endswith("weight"):
        return True
    if name.startswith("kokoro.text_encoder.layers.") and leaf == "weight":
        return True
    return name.startswith(
        ("kokoro.duration_predictor.f0_blocks.", "kokoro.duration_predictor.n_blocks.")
    ) and leaf.endswith("_weight")
