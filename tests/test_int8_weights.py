"""int8 weight storage (EngineOptions.weights="int8", synth/graph/builder.py), run by ONNX Runtime.

What the engine relies on: a stored weight comes back in its own shape, every element within
half a step of its row's scale, and ORT keeps the int8 form instead of folding it back into fp32
at session creation (else nothing is saved).  The whole engine with it: tests/test_engine.py.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from wyoming_kokoro_gguf.synth.graph.builder import (
    INT8_WEIGHT_MIN_ELEMENTS,
    Builder,
    int8_rows,
    symmetric_int8,
)


@pytest.mark.parametrize(
    ("shape", "rows"),
    [
        ((512, 512, 3), 512),  # a conv: one scale per output channel
        ((512, 512, 1), 512),  # a 1x1 conv
        ((2, 2048, 640), 4096),  # an LSTM's weights: one per gate row, not per direction
        ((768, 256), 768),  # a Linear weight
        ((512, 256, 20), 512),  # an upsampling ConvTranspose: one per input channel
    ],
)
def test_rows_keep_at_least_a_row_of_weights_per_scale(shape: tuple, rows: int) -> None:
    assert int8_rows(shape) == rows


def test_symmetric_int8_is_within_half_a_step() -> None:
    rng = np.random.default_rng(5)
    weights = rng.standard_normal((64, 96, 3)).astype(np.float32) * rng.uniform(0.01, 3, (64, 1, 1))
    weights[7] = 0  # an all-zero channel keeps a usable scale
    values, scale = symmetric_int8(weights)
    assert values.dtype == np.int8 and scale.shape == (64,) and np.all(scale > 0)
    back = values.astype(np.float32) * scale[:, None, None]
    assert np.all(np.abs(back - weights) <= scale[:, None, None] / 2 * 1.0001)
    assert np.abs(values).max() == 127 and not back[7].any()


def _run(builder: Builder, weight: str, shape: tuple) -> np.ndarray:
    builder.output(weight, "w", TensorProto.FLOAT, list(shape))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(builder.model().SerializeToString(), options)
    return session.run(None, {})[0]


@pytest.mark.parametrize("shape", [(2, 256, 96), (128, 160, 3), (320, 64)])
def test_a_stored_weight_comes_back_in_its_shape(shape: tuple) -> None:
    weights = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    builder = Builder("w", int8_weights=True)
    out = _run(builder, builder.init("w", weights), shape)
    stored = [t for t in builder.inits if t.data_type == TensorProto.INT8]
    assert len(stored) == 1 and not any(
        t.data_type == TensorProto.FLOAT and len(t.float_data or t.raw_data) > 4 * 1024
        for t in builder.inits
    )
    rows = int8_rows(shape)
    step = np.abs(weights.reshape(rows, -1)).max(axis=1) / 127
    assert out.shape == shape
    assert np.all(np.abs(out - weights).reshape(rows, -1) <= step[:, None] / 2 * 1.0001)


def test_small_weights_and_int8_off_stay_fp32() -> None:
    small = np.ones((INT8_WEIGHT_MIN_ELEMENTS // 64 - 1, 64), np.float32)
    big = np.ones((256, 128), np.float32)
    on, off = Builder("on", int8_weights=True), Builder("off")
    for builder, array in ((on, small), (off, big)):
        name = builder.init("w", array)
        np.testing.assert_array_equal(_run(builder, name, array.shape), array)
        assert [t.data_type for t in builder.inits] == [TensorProto.FLOAT]


def test_ort_keeps_the_int8_form_in_the_optimized_graph(tmp_path) -> None:
    """ORT's constant folding skips DequantizeLinear: the optimized model still holds int8."""
    import onnx

    builder = Builder("w", int8_weights=True)
    x = builder.input("x", TensorProto.FLOAT, [1, 256])
    weight = builder.init("w", np.random.default_rng(2).standard_normal((256, 128)).astype("f4"))
    builder.output(builder.op("MatMul", [x, weight]), "y", TensorProto.FLOAT, [1, 128])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(builder.model().SerializeToString(), options)
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    kinds = {t.data_type for t in optimized.graph.initializer if np.prod(t.dims) >= 128 * 256}
    assert kinds == {TensorProto.INT8}
