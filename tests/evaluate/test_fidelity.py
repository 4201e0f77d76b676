"""Fidelity arithmetic and quality gates on known answers; fp32 against Keras on a real model."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from llm2tflite.core.generation import Generation
from llm2tflite.evaluate.fidelity import (
    compare_generations,
    gate_failures,
    keras_reference,
    leading_agreement,
    perplexity,
    summarize,
    variant_fidelity,
)

from conftest import REPO, SMALL_MAX_LENGTH


def test_leading_agreement():
    assert leading_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert leading_agreement([5], [6]) == 0
    assert leading_agreement([1, 2], [1, 2, 3]) == 2


def test_compare_and_summarize_known_answer():
    keras = Generation("k", [0, 10, 11, 1, 2, 3, 4], prompt_tokens=3)
    cases = [
        compare_generations(Generation("", [0, 10, 11, 1, 2, 3, 4], 3), keras),  # exact: 4
        compare_generations(Generation("", [0, 10, 11, 1, 2, 7, 4], 3), keras),  # 2 agree
        compare_generations(Generation("", [0, 10, 11, 9, 2, 3, 4], 3), keras),  # 0 agree
        compare_generations(Generation("", [0, 10, 11, 1, 2, 3], 3), keras),  # shorter: 3
    ]
    assert [c["exact_match"] for c in cases] == [True, False, False, False]
    assert [c["leading_tokens_agree"] for c in cases] == [4, 2, 0, 3]
    assert [c["new_tokens"] for c in cases] == [4, 4, 4, 3]
    assert summarize(cases) == {
        "exact_match_rate": 0.25,
        "mean_leading_tokens_agree": 2.25,
        "mean_keras_new_tokens": 4.0,
    }


def test_perplexity_known_answer():
    # Four tokens each with probability 1/8: perplexity 8.
    assert perplexity(4 * math.log(1 / 8), 4) == pytest.approx(8.0)
    assert perplexity(0.0, 3) == 1.0


def _result(**figures):
    base = {
        "route": "tflite",
        "variant": "int8",
        "exact_match_rate": 0.9,
        "mean_leading_tokens_agree": 3.5,
        "mean_keras_new_tokens": 4.0,
        "perplexity": 5.92,
        "keras_perplexity": 5.9184,
        "perplexity_relative_difference": 0.0003,
        "prompts": [{}] * 10,
    }
    return {**base, **figures}


def test_gates_known_answers():
    gates = {
        "min_exact_match_rate": 0.5,
        "min_mean_leading_tokens_agree": 2,
        "max_perplexity_relative_difference": 0.05,
    }
    assert gate_failures(_result(), gates) == []
    (failure,) = gate_failures(_result(exact_match_rate=0.4), gates)
    assert failure == (
        "tflite/int8: greedy output equals Keras's on 40% of 10 prompts (gate: at least 50%)"
    )
    (failure,) = gate_failures(_result(mean_leading_tokens_agree=1.5), gates)
    assert failure == (
        "tflite/int8: 1.5 leading generated tokens agree with Keras on average (gate: at least 2.0)"
    )
    (failure,) = gate_failures(
        _result(perplexity=6.5, perplexity_relative_difference=0.0983), gates
    )
    assert failure == (
        "tflite/int8: perplexity 6.5000 differs from Keras's 5.9184 by 9.83% (gate: at most 5.00%)"
    )
    # Exactly at a threshold passes; no gate, no check.
    assert gate_failures(_result(perplexity_relative_difference=0.05), gates) == []
    assert gate_failures(_result(exact_match_rate=0.0), {}) == []
    assert gate_failures(_result(exact_match_rate=0.0), {"min_exact_match_rate": None}) == []


def test_leading_gate_is_capped_by_keras_own_length():
    # Keras stops after 1.5 tokens on average: a model that agrees on all of them passes a
    # gate of 10 leading tokens; one that agrees on fewer does not.
    gates = {"min_mean_leading_tokens_agree": 10}
    assert (
        gate_failures(_result(mean_leading_tokens_agree=1.5, mean_keras_new_tokens=1.5), gates)
        == []
    )
    assert (
        gate_failures(_result(mean_leading_tokens_agree=1.4, mean_keras_new_tokens=1.5), gates)
        != []
    )


def test_not_a_number_misses_the_gate():
    nan = float("nan")
    failures = gate_failures(
        _result(perplexity=nan, perplexity_relative_difference=nan),
        {"max_perplexity_relative_difference": 0.05},
    )
    assert len(failures) == 1 and "perplexity nan" in failures[0]
    with pytest.raises(ValueError, match="unknown quality gate"):
        gate_failures(_result(), {"max_perplexity": 0.05})


def test_gate_cli_fails_with_one_line(tmp_path):
    fidelity = tmp_path / "int8.json"
    fidelity.write_text(json.dumps(_result(perplexity=7.0, perplexity_relative_difference=0.18)))
    out = tmp_path / "gate.json"
    command = [
        sys.executable,
        "-m",
        "llm2tflite.evaluate.fidelity",
        "gate",
        "--fidelity",
        str(fidelity),
        "--out",
        str(out),
        "--gates-json",
    ]
    failed = subprocess.run(
        [*command, '{"max_perplexity_relative_difference": 0.05}'], capture_output=True, text=True
    )
    assert failed.returncode == 1 and not out.exists()
    assert failed.stderr.strip().splitlines() == [
        "quality gate FAILED: tflite/int8: perplexity 7.0000 differs from Keras's 5.9184 by "
        "18.00% (gate: at most 5.00%)"
    ]
    passed = subprocess.run(
        [*command, '{"max_perplexity_relative_difference": 0.2}'], capture_output=True, text=True
    )
    assert passed.returncode == 0, passed.stderr
    assert json.loads(out.read_text())["passed"] is True


def test_config_gates_are_the_schema_defaults():
    """config.yaml states the defaults; a config without them gets the same from the schema."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    stated = config.pop("quality_gates")
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    assert config["quality_gates"] == stated
    # A partial override keeps the other defaults.
    config["quality_gates"] = {"int8": {"max_perplexity_relative_difference": 0.1}}
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    assert config["quality_gates"]["int8"] == {
        "max_perplexity_relative_difference": 0.1,
        "min_mean_leading_tokens_agree": 2,
    }
    assert config["quality_gates"]["fp32"] == stated["fp32"]


@pytest.fixture(scope="module")
def small_reference(small_export, default_corpus_and_vocab):
    prompts = ["Estoy disfrutando de", "I am enjoying the"]
    text = default_corpus_and_vocab / "heldout.txt"
    lines = text.read_text(encoding="utf-8").splitlines()[:40]
    return keras_reference(
        str(small_export["preset"]), SMALL_MAX_LENGTH, "greedy", prompts, lines
    ), lines


def test_keras_reference_records_generated_ids(small_reference, small_export):
    from llm2tflite.inputs.reference import keras_generate

    reference, _ = small_reference
    causal_lm = small_export["causal_lm"]
    for record in reference["generations"]:
        # The text is exactly KerasHub's generate(); the ids are the ones it generated.
        assert record["output"] == causal_lm.generate(record["prompt"], max_length=SMALL_MAX_LENGTH)
        generation = keras_generate(causal_lm, record["prompt"], SMALL_MAX_LENGTH)
        assert generation.token_ids == record["token_ids"]
        tokenizer = causal_lm.preprocessor.tokenizer
        prompt_ids = [int(i) for i in tokenizer(record["prompt"])]
        assert record["token_ids"][: record["prompt_tokens"]] == (
            [int(tokenizer.start_token_id)] + prompt_ids
        )
        assert len(record["token_ids"]) <= SMALL_MAX_LENGTH


def test_fp32_fidelity_equals_keras(small_reference, small_export):
    reference, lines = small_reference
    result = variant_fidelity(str(small_export["tflite"]), "small", "fp32", reference, lines)
    assert result["route"] == "tflite"
    assert result["exact_match_rate"] == 1.0
    assert result["mean_leading_tokens_agree"] == pytest.approx(
        sum(p["keras_new_tokens"] for p in result["prompts"]) / 2
    )
    assert all(p["new_tokens"] == p["keras_new_tokens"] for p in result["prompts"])
    assert result["perplexity_relative_difference"] < 1e-3
    assert result["perplexity_tokens"] == reference["perplexity_tokens"]
    # A random model is nearly uniform over its vocabulary: perplexity of the order of its size.
    assert 100 < result["perplexity"] < 20000
    assert (
        gate_failures(
            result, {"min_exact_match_rate": 1.0, "max_perplexity_relative_difference": 1e-3}
        )
        == []
    )


def test_keras_perplexity_equals_an_independent_computation(default_run):
    """The Keras perplexity of the workflow's reference against training's NumPy held-out loss.

    ``llm2tflite.inputs.train.heldout_loss`` packs lines with the training preprocessor (tf.data),
    runs
    ``predict_on_batch`` on length-bucketed batches and computes the cross-entropy in NumPy; the
    fidelity reference tokenizes each line on its own and takes TF's log-softmax. The packed
    lines also predict an end token, which the reference does not score: its weight is set to 0.
    """
    import numpy as np

    from llm2tflite.evaluate.fidelity import read_lines
    from llm2tflite.inputs.sources import load_causal_lm
    from llm2tflite.inputs.train import PackedLines, heldout_loss, pack_lines

    workdir, _ = default_run
    reference = json.loads((workdir / "results/tiny/reference/fidelity.json").read_text())
    lines = read_lines(workdir / "results/tiny/corpus/heldout.txt", reference["perplexity_lines"])
    causal_lm = load_causal_lm(str(workdir / "results/tiny/preset"))
    preprocessor = causal_lm.preprocessor
    preprocessor.sequence_length = max(len(line.encode()) for line in lines) + 2
    packed = pack_lines(preprocessor, lines)
    end = int(preprocessor.tokenizer.end_token_id)
    last = packed.sample_weight.sum(axis=1).astype(int) - 1  # each line's end-token label
    assert (packed.labels[np.arange(len(lines)), last] == end).all()
    weight = packed.sample_weight.copy()
    weight[np.arange(len(lines)), last] = 0
    without_end = PackedLines(packed.token_ids, packed.padding_mask, packed.labels, weight)
    loss = heldout_loss(causal_lm, without_end)
    assert loss["tokens"] == reference["perplexity_tokens"]
    assert math.exp(loss["loss"]) == pytest.approx(reference["perplexity"], rel=1e-4)


def test_lines_longer_than_the_litert_cache_are_scored_on_the_same_tokens_as_keras(
    small_reference, small_export, tmp_path
):
    """The LiteRT route scores at most its cache length of ids per line: longer held-out lines
    are cut there, and Keras's perplexity is taken over the same tokens (fp32 agrees)."""
    from conftest import export_litert

    reference, lines = small_reference
    exported = export_litert(
        small_export["causal_lm"], tmp_path, cache_length=8, prefill_lengths=(4,)
    )
    result = variant_fidelity(str(exported["tflite"]["fp32"]), "small", "fp32", reference, lines)
    assert result["route"] == "litert"
    assert result["perplexity_lines_cut_to_score_limit"] > 0
    assert result["perplexity_tokens"] < reference["perplexity_tokens"]
    assert result["keras_perplexity"] != reference["perplexity"]  # over the kept tokens only
    assert result["perplexity_relative_difference"] < 1e-3
