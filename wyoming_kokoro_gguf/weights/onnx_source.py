"""Read Kokoro weights out of an ONNX export (kokoro-onnx / onnx-community; fp32, fp16 or int8).

numpy and onnx only, no torch.  The int8 exports are dynamically quantized by ONNX Runtime's
quantizer: MatMulInteger / ConvInteger / DynamicQuantizeLSTM nodes and Gather + DequantizeLinear
embeddings hold int8/uint8 weights with their scales and zero points.  We dequantize them exactly as
ONNX defines it, ``(q - zero_point) * scale`` in float32.

Many initializers carry PyTorch module paths, but the folded weight-norm convolutions
(``/decoder/decoder/decode.2/Mul_output_0``), ALBERT's and the LSTMs' weights
(``onnx::MatMul_6554_3``, ``onnx::LSTM_6930``) are anonymous: each weight is therefore named after
the node that consumes it (``/decoder/decoder/decode.2/conv1/Conv_quant`` -> ``decoder.decode.2.conv1``),
which the exporter names by module scope.  The result is a state dict in KModel's own parameter
names, which ``layout.ttscpp_tensors`` turns into TTS.cpp's layout.

``dequantized_export`` rewrites the int8 export into a plain fp32 graph on the same dequantized
weights, for equivalence tests of the engine.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from wyoming_kokoro_gguf.weights import layout
from wyoming_kokoro_gguf.weights.model_file import open_model


class OnnxSourceError(Exception):
    """The ONNX file is not a Kokoro export we can read (one-line message)."""


# ONNX packs LSTM gates as (i, o, f, c); PyTorch and TTS.cpp as (i, f, g=c, o).
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)

# ONNX module scopes -> KModel parameter prefixes (kokoro-onnx wraps the model in encoder/decoder).
_SCOPE_REMAP: tuple[tuple[str, str], ...] = (
    ("encoder.predictor.", "predictor."),
    ("encoder.bert_encoder.", "bert_encoder."),
    ("encoder.bert.", "bert."),
    ("encoder.text_encoder.", "text_encoder."),
    ("encoder.F0_proj.", "predictor.F0_proj."),
    ("encoder.N_proj.", "predictor.N_proj."),
    ("encoder.F0.", "predictor.F0."),
    ("encoder.N.", "predictor.N."),
    ("encoder.shared.", "predictor.shared."),
    ("encoder.lstm.", "predictor.lstm."),
    ("encoder.duration_proj.", "predictor.duration_proj."),
    ("decoder.decoder.", "decoder."),
    ("kmodel.", ""),
    ("model.", ""),
)
_REPEAT_SUFFIX = re.compile(r"_\d+$")


def torch_name(onnx_path: str) -> str:
    """Map a dotted ONNX module path / initializer name to KModel's parameter name."""
    for a, b in _SCOPE_REMAP:
        if onnx_path.startswith(a):
            return b + onnx_path[len(a) :]
    return onnx_path


def module_path(node_name: str) -> str:
    """Module path from an exported node name, e.g.
    ``/encoder/text_encoder/cnn.0/cnn.0.0/Conv_quant`` -> ``encoder.text_encoder.cnn.0.0`` and
    ``/encoder/bert/.../attention/query_3/MatMul_quant`` -> ``encoder.bert....attention.query``
    (the ``_3`` marks the 4th call of a shared module, ALBERT's recurrence)."""
    comps = [c for c in node_name.split("/") if c][:-1]
    out: list[str] = []
    for c in comps:
        c = _REPEAT_SUFFIX.sub("", c)
        if out and c.startswith(out[-1] + "."):
            out[-1] = c
        else:
            out.append(c)
    return ".".join(out)


def dequantize_linear(
    q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int | None = None
) -> np.ndarray:
    """ONNX DequantizeLinear semantics in float32: ``(q - zero_point) * scale``.

    ``axis`` broadcasts 1-D scales/zero points along that axis (per-channel)."""
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros((), np.int32) if zero_point is None else np.asarray(zero_point).astype(np.int32)
    if axis is not None and s.ndim == 1 and s.size > 1:
        shape = [1] * q.ndim
        shape[axis] = s.size
        s = s.reshape(shape)
        if z.ndim == 1 and z.size > 1:
            z = z.reshape(shape)
    return (q.astype(np.int32) - z).astype(np.float32) * s


def _lstm_to_torch(
    W: np.ndarray, R: np.ndarray, B: np.ndarray | None, hidden: int
) -> dict[str, np.ndarray]:
    """ONNX LSTM W [dirs, 4H, in], R [dirs, 4H, H], B [dirs, 8H] -> PyTorch params, gates reordered."""
    out: dict[str, np.ndarray] = {}
    H = hidden
    order = np.concatenate([np.arange(g * H, (g + 1) * H) for g in ONNX_TO_TORCH_GATES])
    for d in range(W.shape[0]):
        sfx = "_reverse" if d == 1 else ""
        out[f"weight_ih_l0{sfx}"] = np.ascontiguousarray(W[d][order])
        out[f"weight_hh_l0{sfx}"] = np.ascontiguousarray(R[d][order])
        if B is None:
            zb = np.zeros(4 * H, np.float32)
            out[f"bias_ih_l0{sfx}"], out[f"bias_hh_l0{sfx}"] = zb, zb.copy()
        else:
            out[f"bias_ih_l0{sfx}"] = np.ascontiguousarray(B[d][: 4 * H][order])
            out[f"bias_hh_l0{sfx}"] = np.ascontiguousarray(B[d][4 * H :][order])
    return out


class _Graph:
    """Index of an ONNX graph: initializers, producers, consumers, constant folding."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        g = model.graph
        self.init: dict[str, onnx.TensorProto] = {t.name: t for t in g.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in g.node:
            for x in n.input:
                self.consumers[x].append(n)

    def const(self, name: str) -> np.ndarray | None:
        """The value of a tensor if it is constant (initializer, Constant, or a cast/dequantized
        constant), else None."""
        if not name:
            return None
        if name in self._arrays:
            return self._arrays[name]
        val: np.ndarray | None = None
        if name in self.init:
            val = numpy_helper.to_array(self.init[name])
        elif name in self.producer:
            n = self.producer[name]
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        val = numpy_helper.to_array(a.t)
            elif n.op_type in ("Cast", "Identity"):
                src = self.const(n.input[0])
                if src is not None:
                    to = next((a.i for a in n.attribute if a.name == "to"), onnx.TensorProto.FLOAT)
                    val = (
                        src.astype(helper.tensor_dtype_to_np_dtype(to))
                        if n.op_type == "Cast"
                        else src
                    )
            elif n.op_type == "DequantizeLinear":
                q = self.const(n.input[0])
                s = self.const(n.input[1])
                z = self.const(n.input[2]) if len(n.input) > 2 else None
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                if q is not None and s is not None:
                    val = dequantize_linear(q, s, z, axis if q.ndim > 1 else None)
        if val is not None:
            self._arrays[name] = val
        return val

    def float_const(self, name: str) -> np.ndarray | None:
        v = self.const(name)
        return None if v is None else np.asarray(v, dtype=np.float32)


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _quant_weight(g: _Graph, q_name: str, zp_name: str, axis: int) -> np.ndarray:
    """Dequantize an int8 weight consumed by MatMulInteger / ConvInteger.

    ORT's quantizer names the scale ``<weight>_scale`` next to ``<weight>_quantized``."""
    q = g.const(q_name)
    if q is None:
        raise OnnxSourceError(f"quantized weight {q_name} is not a constant")
    base = q_name[: -len("_quantized")] if q_name.endswith("_quantized") else q_name
    scale = g.const(base + "_scale")
    if scale is None:
        raise OnnxSourceError(f"no scale initializer for quantized weight {q_name}")
    zp = g.const(zp_name) if zp_name else None
    return dequantize_linear(q, scale, zp, axis)


class _Collector:
    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}

    def add(self, name: str, value: np.ndarray) -> None:
        name = torch_name(name)
        old = self.params.get(name)
        if old is not None and (old.shape != value.shape or not np.array_equal(old, value)):
            raise OnnxSourceError(f"two different values found for parameter {name}")
        self.params[name] = np.ascontiguousarray(value, dtype=np.float32)


def _lstm_params(g: _Graph, n: onnx.NodeProto) -> dict[str, np.ndarray]:
    H = int(_attr(n, "hidden_size"))
    if n.op_type == "DynamicQuantizeLSTM":
        # W_quant [dirs, in, 4H] / R_quant [dirs, H, 4H], per-direction (or per-channel) scales.
        def deq(q_idx: int, s_idx: int, z_idx: int) -> np.ndarray:
            q = g.const(n.input[q_idx])
            s = g.const(n.input[s_idx])
            z = g.const(n.input[z_idx]) if len(n.input) > z_idx else None
            if q is None or s is None:
                raise OnnxSourceError(f"{n.name}: LSTM weights are not constant")
            s = np.asarray(s, np.float32)
            z = np.zeros_like(s, dtype=np.int32) if z is None else np.asarray(z).astype(np.int32)
            s3 = s.reshape(s.shape[0], 1, -1)  # [dirs, 1, 1] or [dirs, 1, 4H]
            z3 = z.reshape(z.shape[0], 1, -1)
            w = (q.astype(np.int32) - z3).astype(np.float32) * s3
            return np.transpose(w, (0, 2, 1))  # -> [dirs, 4H, in]

        W = deq(1, 8, 9)
        R = deq(2, 10, 11)
    else:
        W = g.float_const(n.input[1])
        R = g.float_const(n.input[2])
        if W is None or R is None:
            raise OnnxSourceError(f"{n.name}: LSTM weights are not constant")
    B = g.float_const(n.input[3]) if len(n.input) > 3 else None
    return _lstm_to_torch(W, R, B, H)


def state_dict(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """All Kokoro parameters of an export, dequantized, by KModel parameter name."""
    g = _Graph(model)
    c = _Collector()
    for n in model.graph.node:
        op = n.op_type
        path = module_path(n.name) if n.name.startswith("/") else ""
        if op == "MatMulInteger":
            w = _quant_weight(g, n.input[1], n.input[3] if len(n.input) > 3 else "", axis=1)
            c.add(path + ".weight", w.T)
        elif op == "ConvInteger":
            w = _quant_weight(g, n.input[1], n.input[3] if len(n.input) > 3 else "", axis=0)
            c.add(path + ".weight", w)
        elif op in ("MatMul", "Gemm"):
            w = g.float_const(n.input[1])
            if w is not None and path:
                if op == "Gemm" and _attr(n, "transB", 0):
                    w = w.T
                c.add(path + ".weight", w.T)
                if (
                    op == "Gemm"
                    and len(n.input) > 2
                    and (b := g.float_const(n.input[2])) is not None
                ):
                    c.add(path + ".bias", b)
        elif op in ("Conv", "ConvTranspose"):
            w = g.float_const(n.input[1])
            if w is not None and path:
                c.add(path + ".weight", w)
                if len(n.input) > 2 and (b := g.float_const(n.input[2])) is not None:
                    c.add(path + ".bias", b)
        elif op in ("LSTM", "DynamicQuantizeLSTM"):
            for k, v in _lstm_params(g, n).items():
                c.add(f"{path}.{k}", v)
        elif op == "Gather":
            data = n.input[0]
            if data not in g.init and not (
                data in g.producer and g.producer[data].op_type == "DequantizeLinear"
            ):
                continue
            w = g.const(data)
            if w is None:
                continue
            if w.dtype in (np.int8, np.uint8):  # Gather_quant: dequantized after the gather
                dq = next(
                    (x for x in g.consumers[n.output[0]] if x.op_type == "DequantizeLinear"), None
                )
                if dq is None:
                    continue
                zp = g.const(dq.input[2]) if len(dq.input) > 2 else None
                w = dequantize_linear(w, g.const(dq.input[1]), zp)
            if w.ndim == 2 and path:
                c.add(path + ".weight", w)
    # Named float parameters (biases, norms, Snake alphas, ...).
    for name, t in g.init.items():
        if (
            name.startswith("/")
            or name.startswith("onnx::")
            or name.endswith(("_quantized", "_scale", "_zero_point"))
        ):
            continue
        if t.data_type not in (
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.FLOAT16,
            onnx.TensorProto.BFLOAT16,
        ):
            continue
        tname = torch_name(name)
        if tname in c.params:
            continue
        c.add(tname, np.asarray(numpy_helper.to_array(t), dtype=np.float32))
    return c.params


def load_model(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file (external data included) or raise OnnxSourceError."""
    p = Path(path)
    try:
        return onnx.load(str(p))
    except (onnx.onnx_cpp2py_export.checker.ValidationError, OSError, ValueError) as exc:  # type: ignore[attr-defined]
        raise OnnxSourceError(f"{p}: cannot read ONNX model: {exc}") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise OnnxSourceError(f"{p}: not an ONNX model ({type(exc).__name__})") from None


def kokoro_state_dict(
    path: str | Path, dims: layout.KokoroDims | None = None
) -> dict[str, np.ndarray]:
    """Read an export and return exactly the KModel parameters the GGUF needs (checked shapes)."""
    model = load_model(path)
    params = state_dict(model)
    want = layout.torch_shapes(dims or infer_dims(params))
    missing = [n for n in want if n not in params]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise OnnxSourceError(
            f"{path}: not a Kokoro export we understand: missing {', '.join(missing[:5])}{more}"
        )
    out: dict[str, np.ndarray] = {}
    for n, shp in want.items():
        a = params[n]
        if a.shape != shp:
            raise OnnxSourceError(
                f"{path}: parameter {n} has shape {list(a.shape)}, expected {list(shp)}"
            )
        out[n] = a
    return out


def infer_dims(params: dict[str, np.ndarray]) -> layout.KokoroDims:
    """Kokoro-82M dimensions, checked against a few parameters (other sizes are not supported yet)."""
    d = layout.KokoroDims()
    emb = params.get("bert.embeddings.word_embeddings.weight")
    if emb is not None and emb.shape[0] != d.vocab_size:
        return layout.KokoroDims(vocab_size=int(emb.shape[0]))
    return d


# --------------------------------------------------------------------------------------------
# Voices


def read_voices(path: str | Path) -> dict[str, np.ndarray]:
    """Voices from a kokoro-onnx voices file (.bin / .npz: a numpy archive of [510, 1, 256])."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            voices = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except (OSError, ValueError) as exc:
        raise OnnxSourceError(f"{p}: not a voices archive (.npz/.bin): {exc}") from None
    out: dict[str, np.ndarray] = {}
    for name, v in voices.items():
        if v.ndim == 3 and v.shape[1] == 1:
            v = v[:, 0, :]
        if v.ndim != 2:
            raise OnnxSourceError(
                f"{p}: voice {name} has shape {list(v.shape)}, expected [510, 1, 256]"
            )
        out[name] = np.ascontiguousarray(v)
    if not out:
        raise OnnxSourceError(f"{p}: contains no voices")
    return out


# --------------------------------------------------------------------------------------------
# fp32 rewrite of the int8 export (for equivalence tests)


def _chain_end(g: _Graph, start: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto | None]:
    """Follow MatMulInteger/ConvInteger -> [Add int bias] -> Cast -> Mul(scale) to the Mul; also
    return the bias Add if there is one."""
    cur, bias_add = start, None
    for _ in range(4):
        cons = g.consumers[cur.output[0]]
        if len(cons) != 1:
            break
        nxt = cons[0]
        if nxt.op_type == "Add" and bias_add is None and cur is start:
            bias_add = nxt
        elif nxt.op_type == "Cast":
            pass
        elif nxt.op_type == "Mul":
            return nxt, bias_add
        else:
            break
        cur = nxt
    raise OnnxSourceError(f"{start.name}: unexpected quantization pattern")


def _float_bias(g: _Graph, bias_add: onnx.NodeProto, int_out: str) -> str:
    """The float bias initializer behind a quantized bias (Div -> Floor -> Cast -> Reshape)."""
    other = bias_add.input[1] if bias_add.input[0] == int_out else bias_add.input[0]
    name = other
    for _ in range(6):
        n = g.producer.get(name)
        if n is None:
            break
        if n.op_type == "Div":
            return n.input[0]
        name = n.input[0]
    raise OnnxSourceError(f"{bias_add.name}: cannot find the float bias")


def _dql_input(g: _Graph, name: str) -> str:
    n = g.producer.get(name)
    if n is None or n.op_type != "DynamicQuantizeLinear":
        raise OnnxSourceError(f"{name}: expected a DynamicQuantizeLinear output")
    return n.input[0]


class _Dequantizer:
    """The float replacement of each int8 node of the export, with its dequantized weights
    (each made once, however many nodes share it)."""

    def __init__(self, g: _Graph) -> None:
        self.g = g
        self.inits: dict[str, np.ndarray] = {}
        self._names: dict[str, str] = {}

    def weight(self, key: str, make: Callable[[], np.ndarray]) -> str:
        if key not in self._names:
            name = key + "_dequantized_fp32"
            self.inits[name] = np.ascontiguousarray(make(), dtype=np.float32)
            self._names[key] = name
        return self._names[key]

    def replace(self, n: onnx.NodeProto) -> onnx.NodeProto | None:
        if n.op_type in ("MatMulInteger", "ConvInteger"):
            return self._matmul_or_conv(n)
        if n.op_type == "DynamicQuantizeLSTM":
            return self._lstm(n)
        if n.op_type == "Gather" and n.input[0] in self.g.init:
            return self._gather(n)
        return None

    def _matmul_or_conv(self, n: onnx.NodeProto) -> onnx.NodeProto:
        g = self.g
        mul, bias_add = _chain_end(g, n)
        x = _dql_input(g, n.input[0])
        zp = n.input[3] if len(n.input) > 3 else ""
        axis = 1 if n.op_type == "MatMulInteger" else 0
        w = self.weight(n.input[1], lambda: _quant_weight(g, n.input[1], zp, axis))
        if n.op_type == "MatMulInteger":
            return helper.make_node("MatMul", [x, w], [mul.output[0]], name=n.name + "_fp32")
        inputs = [x, w]
        if bias_add is not None:
            inputs.append(_float_bias(g, bias_add, n.output[0]))
        node = helper.make_node("Conv", inputs, [mul.output[0]], name=n.name + "_fp32")
        node.attribute.extend(a for a in n.attribute)
        return node

    def _lstm(self, n: onnx.NodeProto) -> onnx.NodeProto:
        H = int(_attr(n, "hidden_size"))
        p = _lstm_params(self.g, n)
        order = np.argsort(ONNX_TO_TORCH_GATES)  # torch -> onnx gate order
        rows = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])
        dirs = 2 if "weight_ih_l0_reverse" in p else 1
        sfx = ["", "_reverse"][:dirs]
        W = np.stack([p[f"weight_ih_l0{s}"][rows] for s in sfx])
        R = np.stack([p[f"weight_hh_l0{s}"][rows] for s in sfx])
        inputs = [
            n.input[0],
            self.weight(n.input[1], lambda: W),
            self.weight(n.input[2], lambda: R),
        ]
        inputs += list(n.input[3:8])
        while inputs and not inputs[-1]:
            inputs.pop()
        node = helper.make_node("LSTM", inputs, list(n.output), name=n.name + "_fp32")
        node.attribute.extend(
            a
            for a in n.attribute
            if a.name in ("direction", "hidden_size", "activations", "clip", "input_forget")
        )
        return node

    def _gather(self, n: onnx.NodeProto) -> onnx.NodeProto | None:
        g = self.g
        w = g.const(n.input[0])
        if w is None or w.dtype not in (np.int8, np.uint8):
            return None
        dq = next((x for x in g.consumers[n.output[0]] if x.op_type == "DequantizeLinear"), None)
        if dq is None:
            return None
        zp = g.const(dq.input[2]) if len(dq.input) > 2 else None
        wn = self.weight(n.input[0], lambda: dequantize_linear(w, g.const(dq.input[1]), zp))
        node = helper.make_node("Gather", [wn, n.input[1]], [dq.output[0]], name=n.name + "_fp32")
        node.attribute.extend(n.attribute)
        return node


def dequantized_export(onnx_path: str | Path) -> onnx.ModelProto:
    """The int8 export with every int8 op replaced by its float op on the dequantized weights
    (MatMulInteger -> MatMul, ConvInteger -> Conv with the float bias, DynamicQuantizeLSTM -> LSTM,
    quantized Gather -> Gather), so ONNX Runtime runs it fully in fp32."""
    model = load_model(onnx_path)
    deq = _Dequantizer(_Graph(model))
    replacement: dict[int, onnx.NodeProto] = {}
    for idx, n in enumerate(model.graph.node):
        node = deq.replace(n)
        if node is not None:
            replacement[idx] = node
    if not replacement:
        raise OnnxSourceError(
            f"{onnx_path}: no int8 operators to replace (already a float export?)"
        )

    graph = model.graph
    nodes = [replacement.get(i, n) for i, n in enumerate(graph.node)]
    # Nodes whose outputs are now produced by a replacement must go (the old Mul / DequantizeLinear).
    produced_by_new = {o for i in replacement for o in replacement[i].output}
    kept = [
        n
        for i, n in enumerate(nodes)
        if i in replacement or not any(o in produced_by_new for o in n.output)
    ]
    new_nodes = _prune_dead(kept, [o.name for o in graph.output])
    used = {x for n in new_nodes for x in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    inits += [numpy_helper.from_array(a, name) for name, a in deq.inits.items() if name in used]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]
    return model


def _prune_dead(nodes: list[onnx.NodeProto], outputs: Iterable[str]) -> list[onnx.NodeProto]:
    needed = set(outputs)
    keep: list[onnx.NodeProto] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output if o):
            keep.append(n)
            needed.update(x for x in n.input if x)
    keep.reverse()
    return keep


# --------------------------------------------------------------------------------------------
# The reference graph on other weights (e.g. a quantized GGUF's, dequantized)


def with_weights(model: onnx.ModelProto, params: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A float export (or ``dequantized_export``'s output) with its Kokoro weights replaced by
    ``params`` (KModel names, as ``state_dict`` returns them).  Raises if a weight is not found."""
    g = _Graph(model)
    new: dict[str, np.ndarray] = {}
    placed: set[str] = set()

    def take(key: str) -> np.ndarray:
        placed.add(key)
        return params[key]

    def set_init(name: str, value: np.ndarray) -> None:
        if name not in g.init:
            raise OnnxSourceError(f"weight {name} is not an initializer")
        old = g.init[name]
        if tuple(old.dims) != value.shape:
            raise OnnxSourceError(
                f"{name}: shape {list(value.shape)} does not fit {list(old.dims)}"
            )
        new[name] = np.ascontiguousarray(
            value, dtype=helper.tensor_dtype_to_np_dtype(old.data_type)
        )

    for n in model.graph.node:
        path = module_path(n.name) if n.name.startswith("/") else ""
        key = torch_name(path + ".weight") if path else ""
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in g.init and key in params:
            w = take(key)
            set_init(n.input[1], w if (n.op_type == "Gemm" and _attr(n, "transB", 0)) else w.T)
        elif n.op_type in ("Conv", "ConvTranspose") and n.input[1] in g.init and key in params:
            set_init(n.input[1], take(key))
        elif n.op_type == "Gather" and n.input[0] in g.init and key in params:
            set_init(n.input[0], take(key))
        elif n.op_type == "LSTM":
            pre = torch_name(path + ".")
            H = int(_attr(n, "hidden_size"))
            rows = np.concatenate(
                [np.arange(k * H, (k + 1) * H) for k in np.argsort(ONNX_TO_TORCH_GATES)]
            )
            sfx = ["", "_reverse"][: g.init[n.input[1]].dims[0]]
            set_init(n.input[1], np.stack([take(f"{pre}weight_ih_l0{s}")[rows] for s in sfx]))
            set_init(n.input[2], np.stack([take(f"{pre}weight_hh_l0{s}")[rows] for s in sfx]))
            if len(n.input) > 3 and n.input[3] in g.init:
                b = [
                    np.concatenate(
                        [take(f"{pre}bias_ih_l0{s}")[rows], take(f"{pre}bias_hh_l0{s}")[rows]]
                    )
                    for s in sfx
                ]
                set_init(n.input[3], np.stack(b))
    for name in g.init:
        tname = torch_name(name)
        if name not in new and tname in params and not name.startswith(("/", "onnx::")):
            set_init(name, take(tname).reshape(tuple(g.init[name].dims)))
    missing = [k for k in params if k not in placed]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise OnnxSourceError(f"weights with no place in the graph: {', '.join(missing[:5])}{more}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = [
        numpy_helper.from_array(new[t.name], t.name) if t.name in new else t
        for t in model.graph.initializer
    ]
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    return out


def reference_model(
    onnx_path: str | Path, gguf_path: str | Path, fp32: onnx.ModelProto | None = None
) -> onnx.ModelProto:
    """The kokoro-onnx graph in fp32 running a GGUF's weights (dequantized): an independent
    reference for any GGUF type, e.g. to hear what a quantization does to the audio.
    ``fp32`` may pass a ready ``dequantized_export(onnx_path)`` (it is not modified)."""
    mf = open_model(gguf_path)
    base = kokoro_state_dict(onnx_path)
    params = layout.torch_from_ttscpp(mf.tensor, mf.dims, base)
    return with_weights(fp32 if fp32 is not None else dequantized_export(onnx_path), params)
