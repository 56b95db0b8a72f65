"""``convert --type auto --max-lsd D``: choose each group's type (weights/budget.py), write the
file, speak it end to end with the engine, and fall back toward f16 until it is within budget.

Imported only when a conversion asks for it: it needs the engine and the graph builder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.weights import budget, convert, quants, sensitivity


def convert_auto(
    src: str | Path,
    out: str | Path,
    max_lsd: float,
    *,
    table_path: str | Path | None = None,
    voices: str | None = None,
    voice: str | None = None,
    threads: int = 0,
    max_duration_change: float = 0.05,
    force: bool = False,
    progress=None,
):
    """``convert SRC -o OUT --type auto --max-lsd D``: choose, write, check, fall back."""
    say = progress or (lambda msg: None)
    out = Path(out)
    if out.exists() and not force:
        raise convert.ConvertError(f"{out} exists; use --force to overwrite it")
    options = sensitivity.default_options().with_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = convert.f32_model(str(src), voices, say, Path(tmp))
        if table_path is None:
            say("no --table: measuring the sensitivity table first (see docs/QUANTIZATION.md)")
            table = sensitivity.run(model, None, None, options, voice, say)
        else:
            table = budget.load_table(table_path)
        plan = budget.choose(table, max_lsd, max_duration_change)
        say(f"chosen: {_describe(plan.types)}; estimated LSD {plan.estimate:.2f} dB")
        bench = sensitivity.Bench(model, options, voice or table.voice, table.sentences)
        source = convert.load_source(str(model.path), None, say)
        types = plan.types
        while True:
            trial = Path(tmp) / "trial.gguf"
            group_types = {g: quants.parse_type(t) for g, t in types.items()}
            convert.write_gguf(source, trial, "f16", group_types=group_types, force=True)
            engine = Engine.load(trial, options, warm_up=False)
            cost = bench.measure_engine(engine)
            del engine
            plan.checks.append((dict(types), cost))
            ok = cost.lsd_db <= max_lsd and cost.duration_change <= max_duration_change
            say(
                f"check: LSD {cost.lsd_db:.2f} dB, durations moved "
                f"{100 * cost.duration_change:.1f}% ({'within' if ok else 'over'} the budget)"
            )
            if ok:
                break
            types = budget.step_back(table, types)
            if types is None:
                raise budget.BudgetError(f"even all-f16 misses {max_lsd} dB ({cost.lsd_db:.2f} dB)")
            say(f"falling back: {_describe(types)}")
        plan.types = types
        report = convert.write_gguf(
            source,
            out,
            "f16",
            group_types=group_types,
            extra_metadata=budget.metadata(types, max_lsd, cost),
            force=force,
            progress=say,
        )
    return plan, report


def _describe(types: dict[str, str]) -> str:
    by_type: dict[str, list[str]] = {}
    for g, t in types.items():
        by_type.setdefault(t, []).append(g)
    return "; ".join(f"{t}: {', '.join(gs)}" for t, gs in by_type.items())
