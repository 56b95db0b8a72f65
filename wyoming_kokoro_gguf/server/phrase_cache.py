"""An LRU cache of synthesized phrases, bounded in bytes.

Why: Home Assistant repeats the same short answers ("Turned on the kitchen light.") all day;
serving them from memory costs nothing, while synthesizing them again costs a second of CPU on
a Raspberry Pi.  Entries are keyed by (text, voice, speed) at the granularity the server hands
to the engine (one sentence or clause group), so a repeated sentence inside a longer answer
hits too.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_SPACES = re.compile(r"\s+")

CacheKey = tuple[str, str, float]


def make_key(text: str, voice: str, speed: float) -> CacheKey:
    """The cache key of a phrase: whitespace-normalized text, voice name, speed (rounded)."""
    return (_SPACES.sub(" ", text).strip(), voice, round(float(speed), 3))


@dataclass
class CacheStats:
    """Counters for /health and logs."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int


class PhraseCache:
    """Least-recently-used map from a phrase key to its audio (a tuple of int16 arrays).

    The bound counts the audio bytes (24 kHz int16: 48 kB per second of speech).  An entry larger
    than a quarter of the cache is not stored, so one long text cannot flush everything else.
    Thread-safe, although the server only touches it from its event loop.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[CacheKey, tuple[np.ndarray, ...]] = OrderedDict()
        self._sizes: dict[CacheKey, int] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> tuple[np.ndarray, ...] | None:
        """The cached audio of ``key`` (and mark it recently used), or None."""
        with self._lock:
            audio = self._entries.get(key)
            if audio is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return audio

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is cached (without counting a hit or a miss)."""
        with self._lock:
            return key in self._entries

    def put(self, key: CacheKey, chunks: Sequence[np.ndarray]) -> bool:
        """Store the audio of ``key``; returns False when it is not worth or able to keep."""
        arrays = tuple(np.ascontiguousarray(c, dtype=np.int16) for c in chunks)
        size = sum(a.nbytes for a in arrays)
        if size == 0 or size > self.max_bytes // 4:
            return False
        for a in arrays:
            a.setflags(write=False)
        with self._lock:
            if key in self._entries:
                self._bytes -= self._sizes.pop(key)
                del self._entries[key]
            self._entries[key] = arrays
            self._sizes[key] = size
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                old, _ = self._entries.popitem(last=False)
                self._bytes -= self._sizes.pop(old)
        return True

    def clear(self) -> None:
        """Forget everything (the model or its voices changed)."""
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        """Current size and hit counters."""
        with self._lock:
            return CacheStats(
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                hits=self._hits,
                misses=self._misses,
            )

    def __len__(self) -> int:
        return len(self._entries)
