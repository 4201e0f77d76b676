"""The Qwen family (``llm2tflite/families/qwen.py``): shapes, Hugging Face configs, both routes.

- the family's parameter count reproduces KerasHub's published counts for every preset it lists
  and the count of a built backbone (tied and untied);
- a Qwen config.json is read as KerasHub's converter reads it, and one KerasHub's converter
  cannot load (its own exporter's, without the sliding-window keys) is refused in one line;
- on the small random Qwen of conftest (2 layers, 4 query heads sharing 2 key/value heads,
  biased projections, tied embedding, a byte-level BPE vocabulary learned with Qwen's
  pre-tokenizer), exported once per session (``small_qwen_litert``): fp32 decode and prefill
  logits equal Keras's, greedy ids over the runtime equal KerasHub ``generate()`` (no start
  token: the prompt's ids alone), the graph is builtins only with the cache read once per layer,
  and int8 runs and tracks fp32.

The codelab route of a Qwen model is built and checked by the checkpoint DAG
(tests/workflow/test_checkpoint_source.py).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_litert_route import Session, _keras_logits, _random_ids
from test_litert_runtime import keras_greedy_ids

from llm2tflite.families import registry

from conftest import SMALL_LITERT_CACHE_LENGTH, SMALL_MAX_LENGTH

PROMPTS = [
    "Estoy disfrutando de",
    "I am enjoying the",
    "¿Dónde está la estación?",
    "Mañana, el pingüino come 3 piñas 🤖 y 日本語",
    "Mañana por la mañana vamos a la playa con mis amigos y mi hermana " * 3,
]
# As the Llama family's test: the same float32 math apart from the order of some sums.
LOGITS_TOLERANCE = 1e-5


def _assert_logits_close(got, expected):
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=LOGITS_TOLERANCE * scale)


def test_parameter_counts_are_keras_hubs():
    """Every listed preset's count is KerasHub's published one (its presets module), and the
    formula counts a built backbone's weights, tied or not."""
    import keras_hub
    from keras_hub.src.models.qwen.qwen_presets import backbone_presets

    qwen = registry.by_name("qwen")
    assert qwen.presets and set(qwen.presets) == set(qwen.preset_parameters)
    for name, config in qwen.presets.items():
        published = backbone_presets[name]["metadata"]["params"]
        assert qwen.parameter_count(config) == qwen.preset_parameters[name] == published, name
    assert registry.for_preset("qwen2.5_0.5b_en")[0] is qwen
    for tied in (True, False):
        config = {**qwen.train_model_config(), "vocabulary_size": 300, "tie_word_embeddings": tied}
        backbone = keras_hub.models.QwenBackbone(**config)
        assert qwen.parameter_count(config) == backbone.count_params(), tied


def test_qwen2_5_0_5b_shape():
    """The twin's shape (Qwen2.5-0.5B's config.json): 24 layers of 14 query heads on 2 key/value
    heads of 64, MLP 4864, 151,936-row tied embedding, RoPE base 1e6."""
    family, config = registry.for_preset("qwen2.5_0.5b_en")
    assert (config["hidden_dim"], config["num_layers"], config["intermediate_dim"]) == (
        896,
        24,
        4864,
    )
    assert (config["num_query_heads"], config["num_key_value_heads"]) == (14, 2)
    assert config["vocabulary_size"] == 151_936 and config["tie_word_embeddings"]
    assert config["rope_max_wavelength"] == 1_000_000
    assert family.weight_input_widths(config) == {
        "hidden_dim": 896,
        "intermediate_dim": 4864,
        "num_query_heads x head_dim": 896,
    }


def test_keras_hubs_own_qwen_export_is_refused_in_one_line(qwen_checkpoint, tmp_path):
    """KerasHub's exporter leaves out use_sliding_window / sliding_window, which its converter
    reads: such a directory is refused at parse time with the reason, not a KeyError later."""
    broken = shutil.copytree(qwen_checkpoint["checkpoint"], tmp_path / "exported")
    config = json.loads((broken / "config.json").read_text())
    del config["use_sliding_window"], config["sliding_window"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(registry.UnsupportedArchitectureError) as error:
        registry.for_preset(str(broken))
    assert "config.json has no use_sliding_window or sliding_window" in str(error.value)
    assert "\n" not in str(error.value)
    (broken / "config.json").write_text(json.dumps({**config, "use_sliding_window": True}))
    with pytest.raises(registry.UnsupportedArchitectureError, match="sliding_window"):
        registry.for_preset(str(broken))


# ---- LiteRT route ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(small_qwen_litert):
    from llm2tflite.model_files import open_model

    return open_model(small_qwen_litert["tflite"]["fp32"], threads=1)


def test_export_info_has_no_start_token(small_qwen_litert):
    info = small_qwen_litert["info"]
    tokenizer = small_qwen_litert["causal_lm"].preprocessor.tokenizer
    assert info["architecture"] == "qwen" and info["tokenizer_kind"] == "byte_level_bpe"
    assert info["layers"] == [{"kv_heads": 2, "head_dim": 8}] * 2
    assert info["start_token_id"] is None and info["add_start_token"] is False
    assert info["stop_token_ids"] == [tokenizer.token_to_id("<|endoftext|>")]
    assert small_qwen_litert["tokenizer"].name == "tokenizer.json"


def test_fp32_decode_logits_equal_keras(small_qwen_litert):
    info = small_qwen_litert["info"]
    ids = _random_ids(34, info["vocabulary_size"], seed=3)
    expected = _keras_logits(small_qwen_litert["causal_lm"], ids)[0]
    session = Session(small_qwen_litert["tflite"]["fp32"], info)
    assert session.prefill(ids[:19]) is None
    for position in range(19, 34):
        _assert_logits_close(session.decode(ids[position]), expected[position])


def test_fp32_prefill_logits_equal_keras(small_qwen_litert, tmp_path):
    from llm2tflite.core import atomic
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export

    causal_lm = small_qwen_litert["causal_lm"]
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
    logits = Session(tmp_path / "fp32.tflite", info).prefill(ids)
    _assert_logits_close(logits, _keras_logits(causal_lm, ids))


def test_greedy_over_the_runtime_equals_keras_generate(model, small_qwen_litert):
    """From the runtime's prompt ids (no start token before them) the runtime's greedy ids are
    KerasHub's; the text is KerasHub generate()'s (the exact tokenizer's eager path and the
    runtime's tokenizer.json tokenize every prompt alike, "¿Dónde" and digits included)."""
    causal_lm = small_qwen_litert["causal_lm"]
    assert model.route == "litert" and model.start_token_id is None
    with pytest.raises(ValueError, match="no start token"):
        model.generate("")
    for prompt in PROMPTS:
        for max_length in (SMALL_MAX_LENGTH, 12):
            generation = model.generate(prompt, max_length=max_length)
            kept = generation.token_ids[: generation.prompt_tokens]
            assert kept == model.token_ids(prompt)[: len(kept)]
            expected = keras_greedy_ids(causal_lm, kept, max_length, model.stop_token_ids)
            assert generation.token_ids == expected, (prompt, max_length)
            assert generation.new_tokens >= 1
    # Prompts the runtime keeps whole (a longer one it cuts to its sequence length, KerasHub's
    # generate() to max_length: other prompts, other texts).
    whole = [p for p in PROMPTS if len(model.token_ids(p)) < model.sequence_length]
    assert "¿Dónde está la estación?" in whole
    for prompt in whole:
        generation = model.generate(prompt)
        assert generation.text == causal_lm.generate(prompt, max_length=SMALL_MAX_LENGTH), prompt


def test_builtins_only_and_the_cache_read_once_per_layer(small_qwen_litert):
    from llm2tflite.litert import convert as litert_convert

    layers = small_qwen_litert["info"]["num_layers"]
    for variant, path in small_qwen_litert["tflite"].items():
        flatbuffer = litert_convert.read_model(path.read_bytes())
        litert_convert.check_builtins_only(flatbuffer)
        for name, ops in litert_convert.op_counts(flatbuffer).items():
            assert ops.get("EMBEDDING_LOOKUP") == 1 and "GATHER" not in ops, (variant, name)
            assert ops["DYNAMIC_UPDATE_SLICE"] == 2 * layers, (variant, name)
            assert ops.get("COS") == ops.get("SIN") == 1, (variant, name)
            assert not {"TILE", "BROADCAST_TO", "GATHER_ND"} & set(ops), (variant, name)


def test_int8_runs_and_tracks_fp32(small_qwen_litert):
    info = small_qwen_litert["info"]
    ids = _random_ids(12, info["vocabulary_size"], seed=5)
    logits = {}
    for variant in ("fp32", "int8"):
        session = Session(small_qwen_litert["tflite"][variant], info)
        session.prefill(ids[:-1])
        logits[variant] = session.decode(ids[-1])
    scale = np.abs(logits["fp32"]).max()
    assert 0 < np.abs(logits["int8"] - logits["fp32"]).max() <= 0.05 * scale
