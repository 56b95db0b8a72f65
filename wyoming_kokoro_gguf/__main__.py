"""Command line of the Wyoming server: flags only; the work is in server.py."""

from __future__ import annotations

import argparse
import sys

from wyoming_kokoro_gguf import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wyoming-kokoro-gguf",
        description="Wyoming text-to-speech server with the Kokoro-82M voices, from GGUF files",
    )
    parser.add_argument(
        "--uri", default="tcp://0.0.0.0:10200", help="tcp://HOST:PORT, unix://PATH or stdio://"
    )
    parser.add_argument(
        "--model",
        default="auto",
        help="a .gguf path, a variant name (f32, f16, q8_0, q5_0, q4_0) or 'auto' (the host plan picks)",
    )
    parser.add_argument(
        "--data-dir", action="append", default=[], help="directory with model files (repeatable)"
    )
    parser.add_argument(
        "--download-dir",
        help="directory for downloaded and converted models (default: first --data-dir)",
    )
    parser.add_argument("--local-files-only", action="store_true", help="never download")
    parser.add_argument(
        "--voice",
        help="default voice (a voice name or a blend name; default af_heart, else the first voice)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="speaking speed, 0.5 to 2.0")
    parser.add_argument("--threads", default="auto", help="compute threads, or 'auto'")
    parser.add_argument(
        "--passes",
        default="auto",
        help="model passes of a text computed at once after its first (1 = least memory), or 'auto'",
    )
    parser.add_argument("--quant", default="auto", help="lowering plan override (see probe)")
    parser.add_argument(
        "--voice-blend",
        action="append",
        default=[],
        metavar="NAME=VOICE:WEIGHT,...",
        help="a blended voice, e.g. mix=af_heart:0.7,af_bella:0.3 (repeatable)",
    )
    parser.add_argument(
        "--samples-per-chunk", type=int, default=1024, help="audio samples per Wyoming chunk"
    )
    parser.add_argument(
        "--no-streaming", action="store_true", help="do not advertise streaming synthesis"
    )
    parser.add_argument(
        "--zeroconf",
        nargs="?",
        const="kokoro-gguf",
        help="register for Home Assistant discovery [NAME]",
    )
    parser.add_argument(
        "--max-text-chars", type=int, default=10_000, help="longest text accepted per request"
    )
    parser.add_argument(
        "--cache-mb", type=float, default=None, help="phrase cache size in MB (default: the plan's)"
    )
    parser.add_argument(
        "--http-port", type=int, help="serve /health, /api/tts and a test page on this port"
    )
    parser.add_argument(
        "--http-host", default="127.0.0.1", help="address for --http-port (default loopback)"
    )
    parser.add_argument(
        "--addon-options", help="read Home Assistant add-on options from this JSON file"
    )
    parser.add_argument("--debug", action="store_true", help="log DEBUG messages")
    parser.add_argument(
        "--log-format", default="%(asctime)s %(levelname)s %(name)s: %(message)s", help="log format"
    )
    parser.add_argument("--version", action="version", version=__version__)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = build_parser().parse_args(argv)
    try:
        from wyoming_kokoro_gguf.server.app import main
    except ImportError:
        print("error: the server is not available in this build", file=sys.stderr)
        return 2
    return main(args)


if __name__ == "__main__":
    sys.exit(run())
