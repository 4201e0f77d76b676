"""A Llama 3 Hugging Face checkpoint as `preset:`: both routes end to end in one small DAG.

The checkpoint is conftest's ``llama3_checkpoint`` (written by hand: KerasHub has no Llama
exporter): a Llama 3.2-like config.json (tied embeddings, RoPE scaling), seeded safetensors
weights and a tokenizer.json trained by ``tokenizers`` with Llama 3's pre-tokenizer.

- fp32 of both routes gives the Keras reference's greedy ids (fidelity exact match, smoke test
  equal to Keras), and the reference is KerasHub's model on the checkpoint's tensors;
- the codelab route's in-graph tokenizer, inside the converted .tflite, gives the ids of
  ``tokenizers`` with the checkpoint's tokenizer.json on >= 1,000 held-out lines and hard cases;
- the LiteRT route's runtime tokenizer is the checkpoint's tokenizer.json without its
  post-processor, and the tokenizer inside the LiteRT file gives the same ids.
"""

from __future__ import annotations

import json
import time

import pytest
from test_llama3 import LLAMA3_HARD_CASES, _reference_ids
from test_tokenizer_parity import _assert_same, _parity_texts

from llm2tflite.inputs.reference import keras_generate

from conftest import make_project, run_snakemake

MAX_LENGTH = 24
PROMPTS = ["Estoy disfrutando de", "I'M HERE 2026", "¿Dónde está"]
CONFIG = """\
models:
  llama3: {{preset: {checkpoint}}}
generation: {{max_length: {max_length}, sequence_length: 16}}
variants: [fp32]
smoke: {{prompts: ["Estoy disfrutando de"]}}
fidelity: {{prompts: {prompts}, perplexity_lines: 20}}
android: {{variant: fp32}}
litert: {{variants: [fp32], prefill_lengths: [8]}}
litertlm: {{variants: []}}
web: {{models: []}}
"""
TARGETS = tuple(
    f"results/llama3/{route}/{stage}/fp32.json"
    for route in ("tflite", "litert")
    for stage in ("smoke", "gate")
)


@pytest.fixture(scope="module")
def llama3_run(llama3_checkpoint, tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("llama3_run") / "project")
    (project / "config" / "llama3.yaml").write_text(
        CONFIG.format(
            checkpoint=llama3_checkpoint, max_length=MAX_LENGTH, prompts=json.dumps(PROMPTS)
        )
    )
    started = time.perf_counter()
    run_snakemake(project, "--cores", "2", *TARGETS, "--configfile", "config/llama3.yaml")
    print(f"Llama 3 checkpoint run (fp32 of both routes): {time.perf_counter() - started:.0f} s")
    return project / "results" / "llama3"


def test_fp32_of_both_routes_equals_keras(llama3_checkpoint, llama3_run):
    from llm2tflite.inputs.sources import load_causal_lm

    expected = [
        keras_generate(load_causal_lm(str(llama3_checkpoint)), p, MAX_LENGTH).token_ids
        for p in PROMPTS
    ]
    reference = json.loads((llama3_run / "reference" / "fidelity.json").read_text())
    assert [g["token_ids"] for g in reference["generations"]] == expected
    for route in ("tflite", "litert"):
        fidelity = json.loads((llama3_run / route / "fidelity" / "fp32.json").read_text())
        assert fidelity["exact_match_rate"] == 1.0, (route, fidelity["prompts"])
        assert json.loads((llama3_run / route / "gate" / "fp32.json").read_text())["passed"]
        smoke = json.loads((llama3_run / route / "smoke" / "fp32.json").read_text())
        assert smoke["passed"] and all(r["equals_keras"] for r in smoke["results"]), smoke


def test_tokenizers_in_both_files_equal_tokenizers(
    llama3_checkpoint, llama3_run, default_corpus_and_vocab
):
    from llm2tflite.codelab.runtime import TFLiteModel
    from llm2tflite.model_files import open_model

    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt") + LLAMA3_HARD_CASES
    reference = _reference_ids(llama3_checkpoint / "tokenizer.json", texts)
    codelab = TFLiteModel(llama3_run / "tflite" / "fp32.tflite")
    _assert_same("TFLite", [codelab.token_ids(t) for t in texts], "tokenizers", reference, texts)
    litert = open_model(llama3_run / "litert" / "fp32.tflite")
    _assert_same("LiteRT", [litert.token_ids(t) for t in texts], "tokenizers", reference, texts)
    carried = json.loads((llama3_run / "litert" / "tokenizer.json").read_text())
    original = json.loads((llama3_checkpoint / "tokenizer.json").read_text())
    assert carried == {**original, "post_processor": None}
