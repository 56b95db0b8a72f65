"""Building the engine's two ONNX Runtime sessions from a model file: the Kokoro graph
(synth/graph), int8 calibration, and writing the graph cache's entry as ORT optimizes.

Only a start without a usable cache entry comes here (the first start, or after the file, the
options or a version changed): ``Engine.load`` imports this module then, so that a warm start
never imports onnx or the graph builder (1.1-1.4 s of a 2 s start here; docs/PERFORMANCE.md,
"Start-up").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from wyoming_kokoro_gguf.synth.graph import KokoroGraph
from wyoming_kokoro_gguf.synth.graph_cache import Built, Calibration, GraphCache
from wyoming_kokoro_gguf.synth.lowering import EngineOptions, is_int8
from wyoming_kokoro_gguf.synth.phonemes import Phonemizer
from wyoming_kokoro_gguf.synth.stages import align, release_heap
from wyoming_kokoro_gguf.weights.layout import MAX_PHONEMES
from wyoming_kokoro_gguf.weights.model_file import KokoroModelFile

_LOG = logging.getLogger(__name__)

# Calibration speech for int8 convolutions: voiced and unvoiced sounds, a question's rise.
CALIBRATION_TEXT = "Is the shop open? Six zebras jump, then fly away."
CALIBRATION_VOICES = 2  # the first voices of the file (different speakers' styles)
# Output range = margin x the largest ratio seen: headroom for louder inputs than calibration's.
CALIBRATION_MARGIN = 1.3
CALIBRATION_START = 64  # first guess: the never-clipping bound / 64
# Largest per-channel gain before requantization (4 bits more for channels 16x quieter than the
# loudest).  Measured, 12 sentences, f16, 2 threads: without gains WER +0.028 against fp32 and
# 9.1 dB log-spectral distance; with gains up to 16 WER -0.009 and 5.6 dB (64: 5.5 dB).
MAX_CHANNEL_GAIN = 16.0
# conv="int8s": the input ranges are measured over these sentences in STATIC_VOICES voices
# spread over the file's style space, and the constant scales span STATIC_SHARE of the extremes
# seen (louder values clip).  The extremes are rare outliers (a pass's range varies 1.4x over
# voices and sentences, and grows with its length), so a range narrower than the extremes keeps
# finer steps for the bulk: measured on f16, 3 voices, 5 sentences of 5-419 phonemes, mean
# log-spectral distance from fp32 5.0-5.7 dB at 0.8 against 5.5-6.1 at 1.0, 6.6 at 1.5 and
# 5.1-7.5 for the per-call "int8" (docs/PERFORMANCE.md section 9).
STATIC_TEXTS = (
    CALIBRATION_TEXT,
    "Turn on the kitchen lights at half brightness, and tell me tomorrow's weather forecast.",
)
STATIC_VOICES = 4
STATIC_SHARE = 0.8


def build_sessions(
    model: KokoroModelFile,
    options: EngineOptions,
    cache: GraphCache | None,
    make_options: Callable[[], ort.SessionOptions],
) -> tuple[ort.InferenceSession, ort.InferenceSession, Built]:
    """Build both stages (calibrating int8 convolutions first); ORT writes each optimized
    stage into ``cache``'s new entry as it creates the session.  ``make_options()`` gives
    fresh SessionOptions for ``options`` (the engine's session_options)."""
    builder = KokoroGraph(model, options, external=True)
    if cache is not None:
        cache.start_writing()

    def session(build, stage: str | None = None) -> ort.InferenceSession:
        data = build().SerializeToString()  # the proto itself is dropped right here
        model.drop_pages()
        names = list(builder.external)
        values = [ort.OrtValue.ortvalue_from_numpy(builder.external[n]) for n in names]
        saving = stage is not None and cache is not None and cache.writing
        so = make_options()
        so.add_external_initializers(names, values)
        if saving:
            cache.save_to(so, stage)
        try:
            sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT could not write the cache: go on without
            if not saving:
                raise
            cache.abandon(err)
            so = make_options()
            so.add_external_initializers(names, values)
            sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        del values, so
        if saving and cache.writing:  # the session that saved keeps a copy: map the file
            try:
                sess = cache.reopen(stage, make_options())
            except Exception as err:  # noqa: BLE001 - keep the built session, drop the cache
                cache.abandon(err)
        builder.external = {}
        model.drop_pages()
        release_heap()
        return sess

    # one stage at a time, so only one graph's protobuf copy of the weights exists at once;
    # each step is logged: a first load takes 10 s here and minutes on a small board
    started = time.perf_counter()
    _LOG.info("building the text stage (ALBERT, prosody predictor) ...")
    stage1 = session(builder.build_stage1, "stage1")
    ratios, how = None, ""
    if is_int8(options.conv):  # size each int8 conv's ranges on real speech first
        calibration, how = _calibration(model, builder, stage1, cache, session)
        builder.conv_gains = calibration.gains
        if options.conv == "int8s":
            builder.conv_static = static_scales(calibration)
        else:
            ratios = calibration.ratios
    _LOG.info("building the audio stage (decoder, generator) ...")
    stage2 = session(builder.build_stage2, "stage2")
    _LOG.info("graphs built in %.1f s", time.perf_counter() - started)
    built = Built(
        notes=list(builder.notes),
        nbits_used=builder.nbits_used,
        int8_convs=builder.int8_convs,
        style_width=2 * builder.style_dim,
        conv_ratios=ratios,
        calibration=how,
    )
    if cache is not None:
        cache.commit(built)
    return stage1, stage2, built


def _calibration(
    model: KokoroModelFile,
    builder: KokoroGraph,
    stage1: ort.InferenceSession,
    cache: GraphCache | None,
    session: Callable[..., ort.InferenceSession],
) -> tuple[Calibration, str]:
    """The int8 calibration: from the cache's calibration file when an earlier build (on any
    CPU or ORT version) left one, else measured now and saved there.  conv="int8s" also needs
    the input ranges, which a file written for "int8" lacks: only those are measured then."""
    found = None if cache is None else cache.load_calibration()
    static = builder.options.conv == "int8s"
    if found is not None and (not static or found.ranges is not None):
        _LOG.info("int8 calibration: reused (%s)", cache.calibration.name)
        return found, "reused"
    _LOG.info("calibrating the int8 convolutions on sample sentences ...")
    started = time.perf_counter()
    graph = session(lambda: builder.build_stage2(calibrate=True))
    width = 2 * builder.style_dim
    if found is None:
        feeds = _feeds(model, stage1, (CALIBRATION_TEXT,), _first_voices(model), width)
        found = Calibration(
            *_calibrate_int8(graph, feeds, builder.conv_bounds, builder.conv_channels)
        )
    if static:
        feeds = _feeds(model, stage1, STATIC_TEXTS, _spread_voices(model), width)
        found.ranges, found.peaks = _measure_ranges(graph, feeds, found, builder.conv_channels)
    del graph
    release_heap()  # its activations: 120 MB of the heap otherwise kept while stage 2 builds
    took = time.perf_counter() - started
    _LOG.info("int8 calibration: %.1f s", took)
    if cache is not None:
        cache.save_calibration(found)
    return found, f"computed in {took:.1f} s"


def _first_voices(model: KokoroModelFile) -> list[str]:
    return list(model.voices)[:CALIBRATION_VOICES]


def _spread_voices(model: KokoroModelFile) -> list[str]:
    """STATIC_VOICES voices far apart in style space (farthest-point, from the first voice):
    a blend lies between its voices, so the extremes bound more than the voices measured."""
    names = list(model.voices)
    if len(names) <= STATIC_VOICES:
        return names
    row = 31  # the style of a 32-phoneme pass stands for the voice
    points = np.stack([np.asarray(model.voice_tensor(n), np.float32)[row] for n in names])
    chosen = [0]
    distance = np.linalg.norm(points - points[0], axis=1)
    while len(chosen) < STATIC_VOICES:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return [names[i] for i in chosen]


def _feeds(
    model: KokoroModelFile,
    stage1: ort.InferenceSession,
    texts: tuple[str, ...],
    voices: list[str],
    style_width: int,
) -> list[dict]:
    """Stage 2's inputs for each text in each voice (a file without voices: a zero style)."""
    phonemizer = Phonemizer(model.phoneme_to_id)
    feeds = []
    for text in texts:
        ids = phonemizer.ids(phonemizer.phonemize(text, "en-us"))[:MAX_PHONEMES]
        tokens = np.array([[0, *ids, 0]], dtype=np.int64)
        styles = [
            np.asarray(model.voice_tensor(voice), dtype=np.float32)[len(ids) - 1].reshape(1, -1)
            for voice in voices
        ]
        styles = styles or [np.zeros((1, style_width), dtype=np.float32)]
        feeds += [align(stage1, tokens, style, 1.0)[1] for style in styles]
    return feeds


def _measure_ranges(
    graph: ort.InferenceSession, feeds: list[dict], found: Calibration, channels: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per int8 conv, its input's [min, max] and its output's peak (gains applied) over the
    feeds, run at twice the calibrated output ratios (so a louder voice's peak is not clipped)."""
    starts = np.cumsum([0, *channels[:-1]])
    gains = np.concatenate(found.gains) if found.gains else np.ones(sum(channels), np.float32)
    ranges = np.array([[np.inf, -np.inf]] * len(channels), dtype=np.float32)
    peaks = np.zeros(len(channels), dtype=np.float32)
    ratios = (found.ratios * 2).astype(np.float32)
    for feed in feeds:
        channel, measured = graph.run(
            ["conv_peaks", "conv_ranges"], {**feed, "conv_ratios": ratios}
        )
        measured = measured.reshape(-1, 2)
        # DynamicQuantizeLinear's scale for that input: the peaks are in its units
        span = np.maximum(measured[:, 1], 0) - np.minimum(measured[:, 0], 0)
        unit = np.repeat(np.maximum(span / 255, 1e-12) * 127, channels)
        peaks = np.maximum(peaks, np.maximum.reduceat(channel * gains * unit, starts))
        ranges[:, 0] = np.minimum(ranges[:, 0], measured[:, 0])
        ranges[:, 1] = np.maximum(ranges[:, 1], measured[:, 1])
    return ranges, peaks


def static_scales(
    calibration: Calibration, share: float = STATIC_SHARE
) -> list[tuple[float, int, float]]:
    """conv="int8s": per int8 conv, (input scale, input zero point, output scale) spanning
    ``share`` of the measured ranges (uint8 input with its zero in range; the output symmetric
    about 128, as the per-call form's)."""
    assert calibration.ranges is not None and calibration.peaks is not None
    low = np.minimum(calibration.ranges[:, 0], 0) * share
    high = np.maximum(calibration.ranges[:, 1], 0) * share
    x_scale = np.maximum((high - low) / 255, 1e-12)
    x_zero = np.clip(np.rint(-low / x_scale), 0, 255)
    y_scale = np.maximum(calibration.peaks * share / 127, 1e-12)
    return [(float(s), int(z), float(y)) for s, z, y in zip(x_scale, x_zero, y_scale, strict=True)]


def _calibrate_int8(
    calibration: ort.InferenceSession,
    feeds: list[dict],
    bounds: list[float],
    channels: list[int],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per int8 conv, the output/input range ratio its requantization uses, and its output
    channels' gains (Layers._int8_conv in graph/layers.py).

    Starts from ratios that cannot clip but are so coarse that small outputs round to zero:
    shrinks those (x1/16), widens any that clipped (x4), and re-measures the rest at 1.25x
    their peak, until every conv's peak is measured at a fine step with the others' outputs
    as the final graph gives them; then once more over several voices.  The ratio is the
    largest peak ratio seen, times CALIBRATION_MARGIN; a channel's gain brings its own peak up
    towards the conv's largest (at most MAX_CHANNEL_GAIN).
    """
    starts = np.cumsum([0, *channels[:-1]])

    def channel_peaks(ratios: np.ndarray, feed: dict) -> np.ndarray:
        return calibration.run(["conv_peaks"], {**feed, "conv_ratios": ratios})[0]

    def peaks(ratios: np.ndarray, feed: dict) -> np.ndarray:
        return np.maximum.reduceat(channel_peaks(ratios, feed), starts)

    # The bounds are ~30-300x the measured ratios on speech: start nearer, the loop corrects.
    floor = np.asarray(bounds, dtype=np.float32) * 1e-6  # below it an output is simply zero
    ratios = np.asarray(bounds, dtype=np.float32) / CALIBRATION_START
    for rounds in range(1, 13):  # noqa: B007 - logged below
        measured = peaks(ratios, feeds[0])
        zero = (measured <= 0) & (ratios > floor)
        clipped = measured >= 0.98 * ratios
        fine = (measured >= ratios / 4) | ~zero & (ratios <= floor)
        if not (zero | clipped | ~fine).any():
            break
        ratios = np.where(zero, ratios / 16, np.where(clipped, ratios * 4, measured * 1.25))
        ratios = np.maximum(ratios, floor).astype(np.float32)
    else:
        _LOG.warning("int8 calibration did not settle in %d rounds; using the last ratios", rounds)
    ratios = (np.maximum(measured, floor) * 1.25).astype(np.float32)
    per_channel = np.max([channel_peaks(ratios, feed) for feed in feeds], axis=0)
    seen = np.maximum(np.maximum.reduceat(per_channel, starts), floor)
    gains = []
    for start, count, top in zip(starts, channels, seen, strict=True):
        own = per_channel[start : start + count]
        gains.append(np.clip(top / np.maximum(own, top / MAX_CHANNEL_GAIN), 1.0, MAX_CHANNEL_GAIN))
    _LOG.debug("int8 calibration: %d rounds", rounds)
    return (seen * CALIBRATION_MARGIN).astype(np.float32), [g.astype(np.float32) for g in gains]
