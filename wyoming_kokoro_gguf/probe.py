"""``python -m wyoming_kokoro_gguf.probe``: the host probe and the plan it picks (the code lives in ``host.probe``)."""

from wyoming_kokoro_gguf.host.probe import main

if __name__ == "__main__":
    raise SystemExit(main())
