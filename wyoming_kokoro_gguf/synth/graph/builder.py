"""The small ONNX-building layer under the Kokoro graph: unique names, initializers, tensor access.

Tensor names are TTS.cpp's GGUF layout without the ``kokoro.`` prefix (see weights/layout.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from wyoming_kokoro_gguf.weights.model_file import KokoroModelFile

OPSET = 17
# A change to the built graphs that the sources do not show: bump synth/graph_cache.py's
# GRAPH_VERSION (kept there, so that a warm start reads it without importing onnx).
PREFIX = "kokoro."
LAYER_NORM_EPS = 1e-5
EXTERNAL_MIN_BYTES = 4096
# With EngineOptions.weights="int8", fp32 weights of at least this many elements are stored as
# int8 (smaller ones, biases and norms, are a rounding error of the total).
INT8_WEIGHT_MIN_ELEMENTS = 16384
# Scales run along rows of at least this many weights (see int8_rows).
INT8_MIN_ROW = 64


class GraphBuildError(RuntimeError):
    """The model file lacks a tensor or shape the Kokoro graph needs."""


def symmetric_int8(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per slice of the first axis: (int8 values, float32 scale per slice)."""
    peak = np.abs(array.reshape(array.shape[0], -1)).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = (-1,) + (1,) * (array.ndim - 1)
    return np.clip(np.rint(array / scale.reshape(shape)), -127, 127).astype(np.int8), scale


def int8_rows(shape: tuple[int, ...]) -> int:
    """How many scales an int8-stored weight gets: its leading axes merged as far as the rest
    keeps INT8_MIN_ROW weights per scale (a conv [out, in, k] gets one per output channel, an
    LSTM's [directions, 4 * hidden, in] one per gate row)."""
    rows = shape[0]
    for split in range(2, len(shape)):
        if math.prod(shape[split:]) < INT8_MIN_ROW:
            break
        rows = math.prod(shape[:split])
    return rows


class Builder:
    """Minimal helper over onnx.helper: unique names, initializers, nodes.

    ``int8_weights``: fp32 weights of INT8_WEIGHT_MIN_ELEMENTS or more are stored as int8 with a
    scale per row and dequantized by each call (DequantizeLinear, which ORT does not fold back
    into fp32): a quarter of their memory for a little rounding (EngineOptions.weights)."""

    def __init__(self, name: str, external: bool = False, int8_weights: bool = False) -> None:
        self.name = name
        self.int8_weights = int8_weights
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

    def shared(self, key: str, make: Callable[[], np.ndarray]) -> str:
        """One initializer per key (ALBERT reuses one layer's weights 12 times: store them once)."""
        name = self._shared.get(key)
        if name is None:
            name = self._shared[key] = self.init(key, make())
        return name

    def init(self, hint: str, array: np.ndarray) -> str:
        """An initializer; returns the name that holds its value in the graph."""
        if (
            self.int8_weights
            and array.dtype == np.float32
            and array.ndim >= 2
            and array.size >= INT8_WEIGHT_MIN_ELEMENTS
        ):
            return self._int8_weight(hint, array)
        return self._plain_init(hint, array)

    def _plain_init(self, hint: str, array: np.ndarray) -> str:
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

    def _int8_weight(self, hint: str, array: np.ndarray) -> str:
        rows = int8_rows(array.shape)
        values, scale = symmetric_int8(array if rows == array.shape[0] else array.reshape(rows, -1))
        stored = self._plain_init(hint + "_int8", values)
        weight = self.op(
            "DequantizeLinear", [stored, self._plain_init(hint + "_scale", scale)], axis=0
        )
        if values.shape == array.shape:
            return weight
        return self.op("Reshape", [weight, self.const(array.shape, np.int64)])

    def const(self, value: Any, dtype: type = np.float32) -> str:
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


class Weights:
    """Tensor access by TTS.cpp name without the ``kokoro.`` prefix."""

    def __init__(self, model: KokoroModelFile) -> None:
        self.model = model
        self.names = set(model.tensor_names)

    def has(self, name: str) -> bool:
        return PREFIX + name in self.names

    def get(self, name: str) -> np.ndarray:
        if not self.has(name):
            raise GraphBuildError(f"the model file has no tensor {PREFIX + name}")
        array = np.asarray(self.model.tensor(PREFIX + name), dtype=np.float32)
        self.model.drop_pages()  # one tensor's pages at a time (KokoroModelFile.drop_pages)
        return array

    def qtype(self, name: str) -> str:
        return getattr(
            self.model.tensor_type(PREFIX + name),
            "name",
            str(self.model.tensor_type(PREFIX + name)),
        )

    def raw(self, name: str) -> np.ndarray:
        return np.asarray(self.model.raw_tensor(PREFIX + name))

    def hparam(self, key: str, default: Any) -> Any:
        hp = self.model.hparams
        for k in (PREFIX + key, key):
            if k in hp:
                return hp[k]
        return default


def d_dim(w: Weights) -> int:
    """Width of the predictor features d: LSTM output (2H) + predictor style (128)."""
    return int(w.get("duration_predictor.duration_lstm.0.weights.0").shape[1])
