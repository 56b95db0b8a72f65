"""The graph cache (synth/graph_cache.py): a second load reads the optimized graphs an earlier
one wrote and speaks bit-identically (the real converted model, once); any changed input, a
damaged entry or an unwritable directory leads to a build, never to a failed start (a tiny
random-weight model, in the fast tier)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from wyoming_kokoro_gguf.synth import graph_cache
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.graph_cache import (
    CALIBRATION_PREFIX,
    ENTRY_PREFIX,
    MANIFEST,
    STALE_TMP_S,
    TMP_PREFIX,
    Built,
    Calibration,
    GraphCache,
)
from wyoming_kokoro_gguf.synth.lowering import default_options

TEXT = "The quick brown fox jumps over the lazy dog."
VOICE = "jf_alpha"
OPTIONS = default_options().with_threads(2)


def speak(engine: Engine) -> np.ndarray:
    return np.concatenate(list(engine.synthesize(TEXT, VOICE)))


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.name.startswith(ENTRY_PREFIX))


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A tiny random-weight Kokoro file (the tests touch it): the cache's mechanics are the
    same for any weights, and its graphs build in a second instead of the real file's 10-25 s."""
    import fixtures_ttscpp as fx

    path = tmp_path_factory.mktemp("model") / "tiny.gguf"
    fx.build(path, voices=(VOICE, "af_heart"))
    return path


@pytest.mark.slow
def test_second_load_reads_the_cache_and_speaks_bit_identically(kokoro_gguf, tmp_path, caplog):
    """The auto plan here (int8 convolutions, calibrated at build): ratios come from the entry.
    A build says what it is doing (minutes on a small board); a cached load builds nothing."""
    options = replace(OPTIONS, conv="int8", linear="fp32")
    model = kokoro_gguf("f32")
    with caplog.at_level(logging.INFO, logger="wyoming_kokoro_gguf.synth.build"):
        first = Engine.load(model, options, cache_dir=tmp_path)
    assert first.graph_cache == "saved"
    steps = ["building the text stage", "calibrating the int8", "building the audio stage"]
    assert all(step in caplog.text for step in steps) and "graphs built in" in caplog.text
    caplog.clear()
    audio = speak(first)
    del first
    with caplog.at_level(logging.INFO, logger="wyoming_kokoro_gguf.synth.build"):
        second = Engine.load(model, options, cache_dir=tmp_path)
    assert second.graph_cache == "loaded" and "building" not in caplog.text
    assert second.int8_convs > 0 and second.conv_ratios is not None
    again = speak(second)
    assert again.shape == audio.shape and np.array_equal(again, audio)
    assert len(entries(tmp_path)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_changed_options_or_touched_file_rebuild(small_model, tmp_path):
    assert Engine.load(small_model, OPTIONS, cache_dir=tmp_path).graph_cache == "saved"
    assert Engine.load(small_model, OPTIONS, cache_dir=tmp_path).graph_cache == "loaded"
    other = replace(OPTIONS, rewrites=False)
    assert Engine.load(small_model, other, cache_dir=tmp_path).graph_cache == "saved"
    st = small_model.stat()
    os.utime(small_model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert Engine.load(small_model, OPTIONS, cache_dir=tmp_path).graph_cache == "saved"
    assert len(entries(tmp_path)) == 2  # the two most recently used are kept


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest"])
def test_damaged_entry_is_rebuilt_with_a_warning(small_model, tmp_path, caplog, damage):
    reference = speak(Engine.load(small_model, OPTIONS, cache_dir=tmp_path))
    (entry,) = entries(tmp_path)
    data = entry / "stage2.onnx.data"
    if damage == "flip":  # same size, one byte changed
        with open(data, "r+b") as f:
            f.seek(data.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        os.truncate(data, data.stat().st_size // 3)
    else:
        (entry / MANIFEST).write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        engine = Engine.load(small_model, OPTIONS, cache_dir=tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0].getMessage()
    assert engine.graph_cache == "saved"
    assert np.array_equal(speak(engine), reference)
    assert Engine.load(small_model, OPTIONS, cache_dir=tmp_path).graph_cache == "loaded"


def test_unwritable_cache_dir_still_starts(small_model, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        engine = Engine.load(small_model, OPTIONS, cache_dir=blocker / "cache")
    assert engine.graph_cache == "unwritable"
    assert any("not written" in r.getMessage() for r in caplog.records)
    assert speak(engine).size > 0


CACHE_HIT_SCRIPT = """
import json, sys
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import default_options
engine = Engine.load(sys.argv[1], default_options().with_threads(1), cache_dir=sys.argv[2])
audio = [a for a in engine.synthesize("Hello there.", sys.argv[3])]
names = ("onnx", "ml_dtypes", "wyoming_kokoro_gguf.synth.build", "wyoming_kokoro_gguf.synth.graph")
print(json.dumps([engine.graph_cache, sum(a.size for a in audio), [m for m in names if m in sys.modules]]))
"""


def test_a_cache_hit_load_imports_neither_onnx_nor_the_builder(small_model, tmp_path):
    """A warm start (entry found) in a fresh interpreter loads and speaks without onnx (1.1-1.4 s
    to import here) or synth/build.py; the build that wrote the entry needed both."""
    cmd = [sys.executable, "-c", CACHE_HIT_SCRIPT, str(small_model), str(tmp_path), VOICE]
    runs = [
        json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0][0] == "saved" and "onnx" in runs[0][2]
    assert runs[1][0] == "loaded" and runs[1][1] > 24000 // 2
    assert runs[1][2] == []


LOAD_SCRIPT = """
import sys
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import default_options
engine = Engine.load(sys.argv[1], default_options().with_threads(1), cache_dir=sys.argv[2])
print(engine.graph_cache)
"""


def test_two_processes_starting_at_once(small_model, tmp_path):
    """Both build and write; one rename wins, the other's files are dropped; both start."""
    cmd = [sys.executable, "-c", LOAD_SCRIPT, str(small_model), str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert set(outs) <= {"saved", "loaded"}
    assert len(entries(tmp_path)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    third = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=600, check=True)
    assert third.stdout.strip() == "loaded"


def test_concurrent_commits_leave_one_whole_entry(tmp_path):
    """Without a model: two writers of the same key; the second finds the entry there."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    caches = [GraphCache(tmp_path / "cache", model, OPTIONS) for _ in range(2)]
    assert caches[0].key == caches[1].key
    for n, cache in enumerate(caches):
        assert cache.start_writing()
        for stage in ("stage1", "stage2"):
            (cache._tmp / f"{stage}.onnx").write_bytes(bytes([n]) * 10)
    for cache in caches:
        cache.commit(Built(conv_ratios=np.ones(3, np.float32)))
        assert cache.status == "saved"
    (entry,) = entries(tmp_path / "cache")
    manifest = json.loads((entry / MANIFEST).read_text())
    assert manifest["key"] == caches[0].key
    assert (entry / "stage1.onnx").read_bytes() == bytes([0]) * 10  # the first writer's
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [entry.name]


def test_key_covers_options_and_file(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    key = GraphCache(tmp_path, model, OPTIONS).key
    assert GraphCache(tmp_path, model, replace(OPTIONS, reasons={"x": "y"})).key == key
    assert GraphCache(tmp_path, model, replace(OPTIONS, conv="int8")).key != key
    # session and engine settings share one entry (the plan measurement opens it with each)
    for same in (dict(max_phonemes=100), dict(threads=1), dict(passes=2), dict(mem_arena=False)):
        assert GraphCache(tmp_path, model, replace(OPTIONS, **same)).key == key
    model.write_bytes(b"GGUF" + bytes(99) + b"x")  # same size, other contents
    os.utime(model, ns=(0, 0))
    changed = GraphCache(tmp_path, model, OPTIONS)
    assert changed.key != key
    assert changed.inputs["onnxruntime"] and changed.inputs["package"]


def test_a_nearly_full_disk_is_not_filled(tmp_path, monkeypatch, caplog):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    cache = GraphCache(tmp_path / "cache", model, OPTIONS)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 1))
    with caplog.at_level(logging.WARNING):
        assert not cache.start_writing()
    assert cache.status == "unwritable" and "MB free" in caplog.text


def another_cpu_and_ort(monkeypatch) -> None:
    """What a new CPU or ORT release changes in the key (the arm64 run after amd64's)."""
    monkeypatch.setattr(graph_cache, "_cpu_identity", lambda: "another CPU")
    monkeypatch.setattr(graph_cache.ort, "__version__", "0.0-another")


def test_calibration_key_leaves_out_cpu_and_versions(tmp_path, monkeypatch, caplog):
    """Without a model: the calibration file outlives the entry's CPU and ORT; a truncated or
    foreign file is removed (the build calibrates), never raised."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    options = replace(OPTIONS, conv="int8")
    first = GraphCache(tmp_path, model, options)
    gains = [np.full(3, 2.0, np.float32), np.full(5, 4.0, np.float32)]
    first.save_calibration(Calibration(np.array([0.5, 0.25], np.float32), gains))
    another_cpu_and_ort(monkeypatch)
    other = GraphCache(tmp_path, model, replace(options, threads=1, max_phonemes=100))
    assert other.key != first.key and other.calibration == first.calibration
    loaded = other.load_calibration()
    assert loaded.ratios.tolist() == [0.5, 0.25] and loaded.ranges is None
    assert [g.tolist() for g in loaded.gains] == [[2.0] * 3, [4.0] * 5]
    assert GraphCache(tmp_path, model, replace(options, rewrites=False)).load_calibration() is None
    data = first.calibration.read_bytes()
    for damaged in (data[: len(data) // 2], data.replace(b"ratios", b"ratioz")):
        first.calibration.write_bytes(damaged)
        with caplog.at_level(logging.WARNING):
            assert other.load_calibration() is None
        assert "damaged" in caplog.text and not first.calibration.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_static_int8_shares_the_calibration_file_and_adds_its_input_ranges(tmp_path, caplog):
    """conv="int8s" builds another graph entry but the same calibration file as "int8" (it
    calibrates on the same per-call graph); its input ranges and output peaks round-trip, and
    ranges that do not fit the convolutions count as damage."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    dynamic = GraphCache(tmp_path, model, replace(OPTIONS, conv="int8"))
    static = GraphCache(tmp_path, model, replace(OPTIONS, conv="int8s"))
    assert static.key != dynamic.key and static.calibration == dynamic.calibration
    ranges = np.array([[-1.5, 2.0], [-0.25, 0.5]], np.float32)
    gains = [np.ones(2, np.float32), np.ones(1, np.float32)]
    ratios = np.array([0.5, 0.25], np.float32)
    static.save_calibration(Calibration(ratios, gains, ranges, np.array([3.0, 1.0], np.float32)))
    loaded = dynamic.load_calibration()
    assert loaded.ranges.tolist() == ranges.tolist() and loaded.peaks.tolist() == [3.0, 1.0]
    static.save_calibration(Calibration(ratios, gains, ranges[:1], np.array([3.0], np.float32)))
    with caplog.at_level(logging.WARNING):
        assert static.load_calibration() is None
    assert "input ranges do not fit" in caplog.text and not static.calibration.exists()


def test_a_dead_writers_temporary_files_and_directories_are_pruned(tmp_path):
    """A process that died while writing leaves a temporary entry directory or calibration
    file; once stale, the next prune removes both kinds (a fresh one may still be written)."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    stale_dir = tmp_path / f"{TMP_PREFIX}dead"
    stale_dir.mkdir()
    (stale_dir / "stage1.onnx").write_bytes(b"x")
    stale_file = tmp_path / f"{TMP_PREFIX}{CALIBRATION_PREFIX}dead.npz"
    stale_file.write_bytes(b"x")
    fresh_file = tmp_path / f"{TMP_PREFIX}{CALIBRATION_PREFIX}writing.npz"
    fresh_file.write_bytes(b"x")
    old = time.time() - 2 * STALE_TMP_S
    for path in (stale_dir, stale_file):
        os.utime(path, (old, old))
    GraphCache(tmp_path, model, OPTIONS)._prune()
    assert not stale_dir.exists() and not stale_file.exists() and fresh_file.exists()


def test_another_cpu_reuses_the_calibration_and_speaks_identically(
    small_model, tmp_path, monkeypatch, caplog
):
    """amd64's calibration file copied into an empty cache dir of another CPU and ORT version:
    the graphs are built there, the calibration is not; the audio is the same.  A damaged copy
    is calibrated again."""
    options = replace(OPTIONS, conv="int8")
    with caplog.at_level(logging.INFO, logger="wyoming_kokoro_gguf.synth.build"):
        first = Engine.load(small_model, options, cache_dir=tmp_path / "amd64")
    assert "calibrating the int8" in caplog.text and "int8 calibration: reused" not in caplog.text
    audio = speak(first)
    ratios = first.conv_ratios
    del first
    (calibration,) = (tmp_path / "amd64").glob(f"{CALIBRATION_PREFIX}*.npz")
    (tmp_path / "arm64").mkdir()
    shutil.copy2(calibration, tmp_path / "arm64")
    another_cpu_and_ort(monkeypatch)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wyoming_kokoro_gguf.synth.build"):
        second = Engine.load(small_model, options, cache_dir=tmp_path / "arm64")
    assert second.graph_cache == "saved"  # a new entry: the CPU and ORT differ
    assert "int8 calibration: reused" in caplog.text and "calibrating" not in caplog.text
    assert np.array_equal(second.conv_ratios, ratios)
    again = speak(second)
    assert again.shape == audio.shape and np.array_equal(again, audio)
    del second
    (tmp_path / "damaged").mkdir()
    copy = tmp_path / "damaged" / calibration.name
    data = bytearray(calibration.read_bytes())
    data[len(data) // 3] ^= 0xFF
    copy.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        third = Engine.load(small_model, options, cache_dir=tmp_path / "damaged")
    assert "is damaged" in caplog.text and "calibrating the int8" in caplog.text
    assert (
        np.array_equal(third.conv_ratios, ratios) and copy.read_bytes() == calibration.read_bytes()
    )


def test_int8_convolutions_get_the_channels_last_kernels(tmp_path):
    """Every int8 convolution of the optimized graph runs ORT's channels-last QLinearConv
    (its NHWC transformer needs the input's rank, which the graph states with a Reshape; 6%
    faster per pass than the NCHW kernel on an AVX2 CPU, with bit-identical audio)."""
    import fixtures_ttscpp as fx
    import onnx

    model = tmp_path / "tiny.gguf"
    fx.build(model, voices=("af_heart",))
    engine = Engine.load(model, replace(OPTIONS, conv="int8"), cache_dir=tmp_path / "cache")
    (entry,) = entries(tmp_path / "cache")
    graph = onnx.load(str(entry / "stage2.onnx"), load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "QLinearConv"]
    assert len(convs) == engine.int8_convs > 0
    for node in convs:
        attrs = {a.name: a.i for a in node.attribute}
        assert node.domain == "com.microsoft" and attrs.get("channels_last") == 1, node
