"""The server's configuration: one typed record, built once from the flags and add-on options.

Built by ``startup`` after the add-on options (if any) were applied to the parsed command line;
handed to every part of the server and pickled to the engine process, so nothing reads the
argparse namespace after start-up.  The defaults live in one place, the parser
(``wyoming_kokoro_gguf.__main__.build_parser``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from wyoming_kokoro_gguf.host.profile import HostOverrides
from wyoming_kokoro_gguf.synth.blend import BlendError, parse_definition


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server was told to do (flag names in parentheses where they differ)."""

    uri: str
    # Which model and how to run it (host.models.resolve reads these by name).
    model: str
    data_dir: tuple[str, ...]
    download_dir: str | None
    local_files_only: bool
    quant: str
    threads: str
    passes: str
    host: HostOverrides  # --mem-mb ...: plan for another host (the probe's flags)
    # Voices and speech.
    voice: str | None
    speed: float
    blends: tuple[tuple[str, str], ...]  # (name, formula) from --voice-blend
    # The Wyoming side.
    samples_per_chunk: int
    streaming: bool  # not --no-streaming
    zeroconf: str | None
    max_text_chars: int
    cache_mb: float | None  # None: the host plan's size
    http_port: int | None
    http_host: str
    # Logging.
    debug: bool
    log_format: str
    # A CrispASR-layout model's voice files (--voices; None: beside the model).
    voices: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServerConfig:
        """The configuration from parsed (and add-on-updated) flags; ValueError on a bad blend."""
        return cls(
            uri=args.uri,
            model=args.model,
            data_dir=tuple(args.data_dir or ()),
            download_dir=args.download_dir,
            local_files_only=bool(args.local_files_only),
            quant=args.quant,
            threads=str(args.threads),
            passes=str(args.passes),
            host=HostOverrides.from_args(args),
            voice=args.voice,
            speed=float(args.speed),
            blends=tuple(parse_blends(list(args.voice_blend or []))),
            samples_per_chunk=int(args.samples_per_chunk),
            streaming=not args.no_streaming,
            zeroconf=args.zeroconf,
            max_text_chars=int(args.max_text_chars),
            cache_mb=None if args.cache_mb is None else float(args.cache_mb),
            http_port=None if args.http_port is None else int(args.http_port),
            http_host=args.http_host,
            debug=bool(args.debug),
            log_format=args.log_format,
            voices=getattr(args, "voices", None),
        )


def parse_blends(values: list[str]) -> list[tuple[str, str]]:
    """'--voice-blend mix=af_heart:0.7,af_bella:0.3' values -> [(name, formula)]; ValueError if malformed."""
    blends: list[tuple[str, str]] = []
    for value in values:
        try:
            name, formula = parse_definition(value)
        except BlendError as err:
            raise ValueError(f"--voice-blend {value!r}: {err}") from None
        if name in {b[0] for b in blends}:
            raise ValueError(f"--voice-blend: the name {name!r} is used twice")
        blends.append((name, formula))
    return blends
