"""Pronunciation overrides: ``lexicon.<lang>.txt`` files in the data directories.

Why: users name rooms, pets and devices, and espeak-ng guesses those names wrong.  A lexicon
line gives a word (or phrase) its phonemes or a respelling::

    # comment
    Kokoro = /kˈOkəɹO/        Kokoro's own phonemes, passed to the model unchanged
    Siobhan = shivawn         a respelling, read as ordinary text

Matching is whole-word and case-insensitive, before the normalizer (the lexicon wins).  A file
for the voice's espeak language (``lexicon.en-gb.txt``) overrides one for its base language
(``lexicon.en.txt``), and the first data directory's entries win over later ones' (the
add-on: ``/data``, then ``/share/kokoro``).  Files are re-read when they change, checked at most every
``CHECK_SECONDS``; a bad line is reported (file, line, what is wrong) once per change, and the
rest of the file still loads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_LOG = logging.getLogger(__name__)

CHECK_SECONDS = 3.0
MAX_FILE_BYTES = 1_000_000
MAX_ENTRY_CHARS = 200
_WORD_RE = re.compile(r"[\w'’.\- ]+")
_RESPELLING_RE = re.compile(r"[\w'’\- ]+")


@dataclass(frozen=True)
class Entry:
    """One override: phonemes (``/.../`` in the file) or a respelling."""

    word: str
    phonemes: str | None = None
    respelling: str | None = None

    def markup(self) -> str:
        """The inline markup this entry becomes in the text (synth/markup.py reads it)."""
        if self.phonemes is not None:
            return f"[{self.word}](/{self.phonemes}/)"
        return self.respelling or ""


def parse_line(line: str) -> Entry | None:
    """One lexicon line -> an Entry, None for blank lines and comments; ValueError says why."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    word, sep, value = line.partition("=")
    word, value = " ".join(word.split()), value.strip()
    if not sep:
        raise ValueError("expected WORD = /phonemes/ or WORD = respelling (no '=')")
    if not word or not _WORD_RE.fullmatch(word):
        raise ValueError(f"{word!r} is not a word (letters, digits, ' - . and spaces)")
    if len(word) > MAX_ENTRY_CHARS or len(value) > MAX_ENTRY_CHARS:
        raise ValueError(f"longer than {MAX_ENTRY_CHARS} characters")
    if value.startswith("/"):
        if len(value) < 3 or not value.endswith("/"):
            raise ValueError("phonemes must be written /.../ (closing '/' missing or empty)")
        phonemes = value[1:-1].strip()
        if any(ch in "/[]()" for ch in phonemes):
            raise ValueError("phonemes may not contain / [ ] ( )")
        return Entry(word, phonemes=phonemes)
    if not value or not _RESPELLING_RE.fullmatch(value):
        raise ValueError("a respelling must be words (letters, ' - and spaces)")
    return Entry(word, respelling=" ".join(value.split()))


def parse_file(path: Path) -> tuple[dict[str, Entry], list[str]]:
    """A lexicon file -> entries by lower-cased word, and one message per bad line."""
    errors: list[str] = []
    entries: dict[str, Entry] = {}
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return {}, [f"{path}: larger than {MAX_FILE_BYTES} bytes, not loaded"]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return {}, [f"{path}: cannot be read: {err}"]
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = parse_line(line)
        except ValueError as err:
            errors.append(f"{path}, line {number}: {err}: {line.strip()[:80]!r}")
            continue
        if entry is not None:
            entries[entry.word.casefold()] = entry
    return entries, errors


def file_stamps(dirs: Sequence[Path]) -> dict[Path, tuple[int, int]]:
    """The lexicon files in ``dirs`` with their mtime and size (what a change is judged by)."""
    stamps = {}
    for folder in dirs:
        try:
            for path in Path(folder).glob("lexicon.*.txt"):
                stat = path.stat()
                stamps[path] = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            continue
    return stamps


class Lexicon:
    """The overrides of every language found in ``dirs``, re-read when a file changes."""

    def __init__(self, dirs: Sequence[Path], check_seconds: float = CHECK_SECONDS) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._stamps: dict[Path, tuple[int, int]] = {}
        self._entries: dict[str, dict[str, Entry]] = {}  # file language -> entries
        self._patterns: dict[str, tuple[re.Pattern[str], dict[str, Entry]] | None] = {}

    def refresh(self, force: bool = False) -> None:
        """Re-read the files if any changed (cheap: a stat per file every few seconds)."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_seconds:
            return
        with self._lock:
            self._checked = now
            stamps = file_stamps(self.dirs)
            if stamps == self._stamps and not force:
                return
            self._stamps = stamps
            ordered = [p for d in reversed(self.dirs) for p in sorted(stamps) if p.parent == d]
            self._load(ordered)

    def _load(self, paths: list[Path]) -> None:
        merged: dict[str, dict[str, Entry]] = {}
        for path in paths:  # earlier data directories win: read them last
            language = path.name[len("lexicon.") : -len(".txt")].lower()
            entries, errors = parse_file(path)
            for message in errors:
                _LOG.warning("lexicon: %s", message)
            merged.setdefault(language, {}).update(entries)
            _LOG.info("lexicon: %d entries from %s", len(entries), path)
        self._entries = merged
        self._patterns = {}

    def _pattern(self, language: str) -> tuple[re.Pattern[str], dict[str, Entry]] | None:
        language = language.lower()
        if language not in self._patterns:
            entries = dict(self._entries.get(language.split("-")[0], {}))
            entries.update(self._entries.get(language, {}))
            if entries:
                words = sorted(entries, key=len, reverse=True)
                alternatives = "|".join(re.escape(w) for w in words)
                pattern = re.compile(rf"(?<![\w\[])(?:{alternatives})(?![\w\]])", re.IGNORECASE)
                self._patterns[language] = (pattern, entries)
            else:
                self._patterns[language] = None
        return self._patterns[language]

    def apply(self, text: str, language: str) -> str:
        """``text`` with every lexicon word replaced by its markup (phonemes or respelling)."""
        self.refresh()
        found = self._pattern(language)
        if found is None:
            return text
        pattern, entries = found
        return pattern.sub(lambda m: entries[m[0].casefold()].markup(), text)
