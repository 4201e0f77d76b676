"""The real-scale path: the 124M twin of gpt2_base_en through the whole DAG.

Slow (the whole twin DAG, both routes: 332 s on a 2-core Xeon VM with pip's cache warm),
so CI skips it; run it with ``python -m pytest -m slow tests/inputs/test_twin.py -s``. It prints the
figures the closing notes report: conversion time and peak RSS per variant, sizes, and the
int8 / fp32 / TF latencies with the time breakdown. Those are measurements, not assertions: the
test asserts only what must hold on any machine.
"""

from __future__ import annotations

import json

import pytest

from llm2tflite.families import registry

from conftest import check_twin_codelab_files, copy_default_config, run_snakemake

MODEL = "gpt2_124m_twin"


@pytest.mark.slow
def test_twin_dag_runs_to_completion(tmp_path):
    copy_default_config(tmp_path)
    run_snakemake(tmp_path, "--cores", "2", "--configfile", "config/gpt2_124m_twin.yaml")
    results = tmp_path / "results" / MODEL

    info = json.loads((results / "traced" / "llm2tflite_export.json").read_text())
    gpt2 = registry.by_name("gpt2")
    assert info["num_parameters"] == gpt2.preset_parameters["gpt2_base_en"] == 124_439_808
    assert info["vocabulary_size"] == 50257 and info["end_token_id"] == 50256
    assert (info["max_length"], info["sequence_length"]) == (100, 256)

    # GPT-2's start token is its end token: it must not leak into the text.
    check_twin_codelab_files(results, "<|endoftext|>")

    for variant in ("fp32", "int8"):
        fidelity = json.loads((results / "tflite" / "fidelity" / f"{variant}.json").read_text())
        print(
            f"fidelity {variant}: exact match {fidelity['exact_match_rate']}, leading tokens "
            f"{fidelity['mean_leading_tokens_agree']} of {fidelity['mean_keras_new_tokens']}, "
            f"perplexity {fidelity['perplexity']} (Keras {fidelity['keras_perplexity']})"
        )
        assert (results / "tflite" / "gate" / f"{variant}.json").is_file()
    # The LiteRT route: builtins only, fp32 equal to Keras, LiteRT-LM's greedy text ours.
    for variant in ("fp32", "int8", "int4"):
        ops = json.loads((results / "litert" / "ops" / f"{variant}.json").read_text())
        assert ops["flex_ops"] == [] and ops["custom_ops"] == [], ops["class_counts"]
        smoke = json.loads((results / "litert" / "smoke" / f"{variant}.json").read_text())
        assert smoke["passed"], smoke["failures"]
        bundle = json.loads((results / "litert" / f"{variant}.litertlm.json").read_text())
        check = bundle["check"]
        # LiteRT-LM stops at the bundle's context (max_num_tokens), ours at max_length.
        assert smoke["results"][0]["output"].startswith(check["prompt"] + check["continuation"])
        assert (results / "litert" / "gate" / f"{variant}.json").is_file()
    assert json.loads((results / "litert" / "smoke" / "fp32.json").read_text())["results"][0][
        "equals_keras"
    ]
    record = json.loads((results / "bench.json").read_text())
    from llm2tflite.evaluate.bench import format_record

    print(format_record(record))
    for entry in record["entries"]:
        assert entry["new_tokens"] >= 1 and entry["deterministic"]
    print((tmp_path / "results" / "reports" / "gpt2_124m_twin" / "summary.md").read_text())
