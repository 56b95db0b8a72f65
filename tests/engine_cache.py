"""Engines for the tests, loaded through a graph cache kept in the asset cache: a warm run loads
each model file and option set's optimized graphs instead of building them (synth/graph_cache.py:
~10-30 s a build on 2 cores, under 1 s a load).  One directory per model file and option set, so
the cache's pruning (it keeps the 2 latest entries of a directory) never drops an entry another
test needs; an entry is keyed by sources and versions too, so a changed engine builds anew.
The audio is bit-identical with and without the cache (tests/test_graph_cache.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from asset_cache import default_cache

from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import EngineOptions, default_options


def graph_cache_dir(path: Path, options: EngineOptions) -> Path:
    """The graph cache directory for this model file and option set."""
    values = asdict(options)
    values.pop("reasons", None)
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    return default_cache() / "engine-graphs" / f"{Path(path).stem}-{digest}"


def load_engine(path: Path, options: EngineOptions | None = None) -> Engine:
    """Engine.load with this file and option set's graph cache."""
    options = options or default_options()
    return Engine.load(path, options, cache_dir=graph_cache_dir(path, options))
