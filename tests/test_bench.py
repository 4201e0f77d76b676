"""llm2tflite.bench: the per-model record on the small model, the benchmarks.csv table."""

from __future__ import annotations

import json
import math

import pytest

from llm2tflite import bench

PROMPT = "Estoy disfrutando de"
EXPECTED_COLUMNS = [
    "model", "variant", "runtime", "size_mb", "load_s", "first_call_s", "median_s", "min_s",
    "max_s", "stdev_s", "runs", "new_tokens", "tokens_per_s", "peak_rss_mb",
    "rss_after_load_mb", "threads", "max_length", "tokenize_s", "prefill_upper_bound_s",
    "decode_per_token_s", "speedup_vs_tf", "size_vs_tf",
]


def _record(model, variant, median, size_bytes, **extra):
    record = {
        "model_name": model, "variant": variant,
        "runtime": "tensorflow" if variant == "tf" else "tflite",
        "size_bytes": size_bytes, "load_s": 1.0, "first_call_s": 2.0, "median_s": median,
        "min_s": median * 0.9, "max_s": median * 1.2, "stdev_s": 0.01, "runs": 5,
        "new_tokens": 10, "tokens_per_s": 10 / median, "peak_rss_mb": 900.0,
        "rss_after_load_mb": 700.0, "threads": None if variant == "tf" else 2,
        "max_length": 24,
    }
    record.update(extra)
    return record


def _write(tmp_path, model, variant, record):
    path = tmp_path / model / "bench" / f"{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def _breakdown(decode_per_token_s):
    return {"tokenize_s": 0.001, "prefill_upper_bound_s": 0.1, "detokenize_s": 0.001,
            "decode_s": 10 * decode_per_token_s, "decode_per_token_s": decode_per_token_s}


def test_table_schema_and_speedup(tmp_path):
    paths = [
        _write(tmp_path, "b", "int8", _record("b", "int8", 0.25, 1_000_000, breakdown=None)),
        _write(tmp_path, "a", "int8", _record("a", "int8", 0.5, 2_500_000,
                                              breakdown=_breakdown(0.005))),
        _write(tmp_path, "a", "tf", _record("a", "tf", 2.0, 10_000_000,
                                            breakdown=_breakdown(0.02))),
        _write(tmp_path, "a", "fp32", _record("a", "fp32", 1.0, 5_000_000,
                                              breakdown=_breakdown(0.01))),
    ]
    out = tmp_path / "benchmarks.csv"
    bench.main(["table", "--inputs", *map(str, paths), "--out", str(out)])

    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns) == EXPECTED_COLUMNS
    assert list(zip(table["model"], table["variant"])) == [
        ("a", "tf"), ("a", "fp32"), ("a", "int8"), ("b", "int8")]
    assert list(table["speedup_vs_tf"][:3]) == [1.0, 2.0, 4.0]
    assert math.isnan(table["speedup_vs_tf"][3])  # model b has no TF baseline
    assert list(table["size_mb"]) == [10.0, 5.0, 2.5, 1.0]
    assert list(table["size_vs_tf"][:3]) == [1.0, 0.5, 0.25]
    assert list(table["threads"].fillna(-1)) == [-1, 2, 2, 2]
    assert list(table["decode_per_token_s"][:3]) == [0.02, 0.01, 0.005]
    assert math.isnan(table["decode_per_token_s"][3])  # a record without a breakdown


def test_table_model_name_from_path_and_duplicates(tmp_path):
    record = _record(None, "fp32", 1.0, 1)
    del record["model_name"]
    path = _write(tmp_path, "fromdir", "fp32", record)
    table = bench.build_table(bench.read_records([path]))
    assert list(table["model"]) == ["fromdir"]
    assert list(table.columns) == EXPECTED_COLUMNS
    with pytest.raises(ValueError, match="two benchmark results"):
        bench.build_table(bench.read_records([path, path]))


def test_path_size_of_a_directory(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"x" * 10)
    (tmp_path / "d" / "sub" / "b").write_bytes(b"y" * 5)
    assert bench.path_size(tmp_path / "d") == 15
    assert bench.path_size(tmp_path / "d" / "a") == 10


@pytest.fixture(scope="module")
def tflite_record(small_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "fp32.json"
    bench.main(["--model", str(small_export["tflite"]), "--variant", "fp32",
                "--model-name", "small", "--prompt", PROMPT, "--runs", "3", "--threads", "2",
                "--export-info", str(small_export["dir"] / "traced" / "llm2tflite_export.json"),
                "--out", str(out)])
    return json.loads(out.read_text())


def test_tflite_record(tflite_record, small_export):
    from llm2tflite.runtime import TFLiteModel

    r = tflite_record
    assert (r["model_name"], r["variant"], r["runtime"]) == ("small", "fp32", "tflite")
    assert r["size_bytes"] == small_export["tflite"].stat().st_size
    assert r["runs"] == 3 and len(r["run_s"]) == 3
    assert r["min_s"] <= r["median_s"] <= r["max_s"]
    assert r["median_s"] == sorted(r["run_s"])[1]
    assert r["stdev_s"] >= 0 and r["load_s"] > 0 and r["first_call_s"] > 0
    assert r["output"].startswith(PROMPT) and r["deterministic"] is True
    model = TFLiteModel(small_export["tflite"])
    assert r["new_tokens"] == model.count_new_tokens(PROMPT, r["output"]) >= 1
    assert r["tokens_per_s"] == pytest.approx(r["new_tokens"] / r["median_s"], rel=1e-3)
    assert r["max_length"] == small_export["info"]["max_length"]
    assert r["prompt_token_limit"] == small_export["info"]["prompt_token_limit"]
    assert r["peak_rss_mb"] >= r["rss_after_load_mb"] > 0
    assert r["threads"] == 2 and r["cpu_count"] >= 1
    assert r["tensorflow_version"] and r["tflite_schema_version"] == 3
    stages = r["breakdown"]
    assert 0 < stages["tokenize_s"] < r["median_s"]
    assert 0 < stages["prefill_upper_bound_s"] < r["median_s"]
    assert stages["decode_per_token_s"] == pytest.approx(
        stages["decode_s"] / r["new_tokens"], abs=1e-6)
    assert stages["decode_s"] == pytest.approx(
        r["median_s"] - stages["tokenize_s"] - stages["prefill_upper_bound_s"]
        - stages["detokenize_s"], abs=1e-5) or stages["decode_s"] == 0


def test_tf_baseline_record(small_export, tflite_record, tmp_path):
    out = tmp_path / "tf.json"
    bench.main(["--saved-model", str(small_export["dir"] / "traced"), "--variant", "tf",
                "--model-name", "small", "--prompt", PROMPT, "--runs", "1", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["runtime"] == "tensorflow" and r["tflite_schema_version"] is None
    # The same graph in TF and in the fp32 .tflite: the same greedy text and token count.
    assert r["output"] == tflite_record["output"]
    assert r["new_tokens"] == tflite_record["new_tokens"]
    assert r["max_length"] == small_export["info"]["max_length"]  # read inside the SavedModel
    assert r["size_bytes"] > (small_export["dir"] / "traced" / "saved_model.pb").stat().st_size
    assert r["stdev_s"] == 0.0 and r["min_s"] == r["median_s"] == r["max_s"]
    assert r["breakdown"]["prefill_upper_bound_s"] > 0

    table = bench.build_table(bench.read_records([out, _write(tmp_path, "small", "fp32",
                                                               tflite_record)]))
    assert list(table["variant"]) == ["tf", "fp32"]
    assert table["speedup_vs_tf"][1] == pytest.approx(
        r["median_s"] / tflite_record["median_s"], abs=1e-3)


def test_runs_must_be_positive(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--model", "m.tflite", "--variant", "fp32", "--runs", "0",
                    "--out", str(tmp_path / "unused.json")])
    assert not (tmp_path / "unused.json").exists()
