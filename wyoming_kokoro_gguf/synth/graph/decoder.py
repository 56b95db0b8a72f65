"""Stage 2 up to the generator: the F0 and N curves of the prosody predictor, then the decoder.

The F0/N path follows the reference export's op sequence exactly (its rounding is amplified by
the harmonic source's phase); the decoder may use the exact rewrites (graph/__init__.py).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from wyoming_kokoro_gguf.synth.graph.builder import Builder, d_dim
from wyoming_kokoro_gguf.synth.graph.generator import Generator
from wyoming_kokoro_gguf.synth.lowering import is_int8


class Decoder(Generator):
    """Mixin of KokoroGraph: builds stage 2 (F0/N curves, decoder, then the generator)."""

    use_external: bool
    external: dict[str, np.ndarray]
    style_dim: int
    fast_decoder: bool

    def build_stage2(self, calibrate: bool = False) -> onnx.ModelProto:
        """Stage 2: aligned features -> audio.  With conv="int8" (or "int8s" calibrating),
        input ``conv_ratios`` (see _int8_conv); ``calibrate`` adds the outputs ``conv_peaks``
        and ``conv_ranges``."""
        b = Builder("kokoro_stage2", self.use_external, self.options.weights == "int8")
        self.external = b.external if b.external is not None else {}
        self.int8_convs, self.conv_bounds, self.conv_channels, self._peaks = 0, [], [], []
        self._ranges, self.conv_slots = [], 0
        self.calibrate = calibrate
        w = self.w
        en = b.input("en", TensorProto.FLOAT, ["F", 1, d_dim(w)])
        asr = b.input("asr", TensorProto.FLOAT, ["F", 1, "C"])
        sd = self.style_dim
        style = b.input("style", TensorProto.FLOAT, [1, 2 * sd])
        if self.options.conv == "int8" or calibrate and is_int8(self.options.conv):
            self._ratios = b.input("conv_ratios", TensorProto.FLOAT, ["Q"])
        one = b.const([1], np.int64)
        s_dec = b.op("Slice", [style, b.const([0], np.int64), b.const([sd], np.int64), one])
        s_pred = b.op("Slice", [style, b.const([sd], np.int64), b.const([2 * sd], np.int64), one])
        f0_curve, n_curve = self._f0_n_curves(b, en, s_pred)
        x = self._decoder(b, asr, s_dec, f0_curve, n_curve)
        audio = self.generator(b, x, s_dec, f0_curve)
        b.output(audio, "audio", TensorProto.FLOAT, ["S"])
        if self._peaks:
            peaks = b.op("Concat", self._peaks, axis=0)
            b.output(peaks, "conv_peaks", TensorProto.FLOAT, [sum(self.conv_channels)])
            ranges = b.op("Concat", self._ranges, axis=0)
            b.output(ranges, "conv_ranges", TensorProto.FLOAT, [2 * self.conv_slots])
        return b.model()

    def _f0_n_curves(self, b: Builder, en: str, s_pred: str) -> tuple[str, str]:
        """F0 and N curves from the shared LSTM, each [1, 1, 1, 2F] (or [1, 1, 2F])."""
        w = self.w
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
        return f0_curve, n_curve

    def _decoder(self, b: Builder, asr: str, s_dec: str, f0_curve: str, n_curve: str) -> str:
        """The decoder's residual blocks over the aligned text features and the curves."""
        w = self.w
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
        return x

    def adain_resblk(self, b: Builder, x: str, s: str, p: str) -> str:
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
