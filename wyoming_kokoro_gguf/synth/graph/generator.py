"""The generator at the end of stage 2 (istftnet.py's Generator): harmonic source, its STFT,
upsampling with noise branches and multi-kernel residual blocks, inverse STFT to 24 kHz audio."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from wyoming_kokoro_gguf.audio import SAMPLE_RATE
from wyoming_kokoro_gguf.synth.graph.builder import LAYER_NORM_EPS, Builder
from wyoming_kokoro_gguf.synth.graph.layers import Layers

# SineGen settings of the reference Generator (istftnet.py): harmonics 8, sine_amp 0.1,
# voiced threshold 10 Hz.
SINE_AMP = 0.1
VOICED_THRESHOLD = 10.0
GEN = "decoder.generator."


@dataclass(frozen=True)
class GeneratorShape:
    """The generator's dimensions, read from the model file's tensors and metadata."""

    strides: list[int]  # per upsampling stage
    pads: list[int]
    n_fft: int
    hop: int
    upp: int  # samples per F0 frame (300)
    n_kernels: int  # residual blocks per upsampling stage
    harmonics: int

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


class Generator(Layers):
    """Mixin of KokoroGraph: the generator and its residual blocks."""

    _ref_norm: bool

    def generator(self, b: Builder, x: str, s: str, f0_curve: str) -> str:
        """Decoder features, decoder style and the F0 curve -> the waveform [S]."""
        shape = self._generator_shape()
        har = self._harmonic_source(b, f0_curve, shape)
        source = self._source_spectrum(b, har, shape)
        x = self._upsample(b, x, s, source, shape)
        x = b.op("LeakyRelu", [x], alpha=0.01)
        x = self.conv(
            b, x, GEN + "conv_post_weight", GEN + "conv_post_bias"
        )  # [1, n_fft + 2, 1, frames]
        return self._istft(b, x, shape)

    def _generator_shape(self) -> GeneratorShape:
        """Strides, paddings, FFT size and hop of this file's generator."""
        w = self.w
        g = GEN
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
        hop = int(w.hparam("decoder.generator.hop", 5))
        upp = int(np.prod(strides)) * hop  # samples per F0 frame (300)
        n_kernels = 0
        while w.has(f"{g}resblocks.{n_kernels}.0.convs1_weight"):
            n_kernels += 1
        n_kernels //= len(ups)
        harmonics = w.get(g + "m_source_weight").reshape(-1).shape[0]
        return GeneratorShape(strides, pads, n_fft, hop, upp, n_kernels, harmonics)

    def _harmonic_source(self, b: Builder, f0_curve: str, shape: GeneratorShape) -> str:
        """The deterministic SineGen at the sample rate, merged to one channel: [1, S, 1]."""
        g, upp, harmonics = GEN, shape.upp, shape.harmonics
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
        return har

    def _source_spectrum(self, b: Builder, har: str, shape: GeneratorShape) -> str:
        """STFT of the source: magnitude and phase, centred frames (reflect padding)."""
        n_fft, hop = shape.n_fft, shape.hop
        sig = b.op("Reshape", [har, b.const([1, -1], np.int64)])
        sig = b.op("Pad", [sig, b.const([0, n_fft // 2, 0, n_fft // 2], np.int64)], mode="reflect")
        re, im = self._stft(b, sig, n_fft, hop)
        mag = b.op("Sqrt", [b.op("Add", [b.op("Mul", [re, re]), b.op("Mul", [im, im])])])
        ang = phase(b, re, im)
        source = b.op(
            "Identity", [self._lift(b, b.op("Concat", [mag, ang], axis=1))]
        )  # [1, 2*bins, 1, frames]
        return source

    def _upsample(self, b: Builder, x: str, s: str, source: str, shape: GeneratorShape) -> str:
        """Upsampling stages with noise (source) branches and multi-kernel resblocks."""
        w, g = self.w, GEN
        strides, pads, n_kernels = shape.strides, shape.pads, shape.n_kernels
        n_ups = len(strides)
        for i in range(n_ups):
            x = b.op("LeakyRelu", [x], alpha=0.1)
            nb = f"{g}noise_blocks.{i}."
            nk = w.get(nb + "conv_weight").shape[2]
            rest = int(np.prod(strides[i + 1 :])) if i + 1 < n_ups else 1
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
            if i == n_ups - 1:
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
        return x

    def _istft(self, b: Builder, x: str, shape: GeneratorShape) -> str:
        """Inverse STFT (torch.istft semantics: window, overlap-add, divide by window power)."""
        n_fft, hop, bins = shape.n_fft, shape.hop, shape.bins
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
        one_bin = b.op(
            "Slice",
            [mag_log, b.const([0], np.int64), b.const([1], np.int64), b.const([1], np.int64)],
        )
        ones = b.op("Add", [b.op("Mul", [one_bin, b.const(0.0)]), b.const(1.0)])  # frames' shape
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

    def _stft(self, b: Builder, sig: str, n_fft: int, hop: int) -> tuple[str, str]:
        """Real and imaginary parts [1, bins, frames] of the source's STFT (Hann window).

        EngineOptions.stft: the reference's STFT op, or ("conv") a strided convolution with the
        DFT basis, multi-threaded.  The basis's sines of whole half turns are exact zeros, so
        the DC and Nyquist bins' imaginary parts are exactly zero, as a real FFT's (torch.stft
        in training) are: then their phases are torch's in every frame, where the op's DFT
        leaves rounding noise there and flips ~3% of DC and ~14% of Nyquist phases from +pi to
        -pi (docs/PERFORMANCE.md, section 9).
        """
        window = hann(n_fft)
        bins = n_fft // 2 + 1
        if self.options.stft == "conv":
            n = np.arange(n_fft)
            turns = 2 * np.pi * np.outer(np.arange(bins), n) / n_fft
            basis = np.concatenate([np.cos(turns) * window, -np.sin(turns) * window])
            basis[np.abs(basis) < 1e-9] = 0.0  # sin(k pi) is 1e-16 in floating point
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

    def snake(self, b: Builder, x: str, alpha_name: str) -> str:
        """Snake activation x + sin(a x)^2 / a, per channel."""
        alpha = self.w.get(alpha_name).reshape(self._column())
        sin = b.op("Sin", [b.op("Mul", [x, b.init("alpha", alpha)])])
        return b.op(
            "Add", [x, b.op("Mul", [b.op("Mul", [sin, sin]), b.init("inv_alpha", 1.0 / alpha)])]
        )

    def adain_snake(
        self, b: Builder, x: str, s: str, p: str, n: int, conv: str
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

    def adain_resblock1(self, b: Builder, x: str, s: str, p: str, dilations: list[int]) -> str:
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


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window(periodic=True))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def phase(b: Builder, re: str, im: str) -> str:
    """atan2(im, re) as torch.angle gives it, which the model was trained on: an imaginary part
    of exactly zero with a negative real one is +pi (the DC and Nyquist bins, half their frames)."""
    ang = b.op("Atan", [b.op("Div", [im, re])])
    pi = b.const(math.pi)
    upper = b.op("GreaterOrEqual", [im, b.const(0.0)])
    turned = b.op("Where", [upper, b.op("Add", [ang, pi]), b.op("Sub", [ang, pi])])
    return b.op("Where", [b.op("Less", [re, b.const(0.0)]), turned, ang])


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
