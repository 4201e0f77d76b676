"""The real-scale byte-level BPE Llama path: the twin of SmolLM2-135M (llama3 family) through the
whole DAG, both routes.

Slow (~20-40 minutes on 2 shared cores: 135M parameters, a 49,152-row tied embedding, two
codelab conversions, a LiteRT export and three LiteRT files, the benchmark), so CI skips it; run
it with ``python -m pytest -m slow tests/twins/test_smollm2_twin.py -s``. It prints the figures
the closing notes report: conversion time and peak RSS per variant and route, sizes, codelab
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

MODEL = "smollm2_135m_twin"
SHAPE_OF = "hf://HuggingFaceTB/SmolLM2-135M"
PROMPT = "Estoy disfrutando de"
# The workflow's options after --cores (the dry run of the fast check uses the same).
SNAKEMAKE_ARGS = ("--configfile", "config/smollm2_135m_twin.yaml")
RESULTS = f"results/{MODEL}"
TOKENIZER = f"{RESULTS}/vocab/vocab.json"
EXPORT_INFO = f"{RESULTS}/traced/llm2tflite_export.json"
FIDELITY_FP32 = f"{RESULTS}/tflite/fidelity/fp32.json"
BENCH = f"{RESULTS}/bench.json"
LITERT_INFO = f"{RESULTS}/litert/litert_export.json"
LITERT_TOKENIZER = f"{RESULTS}/litert/tokenizer.json"
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
        LITERT_TOKENIZER,
        *(
            litert_file(RESULTS, v, ext)
            for v in LITERT_VARIANTS
            for ext in ("conversion.json", "tflite")
        ),
        PRESET,
        SUMMARY,
    ]


@pytest.mark.slow
def test_smollm2_twin_dag_runs_to_completion(tmp_path):
    from tokenizers import Tokenizer

    copy_default_config(tmp_path)
    run_snakemake(tmp_path, "--cores", "2", *SNAKEMAKE_ARGS)
    llama3 = registry.by_name("llama3")

    # The tokenizer: Llama 3's special tokens after every merge the corpus supports.
    vocabulary = json.loads((tmp_path / TOKENIZER).read_text())
    size = len(vocabulary)
    assert list(vocabulary)[-1] == "<|eot_id|>" and 1000 < size < 49_152
    print(f"tokenizer: {size} byte-level BPE tokens")

    info = json.loads((tmp_path / EXPORT_INFO).read_text())
    assert info["num_parameters"] == llama3.preset_parameters[SHAPE_OF] == 134_515_008
    eos, eot = vocabulary["<|end_of_text|>"], vocabulary["<|eot_id|>"]
    assert info["vocabulary_size"] == size and info["stop_token_ids"] == [eos, eot]
    check_twin_codelab_files(tmp_path, MODEL, "<|begin_of_text|>")
    check_codelab_record(tmp_path, FIDELITY_FP32, BENCH)

    # The LiteRT route: builtins only, grouped-query cache, fp32 greedy ids = KerasHub's, and a
    # runtime tokenizer.json that splits as Llama 3 ("¿Quieres" one pre-token).
    litert_info = json.loads((tmp_path / LITERT_INFO).read_text())
    assert litert_info["stop_token_ids"] == [eos, eot]
    assert litert_info["layers"] == [{"kv_heads": 3, "head_dim": 64}] * 30
    runtime = Tokenizer.from_file(str(tmp_path / LITERT_TOKENIZER))
    pieces = [piece for piece, _ in runtime.pre_tokenizer.pre_tokenize_str("¿Quieres 2026")]
    assert pieces == ["Â¿Quieres", "Ġ", "202", "6"]  # GPT-2's: "Â¿", "Quieres", "Ġ2026"
    check_litert_files(tmp_path, RESULTS, int8_of_fp32=0.4, int4_of_int8=0.7)

    def tied_as_smollm2(causal_lm):
        assert causal_lm.backbone.token_embedding.tie_weights

    check_litert_greedy_equals_keras(
        tmp_path, RESULTS, PRESET, litert_info, PROMPT, check_keras=tied_as_smollm2
    )
    print((tmp_path / SUMMARY).read_text())
