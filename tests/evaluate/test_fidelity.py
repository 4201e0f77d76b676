"""Fidelity arithmetic and quality gates on known answers; fp32 against Keras on a real model."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from llm2tflite.core.generation import Generation
from llm2tflite.evaluate.fidelity import (
    STOP,
    compare_generations,
    continuation,
    gate_failures,
    keras_reference,
    leading_agreement,
    perplexity,
    position_figures,
    sequence_agreement,
    summarize,
    variant_fidelity,
)

from conftest import REPO, SMALL_MAX_LENGTH


def test_leading_agreement():
    assert leading_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert leading_agreement([5], [6]) == 0
    assert leading_agreement([1, 2], [1, 2, 3]) == 2


def test_the_stop_token_counts():
    # max_length 10: 7 ids (3 prompt + 4 new) stopped; 10 ids ran to the limit.
    assert continuation(Generation("", [0, 10, 11, 1, 2, 3, 4], 3), 10) == [1, 2, 3, 4, STOP]
    assert continuation(Generation("", list(range(10)), 3), 10) == list(range(3, 10))
    # A babbler: Keras's 4 tokens and stop, then 3 tokens more instead of the stop.
    assert sequence_agreement([1, 2, 3, 4, STOP], [1, 2, 3, 4, 5, 6, 7]) == pytest.approx(4 / 7)
    # Missing before Keras's stop: 2 of Keras's 5 positions.
    assert sequence_agreement([1, 2, 3, 4, STOP], [1, 2, STOP]) == pytest.approx(2 / 5)
    # Not a leading run: the positions after a disagreement count too.
    assert sequence_agreement([1, 2, 3, 4], [1, 9, 3, 4]) == 0.75
    assert sequence_agreement([], []) == 1.0


def test_compare_and_summarize_known_answer():
    keras = Generation("k", [0, 10, 11, 1, 2, 3, 4], prompt_tokens=3)  # stopped (max_length 10)
    cases = [
        compare_generations(Generation("", [0, 10, 11, 1, 2, 3, 4], 3), keras, 10),  # exact
        compare_generations(Generation("", [0, 10, 11, 1, 2, 7, 4], 3), keras, 10),  # 4 of 5
        compare_generations(Generation("", [0, 10, 11, 9, 2, 3, 4], 3), keras, 10),  # 4 of 5
        compare_generations(Generation("", [0, 10, 11, 1, 2, 3], 3), keras, 10),  # 3 of 5
        # never stops: Keras's 4 ids, then 3 more up to max_length (4 of 7)
        compare_generations(Generation("", [0, 10, 11, 1, 2, 3, 4, 5, 6, 7], 3), keras, 10),
    ]
    assert [c["exact_match"] for c in cases] == [True, False, False, False, False]
    assert [c["leading_tokens_agree"] for c in cases] == [4, 2, 0, 3, 4]
    assert [c["sequence_agreement"] for c in cases] == pytest.approx([1, 0.8, 0.8, 0.6, 4 / 7])
    assert [c["stopped"] for c in cases] == [True, True, True, True, False]
    summary = summarize(cases)
    assert summary["exact_match_rate"] == 0.2
    assert summary["sequence_agreement"] == pytest.approx((1 + 0.8 + 0.8 + 0.6 + 4 / 7) / 5)
    assert summary["mean_leading_tokens_agree"] == pytest.approx(13 / 5)
    # A different prompt tokenization agrees on nothing.
    other = compare_generations(Generation("", [0, 10, 12, 1, 2, 3, 4], 3), keras, 10)
    assert other["sequence_agreement"] == 0 and not other["exact_match"]


def test_position_figures_against_an_independent_computation():
    """KL, top-1 and correlation against scipy (entropy, pearsonr), stored as fp16 centered."""
    from scipy.special import softmax
    from scipy.stats import entropy, pearsonr

    rng = np.random.default_rng(0)
    keras = rng.normal(0, 3, (5, 50))
    variant = keras + rng.normal(0, 0.5, (5, 50))
    variant[4] = rng.normal(0, 3, 50)  # unrelated
    centered = (keras - keras.mean(axis=-1, keepdims=True)).astype(np.float16)
    normalizers = np.logaddexp.reduce(centered.astype(np.float64), axis=-1)
    figures = position_figures(centered, normalizers, variant)
    for i in range(5):
        p = softmax(centered[i].astype(np.float64))
        q = softmax(variant[i])
        assert figures["kl"][i] == pytest.approx(entropy(p, q), rel=1e-6, abs=1e-12)
        assert figures["correlation"][i] == pytest.approx(
            pearsonr(keras[i], variant[i])[0], abs=1e-3
        )
        assert figures["top1"][i] == (np.argmax(keras[i]) == np.argmax(variant[i]))
    assert figures["correlation"][4] < 0.5 < figures["correlation"][:4].min()
    # A copy: no divergence.
    same = position_figures(centered, normalizers, centered.astype(np.float64) + 7.0)
    assert np.allclose(same["kl"], 0, atol=1e-12) and same["top1"].all()


def test_perplexity_known_answer():
    # Four tokens each with probability 1/8: perplexity 8.
    assert perplexity(4 * math.log(1 / 8), 4) == pytest.approx(8.0)
    assert perplexity(0.0, 3) == 1.0


def _result(**figures):
    base = {
        "route": "tflite",
        "variant": "int8",
        "exact_match_rate": 0.9,
        "sequence_agreement": 0.95,
        "mean_leading_tokens_agree": 3.5,
        "mean_keras_new_tokens": 4.0,
        "kl_mean": 0.0002,
        "kl_p99": 0.002,
        "top1_agreement": 0.98,
        "logit_correlation": 0.9999,
        "perplexity": 5.92,
        "keras_perplexity": 5.9184,
        "perplexity_relative_difference": 0.0003,
        "worst_path": {"kl_mean": "score"},
        "prompts": [{}] * 10,
    }
    return {**base, **figures}


GATES = {
    "min_exact_match_rate": 0.5,
    "min_sequence_agreement": 0.6,
    "max_kl_mean": 0.01,
    "max_kl_p99": 0.1,
    "min_top1_agreement": 0.9,
    "min_logit_correlation": 0.99,
    "max_perplexity_relative_difference": 0.05,
}


def test_gates_known_answers():
    assert gate_failures(_result(), GATES) == []
    (failure,) = gate_failures(_result(exact_match_rate=0.4), GATES)
    assert failure == (
        "tflite/int8: min_exact_match_rate: greedy ids (stop included) equal Keras's 40.0% "
        "(gate: at least 50.0%)"
    )
    (failure,) = gate_failures(_result(sequence_agreement=0.07), GATES)
    assert failure == (
        "tflite/int8: min_sequence_agreement: whole-continuation agreement with Keras (stop token "
        "counted) 7.0% (gate: at least 60.0%)"
    )
    (failure,) = gate_failures(_result(kl_mean=0.043), GATES)
    assert failure == (
        "tflite/int8: max_kl_mean: mean KL(Keras ‖ variant) nats/token 0.043 (score path) "
        "(gate: at most 0.01)"
    )
    (failure,) = gate_failures(_result(logit_correlation=0.9848), GATES)
    assert failure.startswith("tflite/int8: min_logit_correlation: mean logit correlation")
    (failure,) = gate_failures(
        _result(perplexity=6.5, perplexity_relative_difference=0.0983), GATES
    )
    assert failure == (
        "tflite/int8: max_perplexity_relative_difference: perplexity relative difference from "
        "Keras 9.830% (gate: at most 5.000%)"
    )
    # Exactly at a threshold passes; no gate, no check.
    assert gate_failures(_result(perplexity_relative_difference=0.05), GATES) == []
    assert gate_failures(_result(exact_match_rate=0.0), {}) == []
    assert gate_failures(_result(exact_match_rate=0.0), {"min_exact_match_rate": None}) == []


def test_not_a_number_misses_the_gate():
    nan = float("nan")
    failures = gate_failures(
        _result(kl_mean=nan, perplexity_relative_difference=nan),
        {"max_perplexity_relative_difference": 0.05, "max_kl_mean": 1.0},
    )
    assert len(failures) == 2 and all(" nan " in f for f in failures)
    assert gate_failures(_result(logit_correlation=None), {"min_logit_correlation": 0.5})
    with pytest.raises(ValueError, match="unknown quality gate"):
        gate_failures(_result(), {"max_perplexity": 0.05})


def test_gate_cli_fails_with_one_line(tmp_path):
    fidelity = tmp_path / "int8.json"
    fidelity.write_text(json.dumps(_result(kl_mean=0.5, top1_agreement=0.5)))
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
    failed = subprocess.run([*command, json.dumps(GATES)], capture_output=True, text=True)
    assert failed.returncode == 1 and not out.exists()
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("quality gate FAILED: tflite/int8: max_kl_mean: ")
    assert "; tflite/int8: min_top1_agreement: top-1 agreement with Keras 50.0%" in line
    passed = subprocess.run(
        [*command, '{"max_kl_mean": 0.6, "min_top1_agreement": 0.5}'],
        capture_output=True,
        text=True,
    )
    assert passed.returncode == 0, passed.stderr
    assert json.loads(out.read_text())["passed"] is True


def test_config_gates_are_the_schema_defaults():
    """config.yaml states the defaults; a config without them gets the same from the schema; the
    twin configs switch no gate off."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    stated = config.pop("quality_gates")
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    assert config["quality_gates"] == stated
    # A partial override keeps the other defaults.
    config["quality_gates"] = {"int8": {"max_kl_mean": 0.1}}
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    assert config["quality_gates"]["int8"] == {**stated["int8"], "max_kl_mean": 0.1}
    assert config["quality_gates"]["fp32"] == stated["fp32"]
    for path in (REPO / "config").glob("*twin*.yaml"):
        twin = yaml.safe_load(path.read_text())
        for variant, gates in (twin.get("quality_gates") or {}).items():
            assert None not in gates.values(), f"{path.name}: a {variant} gate switched off"


@pytest.fixture(scope="module")
def small_reference(small_export, default_corpus_and_vocab):
    prompts = ["Estoy disfrutando de", "I am enjoying the"]
    text = default_corpus_and_vocab / "heldout.txt"
    lines = text.read_text(encoding="utf-8").splitlines()[:40]
    return keras_reference(str(small_export["preset"]), SMALL_MAX_LENGTH, "greedy", prompts, lines)


def test_keras_reference_records_generated_ids(small_reference, small_export):
    from llm2tflite.inputs.reference import keras_generate

    reference = small_reference
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


def test_stored_logits_are_the_first_lines_that_fit(
    small_reference, small_export, default_corpus_and_vocab
):
    """The logits budget keeps whole lines from the first: a budget for the first line and a
    short later one, not the long line between them, stores the first line only (the variant
    side pairs the stored rows with the lines in order)."""
    import numpy as np

    text = default_corpus_and_vocab / "heldout.txt"
    lines = text.read_text(encoding="utf-8").splitlines()[:40]
    rows = [len(ids) - 1 for ids in small_reference["line_token_ids"]]
    longest = max(range(1, len(lines)), key=lambda i: rows[i])
    shortest = min((i for i in range(1, len(lines)) if rows[i] > 0), key=lambda i: rows[i])
    assert rows[shortest] < rows[longest]
    row_bytes = 2 * small_reference["logits_vocabulary"]
    budget_mb = (rows[0] + rows[shortest]) * row_bytes / 2**20
    reference = keras_reference(
        str(small_export["preset"]), SMALL_MAX_LENGTH, "greedy", [],
        [lines[0], lines[longest], lines[shortest]], logits_mb=budget_mb,
    )  # fmt: skip
    assert reference["logits_lines"] == 1 and reference["logits_positions"] == rows[0]
    assert np.array_equal(reference["logits"], small_reference["logits"][: rows[0]])


def test_fp32_fidelity_equals_keras(small_reference, small_export, small_litert):
    """Both routes' fp32 files on a random-weight model: Keras's distributions at every stored
    position (KL ~ 0, top-1 and correlation ~ 1) through every signature path."""
    reference = small_reference
    assert reference["logits"].shape == (
        reference["logits_positions"],
        reference["logits_vocabulary"],
    )
    assert reference["logits_positions"] == reference["perplexity_tokens"]  # all fit 64 MB
    for model, paths in (
        (small_export["tflite"], ["score"]),
        (small_litert["tflite"]["fp32"], ["decode", "prefill_8", "prefill_16"]),
    ):
        result = variant_fidelity(str(model), "small", "fp32", reference)
        assert list(result["paths"]) == paths
        assert result["exact_match_rate"] == 1.0 and result["sequence_agreement"] == 1.0
        assert all(p["new_tokens"] == p["keras_new_tokens"] for p in result["prompts"])
        for figures in result["paths"].values():
            assert figures["positions"] > 0
            assert figures["kl_mean"] < 1e-4 and figures["top1_agreement"] > 0.99
            assert figures["logit_correlation"] > 0.9999
        assert result["perplexity_relative_difference"] < 1e-3
        # A random model is nearly uniform over its vocabulary: perplexity of its size's order.
        assert 100 < result["perplexity"] < 20000


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

    reference = small_reference
    exported = export_litert(
        small_export["causal_lm"], tmp_path, cache_length=8, prefill_lengths=(4,)
    )
    result = variant_fidelity(str(exported["tflite"]["fp32"]), "small", "fp32", reference)
    assert result["route"] == "litert"
    assert result["perplexity_lines_cut_to_score_limit"] > 0
    assert result["perplexity_tokens"] < reference["perplexity_tokens"]
    assert result["keras_perplexity"] != reference["perplexity"]  # over the kept tokens only
    assert result["perplexity_relative_difference"] < 1e-3
    assert result["kl_mean"] < 1e-4
