"""Command line synthesis: ``python -m wyoming_kokoro_gguf.say --model FILE --voice NAME -o out.wav "text"``.

Prints where the time went (load, first audio, total, real-time factor), so it doubles as a quick
benchmark on a new host.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np

from wyoming_kokoro_gguf.audio import CHANNELS, SAMPLE_WIDTH
from wyoming_kokoro_gguf.synth.blend import BlendError
from wyoming_kokoro_gguf.synth.engine import Engine, UnknownVoiceError
from wyoming_kokoro_gguf.synth.graph import GraphBuildError
from wyoming_kokoro_gguf.synth.lowering import default_options
from wyoming_kokoro_gguf.synth.phonemes import PhonemizerError
from wyoming_kokoro_gguf.weights.model_file import ModelFileError


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_kokoro_gguf.say", description="Synthesize text to a WAV file"
    )
    parser.add_argument("--model", required=True, type=Path, help="Kokoro GGUF file")
    parser.add_argument("--voice", default=None, help="voice name or blend (a:0.7,b:0.3)")
    parser.add_argument(
        "--voices", default=None, help="a CrispASR model's voice files (default: beside it)"
    )
    parser.add_argument(
        "--language", default=None, help="espeak-ng language (default: the voice's)"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="0.5 .. 2.0 (default 1.0)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all)")
    parser.add_argument("--linear", choices=("fp32", "matmulnbits"), default=None)
    parser.add_argument("-o", "--output", type=Path, default=Path("out.wav"))
    parser.add_argument("--list-voices", action="store_true", help="print the voices and exit")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("text", nargs="*", help="text to speak (read from stdin when absent)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success, 2 on a bad model file, voice or text."""
    args = _args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    options = default_options().with_threads(max(0, args.threads))
    if args.linear:
        options = replace(options, linear=args.linear)
    t0 = time.perf_counter()
    try:
        engine = Engine.load(args.model, options, voices=args.voices)
    except (ModelFileError, GraphBuildError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    load_s = time.perf_counter() - t0
    if args.list_voices:
        for name, info in sorted(engine.voices.items()):
            print(f"{name}\t{info.language}\t{info.gender}")
        return 0
    text = " ".join(args.text) if args.text else sys.stdin.read()
    voice = args.voice or next(iter(sorted(engine.voices)), "")
    t1 = time.perf_counter()
    first = None
    chunks = []
    try:
        for chunk in engine.synthesize(text, voice, args.speed, language=args.language):
            if first is None:
                first = time.perf_counter() - t1
            chunks.append(chunk)
    except (UnknownVoiceError, BlendError, PhonemizerError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    total = time.perf_counter() - t1
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    with wave.open(str(args.output), "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(engine.sample_rate)
        out.writeframes(audio.astype("<i2").tobytes())
    seconds = len(audio) / engine.sample_rate
    print(f"load        {load_s:7.2f} s")
    if first is not None:
        print(f"first audio {first:7.2f} s")
    print(f"synthesis   {total:7.2f} s for {seconds:.2f} s of audio in {len(chunks)} pieces")
    if seconds > 0:
        print(f"RTF         {total / seconds:7.3f}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
