"""The real-scale SentencePiece path: the twin of gemma3_270m through the whole DAG, both routes.

Slow (~40-60 minutes on 2 shared cores: 268M parameters, a 262,144-row embedding, two codelab
conversions, a LiteRT export and three LiteRT files, the codelab benchmark), so CI skips it; run
it with ``python -m pytest -m slow tests/twins/test_gemma3_twin.py -s``. It prints the figures the
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

MODEL = "gemma3_270m_twin"
PROMPT = "Estoy disfrutando de"
# The workflow's options after --cores (the dry run of the fast check uses the same).
SNAKEMAKE_ARGS = ("--configfile", "config/gemma3_270m_twin.yaml")
RESULTS = f"results/{MODEL}"
TOKENIZER = f"{RESULTS}/vocab/tokenizer.model"
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
def test_gemma3_twin_dag_runs_to_completion(tmp_path):
    import sentencepiece as spm

    copy_default_config(tmp_path)
    run_snakemake(tmp_path, "--cores", "2", *SNAKEMAKE_ARGS)
    gemma3 = registry.by_name("gemma3")

    # The tokenizer: Gemma 3's special pieces, every piece the corpus supports.
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / TOKENIZER))
    pieces = processor.get_piece_size()
    assert processor.id_to_piece(106) == "<end_of_turn>" and 3000 < pieces < 262_144
    print(f"tokenizer: {pieces} SentencePiece pieces")

    info = json.loads((tmp_path / EXPORT_INFO).read_text())
    assert info["num_parameters"] == gemma3.preset_parameters["gemma3_270m"] == 268_098_176
    assert info["vocabulary_size"] == pieces and info["stop_token_ids"] == [1, 106]
    check_twin_codelab_files(tmp_path, MODEL, "<bos>")
    check_codelab_record(tmp_path, FIDELITY_FP32, BENCH)

    # The LiteRT route: builtins only, the tied table once, fp32 greedy ids = KerasHub's.
    litert_info = json.loads((tmp_path / LITERT_INFO).read_text())
    assert litert_info["stop_token_ids"] == [1, 106]
    assert litert_info["layers"] == [{"kv_heads": 1, "head_dim": 256}] * 18
    # 268M weights: int8 one byte each (the 262,144 x 640 table once), int4 about half that.
    check_litert_files(tmp_path, RESULTS, int8_of_fp32=0.3, int4_of_int8=0.6)
    check_litert_greedy_equals_keras(tmp_path, RESULTS, PRESET, litert_info, PROMPT)
    print((tmp_path / SUMMARY).read_text())
