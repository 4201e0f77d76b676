"""The LiteRT route's building blocks without a language model: attention over the cache
(grouped-query too, for the families that use it), rotary embeddings at input_pos, the
GATHER -> EMBEDDING_LOOKUP rewrite, the builtins-only checks, the `litert:` settings."""

from __future__ import annotations

import numpy as np
import pytest

import llm2tflite  # noqa: F401  (KERAS_BACKEND before keras)

from conftest import REPO


def _reference_attention(query, keys, values, mask, scale):
    """Plain numpy: each query head n attends K/V head n // groups over the masked cache."""
    _, t, n, d = query.shape
    groups = n // keys.shape[2]
    keys = np.repeat(keys, groups, axis=2)
    values = np.repeat(values, groups, axis=2)
    scores = np.einsum("btnd,bsnd->bnts", query * scale, keys) + mask
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probabilities = scores / scores.sum(-1, keepdims=True)
    return np.einsum("bnts,bsnd->btnd", probabilities, values)


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (6, 1)])
def test_attention_over_the_cache(heads, kv_heads):
    from llm2tflite.families import litert_blocks

    rng = np.random.default_rng(0)
    t, s, d = 3, 7, 8
    query = rng.standard_normal((1, t, heads, d)).astype(np.float32)
    keys = rng.standard_normal((1, s, kv_heads, d)).astype(np.float32)
    values = rng.standard_normal((1, s, kv_heads, d)).astype(np.float32)
    mask = np.full((1, 1, t, s), -0.7 * np.finfo(np.float32).max, np.float32)
    for row, position in enumerate([2, 3, 4]):
        mask[0, 0, row, : position + 1] = 0
    # The reference reads [1, S, K, D]; the contract stores K [1, K, D, S] and V [1, K, S, D].
    got = np.asarray(
        litert_blocks.attention(
            query,
            keys.transpose(0, 2, 3, 1),
            values.transpose(0, 2, 1, 3),
            mask,
            scale=d**-0.5,
        )
    )
    np.testing.assert_allclose(
        got, _reference_attention(query, keys, values, mask, d**-0.5), rtol=1e-5, atol=1e-6
    )


def test_update_caches_write_rows_at_start_in_the_contract_layout():
    from llm2tflite.families import litert_blocks
    from llm2tflite.litert.contract import kv_cache_shapes

    s, heads, d, start = 6, 2, 3, 3
    key_shape, value_shape = kv_cache_shapes(s, heads, d)
    rng = np.random.default_rng(1)
    key_cache = rng.standard_normal(key_shape).astype(np.float32)
    value_cache = rng.standard_normal(value_shape).astype(np.float32)
    key = rng.standard_normal((1, 2, heads, d)).astype(np.float32)
    value = rng.standard_normal((1, 2, heads, d)).astype(np.float32)
    new_keys, new_values = (
        np.asarray(c)
        for c in litert_blocks.update_caches(key_cache, value_cache, key, value, np.int32(start))
    )
    # Written by hand: position p of head h is K[0, h, :, p] and V[0, h, p, :].
    expected_keys, expected_values = key_cache.copy(), value_cache.copy()
    for row in range(2):
        for head in range(heads):
            expected_keys[0, head, :, start + row] = key[0, row, head]
            expected_values[0, head, start + row, :] = value[0, row, head]
    np.testing.assert_array_equal(new_keys, expected_keys)
    np.testing.assert_array_equal(new_values, expected_values)


def _rotary_layer(kind):
    """KerasHub rotary layers with each setting that changes the frequencies or angles."""
    from keras_hub.layers import RotaryEmbedding
    from keras_hub.src.models.llama.llama_rotary_embedding import LlamaRotaryEmbedding

    llama31 = dict(
        frequency_adjustment_factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        pretraining_sequence_length=64,
    )  # short: every frequency band is hit
    return {
        "llama": lambda: LlamaRotaryEmbedding(max_wavelength=10000),
        # KerasHub's Llama ignores its position scaling (its _get_inverse_freq drops it): so
        # must we.
        "llama_position_scaling": lambda: LlamaRotaryEmbedding(position_scaling_factor=4.0),
        "llama3.1": lambda: LlamaRotaryEmbedding(max_wavelength=500000, **llama31),
        "linear_scaling": lambda: RotaryEmbedding(max_wavelength=1000000, scaling_factor=8.0),
        "dynamic": lambda: RotaryEmbedding(scaling_factor=2.0, rope_type="dynamic"),
        "yarn_truncated": lambda: RotaryEmbedding(
            scaling_factor=4.0, rope_type="yarn", original_max_position_embeddings=20, truncate=True
        ),
    }[kind]()


@pytest.mark.parametrize(
    "kind",
    ["llama", "llama_position_scaling", "llama3.1", "linear_scaling", "dynamic", "yarn_truncated"],
)
def test_rotary_at_input_pos_equals_the_layer(kind):
    """rotary_cos_sin + apply_rotary at input_pos give what the layer itself computes from a
    start index (KerasHub's cached decoding) and from positions, for queries and keys."""
    from llm2tflite.families import litert_blocks

    rotary = _rotary_layer(kind)
    rng = np.random.default_rng(1)
    head_dim = 16
    for start, t, heads in ((0, 8, 4), (37, 1, 2), (90, 5, 1)):
        x = rng.standard_normal((1, t, heads, head_dim)).astype(np.float32)
        input_pos = np.arange(start, start + t, dtype=np.int32)
        cos, sin = litert_blocks.rotary_cos_sin(rotary, input_pos, head_dim)
        assert tuple(cos.shape) == tuple(sin.shape) == (1, t, 1, head_dim)
        got = np.asarray(litert_blocks.apply_rotary(rotary, x, cos, sin))
        from_start = np.asarray(rotary(x, start_index=start))
        from_positions = np.asarray(rotary(x, positions=input_pos))
        # The same float32 operations in the same order: bit for bit.
        np.testing.assert_array_equal(got, from_start)
        np.testing.assert_array_equal(got, from_positions)
        assert not np.allclose(got, x)  # it did rotate


def test_rotary_key_and_unknown_rotary_layers():
    from keras_hub.layers import RotaryEmbedding

    from llm2tflite.families import litert_blocks

    assert litert_blocks.rotary_key(RotaryEmbedding(name="a")) == litert_blocks.rotary_key(
        RotaryEmbedding(name="b")
    )
    assert litert_blocks.rotary_key(RotaryEmbedding()) != litert_blocks.rotary_key(
        RotaryEmbedding(scaling_factor=8.0)
    )
    assert litert_blocks.rotary_key(RotaryEmbedding()) != litert_blocks.rotary_key(
        _rotary_layer("llama")
    )

    class Interleaved(RotaryEmbedding):
        def _apply_rotary_pos_emb(self, tensor, cos_emb, sin_emb):
            return tensor

    with pytest.raises(ValueError, match="overrides RotaryEmbedding._apply_rotary_pos_emb"):
        litert_blocks.rotary_cos_sin(Interleaved(), np.arange(3, dtype=np.int32), 8)
    with pytest.raises(TypeError, match="not a KerasHub RotaryEmbedding"):
        litert_blocks.rotary_cos_sin(object(), np.arange(3, dtype=np.int32), 8)


@pytest.fixture(scope="module")
def lookup_model(tmp_path_factory):
    """A two-signature SavedModel whose tables are read by 2-D and 1-D ids, converted."""
    import tensorflow as tf

    from llm2tflite.litert import convert as litert_convert

    table = np.arange(40, dtype=np.float32).reshape(10, 4)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(table)

        @tf.function(input_signature=[tf.TensorSpec([1, 3], tf.int32, name="tokens")])
        def two_d(self, tokens):
            rows = tf.gather(tf.identity(self.table), tokens)  # [1, 3, 4]
            return {"out": tf.matmul(rows, tf.transpose(tf.identity(self.table)))}

        @tf.function(input_signature=[tf.TensorSpec([2], tf.int32, name="tokens")])
        def one_d(self, tokens):
            return {"out": tf.gather(tf.identity(self.table), tokens) * 2.0}

    out = tmp_path_factory.mktemp("lookup")
    module = Module()
    tf.saved_model.save(
        module,
        str(out / "sm"),
        signatures={
            "two_d": module.two_d.get_concrete_function(),
            "one_d": module.one_d.get_concrete_function(),
        },
    )
    flatbuffer = litert_convert.convert_builtins_only(out / "sm", ["two_d", "one_d"])
    return {"dir": out, "table": table, "flatbuffer": flatbuffer}


def test_gathers_become_embedding_lookups_with_same_results(lookup_model):
    from ai_edge_litert.interpreter import Interpreter

    from llm2tflite.litert import convert as litert_convert

    model = litert_convert.read_model(lookup_model["flatbuffer"])
    before = litert_convert.op_counts(model)
    assert before["two_d"].get("GATHER") == 1 and before["one_d"].get("GATHER") == 1
    rewritten = litert_convert.rewrite_embedding_lookups(model)
    assert sorted(entry["ids_shape"] for entry in rewritten) == [[1, 3], [2]]
    after = litert_convert.op_counts(model)
    for ops in after.values():
        assert "GATHER" not in ops and ops["EMBEDDING_LOOKUP"] == 1
    path = lookup_model["dir"] / "rewritten.tflite"
    path.write_bytes(litert_convert.write_model(model))
    interpreter = Interpreter(model_path=str(path))
    table = lookup_model["table"]
    ids = np.array([[7, 0, 3]], np.int32)
    out = interpreter.get_signature_runner("two_d")(tokens=ids)["out"]
    np.testing.assert_allclose(out, table[ids] @ table.T)
    out = interpreter.get_signature_runner("one_d")(tokens=np.array([9, 2], np.int32))["out"]
    np.testing.assert_allclose(out, table[[9, 2]] * 2)


def test_custom_or_flex_op_left_is_one_line_error(lookup_model):
    from llm2tflite.litert import convert as litert_convert

    model = litert_convert.read_model(lookup_model["flatbuffer"])
    litert_convert.check_builtins_only(model)  # the converter's output is clean
    opcode = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]
    opcode.builtinCode = opcode.deprecatedBuiltinCode = 32  # BuiltinOperator.CUSTOM
    opcode.customCode = "FlexStringLength"
    with pytest.raises(litert_convert.BuiltinsOnlyError) as error:
        litert_convert.check_builtins_only(model)
    assert "CUSTOM:FlexStringLength" in str(error.value) and "\n" not in str(error.value)


def test_op_without_builtin_fails_conversion_in_one_line(tmp_path):
    import tensorflow as tf

    from llm2tflite.litert import convert as litert_convert

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2], tf.string, name="text")])
        def lengths(self, text):
            return {"n": tf.strings.length(text)}

    module = Module()
    tf.saved_model.save(
        module, str(tmp_path / "sm"), signatures={"lengths": module.lengths.get_concrete_function()}
    )
    with pytest.raises(litert_convert.BuiltinsOnlyError) as error:
        litert_convert.convert_builtins_only(tmp_path / "sm", ["lengths"])
    message = str(error.value)
    assert "StringLength" in message and "\n" not in message


def test_tensor_names_made_unique():
    from llm2tflite.core import flatbuffer
    from llm2tflite.litert import convert as litert_convert

    schema = flatbuffer.schema()
    model = schema.ModelT()
    model.buffers = [schema.BufferT()]
    model.subgraphs, model.signatureDefs = [], []
    for index, key in enumerate(["decode", "prefill_8"]):
        subgraph = schema.SubGraphT()
        subgraph.tensors = []
        for name in ("shared", f"{key}_tokens:0", "twice", "twice"):
            tensor = schema.TensorT()
            tensor.name = name
            subgraph.tensors.append(tensor)
        model.subgraphs.append(subgraph)
        signature = schema.SignatureDefT()
        signature.signatureKey, signature.subgraphIndex = key, index
        model.signatureDefs.append(signature)
    assert not litert_convert.tensor_names_unique(model)
    litert_convert.unique_tensor_names(model)
    assert litert_convert.tensor_names_unique(model)
    assert [t.name for t in model.subgraphs[0].tensors][:2] == ["decode/shared", "decode_tokens:0"]


def test_settings_defaults_and_refusals():
    import yaml

    from llm2tflite.litert.contract import LiteRTSettingsError, resolve_settings

    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    defaults = {
        key: spec["default"]
        for key, spec in schema["properties"]["litert"]["properties"].items()
        if "default" in spec
    }

    def settings(max_length=100, **litert):
        return resolve_settings(
            {"generation": {"max_length": max_length}, "litert": {**defaults, **litert}}
        )

    assert settings() == {
        "variants": ["fp32", "int8", "int4"],
        "cache_length": 100,
        "prefill_lengths": [8, 32],
        "prefill_logits": False,
        "chat_templates": {},
    }
    assert settings(max_length=20)["prefill_lengths"] == [8]
    assert settings(variants=[])["variants"] == []
    with pytest.raises(LiteRTSettingsError, match=r"litert.prefill_lengths: \[128\] do not fit"):
        settings(prefill_lengths=[8, 128])
    with pytest.raises(LiteRTSettingsError, match="litert.prefill_lengths"):
        settings(cache_length=16, prefill_lengths=[32])


def test_converter_without_python_restores_gives_the_same_bytes(lookup_model):
    """``_saved_model_converter`` skips from_saved_model's Python restores of the weights; the
    flatbuffer must be the stock converter's, byte for byte."""
    import tensorflow as tf

    from llm2tflite.litert import convert as litert_convert

    saved_model = str(lookup_model["dir"] / "sm")
    keys = ["two_d", "one_d"]
    stock = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=keys)
    stock.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    stock.canonicalizing_inf_as_min_max_float = False
    assert stock.convert() == lookup_model["flatbuffer"]
    with pytest.raises(ValueError, match=r"has no signature\(s\) \['decode'\]"):
        litert_convert.convert_builtins_only(saved_model, ["decode"])


@pytest.mark.parametrize(
    "cache_length,lengths,expected",
    [(100, [8, 32], 97), (128, [8, 32], 128), (40, [4, 16], 37), (100, [100], 100)],
)
def test_litert_lm_max_num_tokens_keeps_every_chunk_inside_the_cache(
    cache_length, lengths, expected
):
    """Below the limit no LiteRT-LM prefill chunk overruns the cache; at it one does."""
    from llm2tflite.litert.contract import litert_lm_max_num_tokens, litert_lm_prefill_chunks

    def chunk_ends(count):
        ends, written = [], 0
        for index, (length, ids) in enumerate(litert_lm_prefill_chunks(count, lengths)):
            ends.append(written + length)
            written += ids - 1 if index == 0 else ids
        return ends

    limit = litert_lm_max_num_tokens(cache_length, lengths)
    assert limit == expected
    for count in range(1, limit):
        chunks = litert_lm_prefill_chunks(count, lengths)
        assert sum(ids for _, ids in chunks) == count
        assert all(ids <= length for length, ids in chunks)
        assert max(chunk_ends(count)) <= cache_length, count
    if limit < cache_length:
        assert max(chunk_ends(limit)) > cache_length
