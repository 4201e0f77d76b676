"""The real-scale Qwen paths: the twins of qwen2.5_0.5b_en and qwen3_0.6b_en through the whole
DAG, both routes, one parameter each (``QWEN_TWINS``).

Slow, so CI skips them: 30 to 35 minutes each on 2 cores, 5 Dec 2026 (494M and 596M parameters,
a 151,936-row embedding, two codelab conversions, a LiteRT export and three LiteRT files, the
codelab benchmark; the Qwen 3 twin's codelab fp32 conversion peaks at 17.5 GB, and its fp32 files
are above 2 GB, so the LiteRT route writes their weights after the flatbuffer). Run them with
``python -m pytest -m slow tests/twins/test_qwen_twin.py -s`` (``-k qwen3`` for one). They print
the figures the closing notes report: conversion time and peak RSS per variant and route, sizes,
codelab latencies and a LiteRT decode loop per variant. Those are measurements, not assertions:
the test asserts only what must hold on any machine.

Every path each reads is named below (``QwenTwin.paths_read``):
tests/workflow/test_slow_test_paths.py checks, in CI, that a dry run of the same command declares
each of them as an output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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

PROMPT = "Estoy disfrutando de"


def results_paths(model: str) -> dict[str, str]:
    """The files a Qwen twin test reads, by role, relative to the run's directory."""
    results = f"results/{model}"
    return {
        "tokenizer": f"{results}/vocab/vocab.json",
        "export_info": f"{results}/traced/llm2tflite_export.json",
        "fidelity_fp32": f"{results}/tflite/fidelity/fp32.json",
        "bench": f"{results}/bench.json",
        "litert_info": f"{results}/litert/litert_export.json",
        "preset": f"{results}/preset",
        "summary": f"results/reports/{model}/summary.md",
    }


@dataclass(frozen=True)
class QwenTwin:
    """One Qwen twin: its model and config (``config/MODEL.yaml``), the preset whose shape it has,
    and what its files must say. ``stop_token``: the KerasHub tokenizer's end token (Qwen 2.5's
    ``<|endoftext|>``, Qwen 3's ``<|im_end|>``)."""

    model: str
    family: str
    preset: str
    parameters: int
    layers: list
    stop_token: str

    @property
    def snakemake_args(self) -> tuple[str, ...]:
        """The workflow's options after --cores (the dry run of the fast check uses the same)."""
        return ("--configfile", f"config/{self.model}.yaml")

    def paths_read(self) -> list[str]:
        """Every path the test reads, relative to the run's directory."""
        paths = results_paths(self.model)
        return [
            *(paths[role] for role in ("tokenizer", "export_info")),
            *twin_codelab_paths(self.model),
            *(paths[role] for role in ("fidelity_fp32", "bench", "litert_info")),
            *(
                litert_file(f"results/{self.model}", v, ext)
                for v in LITERT_VARIANTS
                for ext in ("conversion.json", "tflite")
            ),
            *(paths[role] for role in ("preset", "summary")),
        ]


QWEN_TWINS = [
    QwenTwin(
        "qwen2_5_0_5b_twin",
        family="qwen",
        preset="qwen2.5_0.5b_en",
        parameters=494_032_768,
        layers=[{"kv_heads": 2, "head_dim": 64}] * 24,
        stop_token="<|endoftext|>",
    ),
    QwenTwin(
        "qwen3_0_6b_twin",
        family="qwen3",
        preset="qwen3_0.6b_en",
        parameters=596_049_920,
        layers=[{"kv_heads": 8, "head_dim": 128}] * 28,
        stop_token="<|im_end|>",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("twin", QWEN_TWINS, ids=lambda twin: twin.model)
def test_qwen_twin_dag_runs_to_completion(tmp_path, twin: QwenTwin):
    """Run a Qwen twin's whole DAG; check its tokenizer, export info and files (see the module
    docstring) and print its figures."""
    copy_default_config(tmp_path)
    run_snakemake(tmp_path, "--cores", "2", *twin.snakemake_args)
    model, stop_token = twin.model, twin.stop_token
    paths = results_paths(model)

    # The tokenizer: every merge the corpus supports, Qwen's special tokens last.
    vocab = json.loads((tmp_path / paths["tokenizer"]).read_text(encoding="utf-8"))
    tokens = len(vocab)
    assert [vocab[t] for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [
        tokens - 3,
        tokens - 2,
        tokens - 1,
    ]
    assert 2000 < tokens < 151_936  # measured: 2,178 (the corpus supports no more merges)
    print(f"tokenizer: {tokens} byte-level BPE tokens")
    stop_id = vocab[stop_token]

    info = json.loads((tmp_path / paths["export_info"]).read_text())
    assert info["num_parameters"] == registry.by_name(twin.family).preset_parameters[twin.preset]
    assert info["num_parameters"] == twin.parameters
    assert info["vocabulary_size"] == tokens and info["stop_token_ids"] == [stop_id]
    assert info["start_token_id"] is None
    check_twin_codelab_files(tmp_path, model, stop_token)
    check_codelab_record(tmp_path, paths["fidelity_fp32"], paths["bench"])

    # The LiteRT route: builtins only, the tied table once, fp32 greedy ids = KerasHub's.
    litert_info = json.loads((tmp_path / paths["litert_info"]).read_text())
    assert litert_info["stop_token_ids"] == [stop_id]
    assert litert_info["start_token_id"] is None and not litert_info["add_start_token"]
    assert litert_info["layers"] == twin.layers
    # int8 one byte per weight (the 151,936-row table once), int4 about half that.
    results = f"results/{model}"
    check_litert_files(tmp_path, results, int8_of_fp32=0.3, int4_of_int8=0.6)
    check_litert_greedy_equals_keras(tmp_path, results, paths["preset"], litert_info, PROMPT)
    print((tmp_path / paths["summary"]).read_text())
