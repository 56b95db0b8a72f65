"""``python -m wyoming_kokoro_gguf.convert``: the model converter (the code lives in ``weights.convert``)."""

from wyoming_kokoro_gguf.weights.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
