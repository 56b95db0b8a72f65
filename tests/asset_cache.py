"""Where the tests keep their expensive assets between runs (joined and converted models, the
Whisper judge's files, the servers' graph caches): ~/.cache/wyoming_kokoro_gguf/test-assets, or
WKG_TEST_CACHE.  Outside the checkout, like script/ha-root's and script/addon-check's caches, so
a fresh clone reuses what an earlier run built; every entry is keyed by what made it (converter
version, model file, options, sources), so a changed tree builds anew."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def default_cache() -> Path:
    """The asset cache directory (not created here)."""
    explicit = os.environ.get("WKG_TEST_CACHE")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "wyoming_kokoro_gguf" / "test-assets"


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into a temporary file beside ``path``, then rename it there: a reader (another
    xdist worker) sees the whole entry or none, and a failed write leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
