"""The Llama family (llm2tflite/families/llama.py) through the codelab route.

- its parameter count equals KerasHub's, on small shapes and for the published presets;
- its `train: model:` section is checked at config time;
- a short training run on the SentencePiece vocabulary lowers the held-out loss and saves a
  preset that reloads;
- a small random Llama on the default SentencePiece vocabulary, traced and converted to fp32:
  the in-graph tokenizer gives the `sentencepiece` library's ids on >= 1,000 held-out lines and
  hard cases, greedy generation equals KerasHub's generate(), the SentencePiece ops are Select
  TF ops from TF Text, and the decoding loop reads its cache with builtin ops.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from test_tokenizer_parity import HARD_CASES

from llm2tflite.families import registry

from conftest import (
    REPO,
    SMALL_LLAMA,
    SMALL_MAX_LENGTH,
    SMALL_SEQUENCE_LENGTH,
    default_llama_train_config,
)

LLAMA = registry.by_name("llama")
PROMPTS = [
    "Estoy disfrutando de",
    "I am enjoying the",
    "¿Dónde está la estación?",
    "Mañana, el pingüino come 3 piñas 🤖",
    "",
]


# ================================================================ parameter count, config


@pytest.mark.parametrize(
    "shape",
    [
        SMALL_LLAMA,
        {**SMALL_LLAMA, "num_key_value_heads": 4},  # multi-head attention (Llama 2 7B's kind)
        {**SMALL_LLAMA, "num_key_value_heads": 1, "num_layers": 3},  # multi-query attention
        {
            **SMALL_LLAMA,
            "hidden_dim": 48,
            "num_query_heads": 2,
            "intermediate_dim": 50,
            "tie_word_embeddings": True,
        },
    ],
)
def test_parameter_count_equals_keras_hub(shape):
    import keras_hub

    config = {**shape, "vocabulary_size": 301}
    assert LLAMA.parameter_count(config) == keras_hub.models.LlamaBackbone(**config).count_params()


def test_preset_parameter_counts_are_the_published_ones():
    from keras_hub.src.models.llama.llama_presets import backbone_presets

    assert set(LLAMA.presets) == set(LLAMA.preset_parameters)
    for preset, config in LLAMA.presets.items():
        assert LLAMA.parameter_count(config) == LLAMA.preset_parameters[preset]
        assert LLAMA.preset_parameters[preset] == backbone_presets[preset]["metadata"]["params"]
        assert registry.for_preset(preset)[0] is LLAMA
    assert LLAMA.max_sequence_length(LLAMA.presets["llama2_7b_en"]) is None  # rotary positions


def test_registry_knows_llama():
    import keras_hub

    assert registry.by_name("llama") is LLAMA
    assert registry.by_class_name("LlamaCausalLM") is LLAMA
    assert "llama (LlamaCausalLM)" in registry.supported()
    # Llama 3 subclasses LlamaCausalLM but tokenizes with byte-level BPE, not SentencePiece:
    # it is the llama3 module's family, never run with the llama module's tokenizer; a user's
    # own subclass of LlamaCausalLM is Llama.
    assert issubclass(keras_hub.models.Llama3CausalLM, keras_hub.models.LlamaCausalLM)
    llama3 = keras_hub.models.Llama3CausalLM.__new__(keras_hub.models.Llama3CausalLM)
    assert registry.for_causal_lm(llama3) is registry.by_name("llama3") is not LLAMA
    assert registry.for_causal_lm(llama3).tokenizer_kind == "byte_level_bpe"

    class MyLlama(keras_hub.models.LlamaCausalLM):
        pass

    assert registry.for_causal_lm(MyLlama.__new__(MyLlama)) is LLAMA


@pytest.mark.parametrize(
    "model, message",
    [
        ({"hidden_dim": 30}, r"hidden_dim: 30 is not a multiple of num_query_heads 4"),
        ({"hidden_dim": 12}, r"head size hidden_dim / num_query_heads = 3 must be even"),
        (
            {"num_key_value_heads": 3},
            r"num_query_heads: 4 is not a multiple of num_key_value_heads 3",
        ),
        ({"num_heads": 4}, r"unknown key 'num_heads'; allowed keys: dropout, hidden_dim"),
        ({"tie_word_embeddings": True}, r"unknown key 'tie_word_embeddings'"),
    ],
)
def test_config_check_names_the_bad_llama_setting(model, message):
    import re

    from llm2tflite.config_check import ConfigError, check_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    name = next(
        n for n, s in config["models"].items() if s.get("train", {}).get("architecture") == "llama"
    )
    config["models"][name]["train"]["model"].update(model)
    with pytest.raises(ConfigError) as error:
        check_config(config, REPO / "config" / "config.schema.yaml")
    assert len(error.value.errors) == 1
    assert error.value.errors[0].startswith(f"models.{name}.train.model")
    assert re.search(message, error.value.errors[0]), error.value.errors[0]


# ================================================================ vocabulary, training


def run_train_cli(architecture, vocab_dir, model, max_steps, default_corpus_dir, tmp_path):
    """The train stage's CLI on parts of the default corpus (the same vocabulary, a few seconds
    of packing): (preset dir, metrics path, completed process)."""
    lines = {}
    for name, count in (("train.txt", 3000), ("heldout.txt", 300)):
        lines[name] = tmp_path / name
        lines[name].write_text(
            "\n".join((default_corpus_dir / name).read_text(encoding="utf-8").splitlines()[:count])
            + "\n",
            encoding="utf-8",
        )
    preset, metrics_path = tmp_path / "preset", tmp_path / "metrics.json"
    fit = {"seed": 3, "sequence_length": 32, "batch_size": 32, "epochs": 1, "learning_rate": 0.01}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.inputs.train",
            "--architecture",
            architecture,
            "--corpus",
            str(lines["train.txt"]),
            "--heldout",
            str(lines["heldout.txt"]),
            "--vocab-dir",
            str(vocab_dir),
            "--model-json",
            json.dumps(model),
            "--fit-json",
            json.dumps(fit),
            "--max-steps",
            str(max_steps),
            "--out-preset",
            str(preset),
            "--out-metrics",
            str(metrics_path),
        ],
        capture_output=True,
        text=True,
    )
    return preset, metrics_path, completed


def test_train_cli_trains_a_llama_preset(sentencepiece_vocab, default_corpus_and_vocab, tmp_path):
    """80 steps of a 2-layer 32-wide Llama: the loss drops, the preset reloads as Llama."""
    import keras_hub

    preset, metrics_path, completed = run_train_cli(
        "llama", sentencepiece_vocab, SMALL_LLAMA, 80, default_corpus_and_vocab, tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    assert metrics["architecture"] == "llama"
    assert metrics["heldout_loss_trained"] < 0.8 * metrics["heldout_loss_untrained"]
    assert metrics["num_parameters"] == LLAMA.parameter_count(
        {
            **LLAMA.train_model_config(SMALL_LLAMA),
            "vocabulary_size": default_llama_train_config()["vocabulary"]["size"],
        }
    )
    assert (metrics["end_token_id"], metrics["lines_at_sequence_length"]) == (2, 0)
    # The preset carries the very SentencePiece model the vocabulary stage wrote.
    assert (preset / "assets" / "tokenizer" / "vocabulary.spm").read_bytes() == (
        sentencepiece_vocab / "tokenizer.model"
    ).read_bytes()
    reloaded = keras_hub.models.CausalLM.from_preset(str(preset))
    assert type(reloaded) is keras_hub.models.LlamaCausalLM
    assert metrics["sample_generation"]["output"].startswith("Estoy disfrutando de")


# ================================================================ codelab route


@pytest.fixture(scope="module")
def llama_export(small_llama, tmp_path_factory):
    """The small random Llama (conftest) through the codelab route: trace, fp32."""
    return export_codelab_fp32(small_llama["causal_lm"], tmp_path_factory.mktemp("llama_export"))


def export_codelab_fp32(causal_lm, out):
    """``causal_lm`` traced into ``out/traced`` and converted to ``out/fp32.tflite``."""
    from llm2tflite.codelab.convert import convert_saved_model
    from llm2tflite.codelab.trace import SIGNATURES, export_saved_model
    from llm2tflite.core import atomic

    info = export_saved_model(
        causal_lm,
        out / "traced",
        max_length=SMALL_MAX_LENGTH,
        sequence_length=SMALL_SEQUENCE_LENGTH,
    )
    flatbuffer, report = convert_saved_model(str(out / "traced"), "fp32", SIGNATURES)
    atomic.write_bytes(out / "fp32.tflite", flatbuffer)
    return {
        "dir": out,
        "causal_lm": causal_lm,
        "info": info,
        "tflite": out / "fp32.tflite",
        "conversion": report,
    }


@pytest.fixture(scope="module")
def llama_tflite(llama_export):
    from llm2tflite.codelab.runtime import TFLiteModel

    return TFLiteModel(llama_export["tflite"])


@pytest.fixture(scope="module")
def sentencepiece_processor(sentencepiece_vocab):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(sentencepiece_vocab / "tokenizer.model"))


def _parity_texts(default_corpus_and_vocab, count=1000):
    lines = (default_corpus_and_vocab / "heldout.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= count
    return lines[:count] + HARD_CASES + ["🤖", "\u3000", " leading space", "trailing  "]


def test_tflite_tokenizer_equals_sentencepiece(
    llama_tflite, sentencepiece_processor, default_corpus_and_vocab
):
    texts = _parity_texts(default_corpus_and_vocab)
    expected = sentencepiece_processor.encode(texts)
    got = [llama_tflite.token_ids(text, with_start=True) for text in texts]
    mismatches = [(t, e, g) for t, e, g in zip(texts, expected, got) if [1, *e] != g]
    assert not mismatches, (
        f"{len(mismatches)}/{len(texts)} differ; first "
        f"{mismatches[0][0][:60]!r}: {mismatches[0][1][:12]} vs "
        f"{mismatches[0][2][:13]}"
    )
    assert sum(len(ids) for ids in expected) > 5 * len(texts)
    # Byte fallback inside TFLite: emoji become their UTF-8 bytes, never <unk> (id 0).
    assert 0 not in llama_tflite.token_ids("emoji 🤖🎉👍🏽 日本語")


def test_tflite_detokenizer_equals_sentencepiece(
    llama_tflite, sentencepiece_processor, default_corpus_and_vocab
):
    """Exact, except that TF Text's SentencePiece drops a text's leading spaces.

    TF Text 2.18's kernel strips the spaces a text starts with; the `sentencepiece` library
    (0.2) keeps them. Tokenization agrees; only such texts decode differently.
    """
    texts = _parity_texts(default_corpus_and_vocab)
    for text, ids in zip(texts, sentencepiece_processor.encode(texts)):
        expected = sentencepiece_processor.decode(ids)
        assert expected == text  # byte fallback, identity normalization: lossless
        got = llama_tflite.text(ids)
        assert got == (expected.lstrip(" ") if text.startswith(" ") else expected), text[:60]


def test_fp32_greedy_equals_keras_generate(llama_export, llama_tflite):
    causal_lm = llama_export["causal_lm"]
    causal_lm.compile(sampler="greedy")
    for prompt in PROMPTS:
        expected = causal_lm.generate(prompt, max_length=SMALL_MAX_LENGTH)
        assert llama_tflite.generate(prompt).text == expected, prompt
        assert expected.startswith(prompt) and len(expected) > len(prompt)


def audit_sentencepiece_ops(export):
    """The audit of an export's fp32 file and its SentencePiece ops, checked to be TF Text's
    three Select TF ops."""
    from llm2tflite.evaluate.audit import audit_model

    report = audit_model(export["tflite"], "fp32", conversion_report=export["conversion"])
    sentencepiece_ops = sorted(op for op in report["flex_ops"] if op.startswith("Sentencepiece"))
    assert sentencepiece_ops == [
        "SentencepieceDetokenizeOp",
        "SentencepieceOp",
        "SentencepieceTokenizeOp",
    ]
    assert all(report["flex_op_libraries"][op] == "tensorflow_text" for op in sentencepiece_ops)
    return report, sentencepiece_ops


def test_sentencepiece_ops_are_select_tf_ops_of_tf_text(llama_export):
    report, sentencepiece_ops = audit_sentencepiece_ops(llama_export)
    assert set(sentencepiece_ops) <= set(report["flex_ops_outside_core_tf"])
    assert report["custom_ops"] == []
    # TFLite's Flex allowlist already lists TF Text's SentencePiece ops: the converter needs no
    # experimental_select_user_tf_ops for them.
    assert not set(sentencepiece_ops) & set(llama_export["conversion"]["select_user_tf_ops"])


def _flex_ops_per_subgraph(tflite_file) -> dict[str, set[str]]:
    from llm2tflite.evaluate.audit import _root_model

    model = _root_model(tflite_file.read_bytes())
    codes = [
        (model.OperatorCodes(i).CustomCode() or b"").decode()
        for i in range(model.OperatorCodesLength())
    ]
    flex = {}
    for index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(index)
        flex[(subgraph.Name() or b"").decode()] = {
            codes[subgraph.Operators(j).OpcodeIndex()].removeprefix("Flex")
            for j in range(subgraph.OperatorsLength())
            if codes[subgraph.Operators(j).OpcodeIndex()].startswith("Flex")
        }
    return flex


def test_decoding_loop_reads_the_cache_with_builtins(llama_export):
    """fast_decoding: no per-layer FlexStridedSlice copy of the 6-D cache in the loop."""
    flex = _flex_ops_per_subgraph(llama_export["tflite"])
    loop_bodies = [name for name in flex if "while_body" in name]
    assert loop_bodies
    for name in loop_bodies:
        assert "StridedSlice" not in flex[name], (name, flex[name])


def test_weights_frozen_check_reads_operators_not_tensor_names(tmp_path):
    """A frozen weight's tensor can keep the name ``.../ReadVariableOp`` (tiny_llama's trained
    RMSNorm scales do): only variable operators fail a conversion."""
    import tensorflow as tf

    from llm2tflite.codelab.convert import (
        WeightsNotFrozenError,
        _check_weights_frozen,
        variable_ops,
    )

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.weight = tf.Variable([1.0, 2.0, 3.0])

        @tf.function(input_signature=[tf.TensorSpec([3])])
        def read(self, x):
            return {"y": x * self.weight + 1}

        @tf.function(input_signature=[tf.TensorSpec([3])])
        def update(self, x):
            self.weight.assign_add(x)
            return {"y": self.weight.read_value() * 2}

    module = Module()
    tf.saved_model.save(
        module, str(tmp_path), signatures={"read": module.read, "update": module.update}
    )
    converted = {}
    for key in ("read", "update"):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path), signature_keys=[key])
        converter.experimental_enable_resource_variables = True
        converted[key] = converter.convert()
    assert b"ReadVariableOp" in converted["read"]  # a tensor name: the weight is a constant
    assert variable_ops(converted["read"]) == []
    _check_weights_frozen(converted["read"])
    assert variable_ops(converted["update"]) == ["ASSIGN_VARIABLE", "READ_VARIABLE", "VAR_HANDLE"]
    with pytest.raises(WeightsNotFrozenError, match="VAR_HANDLE"):
        _check_weights_frozen(converted["update"])
