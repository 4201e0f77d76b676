"""The real-scale Qwen path: the twin of qwen2.5_0.5b_en through the whole DAG, both routes.

Slow (likely 1-2 hours on 2 shared cores: 494M parameters, a 151,936-row embedding, two codelab
conversions, a LiteRT export and three LiteRT files, the codelab benchmark), so CI skips it; run
it with ``python -m pytest -m slow tests/twins/test_qwen_twin.py -s``. It prints the figures the
closing notes report: conversion time and peak RSS per variant and route, sizes, codelab
latencies and a LiteRT decode loop per variant. Those are measurements, not assertions: the test
asserts only what must hold on any machine.

Every path it reads is named below (``paths_read``): tests/workflow/test_slow_test_paths.py
checks, in CI, that a dry run of the same command declares each of them as an output.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pytest

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
LITERT_VARIANTS = ("fp32", "int8", "int4")
PRESET = f"{RESULTS}/preset"
SUMMARY = f"results/reports/{MODEL}/summary.md"


def litert_file(variant: str, ext: str) -> str:
    """results/<model>/litert/<variant>.<ext>: "tflite" or "conversion.json"."""
    return f"{RESULTS}/litert/{variant}.{ext}"


def paths_read() -> list[str]:
    """Every path the test reads, relative to the run's directory."""
    return [
        TOKENIZER,
        EXPORT_INFO,
        *twin_codelab_paths(MODEL),
        FIDELITY_FP32,
        BENCH,
        LITERT_INFO,
        *(litert_file(v, ext) for v in LITERT_VARIANTS for ext in ("conversion.json", "tflite")),
        PRESET,
        SUMMARY,
    ]


def _litert_greedy(path, info, prompt_ids, max_length):
    """Greedy ids of a prefill/decode loop (test_litert_route.Session) and its step times."""
    from test_litert_route import Session

    session = Session(path, info)
    session.interpreter = type(session.interpreter)(model_path=str(path), num_threads=2)
    ids, steps = list(prompt_ids), []
    session.prefill(ids[:-1])
    while len(ids) < max_length:
        started = time.perf_counter()
        logits = session.decode(ids[-1])
        steps.append(time.perf_counter() - started)
        token = int(np.argmax(logits))
        if token in info["stop_token_ids"]:
            break
        ids.append(token)
    return ids, steps


@pytest.mark.slow
def test_qwen_twin_dag_runs_to_completion(tmp_path):
    from llm2tflite.evaluate.bench import format_record
    from llm2tflite.inputs.sources import load_causal_lm
    from llm2tflite.litert import convert as litert_convert

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
    fidelity = json.loads((tmp_path / FIDELITY_FP32).read_text())
    print(f"fidelity fp32: {json.dumps(fidelity)[:400]}")
    record = json.loads((tmp_path / BENCH).read_text())
    print(format_record(record))
    for entry in record["entries"]:
        assert entry["new_tokens"] >= 1 and entry["deterministic"]

    # The LiteRT route: builtins only, the tied table once, fp32 greedy ids = KerasHub's.
    litert_info = json.loads((tmp_path / LITERT_INFO).read_text())
    assert litert_info["stop_token_ids"] == [end_of_text]
    assert litert_info["start_token_id"] is None and not litert_info["add_start_token"]
    assert litert_info["layers"] == [{"kv_heads": 2, "head_dim": 64}] * 24
    sizes = {}
    for variant in ("fp32", "int8", "int4"):
        report = json.loads((tmp_path / litert_file(variant, "conversion.json")).read_text())
        seconds = report.get("convert_seconds", report.get("quantize_seconds"))
        sizes[variant] = report["size_bytes"]
        print(
            f"litert {variant}: {seconds} s, peak RSS {report['peak_rss_mb']} MiB, "
            f"{report['size_bytes'] / 1e6:.1f} MB"
        )
        litert_convert.check_builtins_only(
            litert_convert.read_model((tmp_path / litert_file(variant, "tflite")).read_bytes())
        )
    # 494M weights: int8 one byte each (the 151,936 x 896 table once), int4 about half that.
    assert sizes["int8"] < 0.3 * sizes["fp32"] and sizes["int4"] < 0.6 * sizes["int8"]

    causal_lm = load_causal_lm(str(tmp_path / PRESET))
    packed = causal_lm.preprocessor.generate_preprocess(
        [PROMPT], sequence_length=litert_info["cache_length"]
    )
    generated = causal_lm.generate_step(packed, stop_token_ids=litert_info["stop_token_ids"])
    keras_ids = np.asarray(generated["token_ids"][0])[
        np.asarray(generated["padding_mask"][0], bool)
    ].tolist()
    prompt_ids = np.asarray(packed["token_ids"][0])[
        np.asarray(packed["padding_mask"][0], bool)
    ].tolist()
    del causal_lm
    for variant in ("fp32", "int8", "int4"):
        ids, steps = _litert_greedy(
            tmp_path / litert_file(variant, "tflite"),
            litert_info,
            prompt_ids,
            litert_info["cache_length"],
        )
        print(
            f"litert decode {variant}: median {1000 * statistics.median(steps[1:]):.1f} ms/token "
            f"(min {1000 * min(steps[1:]):.1f}, first step {1000 * steps[0]:.0f} ms, "
            f"{len(steps)} steps, Python signature-runner loop, 2 threads)"
        )
        if variant == "fp32":
            assert ids == [i for i in keras_ids if i not in litert_info["stop_token_ids"]]
    print((tmp_path / SUMMARY).read_text())
