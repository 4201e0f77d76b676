"""Benchmark one model's TF baseline and every variant of every route, interleaved, in one job.

Why interleaved: on a shared machine a median moves by tens of percent between runs, so figures
compared with each other are measured in the same job, alternately: round r runs every model once
(A B C, then B C A, ...: the order rotates so no model always follows the same one), and the
speed-up of a variant is computed per round (baseline time / variant time in that round), then
summarized by its median and min-max over the rounds.

Why one process per model: each model (the TF baseline and each variant) is loaded once in its own
persistent worker process, which then serves the coordinator's timed requests over a pipe; so the
load time and the peak resident memory are that model's alone. The peak is the worker's
``VmHWM`` (the high-water mark of its resident set: Python, the route's runtime libraries and the
model, over load, first call and timed runs), read after the timed runs and before anything else.

What is measured, per model: size on disk, load (runtime libraries already imported), first call
(warm-up: kernel preparation), ``runs`` timed generations of the benchmark prompt, the tokens the
model generated (its own ids, ``llm2tflite.core.generation``), tokens/s (new tokens / median).
Routes that run the generation loop in Python (LiteRT: prefill and decode signatures) also time
each step: first-token latency, prefill, and every decode step (median and spread over all steps
of all timed runs). The codelab route's loop runs inside one signature call, so those columns are
empty for it (shown as "-"): they cannot be measured there, and are not estimated.

A speed-up compares equal work only if the outputs are equally long: ``equal_work`` is false (and
the summary flags the speed-up) when a variant generated a different number of tokens than the
baseline.

Commands::

    python -m llm2tflite.evaluate.bench run --model-name M --baseline results/M/traced
        --entry tflite/fp32=results/M/tflite/fp32.tflite --entry tflite/int8=... [--entry
        litert/int8=results/M/litert/int8.tflite] [--prompt P] [--runs N] [--threads T]
        --out results/M/bench.json
    python -m llm2tflite.evaluate.bench table --inputs results/*/bench.json --out benchmarks.csv

``bench.json``: model_name, prompt, runs, threads, order ("rotating interleaved rounds"), machine
(cpu_model, physical_cores, logical_cpus, cpus_available, threads, python, platform), entries:
one per model (the baseline first) with route, variant, model_path, size_bytes, pid (of its
worker), import_s, load_s, first_call_s, run_s (per round), median_s, min_s, max_s, stdev_s,
prompt_tokens, new_tokens, output, token_ids, deterministic, tokens_per_s, rss_before_load_mb,
rss_after_load_mb, peak_rss_mb, versions, steps (null, or first_token_s, prefill_s,
decode_step_ms: {median, p10, p90, min, max, count}, decode_tokens_per_s), speedup_vs_tf
({per_round, median, min, max}; 1 for the baseline), equal_work; a LiteRT entry whose variant
the codelab route has too, speedup_vs_codelab (the same, over that file's rounds).

LiteRT entries also get (the user's questions: how long until the first token, how far from
the hardware's floor), measured after the timed runs and the peak memory, one entry at a time:

- ``load``: ``load_runs`` repetitions, each a *cold* load (``LiteRTModel`` constructor with a
  fresh, empty weight cache directory: the flatbuffer verified, the embedded files and the
  tokenizer read, every weight packed by XNNPACK and the packed weights written to the cache
  file) and then a *warm* load (the same directory: the cache file the cold load wrote is mapped
  back, nothing packed), each followed by the first token of the benchmark prompt on the fresh
  model (its first call: kernel preparation included). Keys: ``runs``, ``cold_s``, ``warm_s``,
  ``cold_first_token_s``, ``warm_first_token_s``, ``cold_to_first_token_s``,
  ``warm_to_first_token_s`` (load + first token, per repetition), ``tokenizer_s`` (the
  tokenizer's part of a load), each ``{median, min}``; ``cache_before_cold``,
  ``cache_after_cold``, ``cache_before_warm`` (whether the weight cache file existed, per
  repetition: false, true, true), ``includes`` (what a load includes, in words). Imports are not
  included (the worker imported the runtime first: ``import_s``), nor LiteRT's environment, made
  once per process by its first load: ``first_in_process`` is the worker's own first load
  (``load_s``, its ``breakdown``: ``LiteRTModel.load_breakdown``, ``environment_s`` included;
  ``weight_cache_found``: whether its weight cache was there before it).
- ``first_token``: ``short`` (the benchmark prompt) and ``long`` (the benchmark prompt repeated,
  cut to the longest prefill length plus the shortest plus one token, at most what the cache
  takes), each ``{prompt_tokens, prefill_steps (the chunk lengths the runtime used), calls (the
  signatures run up to the first token), median_s, min_s}`` over ``load_runs`` repetitions on
  the worker's loaded model (steady state: prefill chunks and the first decode step).
- ``floor``: ``file_bytes``, ``weight_bytes`` (the constant buffers of the ``decode``
  signature's subgraph, ``llm2tflite.core.flatbuffer.constant_bytes``: what a decode step must
  read at least once), ``read_bytes_per_s`` (the job's ``memory_bandwidth``), the floors
  ``decode_ms`` (weight bytes / bandwidth), ``load_s`` (file bytes / bandwidth),
  ``first_token_short_s`` and ``first_token_long_s`` (the weight bytes of every signature call up
  to the first token / bandwidth), and each figure's ratio to its floor: ``decode_vs_floor``,
  ``cold_load_vs_floor``, ``warm_load_vs_floor``, ``first_token_short_vs_floor``,
  ``first_token_long_vs_floor`` (1 = memory-bound; 5 = five times the floor).

``memory_bandwidth`` (the record's): read bandwidth measured in the job before any model loads,
with the benchmark's thread count: ``threads`` Python threads each sum (``numpy.add.reduce``,
which releases the GIL) their slice of one float32 array of ``bytes`` (at least 256 MiB and 8x the
last-level cache, so it streams from memory), ``repetitions`` times; ``bytes_per_s`` is the best
repetition (the least disturbed on a shared machine), ``per_repetition`` all of them.

``benchmarks.csv``: one row per model, route and variant, columns ``COLUMNS`` (sizes in 10^6
bytes, memory in MiB); rows in ``row_order`` (the one place the display order is defined).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import llm2tflite  # noqa: F401
from llm2tflite import CODELAB_PROMPT
from llm2tflite.core import atomic
from llm2tflite.core.memory import peak_rss_mb, rss_mb

BASELINE_ROUTE = "tensorflow"
TF_VARIANT = "tf"
DEFAULT_PROMPT = CODELAB_PROMPT
# Display order of rows everywhere (benchmarks.csv, the summary's tables, the plot's legend).
CODELAB_ROUTE, LITERT_ROUTE = "tflite", "litert"
ROUTE_ORDER = (BASELINE_ROUTE, CODELAB_ROUTE, LITERT_ROUTE)
VARIANT_ORDER = (
    TF_VARIANT,
    "fp32",
    "fp16",
    "int8",
    "int4",
    "int4_b32",
    "int4_b64",
    "int4_b128",
    "int4_c",
)
COLUMNS = [
    "model",
    "route",
    "variant",
    "size_mb",
    "load_s",
    "first_call_s",
    "median_s",
    "min_s",
    "max_s",
    "stdev_s",
    "runs",
    "prompt_tokens",
    "new_tokens",
    "equal_work",
    "tokens_per_s",
    "speedup_vs_tf",
    "speedup_min",
    "speedup_max",
    "speedup_vs_codelab",
    "speedup_vs_codelab_min",
    "speedup_vs_codelab_max",
    "first_token_s",
    "prefill_s",
    "decode_ms_per_token",
    "decode_ms_p10",
    "decode_ms_p90",
    "peak_rss_mb",
    "rss_after_load_mb",
    "cold_load_s",
    "warm_load_s",
    "tokenizer_load_s",
    "warm_load_first_token_s",
    "cold_load_first_token_s",
    "environment_s",
    "first_token_short_s",
    "first_token_long_s",
    "long_prompt_tokens",
    "read_gb_per_s",
    "floor_decode_ms",
    "decode_vs_floor",
    "floor_load_s",
    "cold_load_vs_floor",
    "warm_load_vs_floor",
    "first_token_short_vs_floor",
    "first_token_long_vs_floor",
    "threads",
    "cpu_model",
    "physical_cores",
    "logical_cpus",
    "size_vs_tf",
]


def row_order(route: str, variant: str) -> tuple:
    """Sort key of a (route, variant) row: the baseline, then routes and variants as listed."""

    def position(order, value):
        return (order.index(value), "") if value in order else (len(order), str(value))

    return (*position(ROUTE_ORDER, route), *position(VARIANT_ORDER, variant))


# What TensorFlow loads of a SavedModel directory. The trace also writes its export info there
# (whose length follows its measured trace time) and Snakemake its marker: not model bytes.
SAVED_MODEL_PARTS = ("saved_model.pb", "fingerprint.pb", "variables", "assets")


def path_size(path) -> int:
    """Bytes of a file, or of a SavedModel directory's own files (``SAVED_MODEL_PARTS``)."""
    path = Path(path)
    if path.is_dir():
        total = 0
        for part in (path / name for name in SAVED_MODEL_PARTS):
            if part.is_file():
                total += part.stat().st_size
            elif part.is_dir():
                total += sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
        return total
    return path.stat().st_size


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what the platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(threads: int | None) -> dict:
    import psutil

    return {
        "cpu_model": cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _spread(values) -> dict:
    values = sorted(values)
    if not values:
        return None

    def quantile(q):
        # Linear interpolation between closest ranks (numpy's default).
        position = q * (len(values) - 1)
        low = int(position)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (position - low)

    return {
        "median": statistics.median(values),
        "p10": quantile(0.1),
        "p90": quantile(0.9),
        "min": values[0],
        "max": values[-1],
        "count": len(values),
    }


def _last_level_cache_bytes() -> int:
    """The largest CPU cache of cpu0 (sysfs), or 64 MiB when it cannot be read."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:].upper(), 1)
        digits = text.rstrip("KMGkmg")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes, default=64 * 1024**2)


def read_bandwidth(threads: int | None, repetitions: int = 5, size_bytes: int | None = None):
    """Memory read bandwidth (bytes/s) with ``threads`` threads: see ``memory_bandwidth`` in the
    module docstring (numpy sums of one array far larger than the last-level cache; best of
    ``repetitions``)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    threads = threads or len(os.sched_getaffinity(0))
    if size_bytes is None:
        size_bytes = max(256 * 1024**2, 8 * _last_level_cache_bytes())
    array = np.ones(size_bytes // 4, np.float32)  # written: every page is resident
    slices = np.array_split(array, threads)
    seconds = []
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repetitions):
            started = time.perf_counter()
            list(pool.map(np.add.reduce, slices))
            seconds.append(time.perf_counter() - started)
    del slices, array
    return {
        "method": "numpy.add.reduce over a float32 array, one slice per thread, best repetition",
        "bytes": size_bytes,
        "threads": threads,
        "repetitions": repetitions,
        "per_repetition": [round(size_bytes / s, 0) for s in seconds],
        "bytes_per_s": round(size_bytes / min(seconds), 0),
    }


# ---- the worker: one model, loaded once, serving timed requests -------------------------------


def _import_route_libraries(route: str) -> dict:
    """Import what the route runs on, so that the load time is the model's, not the imports'."""
    versions = {}
    if route in (CODELAB_ROUTE, BASELINE_ROUTE):
        import tensorflow as tf
        import tensorflow_text

        versions = {
            "tensorflow": tf.__version__,
            "tensorflow_text": getattr(tensorflow_text, "__version__", None),
        }
    else:
        import importlib.metadata

        try:
            import llm2tflite.litert.runtime  # noqa: F401
        except ModuleNotFoundError:
            pass  # open_model reports it
        try:
            versions = {"ai_edge_litert": importlib.metadata.version("ai-edge-litert")}
        except importlib.metadata.PackageNotFoundError:
            versions = {}
    return versions


def _serve(connection, model_path: str, threads: int | None) -> None:
    """Worker process: load the model, then answer requests until told to stop.

    The runtimes' native notes (TensorFlow's oneDNN and XLA lines, the interpreters' INFO lines)
    are dropped from the worker's stderr; everything else reaches the job's log when it stops.
    """
    from llm2tflite.core import tf_logging

    with tf_logging.native_notes_hidden():
        _answer_requests(connection, model_path, threads)


def _answer_requests(connection, model_path: str, threads: int | None) -> None:
    try:
        from llm2tflite.model_files import open_model, route_of

        started = time.perf_counter()
        versions = _import_route_libraries(route_of(model_path))
        import_s = time.perf_counter() - started
        rss_before = rss_mb()
        started = time.perf_counter()
        model = open_model(model_path, threads=threads)
        load_s = time.perf_counter() - started
        connection.send(
            {
                "ok": True,
                "route": model.route,
                "load_s": load_s,
                "pid": os.getpid(),
                "import_s": import_s,
                "versions": versions,
                "rss_before_load_mb": rss_before,
                "rss_after_load_mb": rss_mb(),
                "load_breakdown": getattr(model, "load_breakdown", None),
                "weight_cache_found": getattr(getattr(model, "weight_cache", None), "found", None),
            }
        )
    except BaseException:  # noqa: BLE001  (reported to the coordinator, which fails the job)
        connection.send({"ok": False, "error": traceback.format_exc()})
        return
    while True:
        request = connection.recv()
        try:
            if request["op"] == "generate":
                started = time.perf_counter()
                generation = model.generate(request["prompt"], timings=True)
                seconds = time.perf_counter() - started
                connection.send(
                    {"ok": True, "seconds": seconds, "generation": generation.to_json()}
                )
            elif request["op"] == "loads":
                # The worker's last request: its model is released first, so that the loads
                # measured never hold two models at once (the job's memory stays as budgeted).
                path, model = model.path, None
                import gc

                gc.collect()
                connection.send({"ok": True, **_load_figures(path, request, threads)})
            elif request["op"] == "first_token":
                connection.send({"ok": True, **_first_token_figures(model, request)})
            elif request["op"] == "memory":
                connection.send({"ok": True, "peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb()})
            elif request["op"] == "stop":
                connection.send({"ok": True})
                return
            else:
                raise ValueError(f"unknown request {request!r}")
        except BaseException:  # noqa: BLE001
            connection.send({"ok": False, "error": traceback.format_exc()})
            return


def _first_token_of(model, prompt) -> dict:
    """Generate one token of ``prompt``: its first-token seconds and the prefill chunks used."""
    limit = model.prompt_token_limit()
    prompt_tokens = min(len(model.token_ids(prompt, with_start=True)), limit)
    generation = model.generate(prompt, max_length=prompt_tokens + 1, timings=True)
    steps = generation.timings["prefill_steps"]
    calls = [
        model._prefill[t].name if t in model._prefill else "decode"  # noqa: SLF001
        for t in steps
    ]
    return {
        "seconds": generation.timings["first_token_s"],
        "prompt_tokens": generation.prompt_tokens,
        "prefill_steps": steps,
        "calls": [*calls, "decode"],
    }


def long_prompt(model, prompt: str) -> str:
    """The benchmark prompt repeated, cut to the longest prefill length plus the shortest plus
    one token (start token included; at most what the model keeps), so that its prefill takes
    the longest chunk and a shorter one."""
    lengths = model.prefill_lengths
    target = max(lengths) + (min(lengths) if len(lengths) > 1 else 1) + 1
    target = min(target, model.prompt_token_limit())
    text = prompt
    while len(model.token_ids(text, with_start=True)) < target + 8:
        text = f"{text} {prompt}"
    ids = model.token_ids(text)
    start = len(model.token_ids("", with_start=True))
    best = None
    # Detokenized ids can merge differently at the cut: take a cut that gives the target exactly.
    for cut in range(target - start, max(target - start - 8, 1), -1):
        candidate = model.tokenizer.decode(ids[:cut])
        count = len(model.token_ids(candidate, with_start=True))
        if count == target:
            return candidate
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (candidate, count)
    return best[0]


def _first_token_figures(model, request) -> dict:
    """First-token latency of the short and the long prompt, alternately, ``runs`` times."""
    prompts = {"short": request["prompt"], "long": long_prompt(model, request["prompt"])}
    figures = {}
    for _ in range(request["runs"]):
        for name, prompt in prompts.items():
            figures.setdefault(name, []).append(_first_token_of(model, prompt))
    result = {}
    for name, measured in figures.items():
        seconds = [m["seconds"] for m in measured]
        result[name] = {
            "prompt_tokens": measured[0]["prompt_tokens"],
            "prefill_steps": measured[0]["prefill_steps"],
            "calls": measured[0]["calls"],
            "median_s": round(statistics.median(seconds), 6),
            "min_s": round(min(seconds), 6),
        }
    return result


def _median_min(values) -> dict:
    return {"median": round(statistics.median(values), 6), "min": round(min(values), 6)}


def _load_figures(path, request, threads) -> dict:
    """Cold and warm loads of the worker's model file (see ``load`` in the module docstring)."""
    import gc
    import shutil
    import tempfile

    from llm2tflite.litert.runtime import LiteRTModel
    from llm2tflite.litert.weight_cache import weight_cache_for

    prompt = request["prompt"]
    figures = {
        key: []
        for key in (
            "cold_s",
            "warm_s",
            "cold_first_token_s",
            "warm_first_token_s",
            "tokenizer_s",
            "cache_before_cold",
            "cache_after_cold",
            "cache_before_warm",
        )
    }

    def load(directory, kind):
        figures[f"cache_before_{kind}"].append(weight_cache_for(path, directory).exists)
        started = time.perf_counter()
        loaded = LiteRTModel(path, threads=threads, weight_cache_dir=directory)
        figures[f"{kind}_s"].append(time.perf_counter() - started)
        figures["tokenizer_s"].append(loaded.load_breakdown["tokenizer_s"])
        figures[f"{kind}_first_token_s"].append(_first_token_of(loaded, prompt)["seconds"])
        return loaded

    for _ in range(request["runs"]):
        directory = tempfile.mkdtemp(prefix="llm2tflite-bench-weights-")
        try:
            loaded = load(directory, "cold")
            figures["cache_after_cold"].append(
                loaded.weight_cache is not None and loaded.weight_cache.path.is_file()
            )
            del loaded
            gc.collect()
            load(directory, "warm")  # released on return
            gc.collect()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    cold_total = [a + b for a, b in zip(figures["cold_s"], figures["cold_first_token_s"])]
    warm_total = [a + b for a, b in zip(figures["warm_s"], figures["warm_first_token_s"])]
    result = {"runs": request["runs"]}
    for key in ("cold_s", "warm_s", "cold_first_token_s", "warm_first_token_s", "tokenizer_s"):
        result[key] = _median_min(figures[key])
    result["cold_to_first_token_s"] = _median_min(cold_total)
    result["warm_to_first_token_s"] = _median_min(warm_total)
    for key in ("cache_before_cold", "cache_after_cold", "cache_before_warm"):
        result[key] = figures[key]
    result["includes"] = (
        "LiteRTModel constructor: flatbuffer verified, embedded files and tokenizer read, "
        "CompiledModel created (cold: weights packed and written to a fresh weight cache file; "
        "warm: that file mapped back), tensor buffers bound; runtime imports excluded"
    )
    return result


class Worker:
    """The coordinator's handle on one worker process."""

    def __init__(self, context, route: str, variant: str, model_path, threads):
        self.route, self.variant, self.model_path = route, variant, str(model_path)
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(child, self.model_path, threads),
            name=f"bench-{route}-{variant}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.ready = self.receive()
        if self.ready["route"] != route:
            raise ValueError(
                f"{self.model_path} is a {self.ready['route']!r} model, not "
                f"{route!r}: fix the --entry"
            )

    @property
    def label(self) -> str:
        return f"{self.route}/{self.variant}"

    def receive(self) -> dict:
        try:
            reply = self.connection.recv()
        except EOFError:
            self.process.join(5)
            raise RuntimeError(
                f"benchmark worker for {self.model_path} died (exit code {self.process.exitcode})"
            ) from None
        if not reply.get("ok"):
            raise RuntimeError(
                f"benchmark worker for {self.model_path} failed:\n{reply.get('error')}"
            )
        return reply

    def request(self, op: str, **fields) -> dict:
        self.connection.send({"op": op, **fields})
        return self.receive()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.request("stop")
            except (RuntimeError, OSError, EOFError):
                pass
            self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# ---- the coordinator ------------------------------------------------------------------------


def parse_entry(text: str) -> tuple[str, str, str]:
    """``ROUTE/VARIANT=PATH`` -> (route, variant, path)."""
    label, sep, path = text.partition("=")
    route, slash, variant = label.partition("/")
    if not (sep and slash and route and variant and path):
        raise ValueError(
            f"--entry {text!r}: expected ROUTE/VARIANT=PATH, e.g. "
            "tflite/int8=results/tiny/tflite/int8.tflite"
        )
    return route, variant, path


def _steps_summary(generations: list[dict]) -> dict | None:
    """Per-step figures over the timed runs of a route that measures them, else None."""
    timings = [g.get("timings") for g in generations]
    if not timings or any(not t for t in timings):
        return None
    steps_ms = [1000 * s for t in timings for s in t.get("decode_step_s") or []]
    decode = _spread(steps_ms)
    first_token = [t["first_token_s"] for t in timings if t.get("first_token_s") is not None]
    prefill = [t["prefill_s"] for t in timings if t.get("prefill_s") is not None]
    return {
        "first_token_s": statistics.median(first_token) if first_token else None,
        "prefill_s": statistics.median(prefill) if prefill else None,
        "decode_step_ms": decode,
        "decode_tokens_per_s": 1000 / decode["median"] if decode and decode["median"] else None,
    }


def _entry_record(worker: Worker, first: dict, timed: list[dict], memory: dict) -> dict:
    run_s = [t["seconds"] for t in timed]
    generations = [t["generation"] for t in timed]
    output = first["generation"]
    median_s = statistics.median(run_s)
    return {
        "route": worker.route,
        "variant": worker.variant,
        "model_path": worker.model_path,
        "size_bytes": path_size(worker.model_path),
        "pid": worker.ready["pid"],
        "import_s": round(worker.ready["import_s"], 6),
        "load_s": round(worker.ready["load_s"], 6),
        "first_call_s": round(first["seconds"], 6),
        "run_s": [round(t, 6) for t in run_s],
        "median_s": round(median_s, 6),
        "min_s": round(min(run_s), 6),
        "max_s": round(max(run_s), 6),
        "stdev_s": round(statistics.stdev(run_s), 6) if len(run_s) > 1 else 0.0,
        "prompt_tokens": output["prompt_tokens"],
        "new_tokens": output["new_tokens"],
        "output": output["text"],
        "token_ids": output["token_ids"],
        "deterministic": all(g["token_ids"] == output["token_ids"] for g in generations),
        "tokens_per_s": round(output["new_tokens"] / median_s, 4) if median_s > 0 else None,
        "rss_before_load_mb": round(worker.ready["rss_before_load_mb"], 1),
        "rss_after_load_mb": round(worker.ready["rss_after_load_mb"], 1),
        "peak_rss_mb": round(memory["peak_rss_mb"], 1),
        "versions": worker.ready["versions"],
        "steps": _steps_summary(generations),
    }


def floor_figures(entry: dict, bytes_per_s: float) -> dict:
    """The floors of a LiteRT entry's figures and each figure's ratio to its floor (see
    ``floor`` in the module docstring)."""
    from llm2tflite.core import flatbuffer

    constants = flatbuffer.constant_bytes(entry["model_path"])
    weights = constants["signatures"]

    def ratio(value, floor):
        return round(value / floor, 3) if value is not None and floor else None

    decode = ((entry.get("steps") or {}).get("decode_step_ms") or {}).get("median")
    load = entry.get("load") or {}
    first_token = entry.get("first_token") or {}
    floors = {
        "decode_ms": 1000 * weights.get("decode", 0) / bytes_per_s,
        "load_s": constants["file_bytes"] / bytes_per_s,
    }
    for name in ("short", "long"):
        calls = (first_token.get(name) or {}).get("calls") or []
        floors[f"first_token_{name}_s"] = sum(weights.get(c, 0) for c in calls) / bytes_per_s
    return {
        "file_bytes": constants["file_bytes"],
        "weight_bytes": weights.get("decode"),
        "constant_bytes": constants["constant_bytes"],
        "read_bytes_per_s": bytes_per_s,
        **floors,
        "decode_vs_floor": ratio(decode, floors["decode_ms"]),
        "cold_load_vs_floor": ratio((load.get("cold_s") or {}).get("median"), floors["load_s"]),
        "warm_load_vs_floor": ratio((load.get("warm_s") or {}).get("median"), floors["load_s"]),
        **{
            f"first_token_{name}_vs_floor": ratio(
                (first_token.get(name) or {}).get("median_s"), floors[f"first_token_{name}_s"]
            )
            for name in ("short", "long")
        },
    }


def _per_round_speedup(reference: dict, entry: dict) -> dict:
    """``reference``'s time over ``entry``'s, round by round (median, min-max)."""
    ratios = [r / v for r, v in zip(reference["run_s"], entry["run_s"]) if v > 0]
    return {
        "per_round": [round(r, 4) for r in ratios],
        "median": round(statistics.median(ratios), 4),
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
    }


def _add_comparisons(entries: list[dict]) -> None:
    """Speed-up over the baseline per round (median, min-max), the equal-work flag, and each
    LiteRT entry's speed-up over the codelab route's file of the same variant, per round."""
    baseline = entries[0]
    codelab = {e["variant"]: e for e in entries if e["route"] == CODELAB_ROUTE}
    for entry in entries:
        entry["speedup_vs_tf"] = _per_round_speedup(baseline, entry)
        entry["equal_work"] = entry["new_tokens"] == baseline["new_tokens"]
        same_variant = codelab.get(entry["variant"])
        if entry["route"] == LITERT_ROUTE and same_variant is not None:
            entry["speedup_vs_codelab"] = _per_round_speedup(same_variant, entry)


def benchmark_model(
    model_name: str,
    baseline,
    entries,
    prompt: str = DEFAULT_PROMPT,
    runs: int = 5,
    threads: int | None = None,
    log=print,
    load_runs: int = 3,
) -> dict:
    """Time the baseline (a traced SavedModel) and every (route, variant, path), interleaved;
    then the LiteRT entries' loads and first tokens (``load_runs`` repetitions each)."""
    if runs < 1 or load_runs < 1:
        raise ValueError("runs and load_runs must be at least 1")
    # Flush pending writes first: the workflow benchmarks right after writing hundreds of MB of
    # models, and their writeback would otherwise overlap the measurement.
    os.sync()
    machine = machine_info(threads)
    log(
        f"{model_name}: CPU {machine['cpu_model']}, {machine['physical_cores']} cores, "
        f"{machine['logical_cpus']} logical CPUs ({machine['cpus_available']} available), "
        f"threads {threads or 'runtime default'}"
    )
    from llm2tflite.model_files import route_of

    models = [(BASELINE_ROUTE, TF_VARIANT, str(baseline)), *entries]
    for route, variant, path in models:
        if route_of(path) != route:
            raise ValueError(
                f"{path} is a {route_of(path)!r} model, not {route!r}: fix the "
                f"entry {route}/{variant}"
            )
    # Before any model is loaded: nothing else of the job runs.
    bandwidth = read_bandwidth(threads)
    log(
        f"  memory read bandwidth {bandwidth['bytes_per_s'] / 1e9:.2f} GB/s "
        f"({bandwidth['threads']} threads, best of {bandwidth['repetitions']})"
    )
    context = multiprocessing.get_context("spawn")
    workers: list[Worker] = []
    try:
        # Loaded one after another: a load never competes with another for CPU or disk.
        for route, variant, path in models:
            workers.append(Worker(context, route, variant, path, threads))
            log(f"  loaded {workers[-1].label} in {workers[-1].ready['load_s']:.3f} s")
        first = {}
        for worker in workers:
            first[worker.label] = worker.request("generate", prompt=prompt)
        timed = {worker.label: [] for worker in workers}
        for round_index in range(runs):
            shift = round_index % len(workers)
            for worker in workers[shift:] + workers[:shift]:
                timed[worker.label].append(worker.request("generate", prompt=prompt))
        # Peak memory right after the timed runs, before any other call.
        memory = {worker.label: worker.request("memory") for worker in workers}
        extra = {}
        for worker in workers:
            if worker.route == LITERT_ROUTE:
                first_token = worker.request("first_token", prompt=prompt, runs=load_runs)
                loads = worker.request("loads", prompt=prompt, runs=load_runs)
                loads["first_in_process"] = {
                    "load_s": round(worker.ready["load_s"], 6),
                    "breakdown": {
                        k: round(v, 6) for k, v in (worker.ready["load_breakdown"] or {}).items()
                    },
                    "weight_cache_found": worker.ready["weight_cache_found"],
                }
                extra[worker.label] = {
                    "load": {k: v for k, v in loads.items() if k != "ok"},
                    "first_token": {k: v for k, v in first_token.items() if k != "ok"},
                }
                log(
                    f"  {worker.label}: cold load {loads['cold_s']['median']:.3f} s, warm "
                    f"{loads['warm_s']['median']:.3f} s"
                )
    finally:
        for worker in workers:
            worker.stop()
    records = [_entry_record(w, first[w.label], timed[w.label], memory[w.label]) for w in workers]
    for record in records:
        figures = extra.get(f"{record['route']}/{record['variant']}")
        if figures:
            record.update(figures)
            record["floor"] = floor_figures(record, bandwidth["bytes_per_s"])
    _add_comparisons(records)
    return {
        "model_name": model_name,
        "prompt": prompt,
        "runs": runs,
        "threads": threads,
        "order": "rotating interleaved rounds (A B C, B C A, C A B, ...)",
        "machine": machine,
        "load_runs": load_runs,
        "memory_bandwidth": bandwidth,
        "entries": records,
    }


# ---- the table ------------------------------------------------------------------------------


def table_rows(record: dict) -> list[dict]:
    """One row per entry of a bench.json record (see ``COLUMNS``)."""
    entries = record["entries"]
    baseline = next((e for e in entries if e["route"] == BASELINE_ROUTE), None)
    machine = record.get("machine") or {}
    rows = []
    for entry in entries:
        steps = entry.get("steps") or {}
        decode = steps.get("decode_step_ms") or {}
        speedup = entry.get("speedup_vs_tf") or {}
        over_codelab = entry.get("speedup_vs_codelab") or {}
        rows.append(
            {
                "model": record["model_name"],
                "route": entry["route"],
                "variant": entry["variant"],
                "size_mb": round(entry["size_bytes"] / 1e6, 3),
                "load_s": entry["load_s"],
                "first_call_s": entry["first_call_s"],
                "median_s": entry["median_s"],
                "min_s": entry["min_s"],
                "max_s": entry["max_s"],
                "stdev_s": entry["stdev_s"],
                "runs": len(entry["run_s"]),
                "prompt_tokens": entry["prompt_tokens"],
                "new_tokens": entry["new_tokens"],
                "equal_work": entry.get("equal_work"),
                "tokens_per_s": entry["tokens_per_s"],
                "speedup_vs_tf": speedup.get("median"),
                "speedup_min": speedup.get("min"),
                "speedup_max": speedup.get("max"),
                "speedup_vs_codelab": over_codelab.get("median"),
                "speedup_vs_codelab_min": over_codelab.get("min"),
                "speedup_vs_codelab_max": over_codelab.get("max"),
                "first_token_s": steps.get("first_token_s"),
                "prefill_s": steps.get("prefill_s"),
                "decode_ms_per_token": decode.get("median"),
                "decode_ms_p10": decode.get("p10"),
                "decode_ms_p90": decode.get("p90"),
                "peak_rss_mb": entry["peak_rss_mb"],
                "rss_after_load_mb": entry["rss_after_load_mb"],
                **_load_and_floor_columns(entry, record),
                "threads": record.get("threads"),
                "cpu_model": machine.get("cpu_model"),
                "physical_cores": machine.get("physical_cores"),
                "logical_cpus": machine.get("logical_cpus"),
                "size_vs_tf": round(entry["size_bytes"] / baseline["size_bytes"], 3)
                if baseline
                else None,
            }
        )
    return rows


def _load_and_floor_columns(entry: dict, record: dict) -> dict:
    """The LiteRT entries' load, first-token and floor columns (None where not measured)."""
    load = entry.get("load") or {}
    first_token = entry.get("first_token") or {}
    floor = entry.get("floor") or {}
    bandwidth = (record.get("memory_bandwidth") or {}).get("bytes_per_s")

    def median(figure):
        return (figure or {}).get("median")

    return {
        "cold_load_s": median(load.get("cold_s")),
        "warm_load_s": median(load.get("warm_s")),
        "tokenizer_load_s": median(load.get("tokenizer_s")),
        "warm_load_first_token_s": median(load.get("warm_to_first_token_s")),
        "cold_load_first_token_s": median(load.get("cold_to_first_token_s")),
        "environment_s": ((load.get("first_in_process") or {}).get("breakdown") or {}).get(
            "environment_s"
        ),
        "first_token_short_s": (first_token.get("short") or {}).get("median_s"),
        "first_token_long_s": (first_token.get("long") or {}).get("median_s"),
        "long_prompt_tokens": (first_token.get("long") or {}).get("prompt_tokens"),
        "read_gb_per_s": round(bandwidth / 1e9, 3) if bandwidth else None,
        "floor_decode_ms": floor.get("decode_ms"),
        "decode_vs_floor": floor.get("decode_vs_floor"),
        "floor_load_s": floor.get("load_s"),
        "cold_load_vs_floor": floor.get("cold_load_vs_floor"),
        "warm_load_vs_floor": floor.get("warm_load_vs_floor"),
        "first_token_short_vs_floor": floor.get("first_token_short_vs_floor"),
        "first_token_long_vs_floor": floor.get("first_token_long_vs_floor"),
    }


def build_table(records: list[dict]):
    """The benchmarks table (pandas DataFrame, columns ``COLUMNS``) from bench.json records."""
    import pandas as pd

    rows, seen = [], {}
    for record in records:
        for row in table_rows(record):
            key = (row["model"], row["route"], row["variant"])
            if key in seen:
                raise ValueError(
                    f"two benchmark results for {'/'.join(key)}: {seen[key]} and "
                    f"{record.get('_source')}"
                )
            seen[key] = record.get("_source")
            rows.append(row)
    rows.sort(key=lambda r: (str(r["model"]), *row_order(r["route"], r["variant"])))
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in (
        "threads",
        "physical_cores",
        "logical_cpus",
        "runs",
        "prompt_tokens",
        "new_tokens",
        "long_prompt_tokens",
    ):
        table[column] = table[column].astype("Int64")
    return table


def read_records(paths) -> list[dict]:
    records = []
    for path in paths:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if not record.get("model_name"):
            # results/<model>/bench.json
            record["model_name"] = Path(path).resolve().parent.name
        record["_source"] = str(path)
        records.append(record)
    return records


def table_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m llm2tflite.evaluate.bench table",
        description="Collect bench.json files into one CSV (one row per model, route, variant).",
    )
    parser.add_argument("--inputs", nargs="+", required=True, help="bench.json files")
    parser.add_argument("--out", required=True, help="CSV to write")
    args = parser.parse_args(argv)
    table = build_table(read_records(args.inputs))
    atomic.write_text(args.out, table.to_csv(index=False))
    print(table.to_string(index=False))


def format_record(record: dict) -> str:
    """The record as people read it: machine line, then one line per model."""
    machine = record["machine"]
    lines = [
        f"{record['model_name']}: {record['runs']} interleaved rounds, prompt "
        f"{record['prompt']!r}; CPU {machine['cpu_model']}, {machine.get('physical_cores')} "
        f"cores, {machine['logical_cpus']} logical CPUs, threads "
        f"{record['threads'] or 'runtime default'}"
    ]
    for e in record["entries"]:
        speedup = e["speedup_vs_tf"]
        flag = "" if e["equal_work"] else "  (UNEQUAL WORK: output length differs from tf)"
        steps = e.get("steps")
        step_text = ""
        if steps and steps.get("decode_step_ms"):
            step_text = (
                f", decode {steps['decode_step_ms']['median']:.2f} ms/token "
                f"(p10-p90 {steps['decode_step_ms']['p10']:.2f}-"
                f"{steps['decode_step_ms']['p90']:.2f})"
            )
        load, floor = e.get("load"), e.get("floor")
        if load and floor:
            first_token = e["first_token"]
            step_text += (
                f", cold load {load['cold_s']['median']:.3f} s, warm {load['warm_s']['median']:.3f}"
                f" s (+ first token {load['warm_to_first_token_s']['median']:.3f} s), first token"
                f" short {first_token['short']['median_s'] * 1e3:.1f} ms, long "
                f"{first_token['long']['median_s'] * 1e3:.1f} ms; vs floor: decode "
                f"{floor['decode_vs_floor']}, cold load {floor['cold_load_vs_floor']}, warm load "
                f"{floor['warm_load_vs_floor']}"
            )
        over_codelab = e.get("speedup_vs_codelab")
        if over_codelab:
            flag = (
                f", speed-up vs tflite/{e['variant']} {over_codelab['median']:.2f} (per round "
                f"{over_codelab['min']:.2f}-{over_codelab['max']:.2f})" + flag
            )
        lines.append(
            f"  {e['route']}/{e['variant']}: load {e['load_s']:.3f} s, first call "
            f"{e['first_call_s']:.3f} s, median {e['median_s']:.4f} s (min {e['min_s']:.4f}, "
            f"max {e['max_s']:.4f}), {e['new_tokens']} new tokens, {e['tokens_per_s']} tokens/s"
            f"{step_text}, peak RSS {e['peak_rss_mb']:.0f} MiB, speed-up vs tf "
            f"{speedup['median']:.2f} (per round {speedup['min']:.2f}-{speedup['max']:.2f})"
            f"{flag}"
        )
    return "\n".join(lines)


def run_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m llm2tflite.evaluate.bench run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-name", required=True, help="the workflow's model name")
    parser.add_argument(
        "--baseline", required=True, help="the traced SavedModel directory (the TF baseline)"
    )
    parser.add_argument(
        "--entry",
        action="append",
        default=[],
        type=parse_entry,
        help="ROUTE/VARIANT=PATH of a model to time against the baseline "
        "(repeat; the route is checked against the file)",
    )
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--runs", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument(
        "--load-runs",
        type=int,
        default=3,
        help="cold/warm loads and short/long first tokens of each LiteRT entry",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of every runtime (TF: intra/inter-op); default: runtime's",
    )
    parser.add_argument("--out", required=True, help="bench.json to write")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.load_runs < 1:
        parser.error("--runs and --load-runs must be at least 1")
    record = benchmark_model(
        args.model_name,
        args.baseline,
        args.entry,
        prompt=args.prompt,
        runs=args.runs,
        threads=args.threads,
        load_runs=args.load_runs,
    )
    atomic.write_json(args.out, record)
    print(format_record(record))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "table":
        return table_main(argv[1:])
    if argv and argv[0] == "run":
        return run_main(argv[1:])
    print(
        "usage: python -m llm2tflite.evaluate.bench {run,table} ...  (see --help of each)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
