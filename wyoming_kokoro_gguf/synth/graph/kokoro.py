"""KokoroGraph: both stages for one model file and one set of engine options."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from wyoming_kokoro_gguf.synth.graph.builder import Weights
from wyoming_kokoro_gguf.synth.graph.decoder import Decoder
from wyoming_kokoro_gguf.synth.graph.text_stage import TextStage
from wyoming_kokoro_gguf.synth.lowering import EngineOptions, default_options
from wyoming_kokoro_gguf.weights.model_file import KokoroModelFile


@dataclass
class BuiltGraphs:
    """Both stages of one model file, with notes on what the lowering did."""

    stage1: onnx.ModelProto
    stage2: onnx.ModelProto
    notes: list[str]
    matmulnbits: int = 0  # Linear weights kept packed (GGUF Q4_0/Q8_0 blocks)


class KokoroGraph(TextStage, Decoder):
    """Builds both stages for one model file and one set of engine options."""

    def __init__(
        self, model: KokoroModelFile, options: EngineOptions | None = None, external: bool = False
    ) -> None:
        """``external``: keep weights out of the protobufs; after each build_stage*, the arrays
        are in ``self.external`` for SessionOptions.add_external_initializers (saves two
        copies of the weights while loading)."""
        self.w = Weights(model)
        self.use_external = external
        # style vector halves: decoder | predictor (128 each in Kokoro-82M); from the AdaLN fc
        self.style_dim = int(self.w.get("duration_predictor.layers.1.gamma_weight").shape[1])
        self.external: dict[str, np.ndarray] = {}
        self.options = options or default_options()
        self.notes: list[str] = []
        self.int8_convs = 0  # int8 dot-product convolutions in stage 2 (conv="int8")
        # their calibration's slots: conv="int8s" keeps some fp32 (graph/layers.py)
        self.conv_slots = 0
        # Per int8 conv, an output/input range ratio that can never clip (calibration's start).
        self.conv_bounds: list[float] = []
        # build_stage2 with calibrate=True also outputs each int8 conv's measured peak ratios
        # and input ranges.
        self.calibrate = False
        self.conv_channels: list[int] = []  # output channels per int8 conv
        self.conv_gains: list[np.ndarray] = []  # per int8 conv, its channels' gains (engine)
        # conv="int8s": per int8 conv, (input scale, input zero point, output scale) (engine)
        self.conv_static: list[tuple[float, int, float]] = []
        self._ratios = ""
        self._peaks: list[str] = []
        self._ranges: list[str] = []  # calibration: per int8 conv, its input's [min, max]
        self.nbits_used = 0
        self._packed: dict[str, tuple] = {}
        # True while building the F0/N predictor: there every op follows the reference exactly,
        # because the harmonic source integrates F0 (its cumulative phase amplifies rounding).
        # That path is ~1% of the compute; the decoder/generator use the faster 2-D forms.
        self._conv2d = False
        self._ref_norm = True
        self.fast_decoder = bool(self.options.rewrites)

    def build(self) -> BuiltGraphs:
        """Both stages at once (Engine.load builds them one at a time, to save memory)."""
        stage1 = self.build_stage1()
        stage2 = self.build_stage2()
        return BuiltGraphs(stage1, stage2, list(self.notes), self.nbits_used)


def build(model: KokoroModelFile, options: EngineOptions | None = None) -> BuiltGraphs:
    """Both stages for a model file (an object with the model_file.KokoroModelFile API)."""
    return KokoroGraph(model, options).build()
