"""The tensor layouts of Kokoro GGUF files this project reads, and one line for any other file.

Two projects write ``general.architecture = kokoro`` with different tensors: TTS.cpp
(``weights/layout.py``, the layout the engine uses) and CrispASR, whose kokoro.cpp runtime reads
the ``kokoro-82m-*.gguf`` files (``weights/crispasr.py``, mapped onto TTS.cpp's on reading).
"""

from __future__ import annotations

from collections.abc import Sequence

from wyoming_kokoro_gguf.weights import crispasr

TTSCPP = "TTS.cpp"
CRISPASR = crispasr.NAME
READ = (
    "TTS.cpp's (kokoro.albert.*, kokoro.duration_predictor.*, kokoro.decoder.*, voices inside) "
    "and CrispASR's / kokoro.cpp's (bert.*, pred.*, text_enc.*, dec.gen.*, voices in "
    f"{crispasr.VOICE_FILE_PREFIX}*.gguf files)"
)


def _looks(arch: str, names: Sequence[str]) -> str:
    first = ", ".join(names[:4]) or "no tensors"
    return f"architecture {arch!r}, first tensors: {first}"


def other_architecture(arch: str, names: Sequence[str]) -> str:
    """Why a file of another architecture is refused: what it looks like, what is read."""
    if arch == crispasr.VOICE_ARCH:
        return (
            f"general.architecture is {arch!r}: a CrispASR voice file, not a model; give the "
            "model file (kokoro-82m-*.gguf), its voices are read from the files beside it"
        )
    return (
        f"general.architecture is {arch or 'none'!r}, not 'kokoro' (this is not a Kokoro TTS "
        f"model: {_looks(arch, names)}); this project reads the layouts {READ}"
    )


def other_layout(arch: str, names: Sequence[str]) -> str:
    """Why a ``kokoro`` file in neither layout is refused."""
    return f"not a Kokoro layout this project reads ({_looks(arch, names)}); it reads {READ}"
