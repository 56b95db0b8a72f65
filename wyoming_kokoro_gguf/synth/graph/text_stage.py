"""Stage 1, the text side: tokens, style, speed -> durations, ``d`` and ``t_en``.

Follows the reference export's op sequence (see graph/__init__.py): ALBERT, the prosody
predictor's duration encoder, the durations, and the text encoder.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from wyoming_kokoro_gguf.synth.graph.builder import (
    LAYER_NORM_EPS,
    Builder,
    GraphBuildError,
    d_dim,
)
from wyoming_kokoro_gguf.synth.graph.layers import Layers

ALBERT_LN_EPS = 1e-12  # transformers' AlbertConfig default


class TextStage(Layers):
    """Mixin of KokoroGraph: builds stage 1."""

    use_external: bool
    external: dict[str, np.ndarray]
    style_dim: int

    def build_stage1(self) -> onnx.ModelProto:
        """Stage 1 as an ONNX model (outputs ``durations``, ``d``, ``t_en``)."""
        b = Builder("kokoro_stage1", self.use_external, self.options.weights == "int8")
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

        n_tok = b.op("Shape", [tokens], start=1, end=2)
        d_en = self._albert(b, tokens, n_tok)
        d = self._duration_encoder(b, d_en, s_pred, n_tok)
        dur = self._durations(b, d, speed)
        t_en = self._text_encoder(b, tokens)
        b.output(dur, "durations", TensorProto.INT64, ["T"])
        b.output(d, "d", TensorProto.FLOAT, ["T", 1, d_dim(w)])
        b.output(t_en, "t_en", TensorProto.FLOAT, ["T", 1, "C"])
        return b.model()

    def _albert(self, b: Builder, tokens: str, n_tok: str) -> str:
        """ALBERT (one shared layer applied ``recurrence`` times) -> the encoded text [T, 1, 512]."""
        w = self.w
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
        for _ in range(layers):
            x = self._albert_layer(b, x, split_heads, merge_heads, head_dim)
        d_en = self.linear(b, x, "duration_predictor.encode", "duration_predictor.encode_bias")
        d_en = b.op("Transpose", [d_en], perm=[1, 0, 2])  # [T, 1, 512]
        return d_en

    def _albert_layer(
        self, b: Builder, x: str, split_heads: str, merge_heads: str, head_dim: int
    ) -> str:
        """One pass of ALBERT's shared layer: attention, then the feed-forward block."""
        w = self.w
        L = "albert.layer.0."
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
        return x

    def _duration_encoder(self, b: Builder, d_en: str, s_pred: str, n_tok: str) -> str:
        """The prosody predictor's DurationEncoder: (biLSTM, AdaLayerNorm) x n, style concatenated.

        Returns ``d`` [T, 1, 640]."""
        w = self.w
        seq_shape = b.op("Concat", [n_tok, b.const([1, self.style_dim], np.int64)], axis=0)
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
        return x  # d: [T, 1, 640]

    def _durations(self, b: Builder, d: str, speed: str) -> str:
        """Frames per token: the duration LSTM's sigmoid sum over the speed, rounded, at least 1."""
        x = self.lstm(b, d, "duration_predictor.duration_lstm.0")
        x = self.linear(
            b, x, "duration_predictor.duration_proj", "duration_predictor.duration_proj_bias"
        )
        dur = b.op("ReduceSum", [b.op("Sigmoid", [x]), b.const([-1], np.int64)], keepdims=0)
        dur = b.op("Div", [dur, speed])
        dur = b.op("Clip", [b.op("Round", [dur]), b.const(1.0)])
        dur = b.op("Cast", [b.op("Reshape", [dur, b.const([-1], np.int64)])], to=TensorProto.INT64)
        return dur

    def _text_encoder(self, b: Builder, tokens: str) -> str:
        """Embedding, (conv k5, LayerNorm, LeakyReLU) x n, biLSTM -> ``t_en`` [T, 1, C]."""
        w = self.w
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
        return self.lstm(b, x, "text_encoder.lstm.0")
