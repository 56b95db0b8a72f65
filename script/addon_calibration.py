"""arm64's int8 calibration, computed on amd64 (script/addon_check.py uses this).

Under QEMU every model pass is a few hundred times slower than on x86, and the int8
calibration's passes were 789 s of an 815 s first engine load (docs/PERFORMANCE.md section 8).
The calibration depends on the model file and the graph's options only, not on the CPU
(synth/graph_cache.py), so the check computes it on amd64 for the options arm64's plan picks,
whatever amd64's own plan picks (an AVX2 host without VNNI runs fp32 convolutions and leaves no
calibration behind).  Two small programs, each run in a root with the wheel under check:
PLAN_PROGRAM in the arm64 root asks the server's own code which engine options its plan gives
(no model pass: seconds under QEMU); CALIBRATE_PROGRAM in the amd64 root loads the engine with
those options and a graph cache directory, which leaves the calibration file there.
"""

from __future__ import annotations

import json
import shlex

# argv: the server's flags (the add-on run script's); prints the engine options as JSON.
PLAN_PROGRAM = """
import json, sys
from dataclasses import asdict
from wyoming_kokoro_gguf.__main__ import build_parser
from wyoming_kokoro_gguf.host import models
from wyoming_kokoro_gguf.server import addon_options
args = addon_options.apply(build_parser().parse_args(sys.argv[1:]))
found = models.locate(models.Choice.from_args(args))
options = asdict(found.host_plan.engine_options())
options.pop("reasons", None)
print(json.dumps({"model": str(found.path), "options": options}))
"""

# argv: model file, engine options (JSON), graph cache directory; prints what the load did.
CALIBRATE_PROGRAM = """
import json, sys
from dataclasses import replace
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import default_options
options = replace(default_options(), **json.loads(sys.argv[2]))
engine = Engine.load(sys.argv[1], options, cache_dir=sys.argv[3], warm_up=False)
print(json.dumps({"int8_convs": engine.int8_convs, "graph_cache": engine.graph_cache}))
"""


def server_flags(run_script: str) -> list[str]:
    """The flags the add-on's run script gives the server (its one exec line)."""
    execs = [line for line in run_script.splitlines() if line.startswith("exec ")]
    if len(execs) != 1:
        raise ValueError("the run script has no single exec line")
    words = shlex.split(execs[0])
    if "wyoming_kokoro_gguf" not in words:
        raise ValueError("the run script's exec line does not start wyoming_kokoro_gguf")
    return words[words.index("wyoming_kokoro_gguf") + 1 :]


def last_json(output: str) -> dict:
    """The JSON document a program printed last (libraries may print lines before it)."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON in the output: {output[-500:]!r}")


def needs_calibration(options: dict) -> bool:
    """Whether an engine with these options calibrates (int8 convolutions)."""
    return options.get("conv") in ("int8", "int8s")


def calibration_options(options: dict, threads: int = 2) -> dict:
    """arm64's engine options for the amd64 load: the same graph, this machine's threads."""
    return {**options, "threads": threads}
