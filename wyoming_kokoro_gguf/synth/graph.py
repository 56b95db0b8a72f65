"""The Kokoro-82M graph for ONNX Runtime, built here from the architecture and a model file.

Reference architecture: hexgrad/kokoro (kokoro/model.py, modules.py, istftnet.py).  Tensor names
are TTS.cpp's GGUF layout (py-gguf/tts_encoders/kokoro_gguf_encoder.py): weight-norm folded,
AdaIN ``fc`` split into gamma/beta halves, LSTM weights split per gate (i, f, g, o; even index =
input weights, odd = recurrent).  Dimensions come from tensor shapes and the file's metadata.

Two graphs:
- stage 1 (text side): tokens, style, speed -> durations (frames per token), ``d`` (predictor
  features, [T, 1, 640]) and ``t_en`` (text encoder output, [T, 1, 512]).
- the host repeats rows of ``d``/``t_en`` by the durations (the alignment matrix product of the
  reference, as a gather),
- stage 2 (acoustic side): ``en``, ``asr`` (the repeated rows), style -> 24 kHz audio.

Numerics: stage 1 and the F0/N predictor follow the op sequence of the widely used ONNX export
(kokoro-onnx's model) closely enough to be bit-identical to it in fp32, because the harmonic
source integrates F0 into a phase (cumsum over the utterance, fp32 values up to ~1e5 rad) that
turns any rounding difference in F0 into audible-level waveform differences (~30 dB SNR).  The
decoder and generator may use exact rewrites (LoweringPlan.rewrites: height-1 2-D convolutions,
which get ORT's NCHWc kernels, and InstanceNormalization): same maths, other rounding, no
amplification.  The harmonic source is the deterministic variant of the reference (no random
noise or initial phases), like the export.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from wyoming_kokoro_gguf.audio import SAMPLE_RATE
from wyoming_kokoro_gguf.synth.lowering import LoweringPlan, default_plan

_LOG = logging.getLogger(__name__)

OPSET = 17
PREFIX = "kokoro."
# SineGen settings of the reference Generator (istftnet.py): harmonics 8, sine_amp 0.1,
# voiced threshold 10 Hz.
SINE_AMP = 0.1
VOICED_THRESHOLD = 10.0
LAYER_NORM_EPS = 1e-5
ALBERT_LN_EPS = 1e-12  # transformers' AlbertConfig default
EXTERNAL_MIN_BYTES = 4096


class GraphBuildError(RuntimeError):
    """The model file lacks a tensor or shape the Kokoro graph needs."""


@dataclass
class BuiltGraphs:
    stage1: onnx.ModelProto
    stage2: onnx.ModelProto
    notes: list[str]
    matmulnbits: int = 0  # Linear weights kept packed (GGUF Q4_0/Q8_0 blocks)


class _Builder:
    """Minimal helper over onnx.helper: unique names, initializers, nodes."""

    def __init__(self, name: str, external: bool = False) -> None:
        self.name = name
        # name -> array of the weights kept out of the protobuf (see KokoroGraph.external)
        self.external: dict[str, np.ndarray] | None = {} if external else None
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0
        self.uses_ms = False
        self._shared: dict[str, str] = {}

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def shared(self, key: str, make) -> str:
        """One initializer per key (ALBERT reuses one layer's weights 12 times: store them once)."""
        name = self._shared.get(key)
        if name is None:
            name = self._shared[key] = self.init(key, make())
        return name

    def init(self, hint: str, array: np.ndarray) -> str:
        name = self.fresh(hint)
        array = np.ascontiguousarray(array)
        if self.external is not None and array.nbytes >= EXTERNAL_MIN_BYTES:
            # a placeholder in the graph; the data goes to ORT as an OrtValue (no protobuf copy)
            tensor = TensorProto()
            tensor.name = name
            tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            tensor.dims.extend(array.shape)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (
                ("location", "in-memory"),
                ("offset", "0"),
                ("length", str(array.nbytes)),
            ):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            self.inits.append(tensor)
            self.external[name] = array
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def const(self, value, dtype=np.float32) -> str:
        # one initializer per use: ORT's extended optimizers may rewrite a shared one in place
        return self.init("c", np.asarray(value, dtype=dtype))

    def op(
        self,
        op_type: str,
        inputs: list[str],
        hint: str | None = None,
        outputs: int = 1,
        domain: str = "",
        **attrs,
    ) -> str | list[str]:
        names = [self.fresh(hint or op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, domain=domain or None, **attrs))
        if domain == "com.microsoft":
            self.uses_ms = True
        return names[0] if outputs == 1 else names

    def input(self, name: str, elem: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, src: str, name: str, elem: int, shape: list) -> None:
        self.nodes.append(helper.make_node("Identity", [src], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        if self.uses_ms:
            opsets.append(helper.make_opsetid("com.microsoft", 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="wyoming_kokoro_gguf")
        model.ir_version = 8
        return model


class _Weights:
    """Tensor access by TTS.cpp name without the ``kokoro.`` prefix."""

    def __init__(self, model) -> None:
        self.model = model
        self.names = set(model.tensor_names)

    def has(self, name: str) -> bool:
        return PREFIX + name in self.names

    def get(self, name: str) -> np.ndarray:
        if not self.has(name):
            raise GraphBuildError(f"the model file has no tensor {PREFIX + name}")
        return np.asarray(self.model.tensor(PREFIX + name), dtype=np.float32)

    def qtype(self, name: str) -> str:
        return getattr(
            self.model.tensor_type(PREFIX + name),
            "name",
            str(self.model.tensor_type(PREFIX + name)),
        )

    def raw(self, name: str) -> np.ndarray:
        return np.asarray(self.model.raw_tensor(PREFIX + name))

    def hparam(self, key: str, default):
        hp = self.model.hparams
        for k in (PREFIX + key, key):
            if k in hp:
                return hp[k]
        return default


class KokoroGraph:
    """Builds both stages for one model file and one lowering plan."""

    def __init__(self, model, plan: LoweringPlan | None = None, external: bool = False) -> None:
        """``external``: keep weights out of the protobufs; after each build_stage*, the arrays
        are in ``self.external`` for SessionOptions.add_external_initializers (saves two
        copies of the weights while loading)."""
        self.w = _Weights(model)
        self.use_external = external
        # style vector halves: decoder | predictor (128 each in Kokoro-82M); from the AdaLN fc
        self.style_dim = int(self.w.get("duration_predictor.layers.1.gamma_weight").shape[1])
        self.external: dict[str, np.ndarray] = {}
        self.plan = plan or default_plan()
        self.notes: list[str] = []
        self.int8_convs = 0  # int8 dot-product convolutions in stage 2 (plan conv="int8")
        # Per int8 conv, an output/input range ratio that can never clip (calibration's start).
        self.conv_bounds: list[float] = []
        # build_stage2 with calibrate=True also outputs each int8 conv's measured peak ratios.
        self.calibrate = False
        self.conv_channels: list[int] = []  # output channels per int8 conv
        self.conv_gains: list[np.ndarray] = []  # per int8 conv, its channels' gains (engine)
        self._ratios = ""
        self._peaks: list[str] = []
        self.nbits_used = 0
        self._packed: dict[str, tuple] = {}
        # True while building the F0/N predictor: there every op follows the reference exactly,
        # because the harmonic source integrates F0 (its cumulative phase amplifies rounding).
        # That path is ~1% of the compute; the decoder/generator use the faster 2-D forms.
        self._conv2d = False
        self._ref_norm = True
        self.fast_decoder = bool(self.plan.rewrites)

    # ------------------------------------------------------------ shared pieces

    def linear(self, b: _Builder, x: str, wname: str, bname: str | None) -> str:
        """x[..., in] @ W.T + b, W stored [out, in]; GGUF Q4_0/Q8_0 blocks may stay packed."""
        qtype = self.w.qtype(wname)
        if self.plan.linear == "matmulnbits" and qtype in ("Q4_0", "Q8_0"):
            y = self._matmulnbits(b, x, wname, qtype)
        else:
            y = b.op("MatMul", [x, b.shared(wname, lambda: self.w.get(wname).T)])
        if bname is not None:
            y = b.op("Add", [y, b.shared(bname, lambda: self.w.get(bname))])
        return y

    def _matmulnbits(self, b: _Builder, x: str, wname: str, qtype: str) -> str:
        key = f"{b.name}:{wname}"
        if key not in self._packed:
            self._packed[key] = self._pack_blocks(b, wname, qtype)
        packed, scales, k, n, bits = self._packed[key]
        return b.op(
            "MatMulNBits",
            [x, packed, scales],
            domain="com.microsoft",
            K=k,
            N=n,
            bits=bits,
            block_size=32,
        )

    def _pack_blocks(self, b: _Builder, wname: str, qtype: str) -> tuple:
        raw = self.w.raw(wname).view(np.uint8)
        shape = self.w.get(wname).shape  # [N, K] (dequantized shape; blocks run along K)
        n, k = int(shape[0]), int(shape[1])
        nblocks = k // 32
        if qtype == "Q4_0":
            blocks = raw.reshape(n, nblocks, 18)
            scales = blocks[:, :, :2].copy().view(np.float16).astype(np.float32).reshape(-1)
            q = blocks[:, :, 2:]
            # GGUF: byte j = element j (low nibble) and j + 16 (high nibble);
            # MatMulNBits: byte j = element 2j (low) and 2j + 1 (high).
            vals = np.concatenate([q & 0x0F, q >> 4], axis=2)  # elements 0..31
            packed = (vals[:, :, 0::2] | (vals[:, :, 1::2] << 4)).astype(np.uint8)
            bits = 4
        else:  # Q8_0: fp16 scale + 32 int8, zero point 128 after the shift to uint8
            blocks = raw.reshape(n, nblocks, 34)
            scales = blocks[:, :, :2].copy().view(np.float16).astype(np.float32).reshape(-1)
            packed = (blocks[:, :, 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
            bits = 8
        self.nbits_used += 1
        return b.init(wname + "_q", packed), b.init(wname + "_s", scales), k, n, bits

    def lstm(self, b: _Builder, x: str, prefix: str) -> str:
        """Bidirectional one-layer LSTM over x [T, 1, in] -> [T, 1, 2H] (torch output layout)."""
        order = (0, 3, 1, 2)  # ONNX gate order i, o, f, c from torch's i, f, g, o

        def stack(kind: str, parity: int) -> np.ndarray:
            return np.concatenate([self.w.get(f"{prefix}.{kind}.{2 * g + parity}") for g in order])

        w = np.stack([stack("weights", 0), stack("reverse_weights", 0)])
        r = np.stack([stack("weights", 1), stack("reverse_weights", 1)])
        bias = np.stack(
            [
                np.concatenate([stack("biases", 0), stack("biases", 1)]),
                np.concatenate([stack("reverse_biases", 0), stack("reverse_biases", 1)]),
            ]
        )
        hidden = r.shape[2]
        y = b.op(
            "LSTM",
            [x, b.init(prefix + ".W", w), b.init(prefix + ".R", r), b.init(prefix + ".B", bias)],
            direction="bidirectional",
            hidden_size=hidden,
        )
        y = b.op("Transpose", [y], perm=[0, 2, 1, 3])  # [T, 1, 2, H]
        return b.op("Reshape", [y, b.const([0, 0, -1], np.int64)])

    def style_affine(self, b: _Builder, s: str, prefix_g: str, prefix_b: str) -> tuple[str, str]:
        """(1 + gamma, beta) as [C] vectors from the style: the two halves of AdaIN's fc."""
        gamma = self.linear(b, s, prefix_g + "_weight", prefix_g + "_bias")
        beta = self.linear(b, s, prefix_b + "_weight", prefix_b + "_bias")
        flat = b.const([-1], np.int64)
        scale = b.op("Add", [b.op("Reshape", [gamma, flat]), b.const(1.0)])
        return scale, b.op("Reshape", [beta, flat])

    # ------------------------------------------------------------ stage 1

    def build_stage1(self) -> onnx.ModelProto:
        b = _Builder("kokoro_stage1", self.use_external)
        self.external = b.external if b.external is not None else {}
        w = self.w
        tokens = b.input("tokens", TensorProto.INT64, [1, "T"])
        sd = self.style_dim
        style = b.input("style", TensorProto.FLOAT, [1, 2 * sd])
        speed = b.input("speed", TensorProto.FLOAT, [1])
        s_pred = b.op(
            "Slice",
            [style, b.const([sd], np.int64), b.const([2 * sd], np.int64), b.const([1], np.int64)],
        )

        # ---- ALBERT (shared layer applied `recurrence` times)
        n_tok = b.op("Shape", [tokens], start=1, end=2)
        emb = b.op("Gather", [b.init("token_embd", w.get("albert.token_embd")), tokens])
        pos = b.op(
            "Slice",
            [b.init("position_embd", w.get("albert.position_embd")), b.const([0], np.int64), n_tok],
        )
        # word + token type first, then position: the reference's order of additions
        tte = w.get("albert.token_type_embd").reshape(-1)
        x = b.op("Add", [emb, b.init("token_type", tte)])
        x = b.op("Add", [x, b.op("Unsqueeze", [pos, b.const([0], np.int64)])])
        x = b.op(
            "LayerNormalization",
            [
                x,
                b.init("albert_norm", w.get("albert.norm")),
                b.init("albert_norm_b", w.get("albert.norm_bias")),
            ],
            axis=-1,
            epsilon=ALBERT_LN_EPS,
        )
        x = self.linear(b, x, "albert.embd", "albert.embd_bias")
        hidden = w.get("albert.embd").shape[0]
        heads = int(w.hparam("duration_predictor.albert.attn_heads", 12))
        layers = int(w.hparam("duration_predictor.albert.recurrence", 12))
        head_dim = hidden // heads
        split_heads = b.const([1, -1, heads, head_dim], np.int64)
        merge_heads = b.const([1, -1, hidden], np.int64)
        L = "albert.layer.0."
        for _ in range(layers):
            q = self.linear(b, x, L + "q", L + "q_bias")
            k = self.linear(b, x, L + "k", L + "k_bias")
            v = self.linear(b, x, L + "v", L + "v_bias")
            q = b.op("Transpose", [b.op("Reshape", [q, split_heads])], perm=[0, 2, 1, 3])
            k = b.op("Transpose", [b.op("Reshape", [k, split_heads])], perm=[0, 2, 3, 1])
            v = b.op("Transpose", [b.op("Reshape", [v, split_heads])], perm=[0, 2, 1, 3])
            # both q and k scaled by head_dim ** -0.25, as transformers' ALBERT (fp32 rounding)
            root = np.sqrt(np.float32(1.0 / math.sqrt(head_dim)), dtype=np.float32)
            # (as vectors, not scalars: ORT would fold two scalar scales into one MatMul alpha,
            # which rounds differently from the reference)
            q = b.op("Mul", [q, b.const(np.full(head_dim, root))])
            k = b.op("Mul", [k, b.const(np.full((head_dim, 1), root))])
            scores = b.op("MatMul", [q, k])
            probs = b.op("Softmax", [scores], axis=-1)
            ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
            ctx = b.op("Reshape", [ctx, merge_heads])
            attn = self.linear(b, ctx, L + "o", L + "o_bias")
            h = b.op(
                "LayerNormalization",
                [
                    b.op("Add", [x, attn]),
                    b.shared(L + "ffn_norm", lambda: w.get(L + "ffn_norm")),
                    b.shared(L + "ffn_norm_bias", lambda: w.get(L + "ffn_norm_bias")),
                ],
                axis=-1,
                epsilon=ALBERT_LN_EPS,
            )
            f = self.linear(b, h, L + "ffn", None)
            # gelu_new (tanh form) with the bias fused, like the reference export
            f = b.op(
                "FastGelu",
                [f, b.shared(L + "ffn_bias", lambda: w.get(L + "ffn_bias"))],
                domain="com.microsoft",
            )
            f = self.linear(b, f, L + "ffn_out", None)
            # residual + bias + LayerNorm in one op, as ORT runs the reference export
            x = b.op(
                "SkipLayerNormalization",
                [
                    f,
                    h,
                    b.shared(L + "attn_norm", lambda: w.get(L + "attn_norm")),
                    b.shared(L + "attn_norm_bias", lambda: w.get(L + "attn_norm_bias")),
                    b.shared(L + "ffn_out_bias", lambda: w.get(L + "ffn_out_bias")),
                ],
                domain="com.microsoft",
                epsilon=ALBERT_LN_EPS,
            )
        d_en = self.linear(b, x, "duration_predictor.encode", "duration_predictor.encode_bias")
        d_en = b.op("Transpose", [d_en], perm=[1, 0, 2])  # [T, 1, 512]

        # ---- prosody predictor's DurationEncoder: (biLSTM, AdaLayerNorm) x n, style concatenated
        seq_shape = b.op("Concat", [n_tok, b.const([1, sd], np.int64)], axis=0)
        s_seq = b.op("Expand", [b.op("Unsqueeze", [s_pred, b.const([0], np.int64)]), seq_shape])
        x = b.op("Concat", [d_en, s_seq], axis=-1)
        n_layers = 0
        while w.has(f"duration_predictor.layers.{2 * n_layers}.lstm.0.weights.0"):
            n_layers += 1
        if n_layers == 0:
            raise GraphBuildError("the model file has no duration encoder layers")
        for i in range(n_layers):
            x = self.lstm(b, x, f"duration_predictor.layers.{2 * i}.lstm.0")
            p = f"duration_predictor.layers.{2 * i + 1}."
            scale, shift = self.style_affine(b, s_pred, p + "gamma", p + "beta")
            width = w.get(p + "gamma_bias").shape[0]
            x = b.op(
                "LayerNormalization",
                [x, b.const(np.ones(width)), b.const(np.zeros(width))],
                axis=-1,
                epsilon=LAYER_NORM_EPS,
            )
            x = b.op("Add", [b.op("Mul", [scale, x]), shift])
            x = b.op("Concat", [x, s_seq], axis=-1)
        d = x  # [T, 1, 640]

        # ---- durations
        x = self.lstm(b, d, "duration_predictor.duration_lstm.0")
        x = self.linear(
            b, x, "duration_predictor.duration_proj", "duration_predictor.duration_proj_bias"
        )
        dur = b.op("ReduceSum", [b.op("Sigmoid", [x]), b.const([-1], np.int64)], keepdims=0)
        dur = b.op("Div", [dur, speed])
        dur = b.op("Clip", [b.op("Round", [dur]), b.const(1.0)])
        dur = b.op("Cast", [b.op("Reshape", [dur, b.const([-1], np.int64)])], to=TensorProto.INT64)

        # ---- text encoder: embedding, (conv k5, LayerNorm, LeakyReLU) x n, biLSTM
        x = b.op("Gather", [b.init("te_embd", w.get("text_encoder.embedding_weight")), tokens])
        x = b.op("Transpose", [x], perm=[0, 2, 1])  # [1, C, T]
        i = 0
        while w.has(f"text_encoder.layers.{i}.weight"):
            p = f"text_encoder.layers.{i}."
            kernel = w.get(p + "weight")
            x = b.op(
                "Conv",
                [x, b.init("te_conv", kernel), b.init("te_conv_b", w.get(p + "bias"))],
                pads=[kernel.shape[2] // 2] * 2,
            )
            x = b.op("Transpose", [x], perm=[0, 2, 1])
            x = b.op(
                "LayerNormalization",
                [x, b.init("te_g", w.get(p + "gamma")), b.init("te_b", w.get(p + "beta"))],
                axis=-1,
                epsilon=LAYER_NORM_EPS,
            )
            x = b.op("LeakyRelu", [x], alpha=0.2)
            x = b.op("Transpose", [x], perm=[0, 2, 1])
            i += 1
        x = b.op("Transpose", [x], perm=[2, 0, 1])  # [T, 1, C]
        t_en = self.lstm(b, x, "text_encoder.lstm.0")

        b.output(dur, "durations", TensorProto.INT64, ["T"])
        b.output(d, "d", TensorProto.FLOAT, ["T", 1, d_dim(w)])
        b.output(t_en, "t_en", TensorProto.FLOAT, ["T", 1, "C"])
        return b.model()

    # ------------------------------------------------------------ stage 2 pieces (4-D tensors)

    # layout helpers: [1, C, T] (reference) or [1, C, 1, T] (height-1 2-D convolutions)
    def _lift(self, b: _Builder, x: str) -> str:
        return b.op("Unsqueeze", [x, b.const([2], np.int64)]) if self._conv2d else x

    def _kern(self, kernel: np.ndarray) -> np.ndarray:
        return kernel[:, :, None, :] if self._conv2d else kernel

    def _sp(self, value: int, fill: int = 1) -> list[int]:
        return [fill, value] if self._conv2d else [value]

    def _pads(self, pad: int) -> list[int]:
        return [0, pad, 0, pad] if self._conv2d else [pad, pad]

    def _column(self) -> tuple[int, ...]:
        return (1, -1, 1, 1) if self._conv2d else (1, -1, 1)

    def conv(
        self,
        b: _Builder,
        x: str,
        wname: str,
        bname: str | None,
        stride: int = 1,
        pad: int | None = None,
        dilation: int = 1,
        group: int = 1,
        scaled: np.ndarray | None = None,
    ) -> str:
        """A convolution (int8 where _int8 says so); ``scaled``: per input channel factors
        folded into the weights (the input arrives divided by them, see adain_snake)."""
        kernel = self.w.get(wname)
        if kernel.ndim == 2:
            kernel = kernel[:, :, None]
        if scaled is not None:
            kernel = (kernel * scaled.reshape(1, -1, 1)).astype(np.float32)
        k = kernel.shape[2]
        if pad is None:
            pad = dilation * (k - 1) // 2
        bias_values = self.w.get(bname).reshape(-1) if bname is not None else None
        if self._int8(wname) and stride == 1 and group == 1 and pad == dilation * (k - 1) // 2:
            return self._int8_conv(
                b, x, wname, bname, bias_values, self._kern(kernel), pad, dilation
            )
        bias = [b.init(bname, bias_values)] if bias_values is not None else []
        if not self._conv2d:  # plain 1-D convolution, as the reference runs it
            return b.op(
                "Conv",
                [x, b.init(wname, kernel), *bias],
                kernel_shape=[k],
                strides=[stride],
                pads=[pad, pad],
                dilations=[dilation],
                group=group,
            )
        return b.op(
            "Conv",
            [x, b.init(wname, kernel[:, :, None, :]), *bias],
            kernel_shape=[1, k],
            strides=[1, stride],
            pads=[0, pad, 0, pad],
            dilations=[1, dilation],
            group=group,
        )

    def _int8(self, wname: str) -> bool:
        """conv="int8": the decoder's and generator's residual convolutions (noise branch
        included), ~90% of the MACs; the F0/N path, the source's input convs, 1x1 shortcuts,
        the upsamplers and conv_post stay fp32."""
        if self.plan.conv != "int8" or not wname.startswith("decoder."):
            return False
        return wname.endswith(("conv1_weight", "conv2_weight", "convs1_weight", "convs2_weight"))

    def _int8_conv(
        self,
        b: _Builder,
        x: str,
        wname: str,
        bname: str | None,
        bias_values: np.ndarray | None,
        kernel: np.ndarray,
        pad: int,
        dilation: int,
    ) -> str:
        """An int8 dot-product convolution (stride 1, 'same' padding): activations quantized per
        call (uint8, DynamicQuantizeLinear), symmetric per-output-channel int8 weights, int32
        accumulation with the bias, requantized to uint8 at ``x_scale * ratio`` and dequantized.

        ``ratio`` (input ``conv_ratios``, one per int8 conv) sizes the output range relative to
        the input's; the engine calibrates it at load.  With ``self.calibrate``, the graph also
        outputs ``conv_peaks``: per conv and output channel, the smallest ratio that would not
        have clipped it.

        ``self.conv_gains`` (set by the engine from calibration) evens out the output channels'
        ranges before the 8-bit requantization, so a quiet channel is not lost in a loud one's
        steps: channel c is computed g_c times larger (folded into its weight scale and bias)
        and divided back after dequantizing, or left as is when an InstanceNormalization
        follows (AdaIN: scale-free per channel).
        """
        flat = np.abs(kernel.reshape(kernel.shape[0], -1)).max(axis=1)
        scale = np.where(flat > 0, flat / 127.0, 1.0).astype(np.float32)
        shape = (-1,) + (1,) * (kernel.ndim - 1)
        q = np.clip(np.rint(kernel / scale.reshape(shape)), -127, 127).astype(np.int8)
        index = self.int8_convs
        self.int8_convs += 1
        self.conv_channels.append(len(scale))
        gain = self.conv_gains[index] if index < len(self.conv_gains) else None
        if gain is not None:
            scale = (scale * gain).astype(np.float32)
            bias_values = None if bias_values is None else (bias_values * gain).astype(np.float32)
        # Never clips: |y| <= 255 x_scale * max_c sum|w_c| (+ bias headroom) = 127 y_scale.
        sums = np.abs(q.reshape(q.shape[0], -1).astype(np.float32)).sum(axis=1) * scale
        self.conv_bounds.append(float(2 * 255 * sums.max() / 127))
        k = kernel.shape[-1]
        xq, xs, xz = b.op("DynamicQuantizeLinear", [x], outputs=3)
        xs = b.op("Max", [xs, b.const(1e-12)])  # an all-constant input gives scale 0
        ys = b.op("Mul", [xs, b.op("Gather", [self._ratios, b.const(index, np.int64)])])
        w_scale = b.init(wname + "_scale", scale)
        inputs = [xq, xs, xz, b.init(wname + "_q", q), w_scale]
        inputs += [b.init(wname + "_zp", np.zeros(len(scale), np.int8)), ys, b.const(128, np.uint8)]
        if bias_values is not None:  # int32 bias in units of x_scale * w_scale, made per call
            units = b.op("Mul", [xs, w_scale])
            bias = b.op("Div", [b.init(bname, bias_values), units])
            bias = b.op("Clip", [b.op("Round", [bias]), b.const(-2.0e9), b.const(2.0e9)])
            inputs.append(b.op("Cast", [bias], to=TensorProto.INT32))
        yq = b.op(
            "QLinearConv",
            inputs,
            kernel_shape=self._sp(k),
            pads=self._pads(pad),
            dilations=self._sp(dilation),
        )
        y = b.op("DequantizeLinear", [yq, ys, b.const(128, np.uint8)])
        if self.calibrate:
            axes = [0, 2, 3] if self._conv2d else [0, 2]
            peak = b.op("ReduceMax", [b.op("Abs", [y])], axes=axes, keepdims=0)  # [C]
            self._peaks.append(b.op("Div", [peak, b.op("Mul", [xs, b.const(127.0)])]))
        normed_next = wname.endswith(("conv1_weight", "convs1_weight"))  # AdaIN follows
        if gain is not None and not normed_next:
            y = b.op("Mul", [y, b.init(wname + "_ungain", (1.0 / gain).reshape(self._column()))])
        return y

    def adain(self, b: _Builder, x: str, s: str, gamma: str, beta: str) -> str:
        """AdaIN1d: InstanceNorm (eps 1e-5) scaled by (1 + gamma) and shifted by beta."""
        scale, shift = self.style_affine(b, s, gamma, beta)
        if self._ref_norm:  # the reference's op sequence, for bit-level closeness
            centred = b.op("Sub", [x, b.op("ReduceMean", [x], axes=[2], keepdims=1)])
            var = b.op("ReduceMean", [b.op("Mul", [centred, centred])], axes=[2], keepdims=1)
            std = b.op("Sqrt", [b.op("Add", [var, b.const(LAYER_NORM_EPS)])])
            column = b.const(list(self._column()), np.int64)
            normed = b.op("Mul", [b.op("Reshape", [scale, column]), b.op("Div", [centred, std])])
            return b.op("Add", [normed, b.op("Reshape", [shift, column])])
        return b.op("InstanceNormalization", [x, scale, shift], epsilon=LAYER_NORM_EPS)

    def adain_resblk(self, b: _Builder, x: str, s: str, p: str) -> str:
        """AdainResBlk1d (istftnet.py): residual of two AdaIN+LeakyReLU+conv, over sqrt(2)."""
        w = self.w
        upsample = w.has(p + "pool_weight")
        r = self.adain(b, x, s, p + "norm1_gamma", p + "norm1_beta")
        r = b.op("LeakyRelu", [r], alpha=0.2)
        if upsample:
            pool = w.get(p + "pool_weight")  # [C, 1, 3] depthwise transposed conv
            channels = pool.shape[0]
            if not self._conv2d:
                r = b.op(
                    "ConvTranspose",
                    [r, b.init("pool", pool), b.init("pool_b", w.get(p + "pool_bias"))],
                    kernel_shape=[pool.shape[2]],
                    strides=[2],
                    pads=[1, 1],
                    output_padding=[1],
                    group=channels,
                )
            else:
                r = b.op(
                    "ConvTranspose",
                    [
                        r,
                        b.init("pool", pool[:, :, None, :]),
                        b.init("pool_b", w.get(p + "pool_bias")),
                    ],
                    kernel_shape=[1, pool.shape[2]],
                    strides=[1, 2],
                    pads=[0, 1, 0, 1],
                    output_padding=[0, 1],
                    group=channels,
                )
        r = self.conv(b, r, p + "conv1_weight", p + "conv1_bias")
        r = self.adain(b, r, s, p + "norm2_gamma", p + "norm2_beta")
        r = b.op("LeakyRelu", [r], alpha=0.2)
        r = self.conv(b, r, p + "conv2_weight", p + "conv2_bias")
        sc = x
        if upsample:
            sc = b.op(
                "Resize",
                [sc, "", b.const([1, 1, 1, 2] if self._conv2d else [1, 1, 2])],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        if w.has(p + "conv1x1_weight"):
            sc = self.conv(
                b,
                sc,
                p + "conv1x1_weight",
                p + "conv1x1_bias" if w.has(p + "conv1x1_bias") else None,
            )
        if self._ref_norm:
            return b.op("Div", [b.op("Add", [r, sc]), b.const(math.sqrt(2.0))])
        return b.op("Mul", [b.op("Add", [r, sc]), b.const(1.0 / math.sqrt(2.0))])

    def snake(self, b: _Builder, x: str, alpha_name: str) -> str:
        """Snake activation x + sin(a x)^2 / a, per channel."""
        alpha = self.w.get(alpha_name).reshape(self._column())
        sin = b.op("Sin", [b.op("Mul", [x, b.init("alpha", alpha)])])
        return b.op(
            "Add", [x, b.op("Mul", [b.op("Mul", [sin, sin]), b.init("inv_alpha", 1.0 / alpha)])]
        )

    def adain_snake(
        self, b: _Builder, x: str, s: str, p: str, n: int, conv: str
    ) -> tuple[str, np.ndarray | None]:
        """AdaIN then Snake, feeding the conv ``conv``; and the per-channel factors that conv's
        weights must take (None: the output is Snake's own).

        With the rewrites, Snake t + sin(a t)^2 / a is computed as (w + 1 - cos w) / 2a with
        w = 2a t: the 2a goes into AdaIN's per-channel affine and the 1/2a into the fp32 conv's
        weights, leaving three full-size ops (Cos, Sub, Add) instead of five.  The +1 cannot
        move into the conv's bias (its zero padding would then stand for 1/2a at the pass
        edges, and every AdaIN after it spreads that over the pass).  An int8 conv gets the
        1/2a as a Mul instead: folded, the inputs of channels with small a would be quantized
        with a step up to 8x too coarse for them (waveform SNR 15 -> 6 dB).
        """
        alpha_name, gamma, beta = f"{p}alpha{n}", f"{p}gamma{n}", f"{p}beta{n}"
        if self._ref_norm:
            return self.snake(b, self.adain(b, x, s, gamma, beta), alpha_name), None
        alpha = self.w.get(alpha_name).reshape(-1).astype(np.float32)
        scale, shift = self.style_affine(b, s, gamma, beta)
        twice = b.init("twice_alpha", 2.0 * alpha)
        w = b.op(
            "InstanceNormalization",
            [x, b.op("Mul", [scale, twice]), b.op("Mul", [shift, twice])],
            epsilon=LAYER_NORM_EPS,
        )
        y = b.op("Add", [b.op("Sub", [w, b.op("Cos", [w])]), b.const(1.0)])
        if not self._int8(conv):
            return y, 0.5 / alpha
        return b.op(
            "Mul", [y, b.init("half_inv_alpha", (0.5 / alpha).reshape(self._column()))]
        ), None

    def adain_resblock1(self, b: _Builder, x: str, s: str, p: str, dilations: list[int]) -> str:
        """AdaINResBlock1 (generator): three (AdaIN, Snake, dilated conv, AdaIN, Snake, conv)."""
        for j, dil in enumerate(dilations):
            q = f"{p}{j}."
            conv1, conv2 = q + "convs1_weight", q + "convs2_weight"
            t, scaled = self.adain_snake(b, x, s, q, 1, conv1)
            t = self.conv(b, t, conv1, q + "convs1_bias", dilation=dil, scaled=scaled)
            t, scaled = self.adain_snake(b, t, s, q, 2, conv2)
            t = self.conv(b, t, conv2, q + "convs2_bias", scaled=scaled)
            x = b.op("Add", [t, x])
        return x

    # ------------------------------------------------------------ stage 2

    def build_stage2(self, calibrate: bool = False) -> onnx.ModelProto:
        """Stage 2: aligned features -> audio.  With conv="int8", input ``conv_ratios``
        (see _int8_conv); ``calibrate`` adds the output ``conv_peaks``."""
        b = _Builder("kokoro_stage2", self.use_external)
        self.external = b.external if b.external is not None else {}
        self.int8_convs, self.conv_bounds, self.conv_channels, self._peaks = 0, [], [], []
        self.calibrate = calibrate
        w = self.w
        en = b.input("en", TensorProto.FLOAT, ["F", 1, d_dim(w)])
        asr = b.input("asr", TensorProto.FLOAT, ["F", 1, "C"])
        sd = self.style_dim
        style = b.input("style", TensorProto.FLOAT, [1, 2 * sd])
        if self.plan.conv == "int8":
            self._ratios = b.input("conv_ratios", TensorProto.FLOAT, ["Q"])
        one = b.const([1], np.int64)
        s_dec = b.op("Slice", [style, b.const([0], np.int64), b.const([sd], np.int64), one])
        s_pred = b.op("Slice", [style, b.const([sd], np.int64), b.const([2 * sd], np.int64), one])

        # ---- F0 and N curves from the shared LSTM
        x = self.lstm(b, en, "duration_predictor.shared_lstm.0")
        x = b.op("Transpose", [x], perm=[1, 2, 0])  # [1, 512, F]
        self._conv2d, self._ref_norm = False, True
        curves = {}
        for key, blocks, proj in (("F0", "f0_blocks", "f0_proj"), ("N", "n_blocks", "n_proj")):
            y = x
            i = 0
            while w.has(f"duration_predictor.{blocks}.{i}.conv1_weight"):
                y = self.adain_resblk(b, y, s_pred, f"duration_predictor.{blocks}.{i}.")
                i += 1
            curve = self.conv(
                b, y, f"duration_predictor.{proj}_kernel", f"duration_predictor.{proj}_bias"
            )
            curves[key] = curve
        self._conv2d, self._ref_norm = self.fast_decoder, not self.fast_decoder
        curves = {k: self._lift(b, v) for k, v in curves.items()}
        f0_curve, n_curve = curves["F0"], curves["N"]  # [1, 1, 1, 2F]

        # ---- decoder
        asr4 = self._lift(b, b.op("Transpose", [asr], perm=[1, 2, 0]))
        f0 = self.conv(
            b, f0_curve, "decoder.f0_conv_weight", "decoder.f0_conv_bias", stride=2, pad=1
        )
        nn_ = self.conv(b, n_curve, "decoder.n_conv_weight", "decoder.n_conv_bias", stride=2, pad=1)
        x = b.op("Concat", [asr4, f0, nn_], axis=1)
        x = self.adain_resblk(b, x, s_dec, "decoder.encoder_block.")
        asr_res = self.conv(b, asr4, "decoder.asr_conv_weight", "decoder.asr_conv_bias")
        i = 0
        while w.has(f"decoder.decoder_blocks.{i}.conv1_weight"):
            p = f"decoder.decoder_blocks.{i}."
            x = b.op("Concat", [x, asr_res, f0, nn_], axis=1)
            x = self.adain_resblk(b, x, s_dec, p)
            i += 1
            if w.has(p + "pool_weight"):
                break  # the reference stops adding the residual inputs after the upsampling block

        audio = self.generator(b, x, s_dec, f0_curve)
        b.output(audio, "audio", TensorProto.FLOAT, ["S"])
        if self._peaks:
            peaks = b.op("Concat", self._peaks, axis=0)
            b.output(peaks, "conv_peaks", TensorProto.FLOAT, [sum(self.conv_channels)])
        return b.model()

    def generator(self, b: _Builder, x: str, s: str, f0_curve: str) -> str:
        w = self.w
        g = "decoder.generator."
        ups = []
        while w.has(f"{g}ups.{len(ups)}.weight"):
            ups.append(w.get(f"{g}ups.{len(ups)}.weight").shape)  # [in, out, k]
        strides, pads = [], []
        for i, shape in enumerate(ups):
            k = shape[2]
            st = int(w.hparam(f"decoder.generator.up_convs.{i}.stride", k // 2))
            strides.append(st)
            pads.append(int(w.hparam(f"decoder.generator.up_convs.{i}.padding", (k - st) // 2)))
        post = w.get(g + "conv_post_weight")
        n_fft = post.shape[0] - 2
        bins = n_fft // 2 + 1
        hop = int(w.hparam("decoder.generator.hop", 5))
        upp = int(np.prod(strides)) * hop  # samples per F0 frame (300)
        n_kernels = 0
        while w.has(f"{g}resblocks.{n_kernels}.0.convs1_weight"):
            n_kernels += 1
        n_kernels //= len(ups)
        harmonics = w.get(g + "m_source_weight").reshape(-1).shape[0]

        # ---- harmonic source (deterministic SineGen), at the sample rate
        f0 = b.op("Reshape", [f0_curve, b.const([1, 1, -1], np.int64)])
        f0_up = b.op(
            "Resize",
            [f0, "", b.const([1, 1, upp])],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
        f0_t = b.op("Transpose", [f0_up], perm=[0, 2, 1])  # [1, S, 1]
        fn = b.op("Mul", [f0_t, b.const(np.arange(1, harmonics + 1).reshape(1, 1, -1))])
        rad = b.op("Div", [fn, b.const(float(SAMPLE_RATE))])
        rad = b.op("Sub", [rad, b.op("Floor", [rad])])
        rad = b.op("Transpose", [rad], perm=[0, 2, 1])  # [1, H, S]
        linear = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
        rad = b.op("Resize", [rad, "", b.const([1, 1, 1.0 / upp])], **linear)
        phase = b.op("CumSum", [rad, b.const(2, np.int64)])
        # cumsum * 2 * pi * upp, multiplied in this order like the reference (fp32 rounding)
        for factor in (2.0, math.pi, float(upp)):
            phase = b.op("Mul", [phase, b.const(factor)])
        phase = b.op("Resize", [phase, "", b.const([1, 1, float(upp)])], **linear)
        sines = b.op(
            "Mul", [b.op("Sin", [b.op("Transpose", [phase], perm=[0, 2, 1])]), b.const(SINE_AMP)]
        )
        uv = b.op(
            "Cast", [b.op("Greater", [f0_t, b.const(VOICED_THRESHOLD)])], to=TensorProto.FLOAT
        )
        sines = b.op("Mul", [sines, uv])  # [1, S, H]
        har = self.linear(b, sines, g + "m_source_weight", g + "m_source_bias")
        har = b.op("Tanh", [har])  # [1, S, 1]

        # ---- STFT of the source: magnitude and phase, centred frames (reflect padding)
        sig = b.op("Reshape", [har, b.const([1, -1], np.int64)])
        sig = b.op("Pad", [sig, b.const([0, n_fft // 2, 0, n_fft // 2], np.int64)], mode="reflect")
        re, im = self._stft(b, sig, n_fft, hop)
        mag = b.op("Sqrt", [b.op("Add", [b.op("Mul", [re, re]), b.op("Mul", [im, im])])])
        ang = b.op("Atan", [b.op("Div", [im, re])])
        pi = b.const(math.pi)
        turned = b.op(
            "Where",
            [b.op("Greater", [im, b.const(0.0)]), b.op("Add", [ang, pi]), b.op("Sub", [ang, pi])],
        )
        ang = b.op("Where", [b.op("Less", [re, b.const(0.0)]), turned, ang])
        source = b.op(
            "Identity", [self._lift(b, b.op("Concat", [mag, ang], axis=1))]
        )  # [1, 2*bins, 1, frames]

        # ---- upsampling stages with noise (source) branches and multi-kernel resblocks
        for i in range(len(ups)):
            x = b.op("LeakyRelu", [x], alpha=0.1)
            nb = f"{g}noise_blocks.{i}."
            nk = w.get(nb + "conv_weight").shape[2]
            rest = int(np.prod(strides[i + 1 :])) if i + 1 < len(ups) else 1
            n_stride = int(w.hparam(f"decoder.generator.noise_blocks.{i}.stride", rest))
            n_pad = int(
                w.hparam(
                    f"decoder.generator.noise_blocks.{i}.padding",
                    (n_stride + 1) // 2 if nk > 1 else 0,
                )
            )
            xs = self.conv(
                b, source, nb + "conv_weight", nb + "conv_bias", stride=n_stride, pad=n_pad
            )
            xs = self.adain_resblock1(
                b, xs, s, nb + "resblock.", self._dilations(f"noise_blocks.{i}.res_block")
            )
            up_w = w.get(f"{g}ups.{i}.weight")
            x = b.op(
                "ConvTranspose",
                [x, b.init("up", self._kern(up_w)), b.init("up_b", w.get(f"{g}ups.{i}.bias"))],
                kernel_shape=self._sp(up_w.shape[2]),
                strides=self._sp(strides[i]),
                pads=self._pads(pads[i]),
            )
            if i == len(ups) - 1:
                left = [0, 0, 0, 1] if self._conv2d else [0, 0, 1]
                x = b.op("Pad", [x, b.const(left + [0] * len(left), np.int64)], mode="reflect")
            x = b.op("Add", [x, xs])
            total = None
            for j in range(n_kernels):
                idx = i * n_kernels + j
                r = self.adain_resblock1(
                    b, x, s, f"{g}resblocks.{idx}.", self._dilations(f"res_blocks.{idx}")
                )
                total = r if total is None else b.op("Add", [total, r])
            x = b.op("Div", [total, b.const(float(n_kernels))])
        x = b.op("LeakyRelu", [x], alpha=0.01)
        x = self.conv(
            b, x, g + "conv_post_weight", g + "conv_post_bias"
        )  # [1, n_fft + 2, 1, frames]

        # ---- inverse STFT (torch.istft semantics: window, overlap-add, divide by window power)
        window = hann(n_fft)
        mag_log, ph = b.op("Split", [x, b.const([bins, bins], np.int64)], axis=1, outputs=2)
        mag = b.op("Exp", [mag_log])
        ph = b.op("Sin", [ph])
        real = b.op("Mul", [mag, b.op("Cos", [ph])])
        imag = b.op("Mul", [mag, b.op("Sin", [ph])])
        spec = b.op("Concat", [real, imag], axis=1)
        # The widely used Kokoro ONNX export (kokoro-onnx's model, this project's reference) leaves
        # out torch.istft's division by the summed window power (1.5 for Hann 20 / hop 5) inside
        # the signal, so it is 1.5x louder than hexgrad's PyTorch output; keep the export's level
        # (what ONNX users hear) and divide only by the window power relative to that level,
        # which also fixes the partially covered first and last samples like torch.istft.
        level = float(np.sum(window[::hop] ** 2))
        basis = istft_basis(n_fft, window)  # [2*bins, 1, 1, n_fft]
        frames = b.op(
            "ConvTranspose",
            [spec, b.const(self._kern(basis))],
            kernel_shape=self._sp(n_fft),
            strides=self._sp(hop),
        )
        ones = b.op(
            "Add",
            [
                b.op(
                    "Mul",
                    [
                        b.op(
                            "Slice",
                            [
                                mag_log,
                                b.const([0], np.int64),
                                b.const([1], np.int64),
                                b.const([1], np.int64),
                            ],
                        ),
                        b.const(0.0),
                    ],
                ),
                b.const(1.0),
            ],
        )
        env = b.op(
            "ConvTranspose",
            [ones, b.const(self._kern((window**2 / level).reshape(1, 1, -1)))],
            kernel_shape=self._sp(n_fft),
            strides=self._sp(hop),
        )
        wav = b.op("Div", [frames, env])
        wav = b.op(
            "Slice",
            [
                wav,
                b.const([n_fft // 2], np.int64),
                b.const([-(n_fft // 2)], np.int64),
                b.const([3 if self._conv2d else 2], np.int64),
            ],
        )
        return b.op("Reshape", [wav, b.const([-1], np.int64)])

    def _stft(self, b: _Builder, sig: str, n_fft: int, hop: int) -> tuple[str, str]:
        """Real and imaginary parts [1, bins, frames] of the source's STFT (Hann window).

        LoweringPlan.stft: the reference's STFT op, or ("conv") a strided convolution with the
        DFT basis, multi-threaded.  Same maths, but where the source is silent (unvoiced
        frames) the phases are rounding noise that another summation order changes, and the
        audio there with them (waveform SNR to the reference export 108 -> 10 dB).
        """
        window = hann(n_fft)
        bins = n_fft // 2 + 1
        if self.plan.stft == "conv":
            n = np.arange(n_fft)
            turns = 2 * np.pi * np.outer(np.arange(bins), n) / n_fft
            basis = np.concatenate([np.cos(turns) * window, -np.sin(turns) * window])
            frames = b.op(
                "Conv",
                [
                    b.op("Unsqueeze", [sig, b.const([1], np.int64)]),
                    b.init("dft_basis", basis.astype(np.float32)[:, None, :]),
                ],
                kernel_shape=[n_fft],
                strides=[hop],
            )  # [1, 2 * bins, frames]
            re, im = b.op("Split", [frames, b.const([bins, bins], np.int64)], axis=1, outputs=2)
            return re, im
        sig = b.op("Unsqueeze", [sig, b.const([2], np.int64)])
        spec = b.op(
            "STFT",
            [sig, b.const(hop, np.int64), b.const(window), b.const(n_fft, np.int64)],
            onesided=1,
        )
        spec = b.op("Transpose", [spec], perm=[0, 2, 1, 3])  # [1, bins, frames, 2]
        re, im = b.op("Split", [spec, b.const([1, 1], np.int64)], axis=3, outputs=2)
        return b.op("Squeeze", [re, b.const([3], np.int64)]), b.op(
            "Squeeze", [im, b.const([3], np.int64)]
        )

    def _dilations(self, key: str) -> list[int]:
        out = []
        for j in range(3):
            out.append(int(self.w.hparam(f"decoder.generator.{key}.{j}.dilation", (1, 3, 5)[j])))
        return out

    def build(self) -> BuiltGraphs:
        stage1 = self.build_stage1()
        stage2 = self.build_stage2()
        return BuiltGraphs(stage1, stage2, list(self.notes), self.nbits_used)


def d_dim(w: _Weights) -> int:
    """Width of the predictor features d: LSTM output (2H) + predictor style (128)."""
    return int(w.get("duration_predictor.duration_lstm.0.weights.0").shape[1])


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window(periodic=True))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def istft_basis(n_fft: int, window: np.ndarray) -> np.ndarray:
    """Kernel that turns (real, imag) one-sided bins into windowed time frames (irfft * window)."""
    bins = n_fft // 2 + 1
    k = np.arange(bins)[:, None]
    n = np.arange(n_fft)[None, :]
    weight = np.full((bins, 1), 2.0)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    ang = 2 * np.pi * k * n / n_fft
    real = weight * np.cos(ang) / n_fft * window[None, :]
    imag = -weight * np.sin(ang) / n_fft * window[None, :]
    imag[0] = 0.0
    if n_fft % 2 == 0:
        imag[-1] = 0.0
    return np.concatenate([real, imag])[:, None, :].astype(np.float32)


def build(model, plan: LoweringPlan | None = None) -> BuiltGraphs:
    """Both stages for a model file (an object with the model_file.KokoroModelFile API)."""
    return KokoroGraph(model, plan).build()
