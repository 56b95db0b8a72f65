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
decoder and generator may use exact rewrites (EngineOptions.rewrites: height-1 2-D convolutions,
which get ORT's NCHWc kernels, and InstanceNormalization): same maths, other rounding, no
amplification.  The harmonic source is the deterministic variant of the reference (no random
noise or initial phases), like the export.

Modules: ``builder`` (ONNX building blocks, tensor access), ``layers`` (Linear, LSTM, convolutions
fp32/int8, AdaIN), ``text_stage`` (stage 1), ``decoder`` (stage 2 up to the generator),
``generator`` (harmonic source, upsampling, inverse STFT), ``kokoro`` (KokoroGraph ties them).
"""

from wyoming_kokoro_gguf.synth.graph.builder import (
    OPSET,
    PREFIX,
    Builder,
    GraphBuildError,
    d_dim,
)
from wyoming_kokoro_gguf.synth.graph.generator import hann, istft_basis
from wyoming_kokoro_gguf.synth.graph.kokoro import BuiltGraphs, KokoroGraph, build

__all__ = [
    "OPSET",
    "PREFIX",
    "Builder",
    "BuiltGraphs",
    "GraphBuildError",
    "KokoroGraph",
    "build",
    "d_dim",
    "hann",
    "istft_basis",
]
