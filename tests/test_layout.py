"""The package's layout (docs/ARCHITECTURE.md): every module imports on its own, imports run one
way, the engine process stays clear of the Wyoming front end, and a built wheel works.

The import checks read the source (the AST of every module) rather than trusting one import
order: a cycle that happens to work when the server imports first still fails here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import wave
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "wyoming_kokoro_gguf"
PACKAGE_DIR = ROOT / PACKAGE

# Layers, lowest first.  "base" is what every layer may use: the package's __init__ (the
# version) and audio.py (the sample format).  "entry" is every other top-level module
# (__main__, client, say and the thin probe/convert/inspect entries): they may import anything,
# and nothing inside the package imports them.
BASE = {PACKAGE, f"{PACKAGE}.audio"}
SUBPACKAGES = ("synth", "weights", "host", "server")
# layer -> the layers it must not import
FORBIDDEN = {
    "base": {"synth", "weights", "host", "server", "entry"},
    "synth": {"host", "server", "entry"},
    "weights": {"host", "server", "entry"},
    "host": {"server", "entry"},
    "server": {"entry"},
    "entry": set(),
}

# The engine process must not load these (docs/ARCHITECTURE.md, "The process boundary").
ENGINE_ENTRY = f"{PACKAGE}.server.engine_worker"
ENGINE_FORBIDDEN_PREFIXES = ("wyoming", "aiohttp")
ENGINE_FORBIDDEN_MODULES = tuple(
    f"{PACKAGE}.server.{name}"
    for name in ("handler", "context", "scheduler", "http_api", "startup", "app")
)


def module_name(path: Path) -> str:
    """The dotted name of a module file of the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (walked from the source tree)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        found[module_name(path)] = path
    return found


MODULES = package_modules()


def layer_of(module: str) -> str:
    """base | synth | weights | host | server | entry."""
    if module in BASE:
        return "base"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "entry"


@dataclass(frozen=True)
class Import:
    """One import of a package module, as written in the source."""

    source: str  # the importing module
    target: str  # the imported module of the package (a module or a package's __init__)
    line: int
    in_function: bool
    type_checking: bool  # under ``if TYPE_CHECKING:``: never executed

    def where(self) -> str:
        return f"{MODULES[self.source].relative_to(ROOT)}:{self.line}"


def _resolve(name: str) -> str | None:
    """The package module an import names: the longest known module prefix of ``name``."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _absolute(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = source.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str) -> list[Import]:
    """The package imports of one module, with where they sit."""
    path = MODULES[source]
    return imports_in(source, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def imports_in(source: str, code: str, is_package: bool = False) -> list[Import]:
    """The package imports in ``code``, the text of module ``source``."""
    tree = ast.parse(code, source)
    found: list[Import] = []

    def add(name: str, node: ast.stmt, in_function: bool, type_checking: bool) -> None:
        target = _resolve(name)
        imp = Import(source, target or "", node.lineno, in_function, type_checking)
        if target is not None and target != source and imp not in found:
            found.append(imp)

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, in_function, type_checking)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(source, is_package, node)
            for alias in node.names:
                # "from pkg import mod" imports the module pkg.mod when there is one
                add(
                    f"{base}.{alias.name}" if base else alias.name, node, in_function, type_checking
                )
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, inner, True)
            for child in node.orelse:
                visit(child, inner, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_checking)

    visit(tree, False, False)
    return found


ALL_IMPORTS = [imp for name in MODULES for imp in imports_of(name)]


def test_the_package_has_its_subpackages() -> None:
    for sub in SUBPACKAGES:
        assert f"{PACKAGE}.{sub}" in MODULES, f"{sub}/__init__.py is missing"
    assert ENGINE_ENTRY in MODULES


# Imports every module first, in one fresh interpreter: before each, every module of the package
# is dropped from sys.modules (third-party modules stay loaded, which keeps this fast).
IMPORT_EACH_FIRST = """
import importlib, json, sys, traceback
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.split(".")[0] == sys.argv[2]]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
"""


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Each module imports with no other module of the package loaded before it: no cycle
    that only an import order hides, no module that needs another imported first."""
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_FIRST, json.dumps(sorted(MODULES)), PACKAGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "modules that do not import first:\n" + "\n".join(
        f"{name}:\n{text}" for name, text in failed.items()
    )


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_in_its_own_interpreter(module: str) -> None:
    """Each module alone in a new interpreter (third-party modules not loaded either)."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr[-3000:]}"


def test_no_import_cycle() -> None:
    """Module-level imports (those that run at import time) form no cycle."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in ALL_IMPORTS:
        if not imp.in_function and not imp.type_checking:
            graph[imp.source].add(imp.target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_run_one_way() -> None:
    """synth/ and weights/ below host/, host/ below server/, the entry modules on top."""
    bad = [
        f"{imp.where()}: {imp.source} ({layer_of(imp.source)}) imports {imp.target} "
        f"({layer_of(imp.target)})"
        for imp in ALL_IMPORTS
        if layer_of(imp.target) in FORBIDDEN[layer_of(imp.source)]
    ]
    assert not bad, "layer violations:\n" + "\n".join(bad)


# The imports deferred by design: the HTTP side door, whose aiohttp server costs the front end
# 13 MB of RSS, is imported only when --http-port asks for it; the graph builder (synth/build.py,
# synth/graph, onnx) only when the engine has no cached graphs to load, and the ONNX export
# reader (onnx) only when a conversion reads one: importing onnx cost 1.1-1.4 s of every warm
# start (docs/PERFORMANCE.md, "Start-up"), and the engine process reaches the converter through
# host/models.py; likewise the converter's measuring modes (--sensitivity, --type auto), which
# run the engine and build graphs.
DEFERRED_BY_DESIGN = {
    (f"{PACKAGE}.weights.convert", f"{PACKAGE}.weights.sensitivity"),
    (f"{PACKAGE}.weights.convert", f"{PACKAGE}.weights.auto"),
    (f"{PACKAGE}.server.startup", f"{PACKAGE}.server.http_api"),
    (f"{PACKAGE}.synth.engine", f"{PACKAGE}.synth.build"),
    (f"{PACKAGE}.weights.convert", f"{PACKAGE}.weights.onnx_source"),
}


def test_no_package_import_inside_a_function() -> None:
    """The package's own modules are imported at the top, where a reader sees the dependency."""
    bad = [
        f"{imp.where()}: {imp.target}"
        for imp in ALL_IMPORTS
        if imp.in_function and (imp.source, imp.target) not in DEFERRED_BY_DESIGN
    ]
    assert not bad, "imports of package modules inside functions:\n" + "\n".join(bad)


def test_the_checker_sees_what_it_should() -> None:
    """The checker itself, on a made-up module of synth/."""
    code = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "from wyoming_kokoro_gguf import audio\n"
        "from wyoming_kokoro_gguf.host.plan import Plan\n"
        "from . import text\n"
        "if TYPE_CHECKING:\n"
        "    from wyoming_kokoro_gguf.server import handler\n"
        "def f():\n"
        "    import wyoming_kokoro_gguf.weights.layout\n"
    )
    found = imports_in(f"{PACKAGE}.synth.engine", code)
    assert [(i.target, i.line, i.in_function, i.type_checking) for i in found] == [
        (f"{PACKAGE}.audio", 3, False, False),
        (f"{PACKAGE}.host.plan", 4, False, False),
        (f"{PACKAGE}.synth.text", 5, False, False),
        (f"{PACKAGE}.server.handler", 7, False, True),
        (f"{PACKAGE}.weights.layout", 9, True, False),
    ]
    layers = [layer_of(i.target) for i in found]
    assert layers == ["base", "host", "synth", "server", "weights"]
    assert [layer in FORBIDDEN["synth"] for layer in layers] == [False, True, False, True, False]
    assert layer_of(f"{PACKAGE}.say") == "entry" and layer_of(PACKAGE) == "base"


def test_engine_process_does_not_load_the_wyoming_server() -> None:
    """The engine child's entry module pulls in neither wyoming, aiohttp nor the front end."""
    forbidden = list(ENGINE_FORBIDDEN_MODULES)
    probe = (
        "import json, sys\n"
        f"import {ENGINE_ENTRY}\n"
        f"prefixes = {ENGINE_FORBIDDEN_PREFIXES!r}\n"
        f"modules = {forbidden!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in modules or any("
        "m == p or m.startswith(p + '.') for p in prefixes))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the engine process loads {loaded}"


def test_the_front_end_stays_free_of_the_engine_libraries() -> None:
    """The server's own process (no --http-port) loads neither ONNX Runtime, onnx nor aiohttp:
    they belong to the engine process, and each costs a small board memory twice otherwise."""
    probe = (
        "import json, sys\n"
        f"import {PACKAGE}.__main__\n"
        "print(json.dumps(sorted(m for m in ('onnxruntime', 'onnx', 'aiohttp', 'gguf') "
        "if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_engine_process_imports_no_onnx() -> None:
    """The engine child's modules load neither onnx nor the graph builder: a warm start loads
    cached graphs (tests/test_graph_cache.py checks a whole cache-hit load)."""
    probe = (
        "import json, sys\n"
        f"import {ENGINE_ENTRY}\n"
        f"names = ('onnx', 'ml_dtypes', '{PACKAGE}.synth.build', '{PACKAGE}.synth.graph')\n"
        "print(json.dumps(sorted(m for m in names if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_engine_process_module_level_imports_stay_below_the_front_end() -> None:
    """Statically too: nothing the engine entry imports at module level reaches the front end."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in ALL_IMPORTS:
        if not imp.type_checking:  # function-level imports run in the child's main loop
            graph[imp.source].add(imp.target)
    seen, todo = set(), [ENGINE_ENTRY]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    reached = sorted(seen & set(ENGINE_FORBIDDEN_MODULES))
    assert not reached, f"{ENGINE_ENTRY} reaches {reached}"


# ----------------------------------------------------------------------------- packaging


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_tree(tmp_path: Path, english_model: Path) -> None:
    """Build a wheel, install it into a fresh venv outside the tree, run the documented commands.

    The venv sees the project's dependencies through a .pth line naming .venv's site-packages
    (a plain path: .venv's own .pth files, among them the editable install of this tree, are not
    processed), so the only wyoming_kokoro_gguf it can import is the wheel's.
    """
    model = english_model  # the converted model the server tests use
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"

    # 1. the wheel, built from a copy of the sources (an in-tree build leaves build/ behind)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    for path in PACKAGE_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            dest = src / path.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    wheels = tmp_path / "wheels"
    log = _run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", str(src), "-w", str(wheels)],
        tmp_path,
        env,
    )
    deprecations = [line for line in log.splitlines() if "deprecat" in line.lower()]
    assert not deprecations, "building the wheel warns:\n" + "\n".join(deprecations[:10])
    (wheel,) = wheels.glob(f"{PACKAGE}-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
    for name, path in MODULES.items():
        assert str(path.relative_to(ROOT)) in shipped, f"{name} is not in the wheel"
    for path in (PACKAGE_DIR / "server" / "web").rglob("*"):
        if path.is_file():
            assert str(path.relative_to(ROOT)) in shipped, f"{path.name} is not in the wheel"

    # 2. a fresh venv outside the tree that sees the dependencies, not the tree
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)],
        tmp_path,
        env,
        timeout=300,
    )
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        tmp_path,
        env,
    ).strip()
    deps = sysconfig.get_paths()["purelib"]  # this interpreter's, i.e. .venv's, site-packages
    (Path(purelib) / "project_dependencies.pth").write_text(deps + "\n")
    where = _run(
        [str(python), "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], tmp_path, env
    ).strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), f"imported from {where}"
    assert not Path(where).resolve().is_relative_to(ROOT)

    # 3. the documented commands, from a directory outside the tree
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    version = _run([str(python), "-m", PACKAGE, "--version"], cwd, env).strip()
    assert version.splitlines()[-1] == _version()
    probe = subprocess.run(
        [str(python), "-m", f"{PACKAGE}.probe", "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout)
    assert isinstance(report, dict) and report
    out = tmp_path / "hello.wav"
    _run(
        [str(python), "-m", f"{PACKAGE}.say", "--model", str(model), "-o", str(out)]
        + ["Hello from the wheel."],
        cwd,
        env,
        timeout=600,
    )
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (24000, 2, 1)
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert audio.size > 24000 // 2, "less than half a second of audio"
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 300, f"the audio is silent (RMS {rms:.0f})"


def _version() -> str:
    text = (PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("no __version__ in __init__.py")
