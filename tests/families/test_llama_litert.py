"""The Llama family through the LiteRT route (``Llama.litert_*`` in llm2tflite/families/).

On the small random Llama of conftest (2 layers, 4 query heads sharing 2 key/value heads,
untied output embedding, the default SentencePiece vocabulary), exported, converted and
quantized once per session (``small_llama_litert``):

- fp32 prefill and decode logits equal Keras's, and greedy ids over the runtime
  (``llm2tflite.model_files.open_model``) equal KerasHub ``generate()`` for prompts of every length;
- the graph is builtins only: the token table is read by EMBEDDING_LOOKUP, each layer's cache
  is written once (DYNAMIC_UPDATE_SLICE) and read once (TRANSPOSE of its kv_heads, never
  repeated to the query heads); int8/int4 quantize both embedding matrices, run, and track fp32;
- the runtime tokenizer (``tokenizer.model`` read with ``sentencepiece``) gives KerasHub's
  LlamaTokenizer ids on >= 1,000 held-out lines and hard cases, and text back.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_litert_route import Session, _keras_logits, _random_ids
from test_litert_runtime import keras_greedy_ids
from test_tokenizer_parity import _assert_same, _ids_keras, _parity_texts

from conftest import SMALL_LITERT_CACHE_LENGTH, SMALL_MAX_LENGTH

PROMPTS = [
    "Estoy disfrutando de",
    "I am enjoying the",
    "",
    "¿Dónde está la estación?",
    "Mañana, el pingüino come 3 piñas 🤖 y 日本語",
    "uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce",
    "Mañana por la mañana vamos a la playa con mis amigos y mi hermana " * 3,
]
# fp32 logits of the converted file against Keras's, relative to the largest |logit|: the same
# float32 math apart from the order of some sums (XNNPACK's matrix products, attention scaled
# before the product). Measured: <= 3.1e-7 (7.5e-8 on logits of at most 0.24).
LOGITS_TOLERANCE = 1e-5


def _assert_logits_close(got, expected):
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=LOGITS_TOLERANCE * scale)


@pytest.fixture(scope="module")
def model(small_llama_litert):
    from llm2tflite.model_files import open_model

    return open_model(small_llama_litert["tflite"]["fp32"], threads=1)


def test_export_info_and_cache_shapes(small_llama_litert):
    info = small_llama_litert["info"]
    backbone = small_llama_litert["causal_lm"].backbone
    assert info["architecture"] == "llama" and info["tokenizer_kind"] == "sentencepiece"
    # Grouped-query attention: the cache holds the 2 key/value heads, not the 4 query heads.
    assert info["layers"] == [{"kv_heads": 2, "head_dim": 8}] * 2
    assert backbone.num_query_heads == 4 and not backbone.token_embedding.tie_weights
    assert small_llama_litert["tokenizer"].name == "tokenizer.model"
    assert (info["start_token_id"], info["stop_token_ids"]) == (1, [2])


def test_fp32_decode_logits_equal_keras(small_llama_litert):
    """Prefill (prefill_16, then prefill_8 with 5 padding rows) and decode: each decode step's
    logits are Keras's at that position, so the prefill wrote the right rotated keys too."""
    info = small_llama_litert["info"]
    ids = _random_ids(34, info["vocabulary_size"], seed=3)
    expected = _keras_logits(small_llama_litert["causal_lm"], ids)[0]
    session = Session(small_llama_litert["tflite"]["fp32"], info)
    assert session.prefill(ids[:19]) is None
    for position in range(19, 34):
        _assert_logits_close(session.decode(ids[position]), expected[position])


def test_fp32_prefill_logits_equal_keras(small_llama_litert, tmp_path):
    from llm2tflite.core import atomic
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export

    causal_lm = small_llama_litert["causal_lm"]
    info = litert_export.export(
        causal_lm,
        tmp_path / "sm",
        tmp_path / "info.json",
        SMALL_LITERT_CACHE_LENGTH,
        [8, 16],
        prefill_logits=True,
    )
    flatbuffer, _ = litert_convert.convert(tmp_path / "sm", litert_export.signature_keys(info))
    atomic.write_bytes(tmp_path / "fp32.tflite", flatbuffer)
    ids = _random_ids(27, info["vocabulary_size"], seed=4)
    logits = Session(tmp_path / "fp32.tflite", info).prefill(ids)  # 16 + 8 + 8 (5 padding)
    assert logits.shape == (1, 27, info["vocabulary_size"])
    _assert_logits_close(logits, _keras_logits(causal_lm, ids))


def test_greedy_over_the_runtime_equals_keras_generate(model, small_llama_litert):
    causal_lm = small_llama_litert["causal_lm"]
    assert model.route == "litert"
    chunks = 0
    for prompt in PROMPTS:
        for max_length in (SMALL_MAX_LENGTH, 12):
            generation = model.generate(prompt, max_length=max_length, timings=True)
            kept = generation.token_ids[: generation.prompt_tokens]
            assert kept == model.token_ids(prompt, with_start=True)[: len(kept)]
            expected = keras_greedy_ids(causal_lm, kept, max_length, model.stop_token_ids)
            assert generation.token_ids == expected, (prompt, max_length)
            assert generation.new_tokens >= 1
            chunks += len(generation.timings["prefill_steps"])
            if len(kept) == generation.prompt_tokens == len(model.token_ids(prompt)) + 1:
                # The whole prompt kept: the text is KerasHub's generate() string too.
                assert generation.text == causal_lm.generate(prompt, max_length=max_length)
    assert chunks >= 14  # long prompts went through several prefill chunks


def test_streamed_text_adds_up_without_broken_characters(model):
    """SentencePiece's byte fallback splits an emoji into byte pieces: nothing is streamed
    until the character is whole."""
    from llm2tflite.litert.runtime import _TextStream

    pieces = []
    generation = model.generate("emoji 🤖🎉 y ñandú", on_text=pieces.append)
    assert "".join(pieces) == generation.text and len(pieces) > 3
    assert pieces[0] == "emoji 🤖🎉 y ñandú"
    ids = [model.start_token_id, *model.token_ids("a🤖b🎉 日本")]
    assert len(ids) > 10 and 0 not in ids  # byte pieces, never <unk>
    streamed = []
    stream = _TextStream(model.text, streamed.append)
    for end in range(1, len(ids) + 1):
        stream.update(ids[:end])
    stream.finish(model.text(ids))
    assert "".join(streamed) == "a🤖b🎉 日本" and len(streamed) > 3
    assert not any("\ufffd" in piece for piece in streamed)


def test_runtime_tokenizer_equals_keras_hub(
    model, small_llama_litert, default_corpus_and_vocab, tmp_path
):
    """The workflow's runtime_tokenizer CLI ships the preset's SentencePiece model as is; read
    with ``sentencepiece`` it gives LlamaTokenizer's ids (TensorFlow graph path) on >= 1,000
    held-out lines and hard cases, and the ids decode to the text."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.litert.runtime_tokenizer",
            "--preset",
            str(small_llama_litert["preset"]),
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "sentencepiece" and summary["file"].endswith("tokenizer.model")
    written = (tmp_path / "tokenizer.model").read_bytes()
    assert (
        written
        == small_llama_litert["tokenizer"].read_bytes()
        == (small_llama_litert["preset"] / "assets" / "tokenizer" / "vocabulary.spm").read_bytes()
    )

    from llm2tflite.inputs.sources import load_causal_lm

    # A tokenizer of its own, loaded from the preset: the session's model can have lost its
    # TensorFlow SentencePiece resource by now (after tests/families/test_llama.py, which traces
    # and reloads SavedModels of it, and test_llama3.py in one session: "Resource
    # localhost/_5_SentencepieceOp ... does not exist"), which is not what this test is about.
    keras_tokenizer = load_causal_lm(str(small_llama_litert["preset"])).preprocessor.tokenizer
    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt") + [
        "🤖",
        "\u3000",
        " leading space",
        "trailing  ",
        "<s> and </s> as text",
        "\u200b",
    ]
    keras_ids = _ids_keras(keras_tokenizer, texts)
    runtime_ids = [model.token_ids(text) for text in texts]
    _assert_same("runtime tokenizer", runtime_ids, "KerasHub", keras_ids, texts)
    assert sum(len(ids) for ids in runtime_ids) > 5 * len(texts)
    assert model.token_ids("hola", with_start=True)[0] == keras_tokenizer.start_token_id
    # Text back: lossless (byte fallback, identity normalization), as KerasHub's detokenize.
    detokenized = list(keras_tokenizer.detokenize(keras_ids))
    assert [model.text(ids) for ids in runtime_ids] == detokenized == texts


def test_builtins_only_and_the_cache_read_once_per_layer(small_llama_litert):
    """Every signature: builtin ops, one EMBEDDING_LOOKUP (no GATHER), and each cache input
    written by one DYNAMIC_UPDATE_SLICE whose result is returned and read by one BATCH_MATMUL
    (kv_heads wide) as it is stored: grouped-query attention without a repeated, copied or
    transposed cache."""
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert.contract import kv_cache_shapes

    info = small_llama_litert["info"]
    layers = info["num_layers"]
    for variant, path in small_llama_litert["tflite"].items():
        model = litert_convert.read_model(path.read_bytes())
        litert_convert.check_builtins_only(model)
        for name, ops in litert_convert.op_counts(model).items():
            assert ops.get("EMBEDDING_LOOKUP") == 1 and "GATHER" not in ops, (variant, name)
            assert ops["DYNAMIC_UPDATE_SLICE"] == 2 * layers, (variant, name)
            assert ops.get("COS") == ops.get("SIN") == 1, (variant, name)  # shared by layers
            assert not {"TILE", "BROADCAST_TO", "GATHER_ND"} & set(ops), (variant, name)
        for signature in model.signatureDefs:
            subgraph = model.subgraphs[signature.subgraphIndex]
            inputs = {_name(t): t.tensorIndex for t in signature.inputs}
            outputs = {_name(t): t.tensorIndex for t in signature.outputs}
            for cache in (n for n in inputs if n.startswith("kv_cache_")):
                (writer,) = _consumers(subgraph, inputs[cache])
                assert litert_convert.op_name(model, writer) == "DYNAMIC_UPDATE_SLICE"
                updated = writer.outputs[0]
                assert updated == outputs[cache]
                key_shape, value_shape = kv_cache_shapes(info["cache_length"], 2, 8)
                expected = key_shape if cache.startswith("kv_cache_k_") else value_shape
                assert list(subgraph.tensors[updated].shape) == expected
                readers = [
                    litert_convert.op_name(model, op) for op in _consumers(subgraph, updated)
                ]
                # A prefill without logits never reads the last layer's attention output: the
                # converter drops that attention, and the cache is only written.
                unread = "logits" not in outputs and cache.endswith(f"_{layers - 1}")
                assert readers == ([] if unread else ["BATCH_MATMUL"]), (variant, cache, readers)


def _name(signature_tensor):
    name = signature_tensor.name
    return name.decode() if isinstance(name, bytes) else name


def _consumers(subgraph, tensor_index):
    return [op for op in subgraph.operators if tensor_index in list(op.inputs)]


def test_quantized_variants_run_and_track_fp32(small_llama_litert):
    from llm2tflite.model_files import open_model

    info = small_llama_litert["info"]
    ids = _random_ids(12, info["vocabulary_size"], seed=5)
    reference = None
    for variant, tolerance in (("fp32", 0), ("int8", 0.05), ("int4", 0.5)):
        session = Session(small_llama_litert["tflite"][variant], info)
        session.prefill(ids[:-1])
        logits = session.decode(ids[-1])
        if reference is None:
            reference = logits
        assert np.abs(logits - reference).max() <= tolerance * np.abs(reference).max(), variant
        generation = open_model(small_llama_litert["tflite"][variant]).generate(PROMPTS[0])
        assert generation.new_tokens >= 1 and generation.text.startswith(PROMPTS[0])


def test_both_embedding_matrices_quantized_once(small_llama_litert):
    """Llama's input table (EMBEDDING_LOOKUP) and its own output matrix (untied) are each one
    quantized buffer in int8/int4; no float copy of either; every kernel is quantized."""
    from llm2tflite.core import flatbuffer
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import quantize as litert_quantize

    causal_lm = small_llama_litert["causal_lm"]
    vocabulary, hidden = small_llama_litert["info"]["vocabulary_size"], 32
    schema = flatbuffer.schema()
    weights = sum(int(np.prod(v.shape)) for v in causal_lm.backbone.weights if len(v.shape) >= 2)
    sizes = {}
    for variant, tensor_type in (
        ("int8", schema.TensorType.INT8),
        ("int4", schema.TensorType.INT4),
    ):
        path = small_llama_litert["tflite"][variant]
        model = litert_convert.read_model(path.read_bytes())
        tables = {}
        for subgraph in model.subgraphs:
            for tensor in subgraph.tensors:
                if sorted(tensor.shape) == sorted(
                    [vocabulary, hidden]
                ) and litert_convert._is_constant(model, tensor):
                    tables[tensor.buffer] = tensor.type
        assert list(tables.values()) == [tensor_type, tensor_type], variant
        largest = litert_quantize.largest_float_constants(model)
        assert all(entry["bytes"] < hidden * 4 * 8 for entry in largest), largest
        sizes[variant] = path.stat().st_size
    assert sizes["int4"] < sizes["int8"] < small_llama_litert["tflite"]["fp32"].stat().st_size
    assert weights == 2 * vocabulary * hidden + 2 * (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64)
