"""Wyoming text-to-speech server with the Kokoro-82M voices, loaded from GGUF files."""

__version__ = "0.1.0"
