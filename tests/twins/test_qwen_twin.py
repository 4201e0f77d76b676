"""The real-scale Qwen path: the twin of qwen2.5_0.5b_en through the whole DAG, both routes.

Slow (about 30 minutes on 2 shared cores, 5 Dec 2026: 494M parameters, a 151,936-row
embedding, two codelab conversions, a LiteRT export and three LiteRT files, the codelab
benchmark), so CI skips it; run it with ``python -m pytest -m slow tests/twins/test_qwen_twin.py
-s``. It prints the figures the
closing notes report: conversion time and peak RSS per variant and route, sizes, codelab
latencies and a LiteRT decode loop per variant. Those are measurements, not assertions: the test
asserts only what must hold on any machine.

Every path it reads is named below (``paths_read``): tests/workflow/test_slow_test_paths.py
checks, in CI, that a dry run of the same command declares each of them as an output.
"""

from __future__ import annotations

import json

import pytest
from twin_checks import (
    LITERT_VARIANTS,
    check_codelab_record,
    check_litert_files,
    check_litert_greedy_equals_keras,
    litert_file,
)

from llm2tflite.families import registry

from conftest import (
    check_twin_codelab_files,
    copy_default_config,
    run_snakemake,
    twin_codelab_paths,
)

MODEL = "qwen2_5_0_5b_twin"
PROMPT = "Estoy disfrutando de"
# The workflow's options after --cores (the dry run of the fast check uses the same).
SNAKEMAKE_ARGS = ("--configfile", "config/qwen2_5_0_5b_twin.yaml")
RESULTS = f"results/{MODEL}"
TOKENIZER = f"{RESULTS}/vocab/vocab.json"
EXPORT_INFO = f"{RESULTS}/traced/llm2tflite_export.json"
FIDELITY_FP32 = f"{RESULTS}/tflite/fidelity/fp32.json"
BENCH = f"{RESULTS}/bench.json"
LITERT_INFO = f"{RESULTS}/litert/litert_export.json"
PRESET = f"{RESULTS}/preset"
SUMMARY = f"results/reports/{MODEL}/summary.md"


def paths_read() -> list[str]:
    """Every path the test reads, relative to the run's directory."""
    return [
        TOKENIZER,
        EXPORT_INFO,
        *twin_codelab_paths(MODEL),
        FIDELITY_FP32,
        BENCH,
        LITERT_INFO,
        *(
            litert_file(RESULTS, v, ext)
            for v in LITERT_VARIANTS
            for ext in ("conversion.json", "tflite")
        ),
        PRESET,
        SUMMARY,
    ]


@pytest.mark.slow
def test_qwen_twin_dag_runs_to_completion(tmp_path):

    copy_default_config(tmp_path)
    run_snakemake(tmp_path, "--cores", "2", *SNAKEMAKE_ARGS)
    qwen = registry.by_name("qwen")

    # The tokenizer: every merge the corpus supports, Qwen's special tokens last.
    vocab = json.loads((tmp_path / TOKENIZER).read_text(encoding="utf-8"))
    tokens = len(vocab)
    assert [vocab[t] for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [
        tokens - 3,
        tokens - 2,
        tokens - 1,
    ]
    assert 2000 < tokens < 151_936  # measured: 2,178 (the corpus supports no more merges)
    print(f"tokenizer: {tokens} byte-level BPE tokens")
    end_of_text = tokens - 3

    info = json.loads((tmp_path / EXPORT_INFO).read_text())
    assert info["num_parameters"] == qwen.preset_parameters["qwen2.5_0.5b_en"] == 494_032_768
    assert info["vocabulary_size"] == tokens and info["stop_token_ids"] == [end_of_text]
    assert info["start_token_id"] is None
    check_twin_codelab_files(tmp_path, MODEL, "<|endoftext|>")
    check_codelab_record(tmp_path, FIDELITY_FP32, BENCH)

    # The LiteRT route: builtins only, the tied table once, fp32 greedy ids = KerasHub's.
    litert_info = json.loads((tmp_path / LITERT_INFO).read_text())
    assert litert_info["stop_token_ids"] == [end_of_text]
    assert litert_info["start_token_id"] is None and not litert_info["add_start_token"]
    assert litert_info["layers"] == [{"kv_heads": 2, "head_dim": 64}] * 24
    # 494M weights: int8 one byte each (the 151,936 x 896 table once), int4 about half that.
    check_litert_files(tmp_path, RESULTS, int8_of_fp32=0.3, int4_of_int8=0.6)
    check_litert_greedy_equals_keras(tmp_path, RESULTS, PRESET, litert_info, PROMPT)
    print((tmp_path / SUMMARY).read_text())
