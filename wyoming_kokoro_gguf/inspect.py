"""``python -m wyoming_kokoro_gguf.inspect``: a GGUF file's summary (the code lives in ``weights.summary``)."""

from wyoming_kokoro_gguf.weights.summary import main

if __name__ == "__main__":
    raise SystemExit(main())
