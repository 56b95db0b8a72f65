"""The one interface every grapheme-to-phoneme front end offers, and its errors.

Kokoro learned each language from phonemes written in that language's own conventions, so a
language gets its own front end where espeak-ng's output is not what the model heard; all of
them turn text into a string of Kokoro phoneme symbols (the caller still drops anything
outside the model's vocabulary).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class G2PError(RuntimeError):
    """A front end cannot phonemize: its optional packages are missing or broken."""


class MissingExtra(G2PError):
    """A language's front end needs an optional extra that is not installed."""

    def __init__(self, language_name: str, extra: str, packages: str, err: Exception) -> None:
        super().__init__(
            f"{language_name} voices need the '{extra}' extra ({packages}): "
            f"pip install 'wyoming_kokoro_gguf[{extra}]' ({err})"
        )
        self.extra = extra


@runtime_checkable
class FrontEnd(Protocol):
    """Text in one language -> Kokoro phonemes ('' when nothing is speakable)."""

    def phonemize(self, text: str, language: str) -> str:
        """Phonemes for ``text`` read as ``language`` (an espeak-ng style tag)."""
        ...
