"""Command-line Wyoming TTS client: try a server from a shell the way Home Assistant talks to it.

    python -m wyoming_kokoro_gguf.client --uri tcp://127.0.0.1:10200 "Hello there."
    python -m wyoming_kokoro_gguf.client --uri tcp://HOST:10200 --stream -o out.wav "Hello there."
    python -m wyoming_kokoro_gguf.client --uri tcp://HOST:10200 --list-voices

It asks ``describe`` first, then synthesizes: one ``synthesize`` event, or with ``--stream`` the
text cut into small deltas that ignore word boundaries (as a language model's tokens arrive in
Home Assistant), followed by the full ``synthesize`` and ``synthesize-stop``, with reading and
writing at the same time.  It prints the first-audio latency, total time, audio seconds and
real-time factor, and exits non-zero with one clear line when the server cannot be reached or
answers with an error.  Works with any Wyoming TTS server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from wyoming_kokoro_gguf.audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH


class ClientError(Exception):
    """A failure to report as one line (connection, protocol or a server Error event)."""


@dataclass
class Result:
    """What one synthesis measured."""

    uri: str
    voice: str | None
    streaming: bool
    text_chars: int
    rate: int = 0
    width: int = 0
    channels: int = 0
    first_audio_seconds: float | None = None
    total_seconds: float = 0.0
    audio_seconds: float = 0.0
    rtf: float | None = None
    chunks: int = 0
    events: list[str] = field(default_factory=list)
    output: str | None = None


def split_deltas(text: str, size: int) -> list[str]:
    """Cut text into pieces of ``size`` characters, ignoring words (like streamed LLM tokens)."""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _event_log(events: list[str]) -> list[str]:
    """Collapse runs of one event type: ['audio-start', 'audio-chunk x12', 'audio-stop']."""
    runs: list[list[Any]] = []
    for name in events:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return [name if count == 1 else f"{name} x{count}" for name, count in runs]


async def _read(client: AsyncClient, timeout: float, what: str) -> Event:
    try:
        event = await asyncio.wait_for(client.read_event(), timeout=timeout)
    except asyncio.TimeoutError:
        raise ClientError(f"no answer from the server within {timeout:g} s ({what})") from None
    if event is None:
        raise ClientError(f"the server closed the connection ({what})")
    if Error.is_type(event.type):
        err = Error.from_event(event)
        code = f" [{err.code}]" if err.code else ""
        raise ClientError(f"server error{code}: {err.text}")
    return event


async def describe(client: AsyncClient, timeout: float) -> Info:
    """Send describe, return the Info."""
    await client.write_event(Describe().event())
    while True:
        event = await _read(client, timeout, "describe")
        if Info.is_type(event.type):
            return Info.from_event(event)


async def synthesize(
    client: AsyncClient,
    result: Result,
    text: str,
    voice: str | None,
    stream: bool,
    delta_chars: int,
    delta_delay: float,
    timeout: float,
    text_format: str | None = None,
) -> bytes:
    """Run one synthesis; fill ``result``; return the PCM audio (``text_format``: "ssml")."""
    syn_voice = SynthesizeVoice(name=voice) if voice else None
    writer: asyncio.Task | None = None
    started = time.monotonic()
    if stream:
        writer = asyncio.create_task(
            _write_stream(client, text, syn_voice, delta_chars, delta_delay, text_format)
        )
    else:
        synthesize = Synthesize(text=text, voice=syn_voice, text_format=text_format)
        await client.write_event(synthesize.event())
    try:
        pcm = await _read_audio(client, result, stream, timeout, started)
    finally:
        if writer is not None:
            if writer.done() and not writer.cancelled() and writer.exception() is not None:
                raise ClientError(f"sending the text failed: {writer.exception()}")
            writer.cancel()
    result.total_seconds = time.monotonic() - started
    frame = max(1, result.width * result.channels)
    if result.rate:
        result.audio_seconds = len(pcm) / frame / result.rate
    if result.audio_seconds > 0:
        result.rtf = result.total_seconds / result.audio_seconds
    return pcm


async def _write_stream(
    client: AsyncClient,
    text: str,
    voice: SynthesizeVoice | None,
    delta_chars: int,
    delta_delay: float,
    text_format: str | None = None,
) -> None:
    """Send the text as Home Assistant streams it: small deltas, then the full text, then stop."""
    await client.write_event(SynthesizeStart(voice=voice, text_format=text_format).event())
    for delta in split_deltas(text, delta_chars):
        await client.write_event(SynthesizeChunk(text=delta).event())
        if delta_delay > 0:
            await asyncio.sleep(delta_delay)
    synthesize = Synthesize(text=text, voice=voice, text_format=text_format)
    await client.write_event(synthesize.event())
    await client.write_event(SynthesizeStop().event())


async def _read_audio(
    client: AsyncClient, result: Result, stream: bool, timeout: float, started: float
) -> bytes:
    """Collect the audio until the synthesis ends (audio-stop, or synthesize-stopped when
    streaming), checking that its format never changes."""
    pcm = bytearray()
    while True:
        event = await _read(client, timeout, "synthesis")
        result.events.append(event.type)
        if AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            _take_format(result, start, "the server changed the audio format in the middle")
        elif AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            _take_format(result, chunk, "audio chunks arrived in different formats")
            if chunk.audio and result.first_audio_seconds is None:
                result.first_audio_seconds = time.monotonic() - started
            pcm.extend(chunk.audio)
            result.chunks += 1
        elif AudioStop.is_type(event.type):
            if not stream:
                return bytes(pcm)
        elif SynthesizeStopped.is_type(event.type):
            return bytes(pcm)


def _take_format(result: Result, audio: AudioStart | AudioChunk, changed: str) -> None:
    """Record the first audio format seen; a different one later is a ClientError."""
    fmt = (audio.rate, audio.width, audio.channels)
    if not result.rate:
        result.rate, result.width, result.channels = fmt
    elif fmt != (result.rate, result.width, result.channels):
        raise ClientError(changed)


def write_wav(path: Path, pcm: bytes, rate: int, width: int, channels: int) -> None:
    """Save PCM as a WAV file (Kokoro's format where the server did not say)."""
    with wave.open(str(path), "wb") as wav:
        wav.setframerate(rate or SAMPLE_RATE)
        wav.setsampwidth(width or SAMPLE_WIDTH)
        wav.setnchannels(channels or CHANNELS)
        wav.writeframes(pcm)


def _voices_of(info: Info) -> tuple[Any, list[Any]]:
    programs = [p for p in info.tts if p.installed] or list(info.tts)
    if not programs:
        raise ClientError("the server offers no text-to-speech program")
    program = programs[0]
    return program, [v for v in program.voices]


async def _connect(uri: str, timeout: float) -> AsyncClient:
    """A connected client, or a ClientError saying why not."""
    try:
        client = AsyncClient.from_uri(uri)
    except ValueError as err:
        raise ClientError(f"bad --uri {uri!r}: {err}") from None
    try:
        await asyncio.wait_for(client.connect(), timeout=timeout)
    except asyncio.TimeoutError:
        raise ClientError(f"cannot connect to {uri}: no answer within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise ClientError(f"cannot connect to {uri}: connection refused") from None
    except OSError as err:
        raise ClientError(f"cannot connect to {uri}: {err.strerror or err}") from None
    return client


def _print_voices(program: Any, voices: list[Any], as_json: bool) -> None:
    """--list-voices: the program and its voices, as text or JSON."""
    if not voices:
        # A server still fetching its model lists none; discovery scripts wait on this.
        raise ClientError("the server lists no voices yet (is its model still loading?)")
    if as_json:
        doc = {
            "program": program.name,
            "version": program.version,
            "streaming": bool(program.supports_synthesize_streaming),
            "voices": [
                {
                    "name": v.name,
                    "languages": v.languages,
                    "description": v.description,
                    "installed": v.installed,
                }
                for v in voices
            ],
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    streaming = "streaming" if program.supports_synthesize_streaming else "no streaming"
    print(f"{program.name} {program.version or ''} ({streaming}), {len(voices)} voices:")
    for v in voices:
        print(f"  {v.name:<16} {','.join(v.languages):<8} {v.description or ''}")


def _check_request(args: argparse.Namespace, program: Any, voices: list[Any]) -> None:
    """Refuse what the server said it cannot do before sending any text."""
    if args.voice and args.voice not in {v.name for v in voices}:
        names = ", ".join(v.name for v in voices)
        raise ClientError(f"the server has no voice {args.voice!r}; voices: {names}")
    if args.stream and not program.supports_synthesize_streaming:
        raise ClientError("the server does not advertise streaming synthesis (drop --stream)")


def _print_result(result: Result, as_json: bool) -> None:
    """The figures of one synthesis, as text or JSON."""
    if as_json:
        print(json.dumps(asdict(result), indent=2))
        return
    first = (
        f"{result.first_audio_seconds * 1000:.0f} ms"
        if result.first_audio_seconds is not None
        else "-"
    )
    rtf = f"{result.rtf:.3f}" if result.rtf is not None else "-"
    audio_format = f"{result.rate} Hz, {result.width * 8}-bit, {result.channels} ch"
    print(f"first audio  {first}")
    print(f"total time   {result.total_seconds:.3f} s")
    print(f"audio        {result.audio_seconds:.3f} s ({audio_format})")
    print(f"RTF          {rtf}")
    print(f"events       {', '.join(result.events)}")
    if result.output:
        print(f"wrote        {result.output}")


async def run(args: argparse.Namespace) -> int:
    """The client's work; returns the exit code."""
    client = await _connect(args.uri, args.timeout)
    try:
        info = await describe(client, min(args.timeout, 10.0))
        program, voices = _voices_of(info)
        if args.list_voices:
            _print_voices(program, voices, args.json)
            return 0
        _check_request(args, program, voices)
        result = Result(
            uri=args.uri, voice=args.voice, streaming=bool(args.stream), text_chars=len(args.text)
        )
        pcm = await synthesize(
            client,
            result,
            args.text,
            args.voice,
            bool(args.stream),
            args.delta_chars,
            args.delta_delay,
            args.timeout,
            "ssml" if args.ssml else None,
        )
    finally:
        await client.disconnect()
    if not pcm:
        raise ClientError("the server sent no audio")
    if args.output:
        write_wav(Path(args.output), pcm, result.rate, result.width, result.channels)
        result.output = str(args.output)
    result.events = _event_log(result.events)
    _print_result(result, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Command line of the client."""
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_kokoro_gguf.client",
        description="Talk to a Wyoming text-to-speech server: list voices, synthesize, measure",
    )
    parser.add_argument("--uri", required=True, help="tcp://HOST:PORT or unix://PATH")
    parser.add_argument("--voice", help="voice name (default: the server's default voice)")
    parser.add_argument(
        "--stream", action="store_true", help="stream the text in small deltas like Home Assistant"
    )
    parser.add_argument(
        "--ssml", action="store_true", help="the text is SSML (sent with text_format: ssml)"
    )
    parser.add_argument("--list-voices", action="store_true", help="list the voices and exit")
    parser.add_argument("-o", "--output", help="write the audio to this WAV file")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--delta-chars", type=int, default=5, help="characters per streamed text delta (default 5)"
    )
    parser.add_argument(
        "--delta-delay",
        type=float,
        default=0.01,
        help="seconds between streamed deltas (default 0.01, a fast language model)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each answer (default 60)"
    )
    parser.add_argument("text", nargs="?", help="text to speak ('-' reads standard input)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 on a connection or server error, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.text == "-":
        args.text = sys.stdin.read()
    if not args.list_voices and not (args.text and args.text.strip()):
        parser.error("give the TEXT to speak (or --list-voices)")
    try:
        return asyncio.run(run(args))
    except ClientError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
