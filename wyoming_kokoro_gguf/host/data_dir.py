"""Where models, graph caches and lexicons live by default: its own module, so the server's
Wyoming process (which never loads model code) and the engine agree on one directory."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/wyoming_kokoro_gguf (~/.local/share/wyoming_kokoro_gguf)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wyoming_kokoro_gguf"
