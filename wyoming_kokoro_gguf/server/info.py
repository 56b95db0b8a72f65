"""The Wyoming Info event: one TTS program with every voice, answered to every describe."""

from __future__ import annotations

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.server.voices import VoiceDesc, voice_description

KOKORO_ATTRIBUTION = Attribution(
    name="hexgrad (Kokoro-82M)", url="https://github.com/hexgrad/kokoro"
)
PROGRAM_NAME = "kokoro-gguf"


def build_info(voices: list[VoiceDesc], streaming: bool, model: str | None = None) -> Info:
    """The Info event's content: one TTS program with every voice, all installed; ``model``
    (which file runs and why, once resolved) goes in the program's description."""
    tts_voices = [
        TtsVoice(
            name=v.name,
            description=voice_description(v),
            attribution=KOKORO_ATTRIBUTION,
            installed=True,
            version=None,
            languages=[v.language],
        )
        for v in sorted(voices, key=lambda v: v.name)
    ]
    program = TtsProgram(
        name=PROGRAM_NAME,
        description="Kokoro-82M text to speech from GGUF files" + (f" ({model})" if model else ""),
        attribution=KOKORO_ATTRIBUTION,
        installed=True,
        version=__version__,
        voices=tts_voices,
        supports_synthesize_streaming=streaming,
    )
    return Info(tts=[program])
