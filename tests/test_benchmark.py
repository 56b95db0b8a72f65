"""The benchmark harness's own pieces (script/benchmark.py), on real signals and processes.

Why: the harness's figures (SNR, log-spectral distance, peak RSS of a server and its engine
child, the kokoro-onnx peer) go into the README; a wrong meter would publish wrong numbers.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "script" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 3000.0, n)


def test_snr_of_known_noise_level() -> None:
    """A signal plus noise at 1/100 of its power is 20 dB; extra samples past the end are ignored."""
    t = np.arange(48000) / 24000
    ref = 8000 * np.sin(2 * np.pi * 220 * t)
    noise = _noise(len(ref))
    noise *= np.sqrt(np.mean(ref**2) / 100 / np.mean(noise**2))
    test = np.concatenate([ref + noise, np.ones(500)])
    assert bench.snr_db(ref, test) == pytest.approx(20.0, abs=0.01)
    assert bench.snr_db(ref, ref) > 100


def test_log_spectral_distance_of_a_gain() -> None:
    """Identical signals are 0 dB apart; twice the amplitude is 4x the power, 6.02 dB in every bin."""
    x = _noise(24000)
    assert bench.log_spectral_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert bench.log_spectral_distance(x, 2 * x) == pytest.approx(10 * np.log10(4), abs=1e-3)
    # Different noise is far apart; a little added noise is close.
    other = _noise(24000, seed=2)
    assert bench.log_spectral_distance(x, other) > 5
    assert bench.log_spectral_distance(x, x + 0.01 * other) < 0.5


HOLDER = textwrap.dedent(
    """
    import subprocess, sys
    # A parent (like the server) whose child (like the engine process) holds 150 MB.
    child = subprocess.Popen([sys.executable, "-c", '''
    import sys
    block = bytearray(150 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    print("held", flush=True)
    sys.stdin.readline()
    del block
    print("freed", flush=True)
    sys.stdin.readline()
    '''], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    print(child.pid, flush=True)
    for line in sys.stdin:
        child.stdin.write(line)
        child.stdin.flush()
        print(child.stdout.readline().strip(), flush=True)
    """
)


def test_peak_rss_counts_the_child_and_resets() -> None:
    """peak_rss_mb sums VmHWM over the process tree; reset_tree_peaks starts a new peak."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        child_pid = int(proc.stdout.readline())
        parent_alone = bench.status_bytes(proc.pid) / 1e6
        child_alone = bench.status_bytes(child_pid) / 1e6
        assert child_alone >= 150
        assert bench.peak_rss_mb(proc.pid) == pytest.approx(parent_alone + child_alone, abs=1)
        # The child frees its block: the peak stays until it is reset.
        proc.stdin.write("free\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "freed"
        assert bench.peak_rss_mb(proc.pid) >= 150
        assert bench.reset_tree_peaks(proc.pid)
        assert bench.peak_rss_mb(proc.pid) < 100
    finally:
        proc.kill()
        proc.wait()
    assert bench.status_bytes(proc.pid) is None


def test_texts_are_the_benchmark_texts() -> None:
    """5 words, 20 words, a 55-word paragraph, and a text of (just under) 2,000 characters."""
    words = {label: len(text.split()) for label, text in bench.TEXTS.items()}
    assert words["5 words"] == 5 and words["20 words"] == 20
    assert words["55-word paragraph"] == 55
    long = bench.TEXTS["2,000 characters"]
    assert 1900 <= len(long) <= 2000 and long.endswith(".")
    assert set(bench.TEXT_KEYS.values()) == set(bench.TEXTS)


def test_readme_block_is_the_only_change(tmp_path: Path) -> None:
    """The harness writes the README between its markers and nowhere else, idempotently."""
    readme = tmp_path / "README.md"
    original = (ROOT / "README.md").read_text()
    readme.write_text(original)
    bench.update_readme(readme, "| table 1 |")
    first = readme.read_text()
    assert first.count(bench.MARK_START) == 1 and "| table 1 |" in first
    assert "docs/PERFORMANCE.md" in first
    bench.update_readme(readme, "| table 2 |")
    second = readme.read_text()
    assert "| table 1 |" not in second and "| table 2 |" in second
    outside = lambda text: (  # noqa: E731
        text.split(bench.MARK_START)[0] + text.split(bench.MARK_END)[1]
    )
    assert outside(first) == outside(second)
    # Everything the README had outside its block is still there, in order.
    had_block = bench.MARK_START in original and bench.MARK_END in original
    before = (outside(original) if had_block else original).splitlines()
    before = [line for line in before if "To be filled" not in line]
    kept = [line for line in outside(second).splitlines() if line in before]
    assert [line for line in before if line.strip()] == [line for line in kept if line.strip()]


@pytest.mark.slow
def test_kokoro_onnx_peer_row(kokoro_onnx: Path, kokoro_voices: Path) -> None:
    """The kokoro-onnx peer measures a real 5-word synthesis as often as this server does (the
    best of the rounds kept) and renders as a table row."""
    texts = {"5 words": bench.TEXTS["5 words"]}
    row = bench.run_kokoro_onnx("int8-onnx", kokoro_onnx, kokoro_voices, 2, texts, rounds=2)
    m = row.per_text["5 words"]
    assert m.pop("rounds") == 2
    assert 1.0 < m["audio_s"] < 4.0  # five English words, not a letter-by-letter reading
    assert m["oneshot_rtf"] == pytest.approx(m["oneshot_total_s"] / m["audio_s"])
    assert m["stream_first_audio_s"] > 0 and row.load_s > 0
    assert row.peak_rss_mb >= row.load_peak_mb > 50
    table = bench.render_markdown([row], {}, bench.machine_line(), "now")
    lines = table.splitlines()
    servers = [x for x in lines if x.startswith("| kokoro-onnx |")]
    per_text = lines[lines.index("**5 words**") :]
    row_line = next(x for x in per_text if x.startswith("| kokoro-onnx |"))
    assert len(servers) == 2 and servers[0].count("|") == 10 and row_line.count("|") == 10
    assert f"| {m['audio_s']:.1f} |" in row_line and "| - |" not in row_line


class _EchoJudge:
    """Hears the first sentence of each corpus whatever it is given (the tiny model's random
    weights make noise): the scores then check the section's pairing and scoring."""

    def __init__(self) -> None:
        corpora = bench.corpora()
        self.first = {
            "en": corpora.HOME_AUTOMATION[0][1],
            "ja": corpora.JAPANESE[0],
            "zh": corpora.MANDARIN[0],
        }
        self.heard: list[tuple[int, str]] = []

    def transcribe(self, audio: np.ndarray, rate: int, language: str = "en") -> str:
        self.heard.append((len(audio), language))
        assert rate == 24000 and len(audio) > 0
        return self.first[language]


@pytest.mark.slow
def test_text_section_on_a_tiny_model(tmp_path: Path) -> None:
    """The text section through the real Wyoming server on a tiny model: two sentences per
    corpus, every language; the rows render, and a text-only run replaces only its part."""
    pytest.importorskip("pyopenjtalk")
    pytest.importorskip("pypinyin")
    import fixtures_ttscpp
    from asr import corpus_cer, corpus_wer, kana_reading

    model = tmp_path / "tiny.gguf"
    fixtures_ttscpp.build(model)
    voices = bench.TextVoices(english="af_heart", japanese="jf_alpha", mandarin="zf_xiaobei")
    command = bench.server_command("text", {"text": model}, 2, voices.english)
    command += ["--quant", "conv=fp32", "--passes", "2"]  # every lever fixed: no plan timing
    judge = _EchoJudge()
    text = bench.text_section(judge, command, voices, limit=2)
    assert [lang for _, lang in judge.heard] == ["en"] * 4 + ["ja"] * 2 + ["zh"] * 2

    corpora = bench.corpora()
    first, second = corpora.HOME_AUTOMATION[:2]
    heard = corpora.letters(first[1])
    want = corpus_wer([(corpora.letters(first[1]), heard), (corpora.letters(second[1]), heard)])
    assert text["english"]["sentences"] == 2 and 0 < want < 1
    assert text["english"]["wer"] == {"this server": pytest.approx(want)}
    # the Markdown replies, streamed to the server in 5-character deltas, scored the same way
    replies = [corpora.english_pair(r, first[1]) for _, r in corpora.REPLIES[:2]]
    assert text["replies"]["sentences"] == 2
    assert text["replies"]["wer"] == {"this server": pytest.approx(corpus_wer(replies))}
    assert text["replies"]["symbols"] == {"this server": 0}
    ja = [(r, corpora.JAPANESE[0]) for r in corpora.JAPANESE[:2]]
    assert text["japanese"]["cer"]["this server"] == pytest.approx(corpus_cer(ja))
    kana = [(kana_reading(r), kana_reading(h)) for r, h in ja]
    assert text["japanese"]["kana_cer"]["this server"] == pytest.approx(corpus_cer(kana))
    assert 0 < text["mandarin"]["syllable_error_rate"]["this server"] < 1

    block = bench.render_text(text, "note-one")
    lines = block.splitlines()
    assert lines[0] == bench.TEXT_START and lines[-1] == bench.TEXT_END
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 7
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 2 + len(bench.TEXT_SYSTEMS)
        assert cells[2] != "-" and cells[3:] == ["-"] * 3  # no peers were run
    assert f"| {want:.3f} |" in rows[0] and "| 0 | - |" in rows[2]

    # A text-only run puts its block inside the README's benchmark block, then replaces it.
    readme = (ROOT / "README.md").read_text()
    once = bench.splice_text(readme, block)
    assert once.count(bench.TEXT_START) == 1
    assert once.index(bench.MARK_START) < once.index(bench.TEXT_START) < once.index(bench.MARK_END)
    twice = bench.splice_text(once, block.replace("note-one", "note-two"))
    assert twice.count(bench.TEXT_START) == 1 and "note-two" in twice and "note-one" not in twice
    outside = lambda doc: doc.split(bench.TEXT_START)[0] + doc.split(bench.TEXT_END)[1]  # noqa: E731
    assert outside(once) == outside(twice)


def test_the_memory_goal_is_the_2gb_plans_loading_and_speaking() -> None:
    """#19's 400 MB goal reads the 2 GB plan's row (its server run with --mem-mb 2048), and
    counts loading as well as speaking; without that row, the auto plan's."""
    long = "2,000 characters"
    auto = bench.Row("this server", "auto (f16)", 2, load_peak_mb=381, per_text={long: {}})
    auto.per_text[long]["rss_peak_mb"] = 390
    label = bench.variant_label("2gb", {})
    assert label.startswith(bench.BOARD_LABEL) and "--mem-mb 2048" in label
    command = bench.server_command("2gb", {"q8_0": Path("/m/q8.gguf")}, 2)
    assert command[:3] == [sys.executable, "-m", "wyoming_kokoro_gguf"]
    assert command[-2:] == ["--mem-mb", "2048"] and "/m/q8.gguf" in command
    board = bench.Row("this server", label, 2, load_peak_mb=410, per_text={long: {}})
    board.per_text[long]["rss_peak_mb"] = 380

    def goal(rows: list) -> tuple[str, str, str]:
        return next(t for t in bench.targets(rows, {}, int8_dot=False) if "400 MB" in t[0])

    assert goal([auto]) == (
        f"auto (f16): server and engine at most 400 MB loading and speaking the {long} text",
        "381 MB loading, 390 MB speaking",
        "met",
    )
    target, measured, verdict = goal([auto, board])
    assert target.startswith(label) and measured == "410 MB loading, 380 MB speaking"
    assert verdict == "not met"


def test_quality_runs_each_variant_with_its_servers_plan(kokoro_gguf) -> None:
    """The quality section plans a variant from the flags its server gets: the "2gb" row is the
    2 GB plan (int8 weights, one pass), not the plan this machine would give the same file."""
    from wyoming_kokoro_gguf.host import models as model_store

    paths = {"q8_0": kokoro_gguf("q8_0")}
    board = model_store.locate(bench._resolve_args("2gb", paths, 2)).host_plan
    roomy = model_store.locate(bench._resolve_args("q8_0", paths, 2)).host_plan
    assert board.model_path == roomy.model_path == str(paths["q8_0"])
    assert (board.weights, board.passes) == ("int8", 1), board.summary()
    assert board.available_mb < 2048 < roomy.available_mb
    assert board.threads == roomy.threads == 2


def test_the_speed_goals_are_the_issues_by_the_cpus_int8_dot_products() -> None:
    """#31: 0.6x kokoro-onnx int8's paragraph RTF on a CPU without int8 dot products (AVX2,
    a Pi 4), 0.5x with them (VNNI, Arm dotprod); the streaming first audio 0.35 s."""
    para = "55-word paragraph"
    ours = bench.Row("this server", "auto (f16)", 2, per_text={para: {}})
    ours.per_text[para].update(oneshot_rtf=0.33, stream_first_audio_s=0.36)
    peer = bench.Row("kokoro-onnx", "int8-onnx", 2, per_text={para: {"oneshot_rtf": 0.6}})
    plain = {t[0]: t for t in bench.targets([ours, peer], {}, int8_dot=False)}
    dot = {t[0]: t for t in bench.targets([ours, peer], {}, int8_dot=True)}
    (rtf_plain,) = [t for name, t in plain.items() if "RTF <= 0.6 x" in name]
    (rtf_dot,) = [t for name, t in dot.items() if "RTF <= 0.5 x" in name]
    assert rtf_plain[1:] == ("0.330 / 0.600 = 0.55x", "met")
    assert rtf_dot[2] == "not met"
    first = plain[f"first audio, streaming, {para} <= 0.35 s"]
    assert first[1:] == ("0.36 s", "not met")
