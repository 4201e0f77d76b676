"""llm2tflite.summary: the text report and one plot per model, from synthetic results."""

from __future__ import annotations

import json

from llm2tflite import bench, summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench(model, variant, median, size_bytes):
    return {
        "model_name": model, "variant": variant,
        "runtime": "tensorflow" if variant == "tf" else "tflite", "size_bytes": size_bytes,
        "load_s": 1.5, "first_call_s": 3.0, "median_s": median, "min_s": median * 0.9,
        "max_s": median * 1.1, "stdev_s": 0.02, "runs": 5, "new_tokens": 12,
        "tokens_per_s": 12 / median, "peak_rss_mb": 1000.0, "rss_after_load_mb": 800.0,
        "threads": None if variant == "tf" else 2, "max_length": 24,
    }


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _ops(model, variant, flex):
    return {"model_name": model, "variant": variant, "num_subgraphs": 3, "num_operators": 40,
            "class_counts": {"builtin": 30, "select_tf": 10, "custom": 0},
            "flex_ops": flex, "custom_ops": [],
            "flex_ops_outside_core_tf": ["RegexSplitWithOffsets"],
            "user_op_checks": {
                "codelab": {"used_as_flex": ["UnsortedSegmentJoin"], "not_used": ["UpperBound"]},
                "conversion_report": {"listed": []}}}


def _smoke(prompt, output):
    return {"model": "results/x/tflite/v.tflite", "passed": True, "failures": [],
            "results": [{"prompt": prompt, "output": output, "new_tokens": 3,
                         "latency_s": 0.12}]}


def test_summary_and_plots(tmp_path):
    records = [_bench("alpha", "tf", 2.0, 30_000_000), _bench("alpha", "fp32", 1.0, 15_000_000),
               _bench("alpha", "int8", 0.5, 9_000_000), _bench("beta", "int8", 0.7, 4_000_000)]
    csv = tmp_path / "benchmarks.csv"
    csv.write_text(bench.build_table(records).to_csv(index=False))
    results = tmp_path / "results"
    fidelity = [_json(results / "alpha" / "fidelity" / "int8.json", {
        "model": "alpha", "variant": "int8", "exact_match_rate": 0.8,
        "mean_leading_tokens_agree": 12.3, "perplexity": 5.67, "keras_perplexity": 5.60,
        "prompts": ["a", "b", "c"]})]
    flex = ["RegexSplitWithOffsets", "UnsortedSegmentJoin"]
    ops = [_json(results / "alpha" / "ops" / f"{v}.json", _ops("alpha", v, flex))
           for v in ("fp32", "int8")]
    # Smoke reports carry no model name: it comes from results/<model>/smoke/<variant>.json.
    smoke = [_json(results / "beta" / "smoke" / "int8.json",
                   {**_smoke("Estoy disfrutando de", "Estoy disfrutando de la playa"),
                    "variant": "int8"})]
    out_md, plot_dir = results / "summary.md", results / "plots"
    summary.main(["--benchmarks", str(csv), "--fidelity", *fidelity,
                  str(results / "*" / "fidelity" / "*.json"),  # an unmatched glob: skipped
                  "--ops", *ops, "--smoke", *smoke,
                  "--out-md", str(out_md), "--plot-dir", str(plot_dir)])

    text = out_md.read_text()
    alpha, beta = text.split("## alpha", 1)[1].split("## beta", 1)
    for variant in ("tf", "fp32", "int8"):
        assert f"| {variant} " in alpha
    assert "| int8 " in beta and "| fp32 " not in beta
    assert "80.0%" in alpha and "5.670" in alpha  # int8 fidelity
    assert "(no fidelity results yet)" in beta
    assert "2.00" in alpha and "4.00" in alpha  # speedups vs tf: 2.0/1.0 and 2.0/0.5
    assert "Flex ops (all variants; 2): RegexSplitWithOffsets, UnsortedSegmentJoin" in alpha
    assert '"Estoy disfrutando de" -> "Estoy disfrutando de la playa"' in beta
    assert "[int8] passed" in beta
    assert "Plot: plots/alpha.png" in alpha and "Plot: plots/beta.png" in beta
    for model in ("alpha", "beta"):
        png = plot_dir / f"{model}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert sorted(p.name for p in plot_dir.iterdir()) == ["alpha.png", "beta.png"]


def test_summary_without_benchmarks(tmp_path):
    smoke = _json(tmp_path / "results" / "gamma" / "smoke" / "fp32.json",
                  {**_smoke("Hi", "Hi there"), "variant": "fp32"})
    out_md = tmp_path / "summary.md"
    summary.main(["--benchmarks", str(tmp_path / "missing.csv"), "--smoke", smoke,
                  "--out-md", str(out_md), "--plot-dir", str(tmp_path / "plots")])
    text = out_md.read_text()
    assert "## gamma" in text and "(no benchmark results)" in text
    assert "(no fidelity results yet)" in text and "(no op audit results)" in text
    assert (tmp_path / "plots" / "gamma.png").read_bytes()[:8] == PNG_MAGIC
