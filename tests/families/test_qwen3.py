"""The Qwen 3 family (``llm2tflite/families/qwen.py``, ``Qwen3``): Qwen 2's tokenizer and decoder
with query/key RMSNorm, a head size of its own, no projection biases.

- the family's parameter count reproduces KerasHub's published counts for its causal-LM presets
  and a built backbone's (tied and untied);
- a Hugging Face Qwen 3 checkpoint (written here by hand: KerasHub 0.31 has no Qwen 3 exporter)
  loads, through KerasHub's converter, as the original model: same weights, same greedy ids;
  the family reads its config.json as the converter does;
- on the small random Qwen 3 (``small_qwen3``, 4 query heads of 8 on 2 key/value heads, hidden
  32), the LiteRT route's fp32 decode and prefill logits equal Keras's and greedy ids over the
  runtime equal KerasHub ``generate()``, builtins only.

Its tokenizer is Qwen 2's (tests/families/test_qwen_tokenizer.py); its codelab route is the
shared Llama-style decoder's (``rotary_gqa``); both routes of this checkpoint run in the checkpoint
DAG (tests/workflow/test_checkpoint_source.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_litert_route import Session, _keras_logits, _random_ids
from test_litert_runtime import keras_greedy_ids

from llm2tflite.families import registry

from conftest import SMALL_LITERT_CACHE_LENGTH, SMALL_MAX_LENGTH, export_litert

PROMPTS = ["Estoy disfrutando de", "¿Dónde está la estación?", "uno dos tres cuatro " * 6]
LOGITS_TOLERANCE = 1e-5


def _assert_logits_close(got, expected):
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=LOGITS_TOLERANCE * scale)


def test_parameter_counts_are_keras_hubs():
    import keras_hub
    from keras_hub.src.models.qwen3.qwen3_presets import backbone_presets

    qwen3 = registry.by_name("qwen3")
    assert set(qwen3.presets) == set(qwen3.preset_parameters)
    for name, config in qwen3.presets.items():
        published = backbone_presets[name]["metadata"]["params"]
        assert qwen3.parameter_count(config) == qwen3.preset_parameters[name] == published, name
    for tied in (True, False):
        config = {**qwen3.train_model_config(), "vocabulary_size": 300, "tie_word_embeddings": tied}
        backbone = keras_hub.models.Qwen3Backbone(**config)
        assert qwen3.parameter_count(config) == backbone.count_params(), tied
    # Qwen3-0.6B: 16 query heads of 128 (2,048 wide) on a 1,024-wide model.
    assert qwen3.weight_input_widths(qwen3.presets["qwen3_0.6b_en"]) == {
        "hidden_dim": 1024,
        "intermediate_dim": 3072,
        "num_query_heads x head_dim": 2048,
    }


def test_hand_written_checkpoint_loads_as_the_original_model(small_qwen3, qwen3_checkpoint):
    from keras_hub.src.utils.preset_utils import get_preset_loader

    from llm2tflite.inputs.reference import keras_generate
    from llm2tflite.inputs.sources import load_causal_lm

    original = small_qwen3["causal_lm"]
    qwen3_checkpoint = qwen3_checkpoint["checkpoint"]
    family, backbone_config = registry.for_preset(str(qwen3_checkpoint))
    assert family.name == "qwen3"
    converted = get_preset_loader(str(qwen3_checkpoint)).converter.convert_backbone_config(
        json.loads((qwen3_checkpoint / "config.json").read_text())
    )
    assert converted == backbone_config
    assert family.parameter_count(backbone_config) == original.backbone.count_params()
    loaded = load_causal_lm(str(qwen3_checkpoint))
    assert type(loaded) is type(original)
    assert len(loaded.weights) == len(original.weights)
    for ours, theirs in zip(loaded.weights, original.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=theirs.path)
    tokenizer = loaded.preprocessor.tokenizer
    assert tokenizer.end_token_id == tokenizer.token_to_id("<|im_end|>")
    assert tokenizer.start_token_id is None
    original.compile(sampler="greedy")
    for prompt in PROMPTS:
        expected = keras_generate(original, prompt, SMALL_MAX_LENGTH)
        assert keras_generate(loaded, prompt, SMALL_MAX_LENGTH).token_ids == expected.token_ids


@pytest.fixture(scope="module")
def qwen3_litert(small_qwen3, tmp_path_factory):
    return export_litert(small_qwen3["causal_lm"], tmp_path_factory.mktemp("qwen3_litert"))


def test_fp32_decode_and_prefill_logits_equal_keras(small_qwen3, qwen3_litert, tmp_path):
    from llm2tflite.core import atomic
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export

    causal_lm = small_qwen3["causal_lm"]
    info = qwen3_litert["info"]
    assert info["architecture"] == "qwen3" and info["start_token_id"] is None
    assert info["layers"] == [{"kv_heads": 2, "head_dim": 8}] * 2
    ids = _random_ids(34, info["vocabulary_size"], seed=3)
    expected = _keras_logits(causal_lm, ids)[0]
    session = Session(qwen3_litert["tflite"]["fp32"], info)
    assert session.prefill(ids[:19]) is None
    for position in range(19, 34):
        _assert_logits_close(session.decode(ids[position]), expected[position])

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
    litert_convert.check_builtins_only(litert_convert.read_model(flatbuffer))
    ids = _random_ids(27, info["vocabulary_size"], seed=4)
    logits = Session(tmp_path / "fp32.tflite", info).prefill(ids)
    _assert_logits_close(logits, _keras_logits(causal_lm, ids))


def test_greedy_over_the_runtime_equals_keras_generate(small_qwen3, qwen3_litert):
    from llm2tflite.model_files import open_model

    causal_lm = small_qwen3["causal_lm"]
    model = open_model(qwen3_litert["tflite"]["fp32"], threads=1)
    tokenizer = causal_lm.preprocessor.tokenizer
    assert model.stop_token_ids == {tokenizer.token_to_id("<|im_end|>")}
    for prompt in PROMPTS:
        for max_length in (SMALL_MAX_LENGTH, 12):
            generation = model.generate(prompt, max_length=max_length)
            kept = generation.token_ids[: generation.prompt_tokens]
            expected = keras_greedy_ids(causal_lm, kept, max_length, model.stop_token_ids)
            assert generation.token_ids == expected, (prompt, max_length)
    generation = model.generate(PROMPTS[0])
    assert generation.text == causal_lm.generate(PROMPTS[0], max_length=SMALL_MAX_LENGTH)
