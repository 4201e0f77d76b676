"""Fidelity arithmetic on known answers, and fp32 against Keras on a real small model."""

from __future__ import annotations

import math

import pytest

from conftest import SMALL_MAX_LENGTH

from llm2tflite.fidelity import (
    compare_generations,
    keras_reference,
    leading_agreement,
    perplexity,
    summarize,
    variant_fidelity,
)


def test_leading_agreement():
    assert leading_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert leading_agreement([5], [6]) == 0
    assert leading_agreement([1, 2], [1, 2, 3]) == 2


def test_compare_and_summarize_known_answer():
    prompt = [10, 11]
    keras = [10, 11, 1, 2, 3, 4]
    cases = [
        compare_generations(prompt, [10, 11, 1, 2, 3, 4], keras),   # exact: 4 agree
        compare_generations(prompt, [10, 11, 1, 2, 7, 4], keras),   # 2 agree
        compare_generations(prompt, [10, 11, 9, 2, 3, 4], keras),   # 0 agree
        compare_generations(prompt, [10, 11, 1, 2, 3], keras),      # shorter: 3 agree
    ]
    assert [c["exact_match"] for c in cases] == [True, False, False, False]
    assert [c["leading_tokens_agree"] for c in cases] == [4, 2, 0, 3]
    assert summarize(cases) == {"exact_match_rate": 0.25, "mean_leading_tokens_agree": 2.25}


def test_perplexity_known_answer():
    # Four tokens each with probability 1/8: perplexity 8.
    assert perplexity(4 * math.log(1 / 8), 4) == pytest.approx(8.0)
    assert perplexity(0.0, 3) == 1.0


def test_fp32_fidelity_equals_keras(small_export, default_corpus_and_vocab):
    prompts = ["Estoy disfrutando de", "I am enjoying the"]
    text = default_corpus_and_vocab / "heldout.txt"
    lines = text.read_text(encoding="utf-8").splitlines()[:40]
    reference = keras_reference(str(small_export["preset"]), SMALL_MAX_LENGTH, "greedy", prompts, lines)
    result = variant_fidelity(str(small_export["tflite"]), "small", "fp32", reference, lines)
    assert result["exact_match_rate"] == 1.0
    assert result["mean_leading_tokens_agree"] == pytest.approx(
        sum(p["keras_new_tokens"] for p in result["prompts"]) / len(prompts))
    assert result["perplexity_relative_difference"] < 1e-3
    # A random model is nearly uniform over its vocabulary: perplexity of the order of its size.
    assert 100 < result["perplexity"] < 20000
