"""Summarize a workflow run: one plain-text report and one plot per model.

``results/summary.md`` is meant to be read in a terminal (padded Markdown tables, so it also renders
as Markdown): per model, the benchmark table, the fidelity table, the op audit with the Flex op
list, and the smoke-test outputs. ``results/plots/<model>.png`` plots each variant's size against
its median generation latency (min-max as error bars), annotated with its fidelity (exact-match
rate and perplexity) when known.

Inputs may be missing: a model without fidelity (or ops, or smoke) results yet gets a note instead
of a table, and a path that does not exist (an unmatched shell glob) is skipped with a warning. A
model that appears in any input gets a section and a plot.

Model names come from the JSONs (``model_name``, or ``model`` for fidelity) and otherwise from the
workflow's layout ``results/<model>/<stage>/<variant>.json``.

CLI::

    python -m llm2tflite.summary --benchmarks results/benchmarks.csv
        --fidelity results/*/fidelity/*.json --ops results/*/ops/*.json
        --smoke results/*/smoke/*.json --out-md results/summary.md --plot-dir results/plots
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import llm2tflite  # noqa: F401
from llm2tflite import atomic
from llm2tflite.audit import markdown_table

TF_VARIANT = "tf"


def _variant_key(variant: str):
    return (variant != TF_VARIANT, str(variant))


def _existing(paths, kind: str) -> list[Path]:
    found = []
    for path in paths or []:
        path = Path(path)
        if path.is_file():
            found.append(path)
        else:
            print(f"summary: no {kind} file {path}; skipped", file=sys.stderr)
    return found


def _layout_model(path: Path) -> str:
    # results/<model>/<stage>/<variant>.json
    return path.resolve().parent.parent.name


def _load_records(paths, kind: str, name_keys) -> list[dict]:
    records = []
    for path in _existing(paths, kind):
        record = json.loads(path.read_text(encoding="utf-8"))
        model = next((record[k] for k in name_keys if isinstance(record.get(k), str)
                      and record.get(k)), None)
        record["_model"] = model or _layout_model(path)
        record["_variant"] = str(record.get("variant") or path.stem)
        record["_path"] = str(path)
        records.append(record)
    return records


def load_inputs(benchmarks=None, fidelity=(), ops=(), smoke=()) -> dict:
    import pandas as pd

    bench = None
    if benchmarks and Path(benchmarks).is_file():
        bench = pd.read_csv(benchmarks)
    elif benchmarks:
        print(f"summary: no benchmarks file {benchmarks}; skipped", file=sys.stderr)
    return {
        "benchmarks": bench,
        "fidelity": _load_records(fidelity, "fidelity", ("model_name", "model")),
        # The smoke report's "model" is the .tflite path, not the model's name.
        "ops": _load_records(ops, "ops", ("model_name",)),
        "smoke": _load_records(smoke, "smoke", ("model_name",)),
    }


def _models(inputs) -> list[str]:
    names = set()
    if inputs["benchmarks"] is not None:
        names.update(str(m) for m in inputs["benchmarks"]["model"])
    for kind in ("fidelity", "ops", "smoke"):
        names.update(r["_model"] for r in inputs[kind])
    return sorted(names)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, digits: int = 3) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _int(value) -> str:
    return "-" if _missing(value) else str(int(value))


def _pct(value) -> str:
    return "-" if _missing(value) else f"{100 * float(value):.1f}%"


def _by_model(records, model) -> list[dict]:
    return sorted((r for r in records if r["_model"] == model),
                  key=lambda r: _variant_key(r["_variant"]))


def _bench_rows(inputs, model):
    bench = inputs["benchmarks"]
    if bench is None:
        return []
    rows = [row for _, row in bench[bench["model"].astype(str) == model].iterrows()]
    return sorted(rows, key=lambda r: _variant_key(r["variant"]))


def _benchmark_section(inputs, model) -> list[str]:
    rows = _bench_rows(inputs, model)
    lines = ["### Benchmarks", ""]
    if not rows:
        return lines + ["(no benchmark results)", ""]
    table = [[r["variant"], r.get("runtime"), _fmt(r["size_mb"], 2), _fmt(r["load_s"], 2),
              _fmt(r["first_call_s"], 2), _fmt(r["median_s"], 4),
              f"{_fmt(r['min_s'], 4)}-{_fmt(r['max_s'], 4)}", _fmt(r["stdev_s"], 4),
              _int(r["new_tokens"]), _fmt(r["tokens_per_s"], 1), _fmt(r["peak_rss_mb"], 0),
              _fmt(r.get("speedup_vs_tf"), 2)] for r in rows]
    lines += markdown_table(
        ["variant", "runtime", "size MB", "load s", "first call s", "median s", "min-max s",
         "stdev s", "new tokens", "tokens/s", "peak RSS MiB", "speedup vs tf"], table)
    runs = {_int(r.get("runs")) for r in rows}
    threads = {_int(r.get("threads")) for r in rows}
    lines += ["", f"Timed runs per variant: {', '.join(sorted(runs))}; threads: "
                  f"{', '.join(sorted(threads))} ('-': the runtime's default).", ""]
    stages = [r for r in rows if not _missing(r.get("decode_per_token_s"))]
    if stages:
        lines += ["Where a generation's time goes (prefill: the `score` signature over the "
                  "prompt's tokens, an upper bound; decode: the rest of the median, per new "
                  "token):", ""]
        lines += markdown_table(
            ["variant", "tokenize s", "prefill s (upper bound)", "decode s/token"],
            [[r["variant"], _fmt(r.get("tokenize_s"), 4), _fmt(r.get("prefill_upper_bound_s"), 4),
              _fmt(r.get("decode_per_token_s"), 4)] for r in stages])
        lines.append("")
    return lines


def _fidelity_section(inputs, model) -> list[str]:
    records = _by_model(inputs["fidelity"], model)
    lines = ["### Fidelity (against the Keras model)", ""]
    if not records:
        return lines + ["(no fidelity results yet)", ""]
    table = [[r["_variant"], _pct(r.get("exact_match_rate")),
              _fmt(r.get("mean_leading_tokens_agree"), 1), _fmt(r.get("perplexity"), 3),
              _fmt(r.get("keras_perplexity"), 3), len(r.get("prompts") or [])] for r in records]
    lines += markdown_table(["variant", "exact match", "mean leading tokens agree",
                             "perplexity", "Keras perplexity", "prompts"], table)
    return lines + [""]


def _ops_section(inputs, model) -> list[str]:
    records = _by_model(inputs["ops"], model)
    lines = ["### Op audit", ""]
    if not records:
        return lines + ["(no op audit results)", ""]
    table = []
    for r in records:
        counts = r.get("class_counts", {})
        codelab = (r.get("user_op_checks") or {}).get("codelab") or {}
        derived = (r.get("user_op_checks") or {}).get("conversion_report")
        table.append([
            r["_variant"], r.get("num_subgraphs"), r.get("num_operators"),
            counts.get("builtin"), counts.get("select_tf"), counts.get("custom"),
            len(r.get("flex_ops") or []),
            ", ".join(codelab.get("used_as_flex") or []) or "none",
            ", ".join(codelab.get("not_used") or []) or "none",
            "-" if derived is None else (", ".join(derived.get("listed") or []) or "none"),
        ])
    lines += markdown_table(
        ["variant", "subgraphs", "operators", "builtin", "Flex", "custom", "Flex op types",
         "codelab list: used", "codelab list: unused", "derived user ops"], table)
    lines.append("")
    flex_lists = {r["_variant"]: tuple(r.get("flex_ops") or []) for r in records}
    groups: dict[tuple, list[str]] = {}
    for variant, flex in flex_lists.items():
        groups.setdefault(flex, []).append(variant)
    for flex, variants in groups.items():
        label = "all variants" if len(groups) == 1 else ", ".join(variants)
        lines.append(f"Flex ops ({label}; {len(flex)}): {', '.join(flex) or 'none'}")
    outside = sorted({op for r in records for op in r.get("flex_ops_outside_core_tf") or []})
    if outside:
        lines.append("Flex ops outside core TensorFlow (need their kernels in the Flex delegate): "
                     + ", ".join(outside))
    custom = sorted({op for r in records for op in r.get("custom_ops") or []})
    lines.append(f"Custom ops to register: {', '.join(custom) or 'none'}")
    return lines + [""]


def _smoke_section(inputs, model) -> list[str]:
    records = _by_model(inputs["smoke"], model)
    lines = ["### Smoke test", ""]
    if not records:
        return lines + ["(no smoke results)", ""]
    for r in records:
        status = "passed" if r.get("passed") else "FAILED"
        lines.append(f"[{r['_variant']}] {status}")
        for result in r.get("results") or []:
            lines.append(f"  {json.dumps(result.get('prompt'), ensure_ascii=False)} -> "
                         f"{json.dumps(result.get('output'), ensure_ascii=False)} "
                         f"(+{_int(result.get('new_tokens'))} tokens, "
                         f"{_fmt(result.get('latency_s'))} s)")
        for failure in r.get("failures") or []:
            lines.append(f"  failure: {failure}")
    return lines + [""]


def render_summary(inputs, plot_paths: dict[str, Path] | None = None, out_md=None) -> str:
    models = _models(inputs)
    lines = ["# llm2tflite summary", ""]
    if not models:
        return "\n".join(lines + ["(no results)"]) + "\n"
    for model in models:
        variants = sorted(
            {str(r["variant"]) for r in _bench_rows(inputs, model)}
            | {r["_variant"] for k in ("fidelity", "ops", "smoke") for r in inputs[k]
               if r["_model"] == model}, key=_variant_key)
        lines += [f"## {model}", "", f"Variants: {', '.join(variants)}", ""]
        lines += _benchmark_section(inputs, model)
        lines += _fidelity_section(inputs, model)
        lines += _ops_section(inputs, model)
        lines += _smoke_section(inputs, model)
        if plot_paths and model in plot_paths:
            plot = plot_paths[model]
            if out_md is not None:
                try:
                    plot = plot.resolve().relative_to(Path(out_md).resolve().parent)
                except ValueError:
                    pass
            lines += [f"Plot: {plot}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_model(inputs, model: str, out_png) -> None:
    """Size vs median latency per variant, annotated with fidelity; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _bench_rows(inputs, model)
    fidelity = {r["_variant"]: r for r in inputs["fidelity"] if r["_model"] == model}
    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=100)
    try:
        if not rows:
            ax.text(0.5, 0.5, "no benchmark results", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
        for i, r in enumerate(rows):
            variant, x, y = str(r["variant"]), float(r["size_mb"]), float(r["median_s"])
            yerr = [[max(y - float(r["min_s"]), 0.0)], [max(float(r["max_s"]) - y, 0.0)]]
            ax.errorbar([x], [y], yerr=yerr, fmt="o", capsize=4, color=f"C{i}", label=variant)
            label = variant + (" (TF SavedModel)" if variant == TF_VARIANT else "")
            fid = fidelity.get(variant)
            if fid is not None:
                label += (f"\nexact match {_pct(fid.get('exact_match_rate'))}, "
                          f"ppl {_fmt(fid.get('perplexity'), 2)}")
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(8, 8), fontsize=8)
        if rows:
            ax.set_xlabel("model size (MB)")
            ax.set_ylabel("median generation latency (s)")
            ax.set_xlim(left=0, right=max(float(r["size_mb"]) for r in rows) * 1.35)
            ax.set_ylim(bottom=0, top=max(float(r["max_s"]) for r in rows) * 1.35)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        keras_ppl = next((f.get("keras_perplexity") for f in fidelity.values()
                          if not _missing(f.get("keras_perplexity"))), None)
        title = f"{model}: size vs median latency"
        if keras_ppl is not None:
            title += f" (Keras perplexity {_fmt(keras_ppl, 2)})"
        elif not fidelity:
            title += " (no fidelity results yet)"
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        with atomic.atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def write_summary(inputs, out_md, plot_dir) -> dict[str, Path]:
    plot_paths = {}
    for model in _models(inputs):
        plot_paths[model] = Path(plot_dir) / f"{model}.png"
        plot_model(inputs, model, plot_paths[model])
    atomic.write_text(out_md, render_summary(inputs, plot_paths, out_md))
    return plot_paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default=None,
                        help="benchmarks.csv (python -m llm2tflite.bench table)")
    parser.add_argument("--fidelity", nargs="*", default=[], help="fidelity JSONs")
    parser.add_argument("--ops", nargs="*", default=[], help="op audit JSONs (llm2tflite.audit)")
    parser.add_argument("--smoke", nargs="*", default=[], help="smoke-test JSONs")
    parser.add_argument("--out-md", required=True)
    parser.add_argument("--plot-dir", required=True, help="one <model>.png per model")
    args = parser.parse_args(argv)
    inputs = load_inputs(args.benchmarks, args.fidelity, args.ops, args.smoke)
    plots = write_summary(inputs, args.out_md, args.plot_dir)
    print(f"wrote {args.out_md} and {len(plots)} plot(s) in {args.plot_dir}")


if __name__ == "__main__":
    main()
