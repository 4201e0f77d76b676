"""llm2tflite.litert.runtime on the small LiteRT-route model: equal to Keras, chunking, sampling.

Greedy ids must equal KerasHub's ``generate`` on the same weights (fp32), whatever the prompt
length (several prefill chunks, positions where no chunk fits, the prompt limit), and the fast
paths (views into the interpreter, caches synced a row at a time) must compute exactly what a
naive loop over the signature runners does.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SMALL_LITERT_CACHE_LENGTH, SMALL_MAX_LENGTH, SMALL_SEQUENCE_LENGTH

PROMPTS = [
    "Estoy disfrutando de",
    "I am enjoying the",
    "",
    "emoji 🤖🎉 y ñandú",
    "uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce",
    "Mañana por la mañana vamos a la playa con mis amigos y mi hermana " * 3,
]


@pytest.fixture(scope="module")
def model(small_litert):
    from llm2tflite.litert.runtime import LiteRTModel

    return LiteRTModel(small_litert["tflite"]["fp32"], threads=1)


def keras_greedy_ids(causal_lm, prompt_ids, max_length, stop_ids):
    """KerasHub's generate() on the given ids (start token included), stop token dropped."""
    preprocessor = causal_lm.preprocessor
    token_ids = np.zeros((1, max_length), np.int32)
    token_ids[0, : len(prompt_ids)] = prompt_ids
    padding_mask = np.zeros((1, max_length), bool)
    padding_mask[0, : len(prompt_ids)] = True
    causal_lm.preprocessor = None  # ids in, ids out
    try:
        output = causal_lm.generate(
            {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=sorted(stop_ids)
        )
    finally:
        causal_lm.preprocessor = preprocessor
    ids = [int(t) for t, keep in zip(output["token_ids"][0], output["padding_mask"][0]) if keep]
    return [t for i, t in enumerate(ids) if not (i >= len(prompt_ids) and t in stop_ids)]


def generate_greedy_equal_to_keras(model, causal_lm, prompt, max_length):
    """``model.generate(prompt)`` (timed), checked against KerasHub's generate() on the same
    weights: the prompt ids it kept are a prefix of the prompt's, the ids equal Keras's greedy
    ids from there, and at least one token is new."""
    generation = model.generate(prompt, max_length=max_length, timings=True)
    kept = generation.token_ids[: generation.prompt_tokens]
    assert kept == model.token_ids(prompt, with_start=True)[: len(kept)]
    expected = keras_greedy_ids(causal_lm, kept, max_length, model.stop_token_ids)
    assert generation.token_ids == expected, (prompt, max_length)
    assert generation.new_tokens >= 1
    return generation


def _log_softmax_at(logits, targets):
    logits = np.asarray(logits, np.float64)
    return logits[np.arange(len(targets)), targets] - np.logaddexp.reduce(logits, axis=-1)


def naive_decode_logits(path, ids):
    """The contract followed literally: signature runner calls, whole caches passed back."""
    from ai_edge_litert.interpreter import Interpreter

    from llm2tflite.litert.export import MASK_HIDDEN

    decode = Interpreter(model_path=str(path), num_threads=1).get_signature_runner("decode")
    details = decode.get_input_details()
    caches = {
        name: np.zeros(d["shape"], np.float32)
        for name, d in details.items()
        if name.startswith("kv_cache_")
    }
    length = details["mask"]["shape"][-1]
    rows = []
    for position, token in enumerate(ids):
        mask = np.full((1, 1, 1, length), MASK_HIDDEN, np.float32)
        mask[..., : position + 1] = 0
        out = decode(
            tokens=np.array([[token]], np.int32),
            input_pos=np.array([position], np.int32),
            mask=mask,
            **caches,
        )
        caches = {name: out[name] for name in caches}
        rows.append(out["logits"][0, 0])
    return np.stack(rows)


def test_greedy_equals_keras_for_every_prompt_length(model, small_litert):
    causal_lm = small_litert["causal_lm"]
    checked = 0
    for prompt in PROMPTS:
        for max_length in (SMALL_MAX_LENGTH, 12):
            generation = generate_greedy_equal_to_keras(model, causal_lm, prompt, max_length)
            assert len(generation.token_ids) <= max_length
            assert generation.text == model.text(generation.token_ids)
            checked += len(generation.timings["prefill_steps"])
    assert checked >= 10  # long prompts really went through several chunks


def test_prefill_chunks_never_clamp_and_fall_back_to_decode(model, small_litert):
    """Near the end of the cache no prefill length fits: decode steps take over, same ids."""
    from llm2tflite.litert.runtime import prefill_plan

    assert prefill_plan(38, [8, 16], 40) == [(16, 16), (16, 16), (8, 6)]
    assert prefill_plan(5, [8, 16], 40, start=33) == [(1, 1)] * 5
    assert prefill_plan(20, [8, 16], 40, start=14) == [(16, 16), (8, 4)]
    assert prefill_plan(3, [8, 16], 40) == [(8, 3)]
    with pytest.raises(ValueError, match="exceed the cache"):
        prefill_plan(41, [8, 16], 40)
    for count in range(40):
        position = 0
        for length, used in prefill_plan(count, [8, 16], 40):
            assert used <= length and position + length <= 40
            position += used
        assert position == count

    prompt = PROMPTS[-1] * 2
    lengths, sequence_length = model.prefill_lengths, model.sequence_length
    try:
        model.sequence_length = SMALL_LITERT_CACHE_LENGTH  # keep 39 prompt tokens: prefill 38
        normal = model.generate(prompt, timings=True)
        model.prefill_lengths = [16]  # 16, 16, then 6 tokens at position 32: 32 + 16 > 40
        fallback = model.generate(prompt, timings=True)
    finally:
        model.prefill_lengths, model.sequence_length = lengths, sequence_length
    assert normal.timings["prefill_steps"] == [16, 16, 8]
    assert fallback.timings["prefill_steps"] == [16, 16] + [1] * 6
    assert fallback.token_ids == normal.token_ids
    kept = normal.token_ids[: normal.prompt_tokens]
    assert normal.token_ids == keras_greedy_ids(
        small_litert["causal_lm"], kept, SMALL_LITERT_CACHE_LENGTH, model.stop_token_ids
    )


def test_fast_paths_compute_what_the_naive_loop_computes(model, small_litert):
    ids = model.token_ids(PROMPTS[4], with_start=True)
    expected = _log_softmax_at(
        naive_decode_logits(small_litert["tflite"]["fp32"], ids[:-1]), ids[1:]
    )
    assert not model.prefill_logits
    # Interleaved with generations, so state left by one call must not leak into the next.
    model.generate(PROMPTS[5])
    first = model.log_likelihoods(ids)
    model.generate(PROMPTS[0], max_length=7)
    assert model.log_likelihoods(ids) == first
    assert np.array_equal(np.array(first), expected)


def test_stepping_api_continues_rewinds_and_refuses_positions_outside_the_cache(
    model, small_litert
):
    """``prefill`` / ``decode_step`` / ``rewind`` against the naive loop: a sequence continued
    across calls, and one whose tail is taken back and replaced."""
    ids = model.token_ids(PROMPTS[4], with_start=True)
    assert len(ids) >= 10  # rows past the replaced ones stay written, to be hidden
    naive = naive_decode_logits(small_litert["tflite"]["fp32"], ids)
    model.rewind()
    model.prefill(ids[:4], 0)
    continued = [model.decode_step(token, 4 + i) for i, token in enumerate(ids[4:])]
    np.testing.assert_allclose(np.stack(continued), naive[4:], rtol=1e-5, atol=1e-5)
    # Take back everything from position 5 on and continue with other ids: the rows of the
    # forgotten tail must not be attended.
    other = [ids[1], ids[2], ids[3]]
    model.rewind(5)
    replaced = [model.decode_step(token, 5 + i) for i, token in enumerate(other)]
    expected = naive_decode_logits(small_litert["tflite"]["fp32"], ids[:5] + other)[5:]
    np.testing.assert_allclose(np.stack(replaced), expected, rtol=1e-5, atol=1e-5)
    for position in (-1, model.cache_length):
        with pytest.raises(ValueError, match="outside the cache"):
            model.decode_step(ids[0], position)
    model.rewind()


def test_log_likelihoods_equal_keras(model, small_litert, tmp_path):
    from llm2tflite.litert.runtime import LiteRTModel

    from conftest import export_litert

    causal_lm = small_litert["causal_lm"]
    ids = model.token_ids("El libro que leo es muy interesante y largo.", with_start=True)
    logits = np.asarray(
        causal_lm.backbone.token_embedding(
            causal_lm.backbone(
                {"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), bool)}
            ),
            reverse=True,
        )
    )[0, :-1]
    expected = _log_softmax_at(logits, ids[1:])
    from_decode = np.array(model.log_likelihoods(ids))
    np.testing.assert_allclose(from_decode, expected, rtol=1e-4, atol=1e-5)
    # The same from the prefill signatures' logits, when the export has them.
    with_logits = export_litert(causal_lm, tmp_path, prefill_logits=True)
    scored = LiteRTModel(with_logits["tflite"]["fp32"], threads=1)
    assert scored.prefill_logits
    np.testing.assert_allclose(scored.log_likelihoods(ids), expected, rtol=1e-4, atol=1e-5)
    assert model.log_likelihoods(ids[:1]) == []
    with pytest.raises(ValueError, match="exceed the cache"):
        model.log_likelihoods(ids * 10)


def test_prompt_limit_and_max_length(model):
    assert model.cache_length == SMALL_LITERT_CACHE_LENGTH
    assert model.max_length == SMALL_MAX_LENGTH
    assert model.prompt_token_limit() == min(SMALL_SEQUENCE_LENGTH, SMALL_MAX_LENGTH - 1)
    long_prompt = PROMPTS[-1] * 2
    generation = model.generate(long_prompt)
    assert generation.prompt_tokens == model.prompt_token_limit()
    assert (
        generation.token_ids[1 : generation.prompt_tokens]
        == model.token_ids(long_prompt)[: generation.prompt_tokens - 1]
    )
    assert model.generate(long_prompt, max_length=10).prompt_tokens == 9
    # Above the cache: capped; the start token alone: nothing generated.
    assert len(model.generate("hola", max_length=500).token_ids) <= SMALL_LITERT_CACHE_LENGTH
    assert model.generate("hola", max_length=1).token_ids == [model.start_token_id]
    with pytest.raises(ValueError):
        model.generate("hola", max_length=0)


def test_stop_token_ends_generation_and_is_not_kept(model):
    first = model.generate("Estoy disfrutando de", max_length=8, timings=True)
    stops = model.stop_token_ids
    try:
        model.stop_token_ids = frozenset({first.new_token_ids[2]})
        stopped = model.generate("Estoy disfrutando de", max_length=8, timings=True)
    finally:
        model.stop_token_ids = stops
    assert stopped.token_ids == first.token_ids[: first.prompt_tokens + 2]
    assert len(stopped.timings["decode_step_s"]) == 3  # the stop token took a step


def test_bytes_prompts_and_empty_prompt(model):
    assert model.generate(b"caf\xe9 con leche").text.startswith("caf\ufffd con leche")
    empty = model.generate("")
    assert empty.prompt_tokens == 1 and empty.new_tokens >= 1


def test_sampling_is_seeded_and_top_k_one_is_greedy(model):
    from llm2tflite.core.sampling import Sampler

    greedy = model.generate("Estoy disfrutando de")
    assert model.generate("Estoy disfrutando de", sampler="greedy").token_ids == greedy.token_ids
    top1 = Sampler(temperature=1.5, top_k=1, seed=3)
    assert model.generate("Estoy disfrutando de", sampler=top1).token_ids == greedy.token_ids
    settings = Sampler(temperature=1.0, top_k=50, top_p=0.95, seed=123)
    first = model.generate("Estoy disfrutando de", sampler=settings)
    assert model.generate("Estoy disfrutando de", sampler=settings).token_ids == first.token_ids
    other = model.generate("Estoy disfrutando de", sampler=Sampler(temperature=1.0, seed=124))
    assert other.token_ids != first.token_ids != greedy.token_ids
    with pytest.raises(ValueError, match="sampler"):
        model.generate("hola", sampler="beam")


def test_streamed_pieces_add_up_and_never_split_a_character(model):
    from llm2tflite.litert.runtime import _TextStream

    pieces = []
    generation = model.generate("emoji 🤖🎉 y ñandú", on_text=pieces.append)
    assert "".join(pieces) == generation.text and len(pieces) > 3
    assert pieces[0].startswith("emoji 🤖🎉 y ñandú")
    # Byte-level BPE splits an emoji into byte tokens: nothing is passed on until it is whole.
    ids = [model.start_token_id, *model.token_ids("a🤖b🎉")]
    assert len(ids) > 5
    stream_pieces = []
    stream = _TextStream(model.text, stream_pieces.append)
    for end in range(1, len(ids) + 1):
        stream.update(ids[:end])
    stream.finish(model.text(ids))
    assert "".join(stream_pieces) == "a🤖b🎉"
    assert not any("\ufffd" in piece for piece in stream_pieces)


def test_timings_per_step(model):
    generation = model.generate("Estoy disfrutando de", timings=True)
    timings = generation.timings
    assert len(timings["decode_step_s"]) == len(timings["decode_invoke_s"]) >= generation.new_tokens
    assert all(
        0 < invoke <= step
        for invoke, step in zip(timings["decode_invoke_s"], timings["decode_step_s"])
    )
    assert timings["first_token_s"] >= timings["prefill_s"] > 0
    assert model.generate("Estoy disfrutando de").timings is None


def test_int8_file_runs_through_the_same_loop(small_litert):
    from llm2tflite.litert.runtime import LiteRTModel

    int8 = LiteRTModel(small_litert["tflite"]["int8"], threads=2)
    generation = int8.generate("Estoy disfrutando de", timings=True)
    assert generation.new_tokens >= 1 and generation.text.startswith("Estoy disfrutando de")
    fp32_ids = LiteRTModel(small_litert["tflite"]["fp32"]).token_ids("hola")
    assert int8.token_ids("hola") == fp32_ids


def test_open_model_tells_the_routes_apart(small_litert, small_export):
    from llm2tflite.model_files import open_model

    litert = open_model(small_litert["tflite"]["fp32"], threads=1)
    assert litert.route == "litert" and litert.load_seconds > 0
    assert open_model(small_export["tflite"]).route == "tflite"


def test_missing_files_beside_the_model_are_reported(small_litert, tmp_path):
    """Of a file that carries no export info or tokenizer of its own (a file with them runs
    alone: tests/litert/test_self_describing_files.py)."""
    import shutil

    from test_broken_model_files import without_embedded_files

    from llm2tflite.litert.runtime import LiteRTModel, LiteRTModelError

    copy = without_embedded_files(small_litert["tflite"]["fp32"], tmp_path / "fp32.tflite")
    with pytest.raises(LiteRTModelError, match="litert_export.json is missing"):
        LiteRTModel(copy)
    shutil.copyfile(small_litert["dir"] / "litert_export.json", tmp_path / "litert_export.json")
    with pytest.raises(LiteRTModelError, match="exactly one tokenizer file"):
        LiteRTModel(copy)


def test_a_tokenizer_of_another_model_is_refused(small_litert, tmp_path):
    import shutil

    from test_broken_model_files import without_embedded_files
    from tokenizers import pre_tokenizers

    from llm2tflite.litert.runtime import LiteRTModel, LiteRTModelError
    from llm2tflite.litert.runtime_tokenizer import byte_level_bpe_json

    shutil.copyfile(small_litert["dir"] / "litert_export.json", tmp_path / "litert_export.json")
    # A file without a tokenizer of its own reads the one beside it (a file with one refuses a
    # different one beside it: tests/litert/test_self_describing_files.py).
    without_embedded_files(small_litert["tflite"]["fp32"], tmp_path / "fp32.tflite")
    # A byte-level BPE without merges: the 256 byte symbols and the end token.
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocabulary = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    vocabulary["<|endoftext|>"] = len(vocabulary)
    (tmp_path / "tokenizer.json").write_text(byte_level_bpe_json(vocabulary, [], ["<|endoftext|>"]))
    with pytest.raises(LiteRTModelError, match="not this model's tokenizer"):
        LiteRTModel(tmp_path / "fp32.tflite")
