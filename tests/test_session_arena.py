"""The engine's two ONNX Runtime sessions share one arena (synth/engine.session_options).

Each stage's activations peak at a different time, so one arena serves both; an arena per
session keeps both high-water marks for the life of the process.  Checked with real sessions
in a fresh process: two graphs that each need a 64 MiB activation, run one after the other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import onnx
    from onnx import TensorProto, helper
    import onnxruntime as ort
    from wyoming_kokoro_gguf.synth.engine import session_options
    from wyoming_kokoro_gguf.synth.lowering import EngineOptions

    def big_activation_graph(name):
        # a 64 MiB tensor inside the graph (Expand), summed to one number
        nodes = [
            helper.make_node("Expand", ["x", "shape"], ["big"]),
            helper.make_node("Add", ["big", "x"], ["bigger"]),
            helper.make_node("ReduceSum", ["bigger"], ["y"], keepdims=0),
        ]
        shape = helper.make_tensor("shape", TensorProto.INT64, [1], [16 << 20])
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
            [shape],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        return model.SerializeToString()

    def hwm_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024

    options = EngineOptions(threads=1, mem_arena=sys.argv[1] == "arena")
    sessions = [
        ort.InferenceSession(big_activation_graph(n), session_options(options),
                             providers=["CPUExecutionProvider"])
        for n in ("stage1", "stage2")
    ]
    x = np.ones(1, np.float32)
    before = hwm_mib()
    sums = [float(s.run(None, {"x": x})[0]) for s in sessions]
    print(json.dumps({"grew_mib": hwm_mib() - before, "sums": sums}))
    """
)


def _run(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_two_sessions_share_one_arena() -> None:
    arena = _run("arena")
    assert arena["sums"] == [2.0 * (16 << 20)] * 2  # both sessions really computed
    # one session's 2 x 64 MiB of activations, reused by the other: well under two sessions' worth
    assert 100 < arena["grew_mib"] < 200, arena


def test_without_the_arena_memory_goes_back_between_sessions() -> None:
    """mem_arena=False (glibc returns freed blocks at once): the second session reuses
    nothing, yet the peak is one session's, as with the shared arena."""
    plain = _run("plain")
    assert plain["sums"] == [2.0 * (16 << 20)] * 2
    assert plain["grew_mib"] < 200, plain
