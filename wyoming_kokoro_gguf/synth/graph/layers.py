"""Layers both stages share: Linear (fp32 or packed GGUF blocks), LSTM, AdaIN's style affine,
and convolutions in the reference's 1-D form or as height-1 2-D convolutions, fp32 or int8."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from wyoming_kokoro_gguf.synth.graph.builder import LAYER_NORM_EPS, Builder, Weights, symmetric_int8
from wyoming_kokoro_gguf.synth.lowering import EngineOptions, is_int8

# conv="int8s": int8 convolutions left fp32.  The decoder's first one (its encoder block's
# conv1, on the normalized text features and F0/N curves at the frame rate: ~0.3% of the int8
# MACs) is the one whose static scales cost the audio most.  Measured on the real file's five
# voices (f32, one sentence, fp32's durations), worst voice's waveform SNR from fp32: all
# static 9.6 dB, this conv per call 11.4, this conv fp32 13.8 (dynamic int8: 11.6); each other
# conv switched alone to per call moved it by -0.7 to +1.3 dB.  Its calibration slot stays
# (one file for both int8 types), unused.
STATIC_FLOAT_CONVS = ("decoder.encoder_block.conv1_weight",)


class Layers:
    """Mixin of KokoroGraph (graph/kokoro.py), which sets this state in its constructor."""

    w: Weights
    options: EngineOptions
    calibrate: bool
    int8_convs: int
    conv_slots: int
    conv_bounds: list[float]
    conv_channels: list[int]
    conv_gains: list[np.ndarray]
    conv_static: list[tuple[float, int, float]]
    nbits_used: int
    _ratios: str
    _peaks: list[str]
    _ranges: list[str]
    _packed: dict[str, tuple]
    _conv2d: bool
    _ref_norm: bool

    def linear(self, b: Builder, x: str, wname: str, bname: str | None) -> str:
        """x[..., in] @ W.T + b, W stored [out, in]; GGUF Q4_0/Q8_0 blocks may stay packed."""
        qtype = self.w.qtype(wname)
        if self.options.linear == "matmulnbits" and qtype in ("Q4_0", "Q8_0"):
            y = self._matmulnbits(b, x, wname, qtype)
        else:
            y = b.op("MatMul", [x, b.shared(wname, lambda: self.w.get(wname).T)])
        if bname is not None:
            y = b.op("Add", [y, b.shared(bname, lambda: self.w.get(bname))])
        return y

    def _matmulnbits(self, b: Builder, x: str, wname: str, qtype: str) -> str:
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

    def _pack_blocks(self, b: Builder, wname: str, qtype: str) -> tuple:
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

    def lstm(self, b: Builder, x: str, prefix: str) -> str:
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

    def style_affine(self, b: Builder, s: str, prefix_g: str, prefix_b: str) -> tuple[str, str]:
        """(1 + gamma, beta) as [C] vectors from the style: the two halves of AdaIN's fc."""
        gamma = self.linear(b, s, prefix_g + "_weight", prefix_g + "_bias")
        beta = self.linear(b, s, prefix_b + "_weight", prefix_b + "_bias")
        flat = b.const([-1], np.int64)
        scale = b.op("Add", [b.op("Reshape", [gamma, flat]), b.const(1.0)])
        return scale, b.op("Reshape", [beta, flat])

    # layout helpers: [1, C, T] (reference) or [1, C, 1, T] (height-1 2-D convolutions)
    def _lift(self, b: Builder, x: str) -> str:
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
        b: Builder,
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
            slot = self.conv_slots  # its index in the calibration
            self.conv_slots += 1
            if not self._kept_float(wname):
                return self._int8_conv(
                    b, x, wname, bname, bias_values, self._kern(kernel), pad, dilation, slot
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
        the upsamplers and conv_post stay fp32.  conv="int8s": the same, statically quantized."""
        if not is_int8(self.options.conv) or not wname.startswith("decoder."):
            return False
        return wname.endswith(("conv1_weight", "conv2_weight", "convs1_weight", "convs2_weight"))

    def _kept_float(self, wname: str) -> bool:
        """conv="int8s" runs STATIC_FLOAT_CONVS in fp32 (calibration measures them as int8)."""
        return self.options.conv == "int8s" and not self.calibrate and wname in STATIC_FLOAT_CONVS

    def _int8_conv(
        self,
        b: Builder,
        x: str,
        wname: str,
        bname: str | None,
        bias_values: np.ndarray | None,
        kernel: np.ndarray,
        pad: int,
        dilation: int,
        index: int,
    ) -> str:
        """An int8 dot-product convolution (stride 1, 'same' padding): uint8 activations,
        symmetric per-output-channel int8 weights, int32 accumulation with the bias,
        requantized to uint8 and dequantized.

        conv="int8" quantizes the input per call (DynamicQuantizeLinear) and requantizes at
        ``x_scale * ratio``, ``ratio`` (input ``conv_ratios``, one per int8 conv) sizing the
        output range relative to the input's; the engine calibrates it at load.  With
        ``self.calibrate`` (either int8 type), the graph is this per-call form and also outputs
        ``conv_peaks``, per conv and output channel the smallest ratio that would not have
        clipped it, and ``conv_ranges``, per conv its input's minimum and maximum.

        conv="int8s" takes the input and output scales from ``self.conv_static`` (calibrated
        by the engine, build.py) as constants, with a constant int32 bias: one QuantizeLinear
        and no per-call arithmetic; inputs louder than calibration's range clip.

        ``self.conv_gains`` (set by the engine from calibration) evens out the output channels'
        ranges before the 8-bit requantization, so a quiet channel is not lost in a loud one's
        steps: channel c is computed g_c times larger (folded into its weight scale and bias)
        and divided back after dequantizing, or left as is when an InstanceNormalization
        follows (AdaIN: scale-free per channel).
        """
        q, scale = symmetric_int8(kernel)
        self.int8_convs += 1
        self.conv_channels.append(len(scale))
        gain = self.conv_gains[index] if index < len(self.conv_gains) else None
        if gain is not None:
            scale = (scale * gain).astype(np.float32)
            bias_values = None if bias_values is None else (bias_values * gain).astype(np.float32)
        # Never clips: |y| <= 255 x_scale * max_c sum|w_c| (+ bias headroom) = 127 y_scale.
        sums = np.abs(q.reshape(q.shape[0], -1).astype(np.float32)).sum(axis=1) * scale
        self.conv_bounds.append(float(2 * 255 * sums.max() / 127))
        # A constant-shape Reshape states the input's rank, which ORT's shape inference loses in
        # the generator: only with a known rank does its NHWC transformer give QLinearConv the
        # channels-last kernels (measured on AVX2: ~1.2x per convolution).
        x = b.op(
            "Reshape",
            [x, b.const([1, kernel.shape[1], *([1] if self._conv2d else []), -1], np.int64)],
        )
        w_scale = b.init(wname + "_scale", scale)
        if self.options.conv == "int8s" and not self.calibrate:
            xq, xs, xz, ys, bias = self._static_scales(b, x, index, bname, bias_values, scale)
            ys_out = b.const(self.conv_static[index][2])  # one initializer per use (b.const)
        else:
            xq, xs, xz, ys = self._per_call_scales(b, x, index)
            bias = self._per_call_bias(b, bname, bias_values, xs, w_scale)
            ys_out = ys
        inputs = [xq, xs, xz, b.init(wname + "_q", q), w_scale]
        inputs += [b.init(wname + "_zp", np.zeros(len(scale), np.int8)), ys, b.const(128, np.uint8)]
        yq = b.op(
            "QLinearConv",
            inputs + bias,
            kernel_shape=self._sp(kernel.shape[-1]),
            pads=self._pads(pad),
            dilations=self._sp(dilation),
        )
        y = b.op("DequantizeLinear", [yq, ys_out, b.const(128, np.uint8)])
        if self.calibrate:
            self._measure(b, x, y, xs)
        normed_next = wname.endswith(("conv1_weight", "convs1_weight"))  # AdaIN follows
        if gain is not None and not normed_next:
            y = b.op("Mul", [y, b.init(wname + "_ungain", (1.0 / gain).reshape(self._column()))])
        return y

    def _per_call_scales(self, b: Builder, x: str, index: int) -> tuple[str, str, str, str]:
        """conv="int8": the input quantized over its own range, the output range its ratio."""
        xq, xs, xz = b.op("DynamicQuantizeLinear", [x], outputs=3)
        xs = b.op("Max", [xs, b.const(1e-12)])  # an all-constant input gives scale 0
        ys = b.op("Mul", [xs, b.op("Gather", [self._ratios, b.const(index, np.int64)])])
        return xq, xs, xz, ys

    def _per_call_bias(
        self, b: Builder, bname: str | None, values: np.ndarray | None, xs: str, w_scale: str
    ) -> list[str]:
        """The int32 bias in units of x_scale * w_scale, made per call ([] without a bias)."""
        if values is None:
            return []
        bias = b.op("Div", [b.init(bname, values), b.op("Mul", [xs, w_scale])])
        bias = b.op("Clip", [b.op("Round", [bias]), b.const(-2.0e9), b.const(2.0e9)])
        return [b.op("Cast", [bias], to=TensorProto.INT32)]

    def _static_scales(
        self,
        b: Builder,
        x: str,
        index: int,
        bname: str | None,
        values: np.ndarray | None,
        w_scale: np.ndarray,
    ) -> tuple[str, str, str, str, list[str]]:
        """conv="int8s": calibrated constant scales, one QuantizeLinear, a constant bias."""
        if index >= len(self.conv_static):
            raise RuntimeError("conv int8s needs calibrated scales (build.build_sessions)")
        x_scale, x_zero, y_scale = self.conv_static[index]
        xs, xz = b.const(x_scale), b.const(x_zero, np.uint8)
        xq = b.op("QuantizeLinear", [x, xs, xz])
        bias = []
        if values is not None:
            units = np.float64(x_scale) * w_scale.astype(np.float64)
            steps = np.clip(np.rint(values / units), -2.0e9, 2.0e9).astype(np.int32)
            bias = [b.init(bname + "_i32", steps)]
        return xq, b.const(x_scale), b.const(x_zero, np.uint8), b.const(y_scale), bias

    def _measure(self, b: Builder, x: str, y: str, xs: str) -> None:
        """Calibration outputs: the output channels' peak ratios, the input's range."""
        axes = [0, 2, 3] if self._conv2d else [0, 2]
        peak = b.op("ReduceMax", [b.op("Abs", [y])], axes=axes, keepdims=0)  # [C]
        self._peaks.append(b.op("Div", [peak, b.op("Mul", [xs, b.const(127.0)])]))
        low = b.op("ReduceMin", [x], keepdims=0)
        high = b.op("ReduceMax", [x], keepdims=0)
        flat = b.const([1], np.int64)
        self._ranges.append(
            b.op("Concat", [b.op("Reshape", [low, flat]), b.op("Reshape", [high, flat])], axis=0)
        )

    def adain(self, b: Builder, x: str, s: str, gamma: str, beta: str) -> str:
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
