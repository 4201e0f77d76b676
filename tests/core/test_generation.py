"""llm2tflite.core.generation: the Generation record and the one rule that keeps generated ids."""

from __future__ import annotations

import pytest

from llm2tflite.core.generation import Generation, kept_token_ids

END = 99  # GPT-2-style: the start token and the stop token are the same id


def test_new_tokens_counts_ids_after_the_prompt():
    generation = Generation("hola mundo", [END, 5, 6, 7, 8], prompt_tokens=3)
    assert generation.new_tokens == 2
    assert generation.new_token_ids == [7, 8]
    assert Generation("x", [END], 1).new_tokens == 0
    with pytest.raises(ValueError, match="prompt_tokens"):
        Generation("x", [END, 1], 3)


def test_json_round_trip_keeps_ids_and_count():
    generation = Generation("a b", [END, 1, 2], 2, timings={"prefill_s": 0.1})
    record = generation.to_json()
    assert record["new_tokens"] == 1
    assert Generation.from_json(record) == generation
    assert Generation.from_json(record).timings == {"prefill_s": 0.1}


def test_kept_ids_drop_the_stop_token_and_the_padding():
    # start, 2 prompt ids, 3 generated ids, the stop token, then buffer padding (masked out).
    buffer = [END, 10, 11, 20, 21, 22, END, 0, 0]
    mask = [True, True, True, True, True, True, True, False, False]
    assert kept_token_ids(buffer, mask, 3, [END]) == [END, 10, 11, 20, 21, 22]


def test_kept_ids_keep_stop_ids_inside_the_prompt():
    # The start token equals the stop token, and a prompt may contain it: both stay.
    buffer = [END, 10, END, 30, 31]
    mask = [True] * 5
    assert kept_token_ids(buffer, mask, 3, [END]) == [END, 10, END, 30, 31]


def test_kept_ids_without_a_stop_fill_the_buffer():
    buffer = [END, 10, 20, 21]
    assert kept_token_ids(buffer, [True] * 4, 2, [END, 7]) == buffer
    assert Generation("", buffer, 2).new_tokens == 2
