"""The real-scale path: the 124M twin of gpt2_base_en through the whole DAG.

Slow (the whole twin DAG, both routes: 332 s on a 2-core Xeon VM with pip's cache warm),
so CI skips it; run it with ``python -m pytest -m slow tests/inputs/test_twin.py -s``. It prints the
figures the closing notes report: conversion time and peak RSS per variant, sizes, and the
int8 / fp32 / TF latencies with the time breakdown. Those are measurements, not assertions: the
test asserts only what must hold on any machine.

Every path it reads is named below (``paths_read``): tests/workflow/test_slow_test_paths.py
checks, in CI, that a dry run of the same command declares each of them as an output.
"""

from __future__ import annotations

import json

import pytest

from llm2tflite.families import registry

from conftest import (
    TWIN_CODELAB_VARIANTS,
    check_twin_codelab_files,
    copy_default_config,
    run_snakemake,
    twin_codelab_paths,
)

MODEL = "gpt2_124m_twin"
# The workflow's options after --cores (the dry run of the fast check uses the same).
SNAKEMAKE_ARGS = ("--configfile", "config/gpt2_124m_twin.yaml")
RESULTS = f"results/{MODEL}"
EXPORT_INFO = f"{RESULTS}/traced/llm2tflite_export.json"
LITERT_VARIANTS = ("fp32", "int8", "int4")
BENCH = f"{RESULTS}/bench.json"
SUMMARY = f"results/reports/{MODEL}/summary.md"
REFERENCE = f"{RESULTS}/reference/fidelity.json"
REFERENCE_LOGITS = f"{RESULTS}/reference/fidelity.logits.npy"
# The quantized files a user ships, each scrambled after the run: every one must fail its gates.
SCRAMBLED = (("tflite", "int8"), ("litert", "int8"), ("litert", "int4"))


def fidelity_file(route: str, variant: str) -> str:
    return f"{RESULTS}/{route}/fidelity/{variant}.json"


def gate_file(route: str, variant: str) -> str:
    return f"{RESULTS}/{route}/gate/{variant}.json"


def litert_file(kind: str, variant: str) -> str:
    """A LiteRT-route file of the variant: "ops", "smoke" or "bundle" (the bundle's record)."""
    return {
        "ops": f"{RESULTS}/litert/ops/{variant}.json",
        "smoke": f"{RESULTS}/litert/smoke/{variant}.json",
        "bundle": f"{RESULTS}/litert/{variant}.litertlm.json",
    }[kind]


def paths_read() -> list[str]:
    """Every path the test reads, relative to the run's directory."""
    return [
        EXPORT_INFO,
        *twin_codelab_paths(MODEL),
        *(fidelity_file("tflite", v) for v in TWIN_CODELAB_VARIANTS),
        *(gate_file("tflite", v) for v in TWIN_CODELAB_VARIANTS),
        *(litert_file(kind, v) for kind in ("ops", "smoke", "bundle") for v in LITERT_VARIANTS),
        *(gate_file("litert", v) for v in LITERT_VARIANTS),
        BENCH,
        SUMMARY,
        REFERENCE,
        REFERENCE_LOGITS,
        # (the codelab files are among twin_codelab_paths)
        *(
            f"{RESULTS}/{route}/{variant}.tflite"
            for route, variant in SCRAMBLED
            if route != "tflite"
        ),
    ]


def check_scrambled_files_fail(workdir, out) -> None:
    """The twin's quantized files, their largest weight buffer scrambled (copies in ``out``),
    fail the gates their healthy files passed in the run: on random weights too, a damaged file
    is caught (issue 15: before the twin-proof figures, a permuted int4 MLP matrix passed)."""
    from test_fidelity_gates import copy_model, scramble_largest_buffer

    from llm2tflite.evaluate.fidelity import gate_failures, load_reference, variant_fidelity

    reference = load_reference(workdir / REFERENCE)
    for route, variant in SCRAMBLED:
        gate = json.loads((workdir / gate_file(route, variant)).read_text())
        healthy = json.loads((workdir / fidelity_file(route, variant)).read_text())
        assert gate["passed"], gate
        damaged = copy_model(workdir / f"{RESULTS}/{route}/{variant}.tflite", out / route)
        tensor = scramble_largest_buffer(damaged)
        result = variant_fidelity(str(damaged), MODEL, variant, reference)
        failures = gate_failures(result, gate["gates"])
        print(
            f"scrambled {route}/{variant} ({tensor}): corr {result['logit_correlation']:.4f} "
            f"(healthy {healthy['logit_correlation']:.4f}), KL {result['kl_mean']:.3g} "
            f"(healthy {healthy['kl_mean']:.3g}), top-1 {result['top1_agreement']:.3f} "
            f"(healthy {healthy['top1_agreement']:.3f}); gates failed: {failures}"
        )
        assert failures, f"scrambled {route}/{variant} passed its gates"


@pytest.mark.slow
def test_twin_dag_runs_to_completion(tmp_path):
    from llm2tflite.evaluate.bench import format_record

    copy_default_config(tmp_path)
    run_snakemake(tmp_path, "--cores", "2", *SNAKEMAKE_ARGS)

    info = json.loads((tmp_path / EXPORT_INFO).read_text())
    gpt2 = registry.by_name("gpt2")
    assert info["num_parameters"] == gpt2.preset_parameters["gpt2_base_en"] == 124_439_808
    assert info["vocabulary_size"] == 50257 and info["end_token_id"] == 50256
    assert (info["max_length"], info["sequence_length"]) == (100, 256)

    # GPT-2's start token is its end token: it must not leak into the text.
    check_twin_codelab_files(tmp_path, MODEL, "<|endoftext|>")

    for variant in TWIN_CODELAB_VARIANTS:
        fidelity = json.loads((tmp_path / fidelity_file("tflite", variant)).read_text())
        print(
            f"fidelity {variant}: exact match {fidelity['exact_match_rate']}, leading tokens "
            f"{fidelity['mean_leading_tokens_agree']} of {fidelity['mean_keras_new_tokens']}, "
            f"perplexity {fidelity['perplexity']} (Keras {fidelity['keras_perplexity']})"
        )
        assert (tmp_path / gate_file("tflite", variant)).is_file()
    # The LiteRT route: builtins only, fp32 equal to Keras, LiteRT-LM's greedy text ours.
    for variant in LITERT_VARIANTS:
        ops = json.loads((tmp_path / litert_file("ops", variant)).read_text())
        assert ops["flex_ops"] == [] and ops["custom_ops"] == [], ops["class_counts"]
        smoke = json.loads((tmp_path / litert_file("smoke", variant)).read_text())
        assert smoke["passed"], smoke["failures"]
        check = json.loads((tmp_path / litert_file("bundle", variant)).read_text())["check"]
        # LiteRT-LM stops at the bundle's context (max_num_tokens), ours at max_length.
        assert smoke["results"][0]["output"].startswith(check["prompt"] + check["continuation"])
        if variant == "fp32":
            assert smoke["results"][0]["equals_keras"]
        assert (tmp_path / gate_file("litert", variant)).is_file()
    record = json.loads((tmp_path / BENCH).read_text())
    print(format_record(record))
    for entry in record["entries"]:
        assert entry["new_tokens"] >= 1 and entry["deterministic"]
    print((tmp_path / SUMMARY).read_text())
    check_scrambled_files_fail(tmp_path, tmp_path / "scrambled")
