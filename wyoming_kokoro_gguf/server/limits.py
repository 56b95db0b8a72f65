"""Bounds on what one Wyoming peer can make the server hold, and checks of the events it sends.

Why this exists: wyoming 1.10.2's ``async_read_event`` reads a header line (bounded only by the
StreamReader's limit, 64 KiB by default), then ``readexactly(data_length)`` and
``readexactly(payload_length)`` for whatever lengths the peer claims.  A peer that claims
4,000,000,000 bytes and keeps sending makes the server buffer all of it (measured on this
server: +190 MB RSS for 200 MB sent on one connection).  A header that is valid JSON but not
an object, a length that is not an integer, a ``data`` that is not an object, or a missing
``type`` raise TypeError/KeyError/AttributeError out of the connection's task (a traceback in
the log); a ``text`` that is not a string does the same in the event handler.

``read_event`` reads one event within ``ProtocolLimits`` and raises ``ProtocolError`` (one line
for a Wyoming Error event) instead; the stream cannot be trusted after that, so the caller
answers and closes the connection.  ``check_event`` checks the fields of the events a TTS server
acts on; a bad one is answered with an Error event and the connection stays usable.

The limits: a header line of at most 64 KiB (asyncio's default reader limit, which already bounds
``readline``); data of at most 12 bytes per allowed text character plus 16 KiB (JSON's
``\\ud83d\\ude00`` escapes take 12 bytes for one emoji); payload at most 64 KiB (no event a TTS
server receives carries audio; the payload is read and dropped).  So one connection holds at
most a few hundred KiB of protocol input, whatever it claims.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from wyoming.event import Event

DEFAULT_MAX_LINE = 64 * 1024  # asyncio.StreamReader's default limit
DEFAULT_MAX_PAYLOAD = 64 * 1024
_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_SURROGATES = re.compile("[\ud800-\udfff]")


class ProtocolError(Exception):
    """A peer broke the protocol; ``text`` is one line for a Wyoming Error event."""

    def __init__(self, text: str, code: str = "bad_event") -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True)
class ProtocolLimits:
    """The most one event may carry, in bytes."""

    max_line: int = DEFAULT_MAX_LINE
    max_data: int = 256 * 1024
    max_payload: int = DEFAULT_MAX_PAYLOAD


def limits_for(max_text_chars: int) -> ProtocolLimits:
    """Limits that let through any text up to ``max_text_chars`` (--max-text-chars), escaped."""
    return ProtocolLimits(max_data=max(64 * 1024, 12 * int(max_text_chars) + 16 * 1024))


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"bad event header: {key} must be a non-negative integer")
    if value > limit:
        raise ProtocolError(
            f"event too large: {key} {value} is over this server's limit of {limit} bytes",
            "too_large",
        )
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"bad event {what}: not valid UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"bad event {what}: not a JSON object")
    return value


async def read_event(reader: asyncio.StreamReader, limits: ProtocolLimits) -> Event | None:
    """The next event, or None at the end of the stream (also when it ends inside an event).

    Raises ProtocolError for anything malformed or over ``limits``; nothing beyond the limits is
    read into memory.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise ProtocolError(
            f"event header line over this server's limit of {limits.max_line} bytes", "too_large"
        ) from None
    if len(line) > limits.max_line:
        raise ProtocolError(
            f"event header line over this server's limit of {limits.max_line} bytes", "too_large"
        )
    if not line.strip():
        raise ProtocolError("bad event header: empty line")
    header = _json_object(line, "header")
    event_type = header.get("type")
    if not isinstance(event_type, str) or not _TYPE_RE.match(event_type):
        raise ProtocolError("bad event header: 'type' must be an event name")
    data = header.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise ProtocolError("bad event header: 'data' must be a JSON object")
    data_length = _length(header, "data_length", limits.max_data)
    payload_length = _length(header, "payload_length", limits.max_payload)
    try:
        if data_length:
            data.update(_json_object(await reader.readexactly(data_length), "data"))
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    return Event(type=event_type, data=data, payload=payload)


def _clean_text(value: Any, field: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"bad event: '{field}' must be a string")
    # A lone surrogate (legal in JSON's \\u escapes) cannot be encoded back to UTF-8.
    return _SURROGATES.sub("\ufffd", value)


def check_event(event: Event) -> Event:
    """The event with its text fields checked (ProtocolError if a field has the wrong type).

    Only the fields this server acts on are checked: ``text`` of synthesize and
    synthesize-chunk, ``voice`` (an object with string ``name``/``language``/``speaker``) of
    synthesize and synthesize-start.  Lone surrogates in strings become U+FFFD.
    """
    kind = event.type
    if kind not in ("synthesize", "synthesize-chunk", "synthesize-start"):
        return event
    data = dict(event.data)
    if kind in ("synthesize", "synthesize-chunk"):
        data["text"] = _clean_text(data.get("text"), "text", required=True)
    if kind in ("synthesize", "synthesize-start") and data.get("voice") is not None:
        voice = data["voice"]
        if not isinstance(voice, dict):
            raise ProtocolError("bad event: 'voice' must be a JSON object")
        voice = dict(voice)
        for key in ("name", "language", "speaker"):
            if key in voice:
                voice[key] = _clean_text(voice[key], f"voice.{key}", required=False)
        data["voice"] = voice
    return Event(type=kind, data=data, payload=event.payload)
