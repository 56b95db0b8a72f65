"""What each tensor group's quantization costs: ``convert --sensitivity``.

One group at a time is stored in one candidate type (quantized and read back, the rest of the
model f32), the stage that group runs in is rebuilt, and fixed calibration sentences are spoken
on the f32 model's own durations, so the alignment never moves and the clips compare sample for
sample.  The cost is the waveform SNR and the log-spectral distance (LSD) against the f32 audio;
groups of the text stage also report how many frames their own durations would move.  The table
(JSON, and Markdown beside it) is what ``convert --type auto`` chooses from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from gguf import GGMLQuantizationType

from wyoming_kokoro_gguf import audio as audio_cost
from wyoming_kokoro_gguf.synth.engine import session_options
from wyoming_kokoro_gguf.synth.graph import KokoroGraph
from wyoming_kokoro_gguf.synth.lowering import EngineOptions, default_options
from wyoming_kokoro_gguf.synth.phonemes import Phonemizer, language_for_voice
from wyoming_kokoro_gguf.synth.stages import align
from wyoming_kokoro_gguf.weights import groups, quants
from wyoming_kokoro_gguf.weights.model_file import KokoroModelFile
from wyoming_kokoro_gguf.weights.quant_table import Cost, Row, Table, candidate_types

T = GGMLQuantizationType
Progress = Callable[[str], None]

# Calibration speech: a question and a statement, voiced and unvoiced sounds, a number read out
# (one sentence: each measurement rebuilds a stage, and speaking is most of the rest).
SENTENCES: tuple[str, ...] = (
    "Is the front door locked? Turn the kitchen lights on to forty percent.",
)


class QuantizedView:
    """A model file whose chosen tensors read back as stored in another type (quantized and
    dequantized), typed F32 so every lowering takes the values as they are.  Everything else
    is the file's."""

    def __init__(self, model: KokoroModelFile, types: dict[str, GGMLQuantizationType]) -> None:
        self._model = model
        self._types = types
        self.read: set[str] = set()  # tensors a graph build asked for

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._model, attr)

    def tensor(self, name: str) -> np.ndarray:
        self.read.add(name)
        a = self._model.tensor(name)
        qtype = self._types.get(name)
        if qtype is None:
            return a
        choice = groups.choose(name, a.shape, qtype)
        raw = quants.quantize(a.reshape(choice.stored_shape), choice.qtype)
        return quants.dequantize(raw, choice.qtype).reshape(a.shape)

    def tensor_type(self, name: str) -> GGMLQuantizationType:
        return T.F32 if name in self._types else self._model.tensor_type(name)


@dataclass
class Sentence:
    """One calibration sentence and the f32 model's durations and audio for it."""

    text: str
    tokens: np.ndarray
    style: np.ndarray
    durations: np.ndarray
    audio: np.ndarray


def _session(model: Any, options: EngineOptions, stage: int) -> ort.InferenceSession:
    graph = KokoroGraph(model, options, external=True)
    if isinstance(model, QuantizedView):  # the constructor reads a shape only
        model.read.clear()
    proto = graph.build_stage1() if stage == 1 else graph.build_stage2()
    so = session_options(options)
    names = list(graph.external)
    values = [ort.OrtValue.ortvalue_from_numpy(graph.external[n]) for n in names]
    so.add_external_initializers(names, values)
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


class Bench:
    """The f32 model's sessions and calibration audio; measures what other types cost."""

    def __init__(
        self,
        model: KokoroModelFile,
        options: EngineOptions | None = None,
        voice: str | None = None,
        sentences: Iterable[str] = SENTENCES,
    ) -> None:
        self.model = model
        self.options = options or default_options()
        self.voice = voice or next(iter(model.voices))
        if self.voice not in model.voices:
            raise ValueError(f"no voice {self.voice!r} in {model.path}")
        stage_names: list[set[str]] = []
        self.stages: list[ort.InferenceSession] = []
        for stage in (1, 2):
            view = QuantizedView(model, {})
            self.stages.append(_session(view, self.options, stage))
            stage_names.append(view.read)
        self.stage_names = stage_names
        self.sentences = [self._reference(text) for text in sentences]

    def _reference(self, text: str) -> Sentence:
        phonemizer = Phonemizer(self.model.phoneme_to_id)
        info = self.model.voices[self.voice]
        language = language_for_voice(info.name, getattr(info, "espeak", None))
        ids = phonemizer.ids(phonemizer.phonemize(text, language))
        pack = self.model.voice_tensor(self.voice)
        style = pack[min(len(ids), len(pack)) - 1].reshape(1, -1).astype(np.float32)
        tokens = np.array([[0, *ids, 0]], dtype=np.int64)
        durations, feed = align(self.stages[0], tokens, style, 1.0)
        (audio,) = self.stages[1].run(["audio"], feed)
        return Sentence(text, tokens, style, durations, np.asarray(audio).ravel())

    def stages_of(self, names: Iterable[str]) -> list[int]:
        """The stages (1, 2) that read any of the tensors."""
        names = set(names)
        return [i + 1 for i, read in enumerate(self.stage_names) if read & names]

    def measure(self, types: dict[str, GGMLQuantizationType]) -> Cost:
        """The cost of storing the tensors of ``types`` as those types (the rest f32)."""
        view = QuantizedView(self.model, types)
        changed = self.stages_of(types)
        s1 = _session(view, self.options, 1) if 1 in changed else self.stages[0]
        s2 = _session(view, self.options, 2) if 2 in changed else self.stages[1]
        costs = []
        for s in self.sentences:
            _, feed = align(s1, s.tokens, s.style, 1.0, s.durations)  # the f32 alignment
            (audio,) = s2.run(["audio"], feed)
            own = s1.run(None, {"tokens": s.tokens, "style": s.style,
                                "speed": np.array([1.0], dtype=np.float32)})[0]  # fmt: skip
            costs.append(self._one(s, np.asarray(audio).ravel(), own))
        return _mean(costs)

    def measure_engine(self, engine: Any) -> Cost:
        """The cost of a whole file as the engine runs it (``convert --type auto``'s check)."""
        costs = []
        for s in self.sentences:
            audio = engine.run_tokens(s.tokens, s.style, 1.0, durations=s.durations)
            own = engine.durations(s.tokens, s.style)
            costs.append(self._one(s, np.asarray(audio).ravel(), own))
        return _mean(costs)

    @staticmethod
    def _one(s: Sentence, audio: np.ndarray, durations: np.ndarray) -> Cost:
        return Cost(
            audio_cost.snr_db(s.audio, audio),
            audio_cost.log_spectral_distance(s.audio, audio),
            audio_cost.duration_change(s.durations, durations),
        )


def _mean(costs: list[Cost]) -> Cost:
    return Cost(
        float(np.mean([c.snr_db for c in costs])),
        float(np.mean([c.lsd_db for c in costs])),
        float(np.mean([c.duration_change for c in costs])),
    )


def run(
    model: KokoroModelFile,
    types: list[str] | None = None,
    only: list[str] | None = None,
    options: EngineOptions | None = None,
    voice: str | None = None,
    progress: Progress | None = None,
    sentences: Iterable[str] = SENTENCES,
) -> Table:
    """Measure every group (or those in ``only``) at every candidate type."""
    say = progress or (lambda msg: None)
    started = time.monotonic()
    names, skipped = candidate_types(types)
    by_group = groups.groups(model.tensor_names)
    if only:
        unknown = sorted(set(only) - set(by_group))
        if unknown:
            raise ValueError(
                f"unknown group(s) {', '.join(unknown)} (groups: {', '.join(by_group)})"
            )
        by_group = {g: n for g, n in by_group.items() if g in only}
    say("speaking the calibration sentences with the f32 model ...")
    bench = Bench(model, options, voice, sentences)
    shapes = {n: model.logical_shape(n) for ns in by_group.values() for n in ns}
    table = Table(str(model.path), bench.voice, [s.text for s in bench.sentences], names)
    table.skipped = skipped
    total, done = len(by_group) * len(names), 0
    for group, members in by_group.items():
        stage = "+".join(str(i) for i in bench.stages_of(members))
        params = sum(int(np.prod(shapes[n])) for n in members)
        measured: dict[str, Cost] = {}
        for name in names:
            qtype = quants.TYPE_NAMES[name]
            same = groups.SAME_VALUES.get(name, name)  # measured once
            if same not in measured:
                measured[same] = bench.measure(dict.fromkeys(members, quants.TYPE_NAMES[same]))
            cost = measured[same]
            size = groups.group_bytes(shapes, members, qtype)
            table.rows.append(Row(group, name, len(members), params, size, stage, **asdict(cost)))
            done += 1
            eta = (time.monotonic() - started) / done * (total - done)
            say(
                f"[{done}/{total}] {group} {name}: LSD {cost.lsd_db:.2f} dB, "
                f"SNR {cost.snr_db:.1f} dB ({eta / 60:.0f} min left)"
            )
    table.seconds = time.monotonic() - started
    return table
