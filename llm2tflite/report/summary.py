"""Summarize a workflow run: one plain-text report and one plot per model.

The summary (Markdown, readable in a terminal) has, per model: the machine the benchmark ran on
(CPU model, logical CPUs, threads), the benchmark table (one row per route and variant, the TF
baseline first), the fidelity table with each variant's quality-gate verdict (pass, or FAIL and
why), the op audit, and the smoke-test outputs. Every figure is what its column says:

- "median s (min-max)": the generation latency over the interleaved timed rounds;
- "speed-up vs tf": the median over rounds of (baseline time / variant time) in the same round,
  with the min-max over rounds; marked ``*`` when the variant generated a different number of
  tokens than the baseline (unequal work: not a speed-up);
- "new tokens": the ids the model generated (stop token excluded), not re-tokenized text;
- "first token ms", "prefill ms", "decode ms/token (p10-p90)": measured per step by routes
  whose generation loop runs in Python (LiteRT); "-" for the codelab route, whose loop runs
  inside one signature call;
- "peak RSS MiB": the high-water mark of the resident memory of the process that ran only that
  model (load, first call, timed runs).

The plot (``<plot-dir>/<model>.png``) puts each row at (size, median latency) with min-max error
bars; labels are placed so that none overlaps another, a marker or the legend
(:func:`place_labels`).

The fidelity table (also ``--out-fidelity-csv``, one row per model, route and variant) and the
size-quality plot (``<plot-dir>/<model>_quality.png``: file size against mean KL and top-1
agreement, every variant of both routes: the figure a user picks a variant from) show the
``llm2tflite.evaluate.fidelity`` figures: KL mean and p99, top-1, logit correlation, perplexity,
whole-continuation agreement, exact match, gate verdict.

Inputs may be missing: a model without fidelity (or ops, or smoke) results yet gets a note instead
of a table, and a path that does not exist (an unmatched shell glob) is skipped with a warning.
Model and route names come from the JSONs and otherwise from the workflow's layout
``results/<model>/<route>/<stage>/<variant>.json``.

CLI::

    python -m llm2tflite.report.summary --benchmarks benchmarks.csv --fidelity ... --ops ... \
        --smoke ...
        [--gates-json '{"int8": {...}, ...}'] --out-md summary.md --plot-dir plots \
        [--out-fidelity-csv fidelity.csv]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import llm2tflite  # noqa: F401
from llm2tflite.core import atomic, cli_options
from llm2tflite.evaluate.bench import BASELINE_ROUTE, TF_VARIANT, row_order
from llm2tflite.evaluate.fidelity import gate_failures

UNEQUAL_WORK_MARK = "*"


def _existing(paths, kind: str) -> list[Path]:
    found = []
    for path in paths or []:
        path = Path(path)
        if path.is_file():
            found.append(path)
        else:
            print(f"summary: no {kind} file {path}; skipped", file=sys.stderr)
    return found


def _load_records(paths, kind: str, name_keys) -> list[dict]:
    records = []
    for path in _existing(paths, kind):
        record = json.loads(path.read_text(encoding="utf-8"))
        # results/<model>/<route>/<stage>/<variant>.json
        layout = path.resolve().parents
        model = next(
            (record[k] for k in name_keys if isinstance(record.get(k), str) and record.get(k)), None
        )
        record["_model"] = model or layout[2].name
        record["_route"] = str(record.get("route") or layout[1].name)
        record["_variant"] = str(record.get("variant") or path.stem)
        record["_path"] = str(path)
        records.append(record)
    return records


def load_inputs(benchmarks=None, fidelity=(), ops=(), smoke=(), gates=None) -> dict:
    import pandas as pd

    bench = None
    if benchmarks and Path(benchmarks).is_file():
        bench = pd.read_csv(benchmarks)
    elif benchmarks:
        print(f"summary: no benchmarks file {benchmarks}; skipped", file=sys.stderr)
    return {
        "benchmarks": bench,
        "fidelity": _load_records(fidelity, "fidelity", ("model_name", "model")),
        # The smoke report's "model" is the model file's path, not the model's name.
        "ops": _load_records(ops, "ops", ("model_name",)),
        "smoke": _load_records(smoke, "smoke", ("model_name",)),
        "gates": gates,
    }


def _models(inputs) -> list[str]:
    names = set()
    if inputs["benchmarks"] is not None:
        names.update(str(m) for m in inputs["benchmarks"]["model"])
    for kind in ("fidelity", "ops", "smoke"):
        names.update(r["_model"] for r in inputs[kind])
    return sorted(names)


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(value)
    except TypeError:
        return False


def _fmt(value, digits: int = 3) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return f"{float(value):.{digits}f}"
    return str(value)


def _int(value) -> str:
    return "-" if _missing(value) else str(int(value))


def _pct(value, digits: int = 1) -> str:
    return "-" if _missing(value) else f"{100 * float(value):.{digits}f}%"


def _decode_ms(row) -> str:
    if _missing(row.get("decode_ms_per_token")):
        return "-"
    return (
        f"{row['decode_ms_per_token']:.2f} ({row['decode_ms_p10']:.2f}-{row['decode_ms_p90']:.2f})"
    )


def _ms(seconds, digits: int = 1) -> str:
    return "-" if _missing(seconds) else f"{1000 * float(seconds):.{digits}f}"


def _markdown(rows: list[dict]) -> list[str]:
    import pandas as pd

    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True).splitlines()


def _by_model(records, model) -> list[dict]:
    return sorted(
        (r for r in records if r["_model"] == model),
        key=lambda r: row_order(r["_route"], r["_variant"]),
    )


def _bench_rows(inputs, model) -> list[dict]:
    bench = inputs["benchmarks"]
    if bench is None:
        return []
    rows = bench[bench["model"].astype(str) == model].to_dict("records")
    return sorted(rows, key=lambda r: row_order(r["route"], r["variant"]))


def _label(route, variant) -> str:
    return f"{route}/{variant}"


def _speedup(row) -> str:
    if _missing(row.get("speedup_vs_tf")):
        return "-"
    mark = "" if row.get("equal_work") in (True, "True", 1) else UNEQUAL_WORK_MARK
    return f"{row['speedup_vs_tf']:.2f}{mark} ({row['speedup_min']:.2f}-{row['speedup_max']:.2f})"


def _speedup_vs_codelab(row) -> str:
    if _missing(row.get("speedup_vs_codelab")):
        return "-"
    return (
        f"{row['speedup_vs_codelab']:.2f} ({row['speedup_vs_codelab_min']:.2f}-"
        f"{row['speedup_vs_codelab_max']:.2f})"
    )


def _benchmark_section(inputs, model) -> list[str]:
    rows = _bench_rows(inputs, model)
    lines = ["### Benchmarks", ""]
    if not rows:
        return lines + ["(no benchmark results)", ""]
    first = rows[0]
    lines += [
        f"Machine: {first.get('cpu_model') or 'unknown CPU'}; cores: "
        f"{_int(first.get('physical_cores'))} physical, {_int(first.get('logical_cpus'))} "
        f"logical; threads per runtime: {_int(first.get('threads'))} ('-': the runtime's "
        f"default). {_int(first.get('runs'))} timed rounds, every model once per round in a "
        "rotating order (A B C, B C A, ...), each model in its own process, after one untimed "
        "first call.",
        "",
    ]
    table = [
        {
            "route": r["route"],
            "variant": r["variant"],
            "size MB": _fmt(r["size_mb"], 2),
            "load s": _fmt(r["load_s"], 2),
            "first call s": _fmt(r["first_call_s"], 2),
            "median s (min-max)": f"{_fmt(r['median_s'], 4)} ({_fmt(r['min_s'], 4)}-"
            f"{_fmt(r['max_s'], 4)})",
            "speed-up vs tf (min-max)": _speedup(r),
            "speed-up vs codelab (min-max)": _speedup_vs_codelab(r),
            "new tokens": _int(r["new_tokens"]),
            "tokens/s": _fmt(r["tokens_per_s"], 1),
            "first token ms": _ms(r.get("first_token_s")),
            "prefill ms": _ms(r.get("prefill_s")),
            "decode ms/token (p10-p90)": _decode_ms(r),
            "peak RSS MiB": _fmt(r["peak_rss_mb"], 0),
        }
        for r in rows
    ]
    lines += _markdown(table)
    lines.append("")
    unequal = [
        r
        for r in rows
        if not _missing(r.get("speedup_vs_tf")) and r.get("equal_work") not in (True, "True", 1)
    ]
    baseline = next((r for r in rows if r["route"] == BASELINE_ROUTE), None)
    if unequal and baseline is not None:
        lines += [
            f"{UNEQUAL_WORK_MARK} Unequal work: "
            + ", ".join(
                f"{_label(r['route'], r['variant'])} generated {_int(r['new_tokens'])} tokens"
                for r in unequal
            )
            + f" where {TF_VARIANT} generated {_int(baseline['new_tokens'])}: "
            "its speed-up is not a like-for-like comparison.",
            "",
        ]
    lines += [
        "Speed-up: per round, the baseline's time over the variant's time in that round; "
        "median and min-max over rounds; vs codelab: the same, the codelab route's file of the "
        "same variant (tflite/V) over the LiteRT route's. Step columns ('-' for the codelab route, whose "
        "generation loop runs inside one signature call) are measured per call by routes "
        "that run the loop in Python. Peak RSS: the process that ran only that model.",
        "",
    ]
    return lines + _load_and_floor_section(rows)


def _ratio(value) -> str:
    return "-" if _missing(value) else f"{float(value):.2f}x"


def _load_and_floor_section(rows) -> list[str]:
    """The LiteRT entries' loads, first tokens and ratios to the memory-read floor."""
    rows = [r for r in rows if not _missing(r.get("cold_load_s"))]
    if not rows:
        return []
    table = [
        {
            "route": r["route"],
            "variant": r["variant"],
            "cold load s": _fmt(r["cold_load_s"], 3),
            "warm load s": _fmt(r["warm_load_s"], 3),
            "tokenizer load s": _fmt(r.get("tokenizer_load_s"), 3),
            "warm load + first token s": _fmt(r["warm_load_first_token_s"], 3),
            "LiteRT environment s": _fmt(r.get("environment_s"), 3),
            "first token ms: short": _ms(r["first_token_short_s"]),
            f"long ({_int(r.get('long_prompt_tokens'))} tokens) ms": _ms(r["first_token_long_s"]),
            "decode ms/token": _fmt(r.get("decode_ms_per_token"), 2),
            "floor: decode ms": _fmt(r.get("floor_decode_ms"), 2),
            "decode / floor": _ratio(r.get("decode_vs_floor")),
            "cold load / floor": _ratio(r.get("cold_load_vs_floor")),
            "warm load / floor": _ratio(r.get("warm_load_vs_floor")),
            "first token / floor: short": _ratio(r.get("first_token_short_vs_floor")),
            "long / floor": _ratio(r.get("first_token_long_vs_floor")),
        }
        for r in rows
    ]
    return [
        "LiteRT loads, first tokens and floors (median of the load repetitions):",
        "",
        *_markdown(table),
        "",
        "Cold load: the model constructor with an empty weight cache (flatbuffer verified, "
        "tokenizer read, weights packed and written to the cache); warm: the same with the cache "
        "file the cold load wrote; both include the tokenizer, not the runtime's imports nor "
        "LiteRT's environment (made once per process by its first load: a fresh process adds "
        "it). First "
        "token: the first generated id of the benchmark prompt (short) and of that prompt "
        "repeated to take the longest prefill chunk and a shorter one (long). Floor: the bytes "
        "to read (decode: the decode signature's weights; load: the file; first token: the "
        "weights of every call) over the memory read bandwidth measured in the job "
        f"({_fmt(rows[0].get('read_gb_per_s'), 1)} GB/s, same threads).",
        "",
    ]


def _gate_verdict(record: dict, gates: dict | None) -> str:
    if gates is None:
        return "-"
    variant_gates = gates.get(record["_variant"])
    if not variant_gates:
        return "no gates"
    failures = gate_failures(record, variant_gates, named=False)
    return "pass" if not failures else "FAIL: " + "; ".join(failures)


# The fidelity figures per model, route and variant: summary table, fidelity CSV, quality plot.
FIDELITY_COLUMNS = (
    "model",
    "route",
    "variant",
    "size_mb",
    "kl_mean",
    "kl_p99",
    "top1_agreement",
    "logit_correlation",
    "perplexity",
    "keras_perplexity",
    "sequence_agreement",
    "exact_match_rate",
    "positions",
    "gate",
)


def fidelity_rows(inputs, model=None) -> list[dict]:
    """One row per fidelity record (of ``model``, or all), with its gate verdict."""
    rows = []
    records = inputs["fidelity"] if model is None else _by_model(inputs["fidelity"], model)
    for r in sorted(records, key=lambda r: (r["_model"], row_order(r["_route"], r["_variant"]))):
        size = r.get("model_bytes")
        rows.append(
            {
                "model": r["_model"],
                "route": r["_route"],
                "variant": r["_variant"],
                "size_mb": None if _missing(size) else round(size / 1e6, 3),
                **{k: r.get(k) for k in FIDELITY_COLUMNS[4:12]},
                "positions": r.get("distribution_positions"),
                "gate": _gate_verdict(r, inputs.get("gates")),
            }
        )
    return rows


def _sci(value) -> str:
    """KL spans decades (1e-6 for fp32 to 1 for a damaged file): two significant digits."""
    return "-" if _missing(value) else f"{value:.2e}"


def write_fidelity_csv(inputs, out_csv) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIDELITY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in fidelity_rows(inputs):
        writer.writerow({k: "" if _missing(v) else v for k, v in row.items()})
    atomic.write_text(out_csv, buffer.getvalue())


def _fidelity_section(inputs, model) -> list[str]:
    records = _by_model(inputs["fidelity"], model)
    lines = ["### Fidelity (against the Keras model)", ""]
    if not records:
        return lines + ["(no fidelity results yet)", ""]
    positions = {r.get("distribution_positions") for r in records}
    lines += [
        "Per token, teacher-forced on held-out text over the full vocabulary (worst signature "
        f"path; {', '.join(str(p) for p in sorted(positions, key=str))} positions): "
        "KL(Keras ‖ variant) mean and 99th percentile in nats, top-1 agreement, mean logit "
        "correlation. Greedy continuations of the fidelity prompts id by id, the stop token "
        "counted: sequence agreement (positions of the longer continuation) and exact match.",
        "",
    ]
    table = [
        {
            "route": row["route"],
            "variant": row["variant"],
            "size (MB)": _fmt(row["size_mb"], 2),
            "KL mean": _sci(row["kl_mean"]),
            "KL p99": _sci(row["kl_p99"]),
            "top-1": _pct(row["top1_agreement"]),
            "logit corr.": _fmt(row["logit_correlation"], 5),
            "perplexity (Keras)": f"{_fmt(row['perplexity'], 3)} "
            f"({_fmt(row['keras_perplexity'], 3)})",
            "sequence agreement": _pct(row["sequence_agreement"]),
            "exact": _pct(row["exact_match_rate"], 0),
            "quality gates": row["gate"],
        }
        for row in fidelity_rows(inputs, model)
    ]
    lines += _markdown(table)
    lines.append("")
    gates = inputs.get("gates") or {}
    shown = [
        variant for variant in dict.fromkeys(r["_variant"] for r in records) if gates.get(variant)
    ]
    if shown:
        lines += [
            "Quality gates (config `quality_gates`): "
            + "; ".join(
                f"{variant}: "
                + ", ".join(f"{k} {v}" for k, v in sorted(gates[variant].items()) if v is not None)
                for variant in shown
            ),
            "",
        ]
    return lines


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
        table.append(
            {
                "route": r["_route"],
                "variant": r["_variant"],
                "subgraphs": _int(r.get("num_subgraphs")),
                "operators": _int(r.get("num_operators")),
                "builtin": _int(counts.get("builtin")),
                "Flex": _int(counts.get("select_tf")),
                "custom": _int(counts.get("custom")),
                "Flex op types": len(r.get("flex_ops") or []),
                "codelab list: used": ", ".join(codelab.get("used_as_flex") or []) or "none",
                "codelab list: unused": ", ".join(codelab.get("not_used") or []) or "none",
                "derived user ops": "-"
                if derived is None
                else (", ".join(derived.get("listed") or []) or "none"),
            }
        )
    lines += _markdown(table)
    lines.append("")
    groups: dict[tuple, list[str]] = {}
    for r in records:
        groups.setdefault(tuple(r.get("flex_ops") or []), []).append(
            _label(r["_route"], r["_variant"])
        )
    for flex, labels in groups.items():
        label = "all variants" if len(groups) == 1 else ", ".join(labels)
        lines.append(f"Flex ops ({label}; {len(flex)}): {', '.join(flex) or 'none'}")
    outside = sorted({op for r in records for op in r.get("flex_ops_outside_core_tf") or []})
    if outside:
        lines.append(
            "Flex ops outside core TensorFlow (need their kernels in the Flex delegate): "
            + ", ".join(outside)
        )
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
        lines.append(f"[{_label(r['_route'], r['_variant'])}] {status}")
        for result in r.get("results") or []:
            lines.append(
                f"  {json.dumps(result.get('prompt'), ensure_ascii=False)} -> "
                f"{json.dumps(result.get('output'), ensure_ascii=False)} "
                f"(+{_int(result.get('new_tokens'))} tokens, "
                f"{_fmt(result.get('latency_s'))} s)"
            )
        for failure in r.get("failures") or []:
            lines.append(f"  failure: {failure}")
    return lines + [""]


def render_summary(inputs, plot_paths: dict[str, Path] | None = None, out_md=None) -> str:
    models = _models(inputs)
    lines = ["# llm2tflite summary", ""]
    if not models:
        return "\n".join(lines + ["(no results)"]) + "\n"
    for model in models:
        labels = {(str(r["route"]), str(r["variant"])) for r in _bench_rows(inputs, model)}
        labels |= {
            (r["_route"], r["_variant"])
            for k in ("fidelity", "ops", "smoke")
            for r in inputs[k]
            if r["_model"] == model
        }
        ordered = sorted(labels, key=lambda label: row_order(*label))
        lines += [
            f"## {model}",
            "",
            f"Models compared: {', '.join(_label(*label) for label in ordered)}",
            "",
        ]
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
            lines += [
                f"Plot: {plot}",
                f"Size vs quality: {plot.with_name(plot.stem + '_quality.png')}",
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---- the plot -------------------------------------------------------------------------------

# Where a label may go relative to its point (display points): a ring of 8 directions, at
# growing distances; labels beyond the first ring get a leader line to their point.
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_DISTANCES = (8, 24, 44, 68, 96, 130)


def _text_box(annotation, renderer):
    """The box of an annotation's text alone (its leader line may cross other boxes)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def _overlaps(box, boxes) -> bool:
    return any(box.overlaps(other) for other in boxes)


def place_labels(ax, points, texts, avoid=(), fontsize: float = 8, colors=None):
    """Annotate each (x, y) point with its text so that no two labels overlap.

    Candidate positions are tried nearest first (8 directions, growing distances); a position is
    taken when its bounding box, as the renderer draws it, overlaps no label placed before, no
    marker, nothing in ``avoid`` (e.g. the legend's box) and stays inside the figure. Returns the
    annotation artists.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    marker_boxes = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        marker_boxes.append(Bbox.from_extents(px - 5, py - 5, px + 5, py + 5))
    taken = list(avoid)
    labels = []
    colors = colors or ["black"] * len(points)
    for index, ((x, y), text) in enumerate(zip(points, texts)):
        others = marker_boxes[:index] + marker_boxes[index + 1 :]
        best = None
        for distance in _DISTANCES:
            for dx, dy in _DIRECTIONS:
                annotation = ax.annotate(
                    text,
                    (x, y),
                    xytext=(dx * distance, dy * distance),
                    textcoords="offset points",
                    fontsize=fontsize,
                    color=colors[index],
                    ha={1: "left", -1: "right", 0: "center"}[dx],
                    va={1: "bottom", -1: "top", 0: "center"}[dy],
                    arrowprops=None
                    if distance <= _DISTANCES[0]
                    else {"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkA": 0, "shrinkB": 4},
                )
                box = _text_box(annotation, renderer)
                inside = (
                    box.x0 >= figure_box.x0
                    and box.x1 <= figure_box.x1
                    and box.y0 >= figure_box.y0
                    and box.y1 <= figure_box.y1
                )
                if inside and not _overlaps(box, taken) and not _overlaps(box, others):
                    best = (annotation, box)
                    break
                annotation.remove()
            if best is not None:
                break
        if best is None:
            # Nowhere free: the first position, so the label is still shown.
            dx, dy = _DIRECTIONS[0]
            annotation = ax.annotate(
                text,
                (x, y),
                xytext=(dx * 8, dy * 8),
                textcoords="offset points",
                fontsize=fontsize,
                color=colors[index],
            )
            best = (annotation, _text_box(annotation, renderer))
        labels.append(best[0])
        taken.append(best[1])
    return labels


def draw_model_plot(inputs, model: str):
    """The figure of one model: returns (figure, axes, label annotations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _bench_rows(inputs, model)
    fidelity = {(r["_route"], r["_variant"]): r for r in inputs["fidelity"] if r["_model"] == model}
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=100)
    labels = []
    if not rows:
        ax.text(0.5, 0.5, "no benchmark results", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig, ax, labels
    points, texts = [], []
    for i, r in enumerate(rows):
        route, variant = str(r["route"]), str(r["variant"])
        x, y = float(r["size_mb"]), float(r["median_s"])
        yerr = [[max(y - float(r["min_s"]), 0.0)], [max(float(r["max_s"]) - y, 0.0)]]
        name = f"{variant} (TF SavedModel)" if route == BASELINE_ROUTE else _label(route, variant)
        ax.errorbar([x], [y], yerr=yerr, fmt="o", capsize=4, color=f"C{i % 10}", label=name)
        text = name
        fid = fidelity.get((route, variant))
        if fid is not None:
            text += (
                f"\nexact {_pct(fid.get('exact_match_rate'), 0)}, "
                f"ppl {_fmt(fid.get('perplexity'), 2)}"
            )
            verdict = _gate_verdict(fid, inputs.get("gates"))
            if verdict.startswith("FAIL"):
                text += ", gate FAILED"
        points.append((x, y))
        texts.append(text)
    ax.set_xlabel("model size (MB)")
    ax.set_ylabel("median generation latency (s)")
    ax.set_xlim(left=0, right=max(p[0] for p in points) * 1.45)
    ax.set_ylim(bottom=0, top=max(float(r["max_s"]) for r in rows) * 1.45)
    ax.grid(True, alpha=0.3)
    legend = ax.legend(loc="upper left", fontsize=7)
    keras_ppl = next(
        (
            f.get("keras_perplexity")
            for f in fidelity.values()
            if not _missing(f.get("keras_perplexity"))
        ),
        None,
    )
    title = f"{model}: size vs median latency"
    if keras_ppl is not None:
        title += f" (Keras perplexity {_fmt(keras_ppl, 2)})"
    elif not fidelity:
        title += " (no fidelity results yet)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    legend_box = legend.get_window_extent(fig.canvas.get_renderer())
    labels = place_labels(
        ax, points, texts, avoid=[legend_box], colors=[f"C{i % 10}" for i in range(len(points))]
    )
    return fig, ax, labels


def plot_model(inputs, model: str, out_png) -> None:
    """Size vs median latency per route and variant; written atomically."""
    import matplotlib.pyplot as plt

    fig, _, _ = draw_model_plot(inputs, model)
    try:
        with atomic.atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def draw_quality_plot(inputs, model: str):
    """File size against mean KL (log scale) and top-1 agreement, every variant of both routes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        r
        for r in fidelity_rows(inputs, model)
        if not _missing(r["size_mb"]) and not _missing(r["kl_mean"])
    ]
    fig, (kl_ax, top1_ax) = plt.subplots(1, 2, figsize=(10, 4.5), dpi=100)
    if not rows:
        for ax in (kl_ax, top1_ax):
            ax.text(
                0.5, 0.5, "no fidelity results", ha="center", va="center", transform=ax.transAxes
            )
            ax.set_axis_off()
        return fig
    markers = {"tflite": "o", "litert": "s"}
    for i, r in enumerate(rows):
        failed = r["gate"].startswith("FAIL")
        style = {
            "marker": markers.get(r["route"], "^"),
            "color": f"C{i % 10}",
            "label": _label(r["route"], r["variant"]) + (" (gate FAILED)" if failed else ""),
            "linestyle": "none",
            "markersize": 8,
        }
        # KL of an exact copy can be 0: drawn at the axis floor of the log scale.
        kl_ax.plot([r["size_mb"]], [max(r["kl_mean"], 1e-7)], **style)
        top1_ax.plot([r["size_mb"]], [r["top1_agreement"]], **style)
    kl_ax.set_yscale("log")
    kl_ax.set_ylabel("mean KL(Keras ‖ variant), nats/token")
    top1_ax.set_ylabel("top-1 agreement with Keras")
    for ax in (kl_ax, top1_ax):
        ax.set_xlabel("file size (MB)")
        ax.set_xlim(left=0, right=max(r["size_mb"] for r in rows) * 1.1)
        ax.grid(True, alpha=0.3)
    top1_ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"{model}: size vs quality (held-out text, teacher-forced)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_quality(inputs, model: str, out_png) -> None:
    import matplotlib.pyplot as plt

    fig = draw_quality_plot(inputs, model)
    try:
        with atomic.atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def write_summary(inputs, out_md, plot_dir, fidelity_csv=None) -> dict[str, Path]:
    plot_paths = {}
    for model in _models(inputs):
        plot_paths[model] = Path(plot_dir) / f"{model}.png"
        plot_model(inputs, model, plot_paths[model])
        plot_quality(inputs, model, Path(plot_dir) / f"{model}_quality.png")
    if fidelity_csv is not None:
        write_fidelity_csv(inputs, fidelity_csv)
    atomic.write_text(out_md, render_summary(inputs, plot_paths, out_md))
    return plot_paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--benchmarks",
        default=None,
        help="benchmarks.csv (python -m llm2tflite.evaluate.bench table)",
    )
    parser.add_argument("--fidelity", nargs="*", default=[], help="fidelity JSONs")
    parser.add_argument(
        "--ops", nargs="*", default=[], help="op audit JSONs (llm2tflite.evaluate.audit)"
    )
    parser.add_argument("--smoke", nargs="*", default=[], help="smoke-test JSONs")
    cli_options.add_json_option(
        parser,
        "--gates-json",
        "gates",
        "the quality gates by variant (config quality_gates), for verdicts",
        required=False,
        default=None,
    )
    parser.add_argument("--out-md", required=True)
    parser.add_argument(
        "--plot-dir",
        required=True,
        help="<model>.png (size vs latency) and <model>_quality.png (size vs KL, top-1) per model",
    )
    parser.add_argument("--out-fidelity-csv", default=None, help="fidelity figures, one row each")
    args = parser.parse_args(argv)
    inputs = load_inputs(args.benchmarks, args.fidelity, args.ops, args.smoke, args.gates)
    plots = write_summary(inputs, args.out_md, args.plot_dir, args.out_fidelity_csv)
    print(f"wrote {args.out_md} and {len(plots)} plot(s) in {args.plot_dir}")


if __name__ == "__main__":
    main()
