"""Reader tests: TTS.cpp-layout files load; wrong files fail with one clear line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import fixtures_ttscpp as fx
import gguf
import numpy as np
import pytest

from wyoming_kokoro_gguf.weights import layout, model_file
from wyoming_kokoro_gguf.weights.model_file import ModelFileError, open_model

ROOT = Path(__file__).resolve().parent.parent
T = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def ttscpp_files(tmp_path_factory) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    """TTS.cpp-style files: the converter's F32 output and the quantizer's F16 / Q4_0 / Q5_0 /
    Q8_0 (shapes as ggml writes them), an F32 file through ggml's writer, and a no_espeak F32
    twin."""
    d = tmp_path_factory.mktemp("ttscpp")
    out = {}
    for q in ("F32", "F16", "Q4_0", "Q5_0", "Q8_0"):
        p = d / f"Kokoro_espeak_{q}.gguf"
        out[q] = (p, fx.build(p, q))
    p = d / "Kokoro_espeak_F32_ggml.gguf"
    out["F32_ggml"] = (p, fx.build(p, "F32", writer="ggml"))
    p = d / "Kokoro_no_espeak.gguf"
    out["no_espeak"] = (p, fx.build(p, "F32", espeak=False))
    return out


def test_layout_matches_ttscpp_names_and_shapes() -> None:
    """Our torch->TTS.cpp mapping yields exactly the names and shapes TTS.cpp's loader assigns."""
    d = fx.SmallKokoro(max_dur=50)  # the layout has Kokoro's 50 duration bins
    dims = layout.KokoroDims(
        albert_embd=d.embd, albert_hidden=d.albert, albert_heads=d.heads, albert_ffn=d.ffn,
        hidden=d.hidden, decoder_dim=d.dec, asr_dim=d.asr, gen_channels=d.gen,
    )  # fmt: skip
    assert layout.expected_shapes(dims) == fx.tensor_specs(d)
    assert layout.ttscpp_metadata(dims) == fx.metadata(d)
    assert len(layout.expected_shapes()) == len(fx.tensor_specs(d))


def test_policy_matches_ttscpp_quantizer() -> None:
    for name in fx.tensor_specs():
        q, f16 = fx.ttscpp_quantizable(name)
        assert layout.is_ttscpp_quantizable(name) == q, name
        assert layout.is_f16_compatible(name) == f16, name


@pytest.mark.parametrize("variant", ["F32", "F16", "Q4_0", "Q5_0", "Q8_0", "F32_ggml", "no_espeak"])
def test_ttscpp_file_loads(ttscpp_files, variant) -> None:
    path, values = ttscpp_files[variant]
    mf = open_model(path)
    assert mf.architecture == "kokoro"
    assert len(mf.voices) == 50 and list(mf.voices) == fx.VOICES
    assert mf.voices["af_heart"].language == "en-US" and mf.voices["af_heart"].gender == "female"
    assert mf.voices["bm_lewis"].espeak == "en-gb" and mf.voices["bm_lewis"].gender == "male"
    assert mf.voices["zf_xiaobei"].language_name == "Mandarin Chinese"
    assert mf.phonemizer_type == (0 if variant == "no_espeak" else 1)
    assert mf.hparams["kokoro.duration_predictor.albert.recurrence"] == 12
    assert mf.dims.hidden == fx.SmallKokoro().hidden
    assert mf.vocab[16] == " " and mf.phoneme_to_id["ɹ"] == mf.vocab.index("ɹ")
    qtype = {"Q4_0": T.Q4_0, "Q5_0": T.Q5_0, "Q8_0": T.Q8_0}.get(variant)
    for name, ref in values.items():
        got = (
            mf.tensor(name)
            if "voice_tensors" not in name
            else mf.voice_tensor(name.rsplit(".", 1)[1])
        )
        assert got.shape == ref.shape and got.dtype == np.float32
        t = mf.tensor_type(name)
        if variant in ("F32", "F32_ggml", "no_espeak") or "voice_tensors" in name:
            assert t == T.F32
            assert np.array_equal(got, ref)
        elif layout.is_ttscpp_quantizable(name) and qtype is not None:
            assert t == qtype
            d = np.abs(ref.reshape(-1, 32)).max(axis=1, keepdims=True) / (
                {T.Q4_0: 8, T.Q5_0: 16}.get(qtype, 127)
            )
            assert np.all(np.abs(got - ref).reshape(-1, 32) <= d * 1.01 + 1e-7), name
        elif layout.is_f16_compatible(name):
            assert t == T.F16
            assert np.array_equal(got, ref.astype(np.float16).astype(np.float32))
        else:
            assert t == T.F32


@pytest.mark.parametrize("variant", ["F16", "Q5_0", "F32_ggml"])
def test_ggml_writer_shapes_are_read_as_the_layout(ttscpp_files, variant) -> None:
    """The published F16/Q8/Q5/Q4 files store 53 tensors without their size-1 dims (ggml's
    writer): the reader hands them out in the layout's shape."""
    path, values = ttscpp_files[variant]
    mf = open_model(path)
    gen, dp = "kokoro.decoder.generator.", "kokoro.duration_predictor."
    ch = fx.SmallKokoro().gen // 2
    stored = {
        gen + "resblocks.0.0.alpha1": (ch, 1),
        dp + "f0_proj_kernel": (fx.SmallKokoro().hidden // 2, 1),
        "kokoro.decoder.f0_conv_weight": (3,),
        gen + "m_source_weight": (9,),
    }
    for name, shape in stored.items():
        assert mf.tensor_shape(name) == shape, name
        assert mf.logical_shape(name) == values[name].shape, name
    trimmed = [n for n in values if mf.tensor_shape(n) != values[n].shape]
    # as in Kokoro-82M: 48 Snake alphas, the f0/n projection kernels and convs, m_source_weight
    assert len(trimmed) == 53


def test_ggml_form_of_our_file_speaks_the_same(ttscpp_files, tmp_path) -> None:
    """Our converter's f32 and q8_0 files, rewritten as ggml's writer stores them, load and
    give the same audio, bit for bit."""
    from wyoming_kokoro_gguf.synth.engine import Engine
    from wyoming_kokoro_gguf.synth.lowering import default_options
    from wyoming_kokoro_gguf.weights import convert

    for qtype in ("f32", "q8_0"):
        ours, ggml = tmp_path / f"ours-{qtype}.gguf", tmp_path / f"ggml-{qtype}.gguf"
        convert.convert(ttscpp_files["F32"][0], ours, qtype)
        fx.rewrite_as_ggml(ours, ggml)
        assert open_model(ggml).tensor_shape("kokoro.decoder.f0_conv_weight") == (3,)
        audio = []
        for path in (ours, ggml):
            engine = Engine.load(path, default_options().with_threads(1))
            engine.trim = False
            audio.append(np.concatenate(list(engine.synthesize("Hello there.", "af_heart"))))
        assert len(audio[0]) > 2400 and np.array_equal(audio[0], audio[1]), qtype


def test_no_espeak_phonemizer_tables_are_stepped_over(tmp_path) -> None:
    """TTS.cpp's no_espeak files carry about a million phonemizer strings that espeak-ng makes
    useless: the reader steps over long string arrays (opening such a file took 50 s and 1.5 GB
    when each string was parsed) and says so; short ones (the vocabulary) are read."""
    path = tmp_path / "Kokoro_no_espeak_Q8.gguf"
    fx.build(path, "Q8_0", espeak=False, dictionary_words=model_file.LONG_STRING_ARRAY + 1)
    mf = open_model(path)
    words = model_file.LONG_STRING_ARRAY + 1
    assert mf.skipped == {
        "phonemizer.dictionary.keys": words,
        "phonemizer.dictionary.values": words,
    }
    assert "phonemizer.dictionary.keys" not in mf.metadata
    assert mf.metadata["phonemizer.rules.keys"] == ["a", "th"] and len(mf.vocab) == 178
    assert mf.phonemizer_type == 0 and len(mf.voices) == 50
    for field in ("phonemizer.dictionary.keys", "phonemizer.dictionary.values"):
        assert len(mf._reader.fields[field].parts) == 5  # no view per string
    done = subprocess.run(
        [sys.executable, "-m", "wyoming_kokoro_gguf.inspect", str(path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"phonemizer.dictionary.keys ({words:,} strings)" in done.stdout


def _one_line_error(path: Path, *must: str) -> str:
    with pytest.raises(ModelFileError) as info:
        open_model(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    for word in must:
        assert word in msg, msg
    return msg


def test_other_architecture(tmp_path) -> None:
    p = tmp_path / "tinyllama.gguf"
    fx.build_llama(p)
    _one_line_error(p, "'llama'", "not a Kokoro")


def test_truncated(ttscpp_files, tmp_path) -> None:
    src, _ = ttscpp_files["Q4_0"]
    data = src.read_bytes()
    for cut in (len(data) - 1000, len(data) // 2, 200):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        _one_line_error(p, "truncated")


def test_missing_tensor(tmp_path) -> None:
    p = tmp_path / "missing.gguf"
    fx.build(
        p,
        "F32",
        drop=("kokoro.decoder.generator.resblocks.4.1.convs2_weight",),
        voices=("af_heart",),
    )
    _one_line_error(p, "kokoro.decoder.generator.resblocks.4.1.convs2_weight", "missing")


def test_wrong_shape(tmp_path) -> None:
    p = tmp_path / "shape.gguf"
    values = fx.build(p, "F32", voices=("af_heart",))
    assert values  # a good file first
    open_model(p)
    w = gguf.GGUFWriter(path=None, arch="kokoro")
    r = gguf.GGUFReader(p)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        val = field.contents()
        if isinstance(val, list):
            w.add_array(name, val)
        elif isinstance(val, str):
            w.add_string(name, val)
        else:
            w.add_uint32(name, int(val))
    for t in r.tensors:
        a = np.array(t.data)
        if t.name == "kokoro.albert.layer.0.q":
            a = a[:, :32]
        w.add_tensor(t.name, a)
    bad = tmp_path / "bad_shape.gguf"
    w.write_header_to_file(path=bad)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _one_line_error(bad, "kokoro.albert.layer.0.q", "shape")


def test_unsupported_type(tmp_path) -> None:
    p = tmp_path / "i8.gguf"
    w = gguf.GGUFWriter(path=None, arch="kokoro")
    w.add_tensor("kokoro.albert.token_embd", np.zeros((178, 32), np.int8), raw_dtype=T.I8)
    w.write_header_to_file(path=p)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _one_line_error(p, "unsupported type", "I8")


def test_not_gguf(tmp_path) -> None:
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04 this is a zip")
    _one_line_error(p, "not a GGUF")
    _one_line_error(tmp_path / "nope.gguf", "no such file")
    _one_line_error(tmp_path, "directory")


def test_requantize_ttscpp_file(ttscpp_files, tmp_path) -> None:
    """A TTS.cpp F32 file is a valid converter source: re-quantize it, voices kept."""
    from wyoming_kokoro_gguf.weights import convert

    src, values = ttscpp_files["no_espeak"]
    out = tmp_path / "q8.gguf"
    convert.convert(src, out, "q8_0")
    mf = open_model(out)
    assert mf.phonemizer_type == 0
    assert mf.metadata["phonemizer.rules.phonemes"] == ["æ", "θ"]
    assert list(mf.voices) == fx.VOICES
    assert np.array_equal(mf.voice_tensor("af_heart"), values["kokoro.voice_tensors.af_heart"])
    assert mf.tensor_type("kokoro.albert.layer.0.q") == T.Q8_0
    assert mf.tensor_type("kokoro.decoder.generator.resblocks.0.0.convs1_weight") == T.F16


def test_inspect_cli(ttscpp_files) -> None:
    path, _ = ttscpp_files["Q4_0"]
    r = subprocess.run(
        [sys.executable, "-m", "wyoming_kokoro_gguf.inspect", str(path), "--json"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["architecture"] == "kokoro"
    assert info["phonemizer_type"] == 1
    assert info["types"]["Q4_0"]["tensors"] > 0 and info["types"]["F16"]["tensors"] > 0
    assert info["voices"]["jf_alpha"]["language"] == "ja-JP"
    r = subprocess.run(
        [sys.executable, "-m", "wyoming_kokoro_gguf.inspect", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0 and "Q4_0" in r.stdout and "af_heart" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "wyoming_kokoro_gguf.inspect", str(ROOT / "README.md")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "not a GGUF" in r.stderr and "Traceback" not in r.stderr


def test_model_file_exports() -> None:
    assert model_file.VoiceInfo is layout.VoiceInfo


def _mapped_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_dropping_pages_keeps_the_tensors(ttscpp_files) -> None:
    """#19: a first start lets go of the file's pages once the graphs hold what they need; a
    tensor read afterwards still has its values (re-read from the page cache)."""
    path, _ = ttscpp_files["F32"]
    model = open_model(path)
    names = model.tensor_names
    before = {name: np.array(model.tensor(name)) for name in names}
    resident = _mapped_kib(path)
    model.drop_pages()
    assert resident > 0 and _mapped_kib(path) < resident / 4, (resident, _mapped_kib(path))
    for name in names:
        np.testing.assert_array_equal(model.tensor(name), before[name])
    model.close()
    model.drop_pages()  # closed: nothing to drop, no error
