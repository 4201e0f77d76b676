"""Benchmark one model in this process (a .tflite variant, or the traced SavedModel in TensorFlow).

Two commands:

``python -m llm2tflite.bench --model M.tflite | --saved-model traced/ --variant V --out V.json
[--model-name NAME] [--prompt TEXT] [--runs N] [--threads T] [--export-info JSON]``
    Run one model: load it, call it once (the first call: warm-up, graph building), then time
    ``--runs`` calls on the same prompt. Run it as a fresh process per model: the load time and
    the peak RSS are then this model's (plus the TensorFlow import, the same for all). The TF
    baseline (``--saved-model``, variant ``tf``) runs the traced SavedModel's ``serving_default``
    signature, the same graph the .tflite files were converted from.

``python -m llm2tflite.bench table --inputs results/*/bench/*.json --out results/benchmarks.csv``
    One row per (model, variant), built with pandas.

Per-run JSON (``--out``)::

    model_name, variant, runtime ("tflite" | "tensorflow"), model_path, size_bytes
    (the .tflite file, or every file of the SavedModel directory), threads (null: the runtime's
    default), cpu_count, cpus_available, prompt, runs, load_s, first_call_s, run_s (each timed
    run), median_s, min_s, max_s, stdev_s (sample stdev; 0 for one run), output, deterministic
    (every call gave the same text), new_tokens, tokens_per_s (new_tokens / median_s),
    breakdown (where a generation's time goes, see ``time_breakdown``: tokenize_s,
    prefill_upper_bound_s, detokenize_s, decode_s, decode_per_token_s; null without max_length),
    rss_before_load_mb, rss_after_load_mb (psutil, MiB), peak_rss_mb (ru_maxrss of the process,
    MiB), max_length, prompt_token_limit (from the export info; null if unknown),
    tensorflow_version, tensorflow_text_version, tflite_schema_version (null for TF), python,
    machine

``benchmarks.csv`` columns, in this order (one row per model and variant; rows sorted by model,
then ``tf`` first, then variant name)::

    model, variant, runtime, size_mb, load_s, first_call_s, median_s, min_s, max_s, stdev_s,
    runs, new_tokens, tokens_per_s, peak_rss_mb, rss_after_load_mb, threads, max_length,
    tokenize_s, prefill_upper_bound_s, decode_per_token_s (from the record's breakdown; empty
    without one), speedup_vs_tf, size_vs_tf

``size_mb`` is 10^6 bytes; RSS columns are MiB (as in the conversion reports). ``speedup_vs_tf``
is the TF baseline's median over the row's median for the same model (1.0 on the ``tf`` row),
``size_vs_tf`` the row's size over the SavedModel's; both are empty when the model has no ``tf``
row. ``new_tokens`` is counted by the model's own ``tokenize`` signature: tokens of the output
minus tokens of the prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import llm2tflite  # noqa: F401
from llm2tflite import atomic

TF_VARIANT = "tf"
DEFAULT_PROMPT = "Estoy disfrutando de"
COLUMNS = [
    "model", "variant", "runtime", "size_mb", "load_s", "first_call_s", "median_s", "min_s",
    "max_s", "stdev_s", "runs", "new_tokens", "tokens_per_s", "peak_rss_mb",
    "rss_after_load_mb", "threads", "max_length", "tokenize_s", "prefill_upper_bound_s",
    "decode_per_token_s", "speedup_vs_tf", "size_vs_tf",
]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def path_size(path) -> int:
    """Bytes of a file, or of every file under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


class _TFLiteRunner:
    runtime = "tflite"

    def __init__(self, model_path, threads):
        from llm2tflite.runtime import TFLiteModel

        self.model = TFLiteModel(model_path, num_threads=threads)

    def generate(self, prompt: str) -> str:
        return self.model.generate(prompt)

    def count_tokens(self, text: str) -> int:
        return len(self.model.token_ids(text))

    def stage_calls(self, prompt: str, max_length: int):
        """Zero-argument calls of the tokenizer, the prefill proxy and the detokenizer."""
        return _stage_calls(self.model.token_ids, self.model.log_likelihoods, self.model.text,
                            prompt, max_length)


class _SavedModelRunner:
    runtime = "tensorflow"

    def __init__(self, saved_model_dir, threads):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the TF Text ops of the graph)

        from llm2tflite.trace import GENERATE_SIGNATURE, TOKENIZE_SIGNATURE

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        self._tf = tf
        self.loaded = tf.saved_model.load(str(saved_model_dir))
        self._generate = self.loaded.signatures[GENERATE_SIGNATURE]
        self._tokenize = self.loaded.signatures[TOKENIZE_SIGNATURE]

    def generate(self, prompt: str) -> str:
        output = self._generate(prompt=self._tf.constant([prompt]))["generated_text"]
        return output.numpy()[0].decode("utf-8", errors="replace")

    def count_tokens(self, text: str) -> int:
        # The signature returns the start token followed by the text's ids.
        ids = self._tokenize(prompt=self._tf.constant([text]))["token_ids"]
        return int(ids.shape[1]) - 1

    def stage_calls(self, prompt: str, max_length: int):
        from llm2tflite.trace import DETOKENIZE_SIGNATURE, SCORE_SIGNATURE

        tf = self._tf
        score = self.loaded.signatures[SCORE_SIGNATURE]
        detokenize = self.loaded.signatures[DETOKENIZE_SIGNATURE]
        return _stage_calls(
            lambda text: self._tokenize(prompt=tf.constant([text]))["token_ids"].numpy()[0],
            lambda ids: score(token_ids=tf.constant([list(ids)], tf.int32))["log_likelihoods"],
            lambda ids: detokenize(token_ids=tf.constant([list(ids)], tf.int32))["text"],
            prompt, max_length)


def _stage_calls(tokenize, score, detokenize, prompt: str, max_length: int):
    # The generation graph runs: the tokenizer on the prompt; a "prefill" forward pass over the
    # prompt's tokens that seeds the key/value cache (llm2tflite.trace); one cached decoding
    # step per new token; the detokenizer. The prefill is timed through the `score` signature on
    # the prompt's ids (start token included): the same forward pass plus a vocabulary
    # projection and log-softmax at every position, so it is an upper bound of the prefill.
    ids = [int(i) for i in tokenize(prompt)][:max_length]
    return {"tokenize": lambda: tokenize(prompt),
            "prefill": lambda: score(ids),
            "detokenize": lambda: detokenize(ids)}


def time_breakdown(runner, prompt: str, max_length: int | None, median_s: float,
                   new_tokens: int, repeats: int = 3) -> dict | None:
    """Where one generation's time goes: tokenizer, prefill, per-token decode, detokenizer.

    Each stage is the median of ``repeats`` timed calls after a warm-up; the decode time is the
    rest of the generation's median, divided by the new tokens.
    """
    if not max_length or new_tokens < 1:
        return None
    stages = {}
    for name, call in runner.stage_calls(prompt, max_length).items():
        call()
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            timings.append(time.perf_counter() - started)
        stages[name] = statistics.median(timings)
    decode_s = max(median_s - sum(stages.values()), 0.0)
    return {
        "tokenize_s": round(stages["tokenize"], 6),
        "prefill_upper_bound_s": round(stages["prefill"], 6),
        "detokenize_s": round(stages["detokenize"], 6),
        "decode_s": round(decode_s, 6),
        "decode_per_token_s": round(decode_s / new_tokens, 6),
    }


def _versions() -> dict:
    import tensorflow as tf

    try:
        import tensorflow_text

        tf_text_version = tensorflow_text.__version__
    except (ImportError, AttributeError):
        tf_text_version = None
    return {"tensorflow_version": tf.__version__, "tensorflow_text_version": tf_text_version}


def _tflite_schema_version(model_path) -> int | None:
    from llm2tflite.audit import _root_model

    return int(_root_model(Path(model_path).read_bytes()).Version())


def _find_export_info(model_path, saved_model: bool, export_info: str | None) -> dict:
    from llm2tflite.trace import EXPORT_INFO_FILE

    if export_info:
        candidate = Path(export_info)
    elif saved_model:
        candidate = Path(model_path) / EXPORT_INFO_FILE
    else:
        # The workflow's layout: results/<model>/tflite/V.tflite next to results/<model>/traced/.
        candidate = Path(model_path).resolve().parent.parent / "traced" / EXPORT_INFO_FILE
    if candidate.is_file():
        return json.loads(candidate.read_text(encoding="utf-8"))
    if export_info:
        raise FileNotFoundError(f"export info {export_info} not found")
    return {}


def _default_model_name(model_path, saved_model: bool) -> str:
    # results/<model>/traced or results/<model>/tflite/V.tflite
    path = Path(model_path).resolve()
    return path.parent.name if saved_model else path.parent.parent.name


def benchmark(model_path, variant: str, prompt: str = DEFAULT_PROMPT, runs: int = 5,
              threads: int | None = None, saved_model: bool = False,
              model_name: str | None = None, export_info: str | None = None) -> dict:
    """Load and time one model in this process; return the per-run record (see the docstring)."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    info = _find_export_info(model_path, saved_model, export_info)
    # Flush pending writes first: the workflow benchmarks right after writing hundreds of MB of
    # models, and their writeback would otherwise overlap the measurement.
    os.sync()
    versions = _versions()  # imports TensorFlow before the baseline RSS is read
    rss_before = _rss_mb()
    started = time.perf_counter()
    runner = (_SavedModelRunner if saved_model else _TFLiteRunner)(model_path, threads)
    load_s = time.perf_counter() - started
    rss_after_load = _rss_mb()

    started = time.perf_counter()
    first_output = runner.generate(prompt)
    first_call_s = time.perf_counter() - started
    run_s, outputs = [], []
    for _ in range(runs):
        started = time.perf_counter()
        outputs.append(runner.generate(prompt))
        run_s.append(time.perf_counter() - started)

    new_tokens = runner.count_tokens(first_output) - runner.count_tokens(prompt)
    median_s = statistics.median(run_s)
    breakdown = time_breakdown(runner, prompt, info.get("max_length"), median_s, new_tokens)
    return {
        "model_name": model_name or _default_model_name(model_path, saved_model),
        "variant": variant,
        "runtime": runner.runtime,
        "model_path": str(model_path),
        "size_bytes": path_size(model_path),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "prompt": prompt,
        "runs": runs,
        "load_s": round(load_s, 6),
        "first_call_s": round(first_call_s, 6),
        "run_s": [round(t, 6) for t in run_s],
        "median_s": round(median_s, 6),
        "min_s": round(min(run_s), 6),
        "max_s": round(max(run_s), 6),
        "stdev_s": round(statistics.stdev(run_s), 6) if len(run_s) > 1 else 0.0,
        "output": first_output,
        "deterministic": all(o == first_output for o in outputs),
        "new_tokens": new_tokens,
        "tokens_per_s": round(new_tokens / median_s, 4) if median_s > 0 else None,
        "breakdown": breakdown,
        "rss_before_load_mb": round(rss_before, 1),
        "rss_after_load_mb": round(rss_after_load, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "max_length": info.get("max_length"),
        "prompt_token_limit": info.get("prompt_token_limit"),
        **versions,
        "tflite_schema_version": None if saved_model else _tflite_schema_version(model_path),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _variant_order(variant: str):
    return (variant != TF_VARIANT, variant)


def build_table(records: list[dict]):
    """The benchmarks table (pandas DataFrame, columns ``COLUMNS``) from per-run records."""
    import pandas as pd

    rows, seen = [], {}
    for record in records:
        key = (record["model_name"], record["variant"])
        if key in seen:
            raise ValueError(f"two benchmark results for model {key[0]!r} variant {key[1]!r}: "
                             f"{seen[key]} and {record.get('_source')}")
        seen[key] = record.get("_source")
        rows.append({
            "model": record["model_name"],
            "variant": record["variant"],
            "runtime": record.get("runtime"),
            "size_mb": record["size_bytes"] / 1e6,
            "load_s": record["load_s"],
            "first_call_s": record["first_call_s"],
            "median_s": record["median_s"],
            "min_s": record["min_s"],
            "max_s": record["max_s"],
            "stdev_s": record["stdev_s"],
            "runs": record["runs"],
            "new_tokens": record["new_tokens"],
            "tokens_per_s": record["tokens_per_s"],
            "peak_rss_mb": record["peak_rss_mb"],
            "rss_after_load_mb": record.get("rss_after_load_mb"),
            "threads": record.get("threads"),
            "max_length": record.get("max_length"),
            **{key: (record.get("breakdown") or {}).get(key)
               for key in ("tokenize_s", "prefill_upper_bound_s", "decode_per_token_s")},
        })
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    tf_rows = table[table["variant"] == TF_VARIANT].set_index("model")
    tf_median = table["model"].map(tf_rows["median_s"])
    tf_size = table["model"].map(tf_rows["size_mb"])
    table["speedup_vs_tf"] = (tf_median / table["median_s"]).round(3)
    table["size_vs_tf"] = (table["size_mb"] / tf_size).round(3)
    table["size_mb"] = table["size_mb"].round(3)
    table["threads"] = table["threads"].astype("Int64")
    table["max_length"] = table["max_length"].astype("Int64")
    order = sorted(range(len(table)), key=lambda i: (
        table.at[i, "model"], *_variant_order(table.at[i, "variant"])))
    return table.iloc[order].reset_index(drop=True)[COLUMNS]


def read_records(paths) -> list[dict]:
    records = []
    for path in paths:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if not record.get("model_name"):
            # results/<model>/bench/<variant>.json
            record["model_name"] = Path(path).resolve().parent.parent.name
        record["_source"] = str(path)
        records.append(record)
    return records


def table_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m llm2tflite.bench table",
        description="Collect benchmark JSONs into one CSV (one row per model and variant).")
    parser.add_argument("--inputs", nargs="+", required=True, help="per-run benchmark JSONs")
    parser.add_argument("--out", required=True, help="CSV to write")
    args = parser.parse_args(argv)
    table = build_table(read_records(args.inputs))
    atomic.write_text(args.out, table.to_csv(index=False))
    print(table.to_string(index=False))


def run_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m llm2tflite.bench", description=__doc__.splitlines()[0],
        epilog="Subcommand: 'python -m llm2tflite.bench table --inputs ... --out ...'.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=".tflite file")
    source.add_argument("--saved-model", help="traced SavedModel directory (the TF baseline)")
    parser.add_argument("--variant", required=True, help=f"variant name ({TF_VARIANT!r} for TF)")
    parser.add_argument("--model-name", default=None,
                        help="the workflow's model name (default: from the path "
                             "results/<model>/tflite/V.tflite or results/<model>/traced)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--runs", type=int, default=5, help="timed runs after the first call")
    parser.add_argument("--threads", type=int, default=None,
                        help="interpreter threads (TF: intra/inter-op threads); default: runtime's")
    parser.add_argument("--export-info", default=None,
                        help="the traced model's llm2tflite_export.json (for max_length; default:"
                             " inside --saved-model, or ../traced/ next to the .tflite's folder)")
    parser.add_argument("--out", required=True, help="benchmark JSON to write")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    saved_model = args.saved_model is not None
    record = benchmark(args.saved_model if saved_model else args.model, args.variant,
                       prompt=args.prompt, runs=args.runs, threads=args.threads,
                       saved_model=saved_model, model_name=args.model_name,
                       export_info=args.export_info)
    atomic.write_json(args.out, record)
    print(f"[{record['model_name']}/{record['variant']}] load {record['load_s']} s, first call "
          f"{record['first_call_s']} s, median {record['median_s']} s over {record['runs']} runs, "
          f"{record['new_tokens']} new tokens ({record['tokens_per_s']} tokens/s), "
          f"peak RSS {record['peak_rss_mb']} MiB: {record['output']!r}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "table":
        return table_main(argv[1:])
    return run_main(argv)


if __name__ == "__main__":
    main()
