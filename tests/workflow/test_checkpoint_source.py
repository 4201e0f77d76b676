"""A Hugging Face checkpoint directory as `preset:` in a workflow run.

- fp32 of both routes built from a checkpoint (KerasHub's Transformers export of a small GPT-2;
  in the same run a small Qwen 2, KerasHub's export completed as Qwen's own: a byte-level BPE
  family without a start token, whose tokenizer is not GPT-2's) gives the original Keras
  model's greedy ids: the run's Keras reference, loaded from the checkpoint, has the original's
  ids, and each route's fp32 fidelity matches it exactly;
- in the same run a Llama 3 checkpoint written by hand (conftest's ``llama3_checkpoint``:
  KerasHub has no Llama exporter), whose fp32 of both routes gives the greedy ids of KerasHub's
  model on the checkpoint's tensors;
- the Qwen and Llama 3 models' tokenizers (the codelab file's traced one, the LiteRT route's
  tokenizer.json) give the ids of Hugging Face ``tokenizers`` on the checkpoint's own
  tokenizer.json;
- the checkpoint's files are inputs of the jobs that load it: editing one (config, weights,
  tokenizer, tokenizer_config.json with its chat template) reruns that model's jobs and no
  other model's;
- a checkpoint the workflow cannot load fails the DAG's parsing with one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest
from test_invalidation import planned_jobs

from llm2tflite.inputs.reference import keras_generate

from conftest import copy_default_config, make_project, run_snakemake

MAX_LENGTH = 24
PROMPTS = ["Estoy disfrutando de", "I am enjoying the", "My sister likes"]
# `checkpoint` is built and checked; `other` (a copy of the checkpoint elsewhere) only gets its
# Keras reference, which an edit of `checkpoint`'s files must leave alone.
CONFIG = """\
models:
  checkpoint: {{preset: {checkpoint}}}
  other: {{preset: {other}}}
  qwen: {{preset: {qwen}}}
  llama3: {{preset: {llama3}}}
generation: {{max_length: {max_length}, sequence_length: 8}}
variants: [fp32]
smoke: {{prompts: ["Estoy disfrutando de"]}}
fidelity: {{prompts: {prompts}, perplexity_lines: 20}}
android: {{variant: fp32}}
litert: {{variants: [fp32], prefill_lengths: [8]}}
litertlm: {{variants: []}}
web: {{models: []}}
"""
TARGETS = (
    *(
        f"results/{model}/{route}/{stage}/fp32.json"
        for model in ("checkpoint", "qwen", "llama3")
        for route in ("tflite", "litert")
        for stage in ("smoke", "gate")
    ),
    "results/other/reference/smoke.json",
)


def _run_args():
    # The targets first: --configfile takes every word after it.
    return (*TARGETS, "--configfile", "config/checkpoint.yaml")


@pytest.fixture(scope="module")
def checkpoint_run(gpt2_checkpoint, qwen_checkpoint, llama3_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoint_run")
    project = make_project(root / "project")
    other = shutil.copytree(gpt2_checkpoint["checkpoint"], root / "other_checkpoint")
    (project / "config" / "checkpoint.yaml").write_text(
        CONFIG.format(
            checkpoint=gpt2_checkpoint["checkpoint"],
            other=other,
            qwen=qwen_checkpoint["checkpoint"],
            llama3=llama3_checkpoint,
            max_length=MAX_LENGTH,
            prompts=json.dumps(PROMPTS),
        )
    )
    planned = planned_jobs(project, *_run_args())
    started = time.perf_counter()
    run_snakemake(project, "--cores", "2", *_run_args())
    print(
        f"checkpoint run (GPT-2, Qwen 2 and Llama 3 checkpoints, fp32 of both routes): "
        f"{time.perf_counter() - started:.0f} s"
    )
    assert planned_jobs(project, *_run_args()) == set()
    return project, planned


@pytest.mark.parametrize("model", ["checkpoint", "qwen", "llama3"])
def test_fp32_of_both_routes_equals_the_original_keras_model(
    gpt2_checkpoint, qwen_checkpoint, llama3_checkpoint, checkpoint_run, model
):
    from llm2tflite.inputs.sources import load_causal_lm

    project, _ = checkpoint_run
    results = project / "results" / model
    if model == "llama3":
        # Written by hand, no Keras original: KerasHub's model on the checkpoint's tensors.
        original = load_causal_lm(str(llama3_checkpoint))
    else:
        checkpoints = {"checkpoint": gpt2_checkpoint, "qwen": qwen_checkpoint}
        original = checkpoints[model]["causal_lm"]
    original.compile(sampler="greedy")
    expected = [keras_generate(original, p, MAX_LENGTH).token_ids for p in PROMPTS]
    reference = json.loads((results / "reference" / "fidelity.json").read_text())
    assert [g["token_ids"] for g in reference["generations"]] == expected
    assert all(len(ids) > len(PROMPTS[0].split()) + 1 for ids in expected)
    for route in ("tflite", "litert"):
        fidelity = json.loads((results / route / "fidelity" / "fp32.json").read_text())
        assert fidelity["exact_match_rate"] == 1.0, (route, fidelity["prompts"])
        assert [p["output"] for p in fidelity["prompts"]] == [
            g["output"] for g in reference["generations"]
        ]
        assert json.loads((results / route / "gate" / "fp32.json").read_text())["passed"]
        smoke = json.loads((results / route / "smoke" / "fp32.json").read_text())
        assert smoke["passed"] and all(r["equals_keras"] for r in smoke["results"]), smoke


# Where Qwen's tokenizer differs from KerasHub's own (tests/families/test_qwen_tokenizer.py):
# single digits, a non-letter joined to the word after it, capital contractions, NFC.
QWEN_TEXTS = [
    "Estoy disfrutando de la playa",
    "I am enjoying the",
    "In 2025 we paid 1,000,000 for 12345 items",
    "¿Dónde está?\tI'M sure IT'S fine   ",
    "cafe\u0301 nin\u0303o<|im_end|>",
]


def test_qwen_tokenizers_give_the_checkpoints_ids(qwen_checkpoint, checkpoint_run):
    """Qwen has no start token: the traced tokenize signature marks its first id a placeholder
    (start_tokens 0), so the runtime gives the prompt's ids alone. Those ids, the Keras model's
    (the exact tokenizer in the graph) and the LiteRT route's tokenizer.json's are the ids of
    ``tokenizers`` on the checkpoint's own tokenizer.json."""
    from test_tokenizer_parity import _ids_keras
    from tokenizers import Tokenizer

    from llm2tflite.codelab.runtime import TFLiteModel
    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer

    project, _ = checkpoint_run
    reference = Tokenizer.from_file(str(qwen_checkpoint["checkpoint"] / "tokenizer.json"))
    expected = [reference.encode(t, add_special_tokens=False).ids for t in QWEN_TEXTS]
    model = TFLiteModel(project / "results" / "qwen" / "tflite" / "fp32.tflite")
    tokenizer = qwen_checkpoint["causal_lm"].preprocessor.tokenizer
    assert tokenizer.start_token_id is None
    assert _ids_keras(tokenizer, QWEN_TEXTS) == expected
    assert [model.token_ids(t) for t in QWEN_TEXTS] == expected
    assert [model.token_ids(t, with_start=True) for t in QWEN_TEXTS] == expected
    assert model.token_ids("") == model.token_ids("", with_start=True) == []
    runtime = load_runtime_tokenizer(project / "results" / "qwen" / "litert" / "tokenizer.json")
    assert [runtime.encode(t) for t in QWEN_TEXTS] == expected
    generation = model.generate(QWEN_TEXTS[0], max_length=len(expected[0]) + 2)
    assert generation.token_ids[: generation.prompt_tokens] == expected[0]
    assert len(generation.token_ids) == len(expected[0]) + 2


def test_llama3_tokenizers_in_both_files_equal_tokenizers(
    llama3_checkpoint, checkpoint_run, default_corpus_and_vocab
):
    """The in-graph tokenizer of the codelab file and the LiteRT route's runtime tokenizer give
    the ids of ``tokenizers`` on the checkpoint's tokenizer.json (>= 1,000 lines, hard cases);
    the LiteRT route carries that file without its post-processor (the runtime adds the start
    token itself)."""
    from test_llama3 import LLAMA3_HARD_CASES, _reference_ids
    from test_tokenizer_parity import _assert_same, _parity_texts

    from llm2tflite.codelab.runtime import TFLiteModel
    from llm2tflite.model_files import open_model

    results = checkpoint_run[0] / "results" / "llama3"
    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt") + LLAMA3_HARD_CASES
    reference = _reference_ids(llama3_checkpoint / "tokenizer.json", texts)
    codelab = TFLiteModel(results / "tflite" / "fp32.tflite")
    _assert_same("TFLite", [codelab.token_ids(t) for t in texts], "tokenizers", reference, texts)
    litert = open_model(results / "litert" / "fp32.tflite")
    _assert_same("LiteRT", [litert.token_ids(t) for t in texts], "tokenizers", reference, texts)
    carried = json.loads((results / "litert" / "tokenizer.json").read_text())
    original = json.loads((llama3_checkpoint / "tokenizer.json").read_text())
    assert carried == {**original, "post_processor": None}


@pytest.mark.parametrize(
    "name", ["config.json", "model.safetensors", "merges.txt", "tokenizer_config.json"]
)
def test_editing_a_checkpoint_file_reruns_that_models_jobs_only(
    gpt2_checkpoint, checkpoint_run, name
):
    project, planned = checkpoint_run
    path = gpt2_checkpoint["checkpoint"] / name
    original, stat = path.read_bytes(), path.stat()
    try:
        # A real edit (Snakemake compares small inputs' content); config.json stays JSON.
        path.write_bytes(original + b"\n")
        rerun = planned_jobs(project, *_run_args())
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # Every job of the model, as the first run planned them, and nothing else (the other
    # model's reference, the shared evaluation text).
    assert rerun == {job for job in planned if job[1].startswith("model=checkpoint")}
    assert ("reference", "model=other") in planned and ("reference", "model=other") not in rerun
    assert {rule for rule, _ in rerun} >= {"trace", "litert_export", "runtime_tokenizer"}
    assert planned_jobs(project, *_run_args()) == set()


def _with_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))


# A broken `preset:` directory and the one line the parse must fail with (a regex).
BROKEN = {
    "unsupported model_type": (
        lambda d: _with_config(d, model_type="mistral"),
        r"models\.local\.preset: Hugging Face checkpoint '.*/local': model_type 'mistral' is "
        r"not supported; supported model_types: gpt2 \(gpt2\), gemma3_text \(gemma3\), "
        r"llama \(llama3\), qwen2 \(qwen\), qwen3 \(qwen3\)$",
    ),
    "no weights": (
        lambda d: (d / "model.safetensors").unlink(),
        r"models\.local\.preset: Hugging Face checkpoint '.*/local' \(gpt2\): no "
        r"\*\.safetensors weights; KerasHub reads safetensors only$",
    ),
    "no config.json": (
        lambda d: (d / "config.json").unlink(),
        r"models\.local\.preset: '.*/local' has no task.json: not a KerasHub causal LM "
        r"preset directory .*not a Hugging Face checkpoint$",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_checkpoint_fails_at_parse_time(gpt2_checkpoint, tmp_path, case):
    edit, message = BROKEN[case]
    broken = shutil.copytree(gpt2_checkpoint["checkpoint"], tmp_path / "local")
    edit(broken)
    workdir = tmp_path / "project"
    config_file = copy_default_config(workdir)
    config_file.write_text(
        config_file.read_text().replace(
            "models:\n", f"models:\n  local:\n    preset: {broken}\n", 1
        )
    )
    completed = run_snakemake(workdir, "--dry-run", check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    (line,) = [line for line in output.splitlines() if "models.local.preset" in line]
    assert re.search(message, line), output[-3000:]
    assert not (workdir / "results").exists()
