"""The small ONNX-building layer under the Kokoro graph: unique names, initializers, tensor access.

Tensor names are TTS.cpp's GGUF layout without the ``kokoro.`` prefix (see weights/layout.py).
"""

from __future__ import annotations

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


class GraphBuildError(RuntimeError):
    """The model file lacks a tensor or shape the Kokoro graph needs."""


class Builder:
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

    def shared(self, key: str, make: Callable[[], np.ndarray]) -> str:
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
        return np.asarray(self.model.tensor(PREFIX + name), dtype=np.float32)

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
