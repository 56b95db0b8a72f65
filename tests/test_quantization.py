"""Quantization that knows its cost (docs/QUANTIZATION.md): tensor groups, the new types (ternary
TQ1_0/TQ2_0, MXFP4) loading and running, ``convert --sensitivity`` and ``convert --type auto``
under a log-spectral-distance budget, on the narrow TTS.cpp-style model of tests/fixtures_ttscpp.py
(random weights: the figures mean nothing, the order of the costs and the mechanics do)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import fixtures_ttscpp
import gguf
import numpy as np
import pytest

from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import default_options
from wyoming_kokoro_gguf.weights import budget, convert, groups, layout, model_file, quants, summary
from wyoming_kokoro_gguf.weights.quant_table import Row, Table

T = gguf.GGMLQuantizationType
# Short, so the random model's audio stays finite and a measurement takes under a second.
SENTENCE = "Hello there."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quant") / "tiny-f32.gguf"
    fixtures_ttscpp.build(path, "F32", voices=("af_heart", "am_adam"))
    return path


@pytest.fixture(scope="module")
def table_path(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """--sensitivity on two groups (one per stage) and three types, through the CLI entry."""
    out = tmp_path_factory.mktemp("table") / "sensitivity.json"
    argv = [str(tiny), "--sensitivity", "-o", str(out), "--sentence", SENTENCE, "--threads", "2"]
    argv += [
        "--groups",
        "text_encoder.convs,generator.resblocks.0",
        "--types",
        "f16,q4_0,tq2_0,tq1_0",
        "-q",
    ]
    assert convert.main(argv) == 0
    return out


def test_every_quantizable_tensor_has_a_group() -> None:
    """The real layout's weights that --quantize-all quantizes all fall in one of the groups
    the issue names (ALBERT ... conv_post), per block for the decoder and generator."""
    names = list(layout.expected_shapes())
    by_group = groups.groups(names)
    grouped = {n for ns in by_group.values() for n in ns}
    assert grouped == {n for n in names if groups.is_assignable(n)}
    for wanted in ("albert", "text_encoder.lstm", "predictor.shared_lstm", "adain.decoder",
                   "decoder.decode.3", "generator.ups.1", "generator.resblocks.5",
                   "generator.noise.1", "generator.conv_post"):  # fmt: skip
        assert wanted in by_group, wanted
    assert groups.group_of("kokoro.albert.layer.0.ffn_bias") is None  # biases keep their type


def test_a_row_that_fits_no_block_is_stored_by_channels_or_kept() -> None:
    """TQ1_0's block is 256: a [128, 128, 3] conv (row 384) is stored two channels a row."""
    choice = groups.choose(
        "kokoro.decoder.generator.resblocks.3.0.convs1_weight", (128, 128, 3), T.TQ1_0
    )
    assert choice.qtype == T.TQ1_0 and choice.stored_shape == (64, 768)
    # an LSTM's rows are never regrouped (readers take the model's sizes from them): MXFP4
    lstm = groups.choose("kokoro.duration_predictor.shared_lstm.0.weights.0", (256, 640), T.TQ1_0)
    assert lstm.qtype == T.MXFP4 and lstm.stored_shape == (256, 640)
    odd = groups.choose("kokoro.decoder.f0_conv_weight", (1, 1, 3), T.TQ1_0)
    assert odd.qtype == T.F16


def test_new_types_load_and_speak(tiny: Path, tmp_path: Path) -> None:
    """A file with ternary (TQ1_0, TQ2_0) and MXFP4 groups opens, reads back within each type's
    error and speaks (the engine dequantizes the types its graph does not run packed)."""
    out = tmp_path / "tiny-mixed.gguf"
    source = convert.load_source(tiny, None, print)
    wanted = {"generator.resblocks.0": T.TQ1_0, "decoder.encode": T.TQ2_0, "albert": T.MXFP4}
    convert.write_gguf(source, out, "f16", group_types=wanted)
    mf, ref = model_file.open_model(out), model_file.open_model(tiny)
    for group, qtype in wanted.items():
        name = groups.groups(ref.tensor_names)[group][0]
        assert mf.tensor_type(name) == qtype, name
        err = np.abs(mf.tensor(name) - ref.tensor(name)).max()
        assert 0 < err <= np.abs(ref.tensor(name)).max(), name
    assert mf.tensor_type("kokoro.decoder.decoder_blocks.0.conv1_weight") == T.F16  # no group asked
    engine = Engine.load(out, default_options().with_threads(2), warm_up=False)
    engine.trim = False
    (chunk,) = list(engine.synthesize(SENTENCE, "af_heart"))
    assert len(chunk) == 600 * engine.last_timings[-1].frames > 0


def test_tq2_0_stores_the_values_of_tq1_0() -> None:
    """Why --sensitivity measures TQ2_0 once with TQ1_0: the same ternary digits, packed apart."""
    a = (np.random.default_rng(1).standard_normal((8, 768)) * 0.05).astype(np.float32)
    one, two = (quants.dequantize(quants.quantize(a, t), t) for t in (T.TQ1_0, T.TQ2_0))
    assert np.array_equal(one, two) and not np.array_equal(one, a)


def test_uniform_new_types_convert(tiny: Path, tmp_path: Path) -> None:
    for name in ("tq1_0", "tq2_0", "mxfp4"):
        report = convert.convert(tiny, tmp_path / f"{name}.gguf", name, quantize_all=True)
        assert report.types.get(quants.parse_type(name).name, 0) > 20, report.types


def test_sensitivity_table(table_path: Path) -> None:
    table = Table.from_json(table_path.read_text())
    assert table.groups == ["text_encoder.convs", "generator.resblocks.0"]
    assert table.types == ["f16", "q4_0", "tq2_0", "tq1_0"] and len(table.rows) == 8
    convs = {r.type: r for r in table.rows if r.group == "text_encoder.convs"}
    res = {r.type: r for r in table.rows if r.group == "generator.resblocks.0"}
    assert convs["f16"].stage == "1" and res["f16"].stage == "2"
    for rows in (convs, res):  # fewer bits cost more and take less room
        assert rows["f16"].lsd_db < rows["tq1_0"].lsd_db
        assert rows["f16"].snr_db > rows["tq1_0"].snr_db
        assert rows["f16"].bytes > rows["q4_0"].bytes > rows["tq1_0"].bytes
        # TQ2_0 holds TQ1_0's values in more room: measured once, never the better choice
        assert rows["tq2_0"].lsd_db == rows["tq1_0"].lsd_db
        assert rows["tq2_0"].bytes > rows["tq1_0"].bytes
    assert res["tq1_0"].duration_change == 0  # the audio stage cannot move durations
    md = table_path.with_suffix(".md").read_text()
    assert "| text_encoder.convs | 1 |" in md and "tq1_0" in md


def _table(costs: dict[str, dict[str, float]], sizes: dict[str, int]) -> Table:
    rows = [
        Row(g, t, 1, 1, sizes[t], "2", 40.0, lsd, 0.0)
        for g, by in costs.items()
        for t, lsd in by.items()
    ]
    return Table("m.gguf", "af_heart", [SENTENCE], list(sizes), rows)


def test_budget_picks_the_smallest_file_within_the_estimate() -> None:
    sizes = {"f16": 100, "q4_0": 30, "tq1_0": 10}
    table = _table(
        {
            "a": {"f16": 0.1, "q4_0": 1.0, "tq1_0": 5.0},
            "b": {"f16": 0.1, "q4_0": 0.5, "tq1_0": 1.0},
        },
        sizes,
    )
    assert budget.choose(table, 10).types == {"a": "tq1_0", "b": "tq1_0"}
    plan = budget.choose(table, 2)  # a in tq1_0 alone is over: the cheaper of b's savings
    assert plan.types == {"a": "q4_0", "b": "tq1_0"} and plan.estimate == pytest.approx(2**0.5)
    assert budget.choose(table, 0.6).types == {"a": "f16", "b": "q4_0"}
    with pytest.raises(budget.BudgetError, match="all f16 is estimated"):
        budget.choose(table, 0.05)
    # the costliest group moves one step toward f16
    assert budget.step_back(table, {"a": "tq1_0", "b": "tq1_0"}) == {"a": "q4_0", "b": "tq1_0"}
    assert budget.step_back(table, {"a": "f16", "b": "f16"}) is None


def test_auto_checks_end_to_end_and_falls_back(
    tiny: Path, table_path: Path, tmp_path: Path
) -> None:
    """A table that understates the text encoder's ternary cost: the written file misses the
    budget when spoken, so --type auto moves it toward f16 until the file is within it; the engine
    loads the result and inspect shows each group's type and the budget."""
    table = Table.from_json(table_path.read_text())
    real = {(r.group, r.type): r.lsd_db for r in table.rows}
    convs = "text_encoder.convs"
    budget_db = max(real[(convs, "q4_0")], real[("generator.resblocks.0", "f16")]) * 1.05 + 0.01
    assert real[(convs, "tq1_0")] > budget_db  # else the lie below changes nothing
    for r in table.rows:
        if r.group == convs and r.type == "tq1_0":
            r.lsd_db = 0.0  # the lie
    lying = tmp_path / "lying.json"
    lying.write_text(table.to_json())
    out = tmp_path / "auto.gguf"
    argv = [str(tiny), "-o", str(out), "--type", "auto", "--max-lsd", f"{budget_db:.3f}"]
    assert convert.main([*argv, "--table", str(lying), "--threads", "2", "-q"]) == 0
    mf = model_file.open_model(out)
    made = budget.read_metadata(mf.metadata)
    assert made is not None and made["groups"][convs] != "tq1_0"
    assert made["lsd"] <= budget_db and made["max_lsd"] == pytest.approx(budget_db, abs=1e-3)
    stored = mf.tensor_type("kokoro.text_encoder.layers.0.weight")
    assert stored == quants.parse_type(made["groups"][convs])
    assert mf.file_type.startswith("mixed (")
    text = summary.render(summary.describe(mf))
    assert "type per group:" in text and "log-spectral distance <=" in text
    engine = Engine.load(out, default_options().with_threads(2), warm_up=False)
    assert list(engine.synthesize(SENTENCE, "af_heart"))


def test_auto_needs_a_budget(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert convert.main([str(tiny), "-o", str(tmp_path / "x.gguf"), "--type", "auto"]) == 2
    assert "--max-lsd" in capsys.readouterr().err
    argv = [str(tiny), "-o", str(tmp_path / "x.json"), "--sensitivity", "--groups", "nope"]
    assert convert.main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown group(s) nope" in err and "Traceback" not in err


def test_table_json_round_trip(table_path: Path) -> None:
    table = Table.from_json(table_path.read_text())
    assert json.loads(Table.from_json(table.to_json()).to_json()) == json.loads(
        table_path.read_text()
    )


def _table_scripts():
    """script/quantization_table.py and its --server module."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "script"))
    import quantization_server
    import quantization_table

    return quantization_table, quantization_server


def test_server_table_gives_speed_against_f32_and_marks_errors(tmp_path: Path) -> None:
    """--server's table: speed is f32's RTF over the file's (no speed where either is
    missing), an error row keeps its message and no figures, and --resume keeps only rows
    without an error."""
    qtable, served = _table_scripts()
    rows = {
        "f32": {
            "size_mb": 329.9,
            "rtf": 0.5,
            "wer": 0.05,
            "rss_speaking_mb": 480.4,
            "snr_db": float("inf"),
        },
        "uniform q4_0": {"size_mb": 52.1, "rtf": 0.25, "load_first_s": 9.04},
        "uniform tq1_0": {"size_mb": 25.9, "error": "server exited with 1: bad file"},
    }
    lines = qtable.render(rows, server=True).splitlines()
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert headers == ["file", *(header for _, header, _ in served.COLUMNS)]
    cells = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in lines[2:]}
    column = {key: i for i, (key, _, _) in enumerate(served.COLUMNS)}
    assert cells["f32"][column["speed_x"]].strip() == "1.00"
    assert cells["uniform q4_0"][column["speed_x"]].strip() == "2.00"
    assert cells["uniform q4_0"][column["load_first_s"]].strip() == "9.0"
    assert cells["f32"][column["rss_speaking_mb"]].strip() == "480"
    assert cells["f32"][column["snr_db"]].strip() == "-"
    error_row = cells["uniform tq1_0 (error: server exited with 1: bad file)"]
    assert [c.strip() for c in error_row] == ["25.9"] + ["-"] * (len(served.COLUMNS) - 1)
    assert "speed_x" not in served.with_speed({"uniform q4_0": {"rtf": 0.25}})["uniform q4_0"]

    name = qtable.output_name(
        argparse.Namespace(server=True, server_flags="--mem-mb 2048", only="f32,LSD 4")
    )
    assert name == "quantization-server-mem_mb_2048-f32_LSD_4"
    plain = argparse.Namespace(server=False, server_flags="--mem-mb 2048", only=None)
    assert qtable.output_name(plain) == "quantization"

    given = tmp_path / "kokoro-q8_0.gguf"
    given.write_bytes(b"GGUF")
    assert qtable.also_files([f"published q8_0={given}"]) == {"published q8_0": given}
    for bad in (str(given), f"x={tmp_path / 'missing.gguf'}"):
        with pytest.raises(SystemExit, match="NAME=PATH"):
            qtable.also_files([bad])

    files = dict.fromkeys(["f32", "uniform q4_0", "uniform tq1_0", "auto, max LSD 4 dB"], given)
    assert list(qtable.selected(files, "tq1_0,LSD 4,f32")) == [
        "uniform tq1_0",
        "auto, max LSD 4 dB",
        "f32",
    ]
    assert qtable.selected(files, None) == files

    saved = tmp_path / "quantization-server.json"
    saved.write_text(json.dumps(rows))
    assert list(qtable.kept_rows(saved)) == ["f32", "uniform q4_0"]
    assert qtable.kept_rows(tmp_path / "none.json") == {}


def test_server_figures_of_a_file(tiny: Path, tmp_path: Path, asr_judge) -> None:
    """The --server figures of one file through the real server (the tiny model, two
    sentences): the first start writes the graph cache the second reads; both starts, both
    peaks of the process tree and the speed are measured, and the clips are judged."""
    _, served = _table_scripts()
    corpus = served.HOME_AUTOMATION[:2]
    row = served.measure(tiny, tmp_path, 2, "af_heart", asr_judge, corpus)
    assert row["sentences"] == 2
    logs = sorted((tmp_path / tiny.stem).glob("server-*.log"), key=lambda p: p.stat().st_mtime)
    assert len(logs) == 2
    assert "graph cache: saved" in logs[0].read_text()
    assert "graph cache: loaded" in logs[1].read_text()
    for key in ("load_first_s", "load_s", "rtf"):
        assert row[key] > 0, key
    # the front end and the engine process: Python with ONNX Runtime is over 50 MB each
    for key in ("rss_load_first_mb", "rss_loaded_mb", "rss_speaking_mb"):
        assert row[key] > 100, key
    assert 0 <= row["wer"] <= 5
