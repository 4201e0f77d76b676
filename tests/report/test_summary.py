"""llm2tflite.report.summary: the text report and one plot per model, from synthetic results."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from llm2tflite.evaluate import bench
from llm2tflite.report import summary

from conftest import litert_bench_steps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GATES = {
    "fp32": {"min_exact_match_rate": 1.0, "max_perplexity_relative_difference": 0.001},
    "int8": {"max_kl_mean": 0.05, "max_perplexity_relative_difference": 0.05},
}


def _entry(route, variant, run_s, size_bytes, new_tokens=12, steps=None):
    return {
        "route": route,
        "variant": variant,
        "model_path": "m",
        "size_bytes": size_bytes,
        "load_s": 1.5,
        "first_call_s": 3.0,
        "run_s": run_s,
        "median_s": sorted(run_s)[1],
        "min_s": min(run_s),
        "max_s": max(run_s),
        "stdev_s": 0.02,
        "prompt_tokens": 5,
        "new_tokens": new_tokens,
        "tokens_per_s": new_tokens / sorted(run_s)[1],
        "rss_after_load_mb": 800.0,
        "peak_rss_mb": 1000.0,
        "steps": steps,
    }


def _bench_csv(tmp_path, records):
    path = tmp_path / "benchmarks.csv"
    path.write_text(bench.build_table(records).to_csv(index=False))
    return path


def _bench_record(model, entries):
    bench._add_comparisons(entries)
    return {
        "model_name": model,
        "runs": 3,
        "threads": 2,
        "prompt": "p",
        "machine": {"cpu_model": "Test CPU 9000", "physical_cores": 1, "logical_cpus": 2},
        "entries": entries,
    }


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _ops(model, variant, flex):
    return {
        "model_name": model,
        "variant": variant,
        "num_subgraphs": 3,
        "num_operators": 40,
        "class_counts": {"builtin": 30, "select_tf": 10, "custom": 0},
        "flex_ops": flex,
        "custom_ops": [],
        "flex_ops_outside_core_tf": ["RegexSplitWithOffsets"],
        "user_op_checks": {
            "codelab": {"used_as_flex": ["UnsortedSegmentJoin"], "not_used": ["UpperBound"]},
            "conversion_report": {"listed": []},
        },
    }


def _fidelity(model, variant, exact, leading, ppl, keras_ppl=5.60, route="tflite", kl=0.001):
    return {
        "model": model,
        "route": route,
        "variant": variant,
        "model_bytes": {"fp32": 15_000_000, "fp16": 7_500_000}.get(variant, 9_000_000),
        "exact_match_rate": exact,
        "sequence_agreement": exact,
        "kl_mean": kl,
        "kl_p99": 10 * kl,
        "top1_agreement": 1 - kl,
        "logit_correlation": 1 - kl / 10,
        "distribution_positions": 300,
        "worst_path": {"kl_mean": "decode" if route == "litert" else "score"},
        "mean_leading_tokens_agree": leading,
        "mean_keras_new_tokens": 20.0,
        "perplexity": ppl,
        "keras_perplexity": keras_ppl,
        "perplexity_relative_difference": abs(ppl - keras_ppl) / keras_ppl,
        "prompts": ["a", "b", "c"],
    }


def _smoke(prompt, output):
    return {
        "model": "results/x/tflite/v.tflite",
        "passed": True,
        "failures": [],
        "results": [{"prompt": prompt, "output": output, "new_tokens": 3, "latency_s": 0.12}],
    }


def _row(section: str, label: str) -> list[str]:
    """The cells of the Markdown table row whose first two cells are route and variant."""
    route, variant = label.split("/")
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == [route, variant]:
            return cells
    raise AssertionError(f"no row {label} in:\n{section}")


@pytest.fixture()
def written(tmp_path):
    steps = litert_bench_steps(first_token_s=0.021, prefill_s=0.0155)
    records = [
        _bench_record(
            "alpha",
            [
                _entry("tensorflow", "tf", [2.0, 2.4, 2.2], 30_000_000),
                _entry("tflite", "fp32", [1.0, 1.2, 1.0], 15_000_000),
                # Rounds 2 and 3 faster than round 1: per-round ratios 4.0, 4.8, 4.0 -> median 4.0.
                _entry("tflite", "int8", [0.5, 0.5, 0.55], 9_000_000, new_tokens=7),
                _entry("litert", "int8", [0.25, 0.3, 0.275], 9_000_000, steps=steps),
            ],
        ),
        _bench_record(
            "beta",
            [
                _entry("tensorflow", "tf", [1.4, 1.4, 1.4], 8_000_000),
                _entry("tflite", "int8", [0.7, 0.7, 0.7], 4_000_000),
            ],
        ),
    ]
    csv = _bench_csv(tmp_path, records)
    results = tmp_path / "results"
    fidelity = [
        _json(
            results / "alpha" / "tflite" / "fidelity" / "fp32.json",
            _fidelity("alpha", "fp32", 1.0, 20.0, 5.6001),
        ),
        _json(
            results / "alpha" / "tflite" / "fidelity" / "int8.json",
            _fidelity("alpha", "int8", 0.8, 12.3, 5.67),
        ),
        # Scrambled weights: far from Keras.
        _json(
            results / "alpha" / "litert" / "fidelity" / "int8.json",
            _fidelity("alpha", "int8", 0.0, 0.2, 812.5, route="litert", kl=4.2),
        ),
    ]
    flex = ["RegexSplitWithOffsets", "UnsortedSegmentJoin"]
    ops = [
        _json(results / "alpha" / "tflite" / "ops" / f"{v}.json", _ops("alpha", v, flex))
        for v in ("fp32", "int8")
    ]
    # Smoke reports carry no model name: it comes from results/<model>/<route>/smoke/<v>.json.
    smoke = [
        _json(
            results / "beta" / "tflite" / "smoke" / "int8.json",
            {**_smoke("Estoy disfrutando de", "Estoy disfrutando de la playa"), "variant": "int8"},
        )
    ]
    out_md, plot_dir = results / "summary.md", results / "plots"
    summary.main(
        [
            "--benchmarks",
            str(csv),
            "--fidelity",
            *fidelity,
            str(results / "*" / "fidelity" / "*.json"),  # an unmatched glob: skipped
            "--ops",
            *ops,
            "--smoke",
            *smoke,
            "--gates-json",
            json.dumps(GATES),
            "--out-md",
            str(out_md),
            "--plot-dir",
            str(plot_dir),
            "--out-fidelity-csv",
            str(results / "fidelity.csv"),
        ]
    )
    text = out_md.read_text()
    alpha, beta = text.split("## alpha", 1)[1].split("## beta", 1)
    return {
        "text": text,
        "alpha": alpha,
        "beta": beta,
        "plot_dir": plot_dir,
        "csv": results / "fidelity.csv",
    }


def test_benchmark_table_says_what_was_measured(written):
    alpha = written["alpha"].split("### Fidelity")[0]
    assert "Machine: Test CPU 9000; cores: 1 physical, 2 logical; threads per runtime: 2" in alpha
    # Speed-up: median of per-round ratios (2.0/1.0, 2.4/1.2, 2.2/1.0 -> 2.0, 2.0, 2.2).
    assert _row(alpha, "tflite/fp32")[6] == "2.00 (2.00-2.20)"
    assert _row(alpha, "tensorflow/tf")[6] == "1.00 (1.00-1.00)"
    # int8 generated 7 tokens where tf generated 12: flagged, and explained below the table.
    assert _row(alpha, "tflite/int8")[6] == "4.00* (4.00-4.80)"
    assert "* Unequal work: tflite/int8 generated 7 tokens where tf generated 12" in alpha
    assert _row(alpha, "litert/int8")[6] == "8.00 (8.00-8.00)"
    # Median latency with its range; new tokens as generated.
    assert _row(alpha, "tflite/fp32")[5] == "1.0000 (1.0000-1.2000)"
    assert _row(alpha, "tflite/int8")[8] == "7"
    # LiteRT over the codelab file of its variant, per round: 0.5/0.25, 0.5/0.3, 0.55/0.275.
    litert, codelab = _row(alpha, "litert/int8"), _row(alpha, "tflite/int8")
    assert litert[7] == "2.00 (1.67-2.00)" and codelab[7] == "-"
    # Step figures: measured by the LiteRT route, "-" for the codelab route.
    assert litert[10:13] == ["21.0", "15.5", "3.30 (3.10-3.90)"]
    assert codelab[10:13] == ["-", "-", "-"]
    rows = [line for line in alpha.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() + "/" + r.split("|")[2].strip() for r in rows] == [
        "tensorflow/tf",
        "tflite/fp32",
        "tflite/int8",
        "litert/int8",
    ]


def test_fidelity_table_shows_gate_verdicts(written):
    fidelity = written["alpha"].split("### Fidelity")[1].split("### Op audit")[0]
    assert _row(fidelity, "tflite/fp32")[-1] == "pass"
    assert _row(fidelity, "tflite/int8")[-1] == "pass"
    verdict = _row(fidelity, "litert/int8")[-1]
    assert verdict == (
        "FAIL: max_kl_mean: mean KL(Keras ‖ variant) nats/token 4.2 (decode path) (gate: at most "
        "0.05); max_perplexity_relative_difference: perplexity relative difference from Keras "
        "14408.929% (gate: at most 5.000%)"
    )
    assert (
        "Quality gates (config `quality_gates`): fp32: max_perplexity_relative_difference "
        "0.001, min_exact_match_rate 1.0; int8: max_kl_mean 0.05, "
        "max_perplexity_relative_difference 0.05"
    ) in fidelity
    # size (MB), KL mean, KL p99, top-1, logit corr., perplexity (Keras), sequence, exact
    assert _row(fidelity, "tflite/int8")[2:10] == [
        "9.00",
        "1.00e-03",
        "1.00e-02",
        "99.9%",
        "0.99990",
        "5.670 (5.600)",
        "80.0%",
        "80%",
    ]
    assert "(no fidelity results yet)" in written["beta"]


def test_fidelity_csv_has_every_figure_and_verdict(written):
    import csv

    rows = list(csv.DictReader(written["csv"].open()))
    assert [(r["model"], r["route"], r["variant"]) for r in rows] == [
        ("alpha", "tflite", "fp32"),
        ("alpha", "tflite", "int8"),
        ("alpha", "litert", "int8"),
    ]
    assert list(rows[0]) == list(summary.FIDELITY_COLUMNS)
    assert float(rows[2]["kl_mean"]) == 4.2 and rows[2]["gate"].startswith("FAIL: max_kl_mean")
    assert rows[1]["gate"] == "pass" and float(rows[1]["size_mb"]) == 9.0


def test_other_sections(written):
    alpha, beta = written["alpha"], written["beta"]
    assert _row(beta.split("### Fidelity")[0], "tflite/int8")[8] == "12"
    assert "Flex ops (all variants; 2): RegexSplitWithOffsets, UnsortedSegmentJoin" in alpha
    assert '"Estoy disfrutando de" -> "Estoy disfrutando de la playa"' in beta
    assert "[tflite/int8] passed" in beta
    assert "Plot: plots/alpha.png" in alpha and "Plot: plots/beta.png" in beta
    plot_dir = written["plot_dir"]
    for model in ("alpha", "beta"):
        png = plot_dir / f"{model}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert sorted(p.name for p in plot_dir.iterdir()) == [
        "alpha.png",
        "alpha_quality.png",
        "beta.png",
        "beta_quality.png",
    ]
    assert "Size vs quality: plots/alpha_quality.png" in alpha


def test_plot_labels_do_not_overlap(tmp_path):
    """int8 and fp16 of a model land on nearly the same spot: their labels must not collide."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    entries = [
        _entry("tensorflow", "tf", [2.0, 2.1, 2.2], 12_000_000),
        _entry("tflite", "fp32", [1.0, 1.05, 1.1], 6_000_000),
        _entry("tflite", "fp16", [0.50, 0.51, 0.52], 3_100_000),
        _entry("tflite", "int8", [0.49, 0.50, 0.51], 3_000_000),
        _entry("litert", "int8", [0.48, 0.49, 0.50], 2_950_000),
        _entry("litert", "int4", [0.47, 0.48, 0.49], 2_900_000),
    ]
    csv = _bench_csv(tmp_path, [_bench_record("crowded", entries)])
    results = tmp_path / "results"
    fidelity = [
        _json(
            results / "crowded" / "tflite" / "fidelity" / f"{v}.json",
            _fidelity("crowded", v, 0.9, 10.0, 5.7),
        )
        for v in ("fp16", "int8")
    ]
    inputs = summary.load_inputs(str(csv), fidelity, gates=GATES)
    fig, ax, labels = summary.draw_model_plot(inputs, "crowded")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = []
        for label in labels:
            label.update_positions(renderer)  # where the drawn figure has it
            boxes.append(Text.get_window_extent(label, renderer))
        assert len(boxes) == len(entries)
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
            assert not a.overlaps(b), (labels[i].get_text(), labels[j].get_text())
        legend = ax.get_legend().get_window_extent(renderer)
        assert not any(box.overlaps(legend) for box in boxes)
        assert all(
            fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1) for box in boxes
        )
        texts = [label.get_text() for label in labels]
        assert any(re.match(r"tflite/int8\nexact 90%, ppl 5.70", t) for t in texts)
    finally:
        plt.close(fig)


def test_summary_without_benchmarks(tmp_path):
    smoke = _json(
        tmp_path / "results" / "gamma" / "tflite" / "smoke" / "fp32.json",
        {**_smoke("Hi", "Hi there"), "variant": "fp32"},
    )
    out_md = tmp_path / "summary.md"
    summary.main(
        [
            "--benchmarks",
            str(tmp_path / "missing.csv"),
            "--smoke",
            smoke,
            "--out-md",
            str(out_md),
            "--plot-dir",
            str(tmp_path / "plots"),
        ]
    )
    text = out_md.read_text()
    assert "## gamma" in text and "(no benchmark results)" in text
    assert "(no fidelity results yet)" in text and "(no op audit results)" in text
    assert (tmp_path / "plots" / "gamma.png").read_bytes()[:8] == PNG_MAGIC


def test_litert_loads_first_tokens_and_floors_are_shown_with_units(tmp_path):
    import pandas as pd

    steps = litert_bench_steps(first_token_s=0.021, prefill_s=0.0155)
    litert = _entry("litert", "int8", [0.25, 0.3, 0.275], 9_000_000, steps=steps)
    litert["load"] = {
        "cold_s": {"median": 0.4, "min": 0.35},
        "warm_s": {"median": 0.08, "min": 0.07},
        "tokenizer_s": {"median": 0.05, "min": 0.05},
        "warm_to_first_token_s": {"median": 0.09, "min": 0.08},
        "cold_to_first_token_s": {"median": 0.42, "min": 0.37},
        "first_in_process": {"load_s": 1.0, "breakdown": {"environment_s": 0.45}},
    }
    litert["first_token"] = {
        "short": {"median_s": 0.008, "prompt_tokens": 8},
        "long": {"median_s": 0.016, "prompt_tokens": 41},
    }
    litert["floor"] = {"decode_ms": 3.0, "decode_vs_floor": 1.1, "cold_load_vs_floor": 133.3}
    record = _bench_record("alpha", [_entry("tensorflow", "tf", [2.0, 2.4, 2.2], 30e6), litert])
    record["memory_bandwidth"] = {"bytes_per_s": 40e9}
    table = pd.read_csv(_bench_csv(tmp_path, [record]))
    text = "\n".join(summary._benchmark_section({"benchmarks": table}, "alpha"))
    section = text.split("LiteRT loads, first tokens and floors")[1]
    header = [c.strip() for c in section.splitlines()[2].strip("|").split("|")]
    assert header[2:6] == [
        "cold load s",
        "warm load s",
        "tokenizer load s",
        "warm load + first token s",
    ]
    assert (
        "long (41 tokens) ms" in header and "long / floor" in header and "decode / floor" in header
    )
    cells = _row(section, "litert/int8")
    assert cells[2:7] == ["0.400", "0.080", "0.050", "0.090", "0.450"]
    assert cells[header.index("decode / floor")] == "1.10x"
    assert cells[header.index("warm load / floor")] == "-"  # not in the record: not estimated
    assert "(40.0 GB/s, same threads)" in section
    # Only the entries measured so: the baseline has no row there.
    assert "tensorflow" not in section.split("Cold load:")[0]
