"""llm2tflite.evaluate.bench: interleaved rounds in worker processes, per-round ratios, the CSV
table."""

from __future__ import annotations

import json
import os
import statistics

import pytest

from llm2tflite.evaluate import bench

from conftest import cli_options, litert_bench_steps

PROMPT = "Estoy disfrutando de"


def _entry(route, variant, run_s, new_tokens=10, size_bytes=1_000_000, steps=None):
    return {
        "route": route,
        "variant": variant,
        "model_path": f"{route}/{variant}",
        "size_bytes": size_bytes,
        "import_s": 1.0,
        "load_s": 0.5,
        "first_call_s": 2.0,
        "run_s": run_s,
        "median_s": statistics.median(run_s),
        "min_s": min(run_s),
        "max_s": max(run_s),
        "stdev_s": statistics.stdev(run_s),
        "prompt_tokens": 5,
        "new_tokens": new_tokens,
        "output": "x",
        "token_ids": [],
        "deterministic": True,
        "tokens_per_s": new_tokens / statistics.median(run_s),
        "rss_before_load_mb": 400.0,
        "rss_after_load_mb": 500.0,
        "peak_rss_mb": 700.0,
        "versions": {},
        "steps": steps,
    }


def _record(model, entries, threads=2):
    bench._add_comparisons(entries)
    return {
        "model_name": model,
        "prompt": PROMPT,
        "runs": len(entries[0]["run_s"]),
        "threads": threads,
        "machine": {"cpu_model": "Test CPU", "logical_cpus": 2},
        "entries": entries,
    }


def test_speedup_is_computed_per_round():
    # Round 2 is slow for everyone (a noisy neighbour): per-round ratios are unaffected.
    baseline = _entry("tensorflow", "tf", [2.0, 4.0, 2.2])
    variant = _entry("tflite", "int8", [1.0, 2.0, 1.0])
    bench._add_comparisons([baseline, variant])
    assert variant["speedup_vs_tf"] == {
        "per_round": [2.0, 2.0, 2.2],
        "median": 2.0,
        "min": 2.0,
        "max": 2.2,
    }
    assert baseline["speedup_vs_tf"]["per_round"] == [1.0, 1.0, 1.0]
    # The ratio of medians would say 2.2 / 1.0 = 2.2: not what was measured round by round.
    assert variant["speedup_vs_tf"]["median"] != baseline["median_s"] / variant["median_s"]


def test_litert_speedup_over_the_codelab_file_of_its_variant_per_round():
    entries = [
        _entry("tensorflow", "tf", [4.0, 8.0, 4.0]),
        _entry("tflite", "int8", [2.0, 4.0, 3.0]),
        _entry("litert", "int8", [0.5, 2.0, 1.0]),
        _entry("litert", "int4", [0.25, 1.0, 0.5]),  # no codelab int4: nothing to compare
    ]
    bench._add_comparisons(entries)
    assert entries[2]["speedup_vs_codelab"] == {
        "per_round": [4.0, 2.0, 3.0],
        "median": 3.0,
        "min": 2.0,
        "max": 4.0,
    }
    assert "speedup_vs_codelab" not in entries[1] and "speedup_vs_codelab" not in entries[3]
    text = bench.format_record(_record("m", entries))
    assert "litert/int8: " in text and "speed-up vs tflite/int8 3.00 (per round 2.00-4.00)" in text


def test_unequal_work_is_flagged():
    entries = [
        _entry("tensorflow", "tf", [2.0, 2.0], new_tokens=94),
        _entry("tflite", "fp32", [1.0, 1.0], new_tokens=94),
        _entry("tflite", "int8", [0.5, 0.5], new_tokens=40),
    ]
    bench._add_comparisons(entries)
    assert [e["equal_work"] for e in entries] == [True, True, False]


def test_step_figures_from_route_timings():
    generations = [
        {
            "timings": {
                "prefill_s": 0.010,
                "first_token_s": 0.013,
                "decode_step_s": [0.003, 0.004, 0.005],
            }
        },
        {"timings": {"prefill_s": 0.012, "first_token_s": 0.015, "decode_step_s": [0.003, 0.006]}},
    ]
    steps = bench._steps_summary(generations)
    assert steps["prefill_s"] == pytest.approx(0.011)
    assert steps["first_token_s"] == pytest.approx(0.014)
    decode = steps["decode_step_ms"]
    # Every step of every run: 3, 3, 4, 5, 6 ms.
    assert decode["count"] == 5 and decode["median"] == pytest.approx(4.0)
    assert (decode["min"], decode["max"]) == pytest.approx((3.0, 6.0))
    assert decode["p10"] == pytest.approx(3.0) and decode["p90"] == pytest.approx(5.6)
    assert steps["decode_tokens_per_s"] == pytest.approx(250.0)
    # A route that cannot measure steps (the codelab route) gives none: no estimate.
    assert bench._steps_summary([{"timings": None}, {"timings": None}]) is None


def test_table_rows_order_and_columns(tmp_path):
    steps = litert_bench_steps(first_token_s=0.02, prefill_s=0.015)
    alpha = _record(
        "alpha",
        [
            _entry("tensorflow", "tf", [2.0, 2.2, 2.4], size_bytes=10_000_000),
            _entry("litert", "int8", [0.4, 0.44, 0.6], steps=steps, size_bytes=2_500_000),
            _entry("tflite", "int8", [1.0, 1.1, 1.2], size_bytes=2_500_000),
            _entry("tflite", "fp32", [1.0, 1.0, 1.0], new_tokens=9, size_bytes=5_000_000),
        ],
    )
    beta = _record(
        "beta",
        [_entry("tensorflow", "tf", [1.0, 1.0]), _entry("tflite", "fp16", [0.5, 0.5])],
        threads=None,
    )
    paths = []
    for record in (beta, alpha):
        path = tmp_path / record["model_name"] / "bench.json"
        path.parent.mkdir()
        path.write_text(json.dumps(record))
        paths.append(path)
    out = tmp_path / "benchmarks.csv"
    bench.main(["table", "--inputs", *map(str, paths), "--out", str(out)])

    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns) == bench.COLUMNS
    assert list(zip(table["model"], table["route"], table["variant"])) == [
        ("alpha", "tensorflow", "tf"),
        ("alpha", "tflite", "fp32"),
        ("alpha", "tflite", "int8"),
        ("alpha", "litert", "int8"),
        ("beta", "tensorflow", "tf"),
        ("beta", "tflite", "fp16"),
    ]
    alpha_rows = table[table["model"] == "alpha"].set_index(["route", "variant"])
    assert alpha_rows.loc[("tflite", "int8"), "speedup_vs_tf"] == 2.0
    assert alpha_rows.loc[("litert", "int8"), "speedup_vs_tf"] == 5.0
    assert alpha_rows.loc[("litert", "int8"), "speedup_min"] == 4.0
    assert alpha_rows.loc[("litert", "int8"), "speedup_vs_codelab"] == 2.5
    assert pd.isna(alpha_rows.loc[("tflite", "int8"), "speedup_vs_codelab"])
    assert not alpha_rows.loc[("tflite", "fp32"), "equal_work"]
    assert alpha_rows.loc[("tflite", "int8"), "equal_work"]
    assert alpha_rows.loc[("litert", "int8"), "decode_ms_per_token"] == 3.3
    assert alpha_rows.loc[("litert", "int8"), "prefill_s"] == 0.015
    # The codelab route cannot measure steps: empty, not estimated.
    assert pd.isna(alpha_rows.loc[("tflite", "int8"), "decode_ms_per_token"])
    assert pd.isna(alpha_rows.loc[("tflite", "int8"), "prefill_s"])
    assert list(alpha_rows["size_vs_tf"]) == [1.0, 0.5, 0.25, 0.25]
    assert set(table["cpu_model"]) == {"Test CPU"}
    assert list(table["threads"].fillna(-1)) == [2, 2, 2, 2, -1, -1]
    with pytest.raises(ValueError, match="two benchmark results"):
        bench.build_table(bench.read_records([paths[0], paths[0]]))


def test_row_order_is_the_one_display_order():
    rows = [
        ("litert", "int4"),
        ("tflite", "int8"),
        ("litert", "fp32"),
        ("tensorflow", "tf"),
        ("tflite", "fp16"),
        ("tflite", "fp32"),
        ("tflite", "zz"),
    ]
    assert sorted(rows, key=lambda r: bench.row_order(*r)) == [
        ("tensorflow", "tf"),
        ("tflite", "fp32"),
        ("tflite", "fp16"),
        ("tflite", "int8"),
        ("tflite", "zz"),
        ("litert", "fp32"),
        ("litert", "int4"),
    ]


def test_cpu_model_is_read_from_proc_cpuinfo():
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    if names:
        assert bench.cpu_model() == names[0]
    assert bench.cpu_model()


def test_entry_syntax():
    assert bench.parse_entry("tflite/int8=results/a/tflite/int8.tflite") == (
        "tflite",
        "int8",
        "results/a/tflite/int8.tflite",
    )
    with pytest.raises(ValueError, match="ROUTE/VARIANT=PATH"):
        bench.parse_entry("int8=results/a/tflite/int8.tflite")


def test_a_wrong_entry_fails_before_any_timing(small_export, tmp_path):
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(Exception, match="not a TFLite flatbuffer"):
        bench.benchmark_model(
            "small", small_export["dir"] / "traced", [("tflite", "fp32", str(not_a_model))], runs=1
        )
    with pytest.raises(ValueError, match="is a 'tflite' model, not 'litert'"):
        bench.benchmark_model(
            "small",
            small_export["dir"] / "traced",
            [("litert", "fp32", str(small_export["tflite"]))],
            runs=1,
        )


def bench_record(directory, small_export, entry: str, **options) -> dict:
    """``bench run`` of one entry against the small model's TF baseline, 2 threads: its record."""
    out = directory / "bench.json"
    bench.main(
        [
            "run",
            *cli_options(
                model_name="small",
                baseline=small_export["dir"] / "traced",
                entry=entry,
                prompt=PROMPT,
                **options,
                threads=2,
                out=out,
            ),
        ]
    )
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def small_record(small_export, tmp_path_factory):
    return bench_record(
        tmp_path_factory.mktemp("bench"),
        small_export,
        f"tflite/fp32={small_export['tflite']}",
        runs=3,
    )


def greedy_ids_by_hand(causal_lm, prompt: str, max_length: int) -> tuple[list[int], list[int]]:
    """(prompt ids with the start token, those ids followed by the greedy continuation): one
    full forward pass of the Keras model per new token, argmax, until its end token or
    ``max_length`` ids."""
    import numpy as np

    packed = causal_lm.preprocessor.generate_preprocess([prompt], sequence_length=max_length)
    mask = np.asarray(packed["padding_mask"][0], bool)
    prompt_ids = [int(i) for i in np.asarray(packed["token_ids"][0])[mask]]
    end = int(causal_lm.preprocessor.tokenizer.end_token_id)
    ids = list(prompt_ids)
    while len(ids) < max_length:
        logits = causal_lm({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)))})
        token = int(np.argmax(np.asarray(logits)[0, -1]))
        if token == end:
            break
        ids.append(token)
    return prompt_ids, ids


def test_interleaved_record_on_a_real_model(small_record, small_export):
    record = small_record
    assert (record["model_name"], record["runs"], record["threads"]) == ("small", 3, 2)
    assert record["machine"]["cpu_model"] == bench.cpu_model()
    assert record["machine"]["logical_cpus"] == os.cpu_count()
    assert 1 <= record["machine"]["physical_cores"] <= os.cpu_count()
    baseline, fp32 = record["entries"]
    assert (baseline["route"], baseline["variant"]) == ("tensorflow", "tf")
    assert (fp32["route"], fp32["variant"]) == ("tflite", "fp32")
    for entry in record["entries"]:
        assert len(entry["run_s"]) == 3 and entry["median_s"] == sorted(entry["run_s"])[1]
        assert entry["deterministic"] is True
        # The peak is the worker's own, over load and calls, so at least its RSS after loading.
        assert entry["peak_rss_mb"] >= entry["rss_after_load_mb"] > entry["rss_before_load_mb"]
        assert entry["steps"] is None  # one signature call: nothing measured per step
    # The speed-up is the per-round ratio of the times measured in the same round.
    assert fp32["speedup_vs_tf"]["per_round"] == pytest.approx(
        [b / v for b, v in zip(baseline["run_s"], fp32["run_s"])], rel=1e-3
    )
    # The same graph in TF and in the fp32 .tflite: the same ids, so equal work.
    assert fp32["token_ids"] == baseline["token_ids"] and fp32["equal_work"] is True
    # New tokens are the ids the model generated: those of a greedy loop driven here on the
    # Keras model's forward pass (not the generate() the benchmark's runtimes share)...
    prompt_ids, expected = greedy_ids_by_hand(
        small_export["causal_lm"], PROMPT, small_export["info"]["max_length"]
    )
    assert fp32["token_ids"] == expected
    assert fp32["prompt_tokens"] == len(prompt_ids)
    assert fp32["new_tokens"] == len(expected) - len(prompt_ids) >= 1
    # ... never more than max_length leaves after the start token and the prompt.
    assert fp32["new_tokens"] <= small_export["info"]["max_length"] - fp32["prompt_tokens"]
    assert fp32["tokens_per_s"] == pytest.approx(fp32["new_tokens"] / fp32["median_s"], rel=1e-3)
    assert fp32["size_bytes"] == small_export["tflite"].stat().st_size


def test_runs_must_be_positive(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(
            [
                "run",
                "--model-name",
                "m",
                "--baseline",
                "traced",
                "--runs",
                "0",
                "--out",
                str(tmp_path / "unused.json"),
            ]
        )
    assert not (tmp_path / "unused.json").exists()


def test_each_model_ran_in_its_own_process(small_record):
    pids = [entry["pid"] for entry in small_record["entries"]]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids


def test_a_saved_model_s_size_is_what_tensorflow_loads(tmp_path):
    """The baseline's size: the SavedModel's files, not the export info written beside them
    (its measured trace time changes its length from run to run)."""
    for name, size in [
        ("saved_model.pb", 100),
        ("fingerprint.pb", 7),
        ("variables/variables.data-00000-of-00001", 1000),
        ("variables/variables.index", 20),
        ("llm2tflite_export.json", 966),
        (".snakemake_timestamp", 0),
    ]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "assets").mkdir()
    assert bench.path_size(tmp_path) == 1127
    assert bench.path_size(tmp_path / "saved_model.pb") == 100


# ---- the LiteRT entries' loads, first tokens and floors --------------------------------------


def _decode_weight_bytes_by_schema(path) -> int:
    """The decode signature's constant bytes through the schema's object API (the whole model
    unpacked: independent of ``flatbuffer.constant_bytes``, which reads the tables lazily)."""
    from llm2tflite.core import flatbuffer

    bindings = flatbuffer.schema()
    data = path.read_bytes()
    model = bindings.ModelT.InitFromObj(bindings.Model.GetRootAs(data, 0))
    signature = next(s for s in model.signatureDefs if s.signatureKey in ("decode", b"decode"))
    buffers = {t.buffer for t in model.subgraphs[signature.subgraphIndex].tensors}
    return sum(
        len(model.buffers[b].data) for b in buffers if b and model.buffers[b].data is not None
    )


def test_read_bandwidth_is_its_best_repetition():
    figure = bench.read_bandwidth(2, repetitions=3, size_bytes=8 * 1024**2)
    assert figure["threads"] == 2 and figure["bytes"] == 8 * 1024**2
    assert len(figure["per_repetition"]) == 3
    assert figure["bytes_per_s"] == max(figure["per_repetition"]) > 0


@pytest.fixture(scope="module")
def litert_record(small_export, small_litert, tmp_path_factory):
    return bench_record(
        tmp_path_factory.mktemp("bench_litert"),
        small_export,
        f"litert/int8={small_litert['tflite']['int8']}",
        runs=1,
        load_runs=2,
    )


def test_litert_loads_are_cold_then_warm(litert_record):
    entry = litert_record["entries"][1]
    load = entry["load"]
    assert load["runs"] == litert_record["load_runs"] == 2
    # Cold: no weight cache before it (a fresh directory), the cache written by it; warm: that
    # file present before the load.
    assert load["cache_before_cold"] == [False, False]
    assert load["cache_after_cold"] == [True, True]
    assert load["cache_before_warm"] == [True, True]
    for kind in ("cold", "warm"):
        total = load[f"{kind}_to_first_token_s"]["median"]
        assert 0 < load[f"{kind}_s"]["min"] <= load[f"{kind}_s"]["median"] < total
    assert 0 < load["tokenizer_s"]["median"] < load["warm_s"]["median"]
    # The worker's own first load made LiteRT's environment; the repetitions after it did not.
    first = load["first_in_process"]
    assert first["load_s"] == entry["load_s"]
    assert first["breakdown"]["environment_s"] > 0
    assert sum(first["breakdown"].values()) == pytest.approx(first["load_s"], abs=1e-3)


def test_long_prompt_takes_the_longest_chunk_and_a_shorter_one(litert_record, small_litert):
    first_token = litert_record["entries"][1]["first_token"]
    lengths = sorted(small_litert["info"]["prefill_lengths"])
    short, long = first_token["short"], first_token["long"]
    # The runtime's own step record: the long prompt's prefill took the longest length, then
    # a shorter one; the short prompt one chunk.
    assert long["prefill_steps"][0] == lengths[-1]
    assert len(long["prefill_steps"]) == 2 and long["prefill_steps"][1] < lengths[-1]
    assert long["calls"] == [f"prefill_{t}" for t in long["prefill_steps"]] + ["decode"]
    assert len(short["prefill_steps"]) == 1 and short["prompt_tokens"] < long["prompt_tokens"]
    assert sum(long["prefill_steps"]) >= long["prompt_tokens"] - 1 > lengths[-1]


def test_floors_are_weight_bytes_over_the_measured_bandwidth(litert_record, small_litert):
    path = small_litert["tflite"]["int8"]
    entry = litert_record["entries"][1]
    floor = entry["floor"]
    bandwidth = litert_record["memory_bandwidth"]
    assert bandwidth["threads"] == 2 and bandwidth["bytes"] >= 256 * 1024**2
    assert floor["read_bytes_per_s"] == bandwidth["bytes_per_s"] == max(bandwidth["per_repetition"])
    # The weight bytes: the decode subgraph's constant buffers, counted here independently.
    assert floor["weight_bytes"] == _decode_weight_bytes_by_schema(path)
    # Not the metadata: the embedded tokenizer and export info are left out.
    tokenizer_bytes = small_litert["tokenizer"].stat().st_size
    assert floor["constant_bytes"] + tokenizer_bytes <= floor["file_bytes"] == path.stat().st_size
    decode_ms = entry["steps"]["decode_step_ms"]["median"]
    assert floor["decode_ms"] == pytest.approx(
        1000 * floor["weight_bytes"] / bandwidth["bytes_per_s"], rel=1e-4
    )
    assert floor["decode_vs_floor"] == pytest.approx(decode_ms / floor["decode_ms"], rel=1e-2)
    assert floor["load_s"] == pytest.approx(
        floor["file_bytes"] / bandwidth["bytes_per_s"], rel=1e-4
    )
    cold = entry["load"]["cold_s"]["median"]
    assert floor["cold_load_vs_floor"] == pytest.approx(cold / floor["load_s"], rel=1e-2)
    # The long prompt's first token reads the weights of three calls, the short one's two.
    assert floor["first_token_long_s"] > floor["first_token_short_s"] > floor["decode_ms"] / 1000
    rows = bench.table_rows(litert_record)
    assert rows[0]["cold_load_s"] is None and rows[0]["decode_vs_floor"] is None  # TF baseline
    assert rows[1]["cold_load_s"] == entry["load"]["cold_s"]["median"]
    assert rows[1]["decode_vs_floor"] == floor["decode_vs_floor"]
    assert rows[1]["long_prompt_tokens"] == entry["first_token"]["long"]["prompt_tokens"]
