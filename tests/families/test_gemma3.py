"""The Gemma 3 family (llm2tflite/families/gemma3.py) and its SentencePiece layout.

- its parameter count equals KerasHub's, on small shapes and for the published text presets;
- the vocabulary stage lays out Gemma 3's special pieces at their real ids (<pad> 0, <eos> 1,
  <bos> 2, <unk> 3, ..., <end_of_turn> 106) and, for a twin, learns every piece the corpus
  supports; the twin DAG wires corpus -> vocabulary -> twin for it (GPT-2's twin keeps fetching
  GPT-2's real files);
- a short training run through the family's line preprocessor lowers the held-out loss;
- a small random Gemma 3 (a global layer among sliding-window layers whose window is shorter
  than the traced generation, multi-query attention, an embedding larger than its tokenizer as
  in the twin), traced and converted to fp32: the in-graph tokenizer gives the `sentencepiece`
  library's ids on >= 1,000 held-out lines and hard cases, greedy generation equals KerasHub's
  generate() and stops at <end_of_turn> as generate() does, the decoding loop reads its cache
  with builtin ops and the prompt packing needs no TF Text kernel beyond SentencePiece's.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from test_llama import (
    _flex_ops_per_subgraph,
    audit_sentencepiece_ops,
    export_codelab_fp32,
    run_train_cli,
)
from test_tokenizer_parity import HARD_CASES

from llm2tflite.families import registry
from llm2tflite.inputs import vocab

from conftest import (
    REPO,
    SMALL_MAX_LENGTH,
    copy_default_config,
    run_snakemake,
)

GEMMA3 = registry.by_name("gemma3")
# Seven layers: sliding, sliding, sliding, sliding, sliding, global, sliding. A window of 8
# positions against SMALL_MAX_LENGTH = 40: every sliding layer hides old positions while decoding.
SMALL_GEMMA3 = {
    "num_layers": 7,
    "num_query_heads": 4,
    "num_key_value_heads": 1,
    "hidden_dim": 32,
    "intermediate_dim": 64,
    "head_dim": 8,
    "sliding_window_size": 8,
}
# The small model's embedding has rows the tokenizer has no piece for, as the twin's does.
EXTRA_EMBEDDING_ROWS = 195
PROMPTS = [
    "Estoy disfrutando de",
    "I am enjoying the",
    "¿Dónde está la estación?",
    "Mañana, el pingüino come 3 piñas 🤖",
    "<start_of_turn>user\nHola<end_of_turn>",
    "",
]
STOP_PROMPT = "My sister likes"


# ================================================================ parameter count, registry


@pytest.mark.parametrize(
    "shape",
    [
        SMALL_GEMMA3,
        {**SMALL_GEMMA3, "num_key_value_heads": 2, "use_query_key_norm": False},
        {
            **SMALL_GEMMA3,
            "use_post_attention_norm": False,
            "use_post_ffw_norm": False,
            "num_query_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 12,
        },
    ],
)
def test_parameter_count_equals_keras_hub(shape):
    import keras_hub

    config = {**GEMMA3.train_model_config(shape), "vocabulary_size": 301}
    assert (
        GEMMA3.parameter_count(config)
        == keras_hub.models.Gemma3Backbone(image_size=None, **config).count_params()
    )


def test_preset_parameter_counts_are_the_published_ones():
    from keras_hub.src.models.gemma3.gemma3_presets import backbone_presets

    assert set(GEMMA3.presets) == set(GEMMA3.preset_parameters)
    assert {"gemma3_270m", "gemma3_instruct_270m", "gemma3_1b", "gemma3_instruct_1b"} <= set(
        GEMMA3.presets
    )
    for preset, config in GEMMA3.presets.items():
        assert GEMMA3.parameter_count(config) == GEMMA3.preset_parameters[preset], preset
        assert GEMMA3.preset_parameters[preset] == backbone_presets[preset]["metadata"]["params"]
        assert registry.for_preset(preset)[0] is GEMMA3
        assert config["vision_encoder"] is None and config["vocabulary_size"] == 262_144
    assert GEMMA3.max_sequence_length(GEMMA3.presets["gemma3_270m"]) is None
    with pytest.raises(ValueError, match="text-only"):
        GEMMA3.parameter_count({**GEMMA3.presets["gemma3_1b"], "vision_encoder": object()})


def test_weight_input_widths_include_the_attention_output():
    """What an int4 block must divide (config check): the attention output projection reads
    query heads x head_dim values, not the hidden width (4 x 256 = 1024 against 640)."""
    assert GEMMA3.weight_input_widths(GEMMA3.presets["gemma3_270m"]) == {
        "hidden_dim": 640,
        "intermediate_dim": 2048,
        "num_query_heads x head_dim": 1024,
    }


def test_registry_knows_gemma3():
    assert registry.by_class_name("Gemma3CausalLM") is GEMMA3
    assert "gemma3 (Gemma3CausalLM)" in registry.supported()
    assert GEMMA3.twin_tokenizer == "trained"
    assert registry.by_name("gpt2").twin_tokenizer == "published"


@pytest.mark.parametrize(
    "model, message",
    [
        ({"head_dim": 7}, r"head_dim: 7 must be even"),
        (
            {"num_key_value_heads": 3},
            r"num_query_heads: 4 is not a multiple of num_key_value_heads 3",
        ),
        ({"num_heads": 4}, r"unknown key 'num_heads'"),
        ({"final_logit_soft_cap": -1}, r"final_logit_soft_cap"),
    ],
)
def test_config_check_names_the_bad_gemma3_setting(model, message):
    from llm2tflite.config_check import ConfigError, check_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    train = json.loads(
        json.dumps(next(s["train"] for s in config["models"].values() if "train" in s))
    )
    train["architecture"] = "gemma3"
    train["model"] = {**GEMMA3.train_model_config(), **model}
    config["models"] = {"small_gemma": {"train": train}}
    with pytest.raises(ConfigError) as error:
        check_config(config, REPO / "config" / "config.schema.yaml")
    assert len(error.value.errors) == 1, error.value.errors
    assert error.value.errors[0].startswith("models.small_gemma.train.model")
    assert re.search(message, error.value.errors[0]), error.value.errors[0]


def test_twin_weights_are_distinct_and_unused_rows_quiet(gemma3_vocab):
    """KerasHub's Gemma 3 attention draws key == value and query == output kernels from one
    initializer; the twin builder permutes repeats (same values, no longer shared, so the
    converters cannot store them once) and scales the rows of ids its tokenizer lacks."""
    import hashlib

    import keras
    import numpy as np

    from llm2tflite.inputs.twin import decorrelate_equal_weights, quiet_unused_embedding_rows

    keras.utils.set_random_seed(0)
    config = {**GEMMA3.train_model_config(SMALL_GEMMA3), "vocabulary_size": 500}
    causal_lm = GEMMA3.build_causal_lm(config, GEMMA3.load_tokenizer(gemma3_vocab), 16)

    def repeats():
        digests = [
            hashlib.sha256(w.numpy().tobytes()).digest()
            for w in causal_lm.weights
            if w.numpy().min() != w.numpy().max()
        ]
        return len(digests) - len(set(digests))

    assert repeats() == 2 * SMALL_GEMMA3["num_layers"]  # (key, value), (query, output)
    before = [np.sort(w.numpy(), axis=None) for w in causal_lm.weights]
    assert decorrelate_equal_weights(causal_lm, seed=0) == 2 * SMALL_GEMMA3["num_layers"]
    assert repeats() == 0
    for weight, values in zip(causal_lm.weights, before):  # each keeps its own values
        np.testing.assert_array_equal(np.sort(weight.numpy(), axis=None), values)
    table = causal_lm.backbone.token_embedding.embeddings
    original = table.numpy()
    assert quiet_unused_embedding_rows(causal_lm, 400) == 100
    np.testing.assert_array_equal(table.numpy()[:400], original[:400])
    np.testing.assert_allclose(table.numpy()[400:], original[400:] * 1e-3)


# ================================================================ vocabulary


def test_vocabulary_has_gemma3_special_pieces_at_their_ids(gemma3_vocab):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    proto = (gemma3_vocab / vocab.SENTENCEPIECE_FILENAME).read_bytes()
    processor = spm.SentencePieceProcessor(model_proto=proto)
    pieces = [processor.id_to_piece(i) for i in range(107)]
    assert pieces[:6] == ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    assert pieces[6:105] == [f"<unused{i}>" for i in range(99)]
    assert pieces[105:] == ["<start_of_turn>", "<end_of_turn>"]
    assert (processor.pad_id(), processor.eos_id(), processor.bos_id(), processor.unk_id()) == (
        0,
        1,
        2,
        3,
    )
    model = sentencepiece_model_pb2.ModelProto.FromString(proto)
    user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    assert all(model.pieces[i].type == user_defined for i in range(4, 107))
    assert not model.normalizer_spec.add_dummy_prefix  # Gemma: "Hello" has no leading "▁"
    # Text that spells a turn marker encodes to its single id, as with Gemma's vocabulary.
    assert processor.encode("<start_of_turn>user\nHola<end_of_turn>")[0] == 105
    assert processor.encode("Hola<end_of_turn>")[-1] == 106
    assert 3000 < processor.get_piece_size() < 262144  # the corpus's, not the bound


def test_gemma3_tokenizer_reads_it_with_the_ids_keras_hub_expects(gemma3_vocab):
    tokenizer = GEMMA3.load_tokenizer(gemma3_vocab)
    assert (tokenizer.start_token_id, tokenizer.end_token_id, tokenizer.pad_token_id) == (2, 1, 0)
    assert tokenizer.token_to_id("<end_of_turn>") == 106
    assert GEMMA3.stop_token_ids(tokenizer) == [1, 106]
    assert not tokenizer.has_vision_tokens
    assert tokenizer.vocabulary_size() < GEMMA3.presets["gemma3_270m"]["vocabulary_size"]


def test_at_most_is_a_bound_and_exact_sizes_still_fail_loudly(default_corpus_and_vocab):
    import sentencepiece as spm

    lines = vocab.read_lines(default_corpus_and_vocab / "train.txt")[:3000]
    layout = GEMMA3.sentencepiece_layout
    supported = spm.SentencePieceProcessor(
        model_proto=vocab.train_sentencepiece(lines, None, layout=layout)
    ).get_piece_size()
    bounded = spm.SentencePieceProcessor(
        model_proto=vocab.train_sentencepiece(lines, supported - 100, layout=layout, at_most=True)
    ).get_piece_size()
    assert bounded == supported - 100
    with pytest.raises(ValueError, match=f"the corpus supports at most {supported}"):
        vocab.train_sentencepiece(lines, supported + 1, layout=layout)
    with pytest.raises(ValueError, match="at least 364"):  # 107 special pieces + 256 bytes + 1
        vocab.train_sentencepiece(lines, 300, layout=layout)


def test_twin_dag_learns_the_tokenizer_from_the_corpus(tmp_path):
    """Dry runs: the Gemma 3 twin goes corpus -> vocabulary (at most 262,144 pieces) -> twin;
    the GPT-2 twin still fetches GPT-2's real tokenizer and trains none."""
    copy_default_config(tmp_path)
    # Targets before --configfile, which takes every argument after it.
    gemma = run_snakemake(
        tmp_path,
        "results/gemma3_270m_twin/preset",
        "-n",
        "-p",
        "--cores",
        "1",
        "--configfile",
        "config/gemma3_270m_twin.yaml",
    )
    vocab_command = (
        r"llm2tflite\.inputs\.vocab --architecture gemma3 .*--vocab-size 262144 --at-most"
    )
    assert re.search(vocab_command, gemma.stdout), gemma.stdout[-3000:]
    assert "rule corpus:" in gemma.stdout and "rule gpt2_assets:" not in gemma.stdout
    assert "--tokenizer-dir results/gemma3_270m_twin/vocab" in gemma.stdout
    gpt2 = run_snakemake(
        tmp_path,
        "results/gpt2_124m_twin/preset",
        "-n",
        "-p",
        "--cores",
        "1",
        "--configfile",
        "config/gpt2_124m_twin.yaml",
    )
    assert "rule gpt2_assets:" in gpt2.stdout
    assert "rule corpus:" not in gpt2.stdout and "llm2tflite.inputs.vocab" not in gpt2.stdout


# ================================================================ training


def test_train_cli_trains_a_gemma3_preset(gemma3_vocab, default_corpus_and_vocab, tmp_path):
    """60 steps of a 2-layer Gemma 3 on plain lines (as responses to an empty prompt).

    Two layers: every batch length retraces the train step, and a trace costs per layer."""
    import keras_hub

    preset, metrics_path, completed = run_train_cli(
        "gemma3",
        gemma3_vocab,
        {**SMALL_GEMMA3, "num_layers": 2},
        60,
        default_corpus_and_vocab,
        tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    assert metrics["architecture"] == "gemma3"
    assert metrics["heldout_loss_trained"] < 0.8 * metrics["heldout_loss_untrained"]
    assert metrics["end_token_id"] == 1 and metrics["lines_at_sequence_length"] == 0
    reloaded = keras_hub.models.CausalLM.from_preset(str(preset))
    assert type(reloaded) is keras_hub.models.Gemma3CausalLM
    assert metrics["sample_generation"]["output"].startswith("Estoy disfrutando de")


# ================================================================ codelab route


@pytest.fixture(scope="module")
def gemma3_export(gemma3_vocab, tmp_path_factory):
    """A small random Gemma 3 on the twin-style vocabulary: preset, trace, fp32.

    Its embedding has EXTRA_EMBEDDING_ROWS rows beyond the tokenizer, scaled down as the
    twin's are.
    <end_of_turn>'s row is made a hair longer than the row of a token that STOP_PROMPT's greedy
    continuation produces, so that generation stops there at <end_of_turn>.
    """
    import keras

    from llm2tflite.inputs.sources import load_causal_lm
    from llm2tflite.inputs.twin import quiet_unused_embedding_rows

    out = tmp_path_factory.mktemp("gemma3_export")
    keras.utils.set_random_seed(0)
    tokenizer = GEMMA3.load_tokenizer(gemma3_vocab)
    used = tokenizer.vocabulary_size()
    backbone_config = {
        **GEMMA3.train_model_config(SMALL_GEMMA3),
        "vocabulary_size": used + EXTRA_EMBEDDING_ROWS,
    }
    causal_lm = GEMMA3.build_causal_lm(backbone_config, tokenizer, 32)
    assert quiet_unused_embedding_rows(causal_lm, used) == EXTRA_EMBEDDING_ROWS
    causal_lm.compile(sampler="greedy")
    packed = causal_lm.preprocessor.generate_preprocess([STOP_PROMPT])
    prompt_tokens = int(packed["padding_mask"].numpy().sum())
    generated = causal_lm.generate_step(packed, stop_token_ids=None)["token_ids"]
    stop_token = int(generated[0, prompt_tokens + 4])
    table = causal_lm.backbone.token_embedding.embeddings
    values = table.numpy()
    values[106] = 1.01 * values[stop_token]
    table.assign(values)
    causal_lm.save_to_preset(str(out / "preset"))
    causal_lm = load_causal_lm(str(out / "preset"))
    return export_codelab_fp32(causal_lm, out)


@pytest.fixture(scope="module")
def gemma3_tflite(gemma3_export):
    from llm2tflite.codelab.runtime import TFLiteModel

    return TFLiteModel(gemma3_export["tflite"])


def test_tflite_tokenizer_equals_sentencepiece(
    gemma3_tflite, gemma3_vocab, default_corpus_and_vocab
):
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(
        model_file=str(gemma3_vocab / vocab.SENTENCEPIECE_FILENAME)
    )
    lines = (default_corpus_and_vocab / "heldout.txt").read_text(encoding="utf-8").splitlines()
    texts = (
        lines[:1000]
        + HARD_CASES
        + [
            "🤖",
            "\u3000",
            " leading space",
            "trailing  ",
            "<start_of_turn>user\n¿Qué tal?<end_of_turn>\n",
        ]
    )
    assert len(texts) > 1000
    mismatches = [
        (text, [2, *ids], got)
        for text, ids in zip(texts, processor.encode(texts))
        if (got := gemma3_tflite.token_ids(text, with_start=True)) != [2, *ids]
    ]
    assert not mismatches, (
        f"{len(mismatches)}/{len(texts)} differ; first "
        f"{mismatches[0][0][:60]!r}: {mismatches[0][1][:12]} vs "
        f"{mismatches[0][2][:12]}"
    )
    assert 3 not in gemma3_tflite.token_ids("emoji 🤖🎉👍🏽 日本語")  # byte fallback, no <unk>


def test_fp32_greedy_equals_keras_generate(gemma3_export, gemma3_tflite):
    causal_lm = gemma3_export["causal_lm"]
    causal_lm.compile(sampler="greedy")
    assert gemma3_export["info"]["stop_token_ids"] == [1, 106]
    for prompt in PROMPTS:
        expected = causal_lm.generate(prompt, max_length=SMALL_MAX_LENGTH)
        assert gemma3_tflite.generate(prompt).text == expected, prompt
        assert expected.startswith(prompt) and len(expected) > len(prompt)


def test_generation_stops_at_end_of_turn_as_keras_hub_does(gemma3_export, gemma3_tflite):
    causal_lm = gemma3_export["causal_lm"]
    causal_lm.compile(sampler="greedy")
    expected = causal_lm.generate(STOP_PROMPT, max_length=SMALL_MAX_LENGTH)
    # KerasHub keeps the stop token (<end_of_turn> is not one of the tokenizer's special
    # tokens it strips) and nothing after it.
    assert expected.endswith("<end_of_turn>"), expected
    tokenizer = causal_lm.preprocessor.tokenizer
    assert len(tokenizer(expected)) < SMALL_MAX_LENGTH - 1
    assert gemma3_tflite.generate(STOP_PROMPT).text == expected


def test_codelab_graph_ops(gemma3_export):
    """SentencePiece runs as TF Text Select TF ops; KerasHub's MultiSegmentPacker kernel
    (TFText>RoundRobinTrim) is not needed; the loop reads the cache with builtins."""
    report, _ = audit_sentencepiece_ops(gemma3_export)
    assert gemma3_export["conversion"]["select_user_tf_ops"] == []
    assert not [op for op in report["flex_ops"] if "RoundRobin" in op]
    assert report["custom_ops"] == []
    flex = _flex_ops_per_subgraph(gemma3_export["tflite"])
    loop_bodies = [name for name in flex if "while_body" in name]
    assert loop_bodies
    for name in loop_bodies:
        assert "StridedSlice" not in flex[name], (name, flex[name])


# ================================================================ LiteRT route

LITERT_CACHE_LENGTH = SMALL_MAX_LENGTH  # longer than the window: sliding layers narrow the mask
LITERT_PREFILL_LENGTHS = (4, 16)


@pytest.fixture(scope="module")
def gemma3_litert(gemma3_export):
    """The small Gemma 3 through the LiteRT route: export, fp32, int8, int4."""
    from llm2tflite.core import atomic
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export
    from llm2tflite.litert import quantize as litert_quantize

    out = gemma3_export["dir"] / "litert"
    causal_lm = gemma3_export["causal_lm"]
    info = litert_export.export(
        causal_lm,
        out / "saved_model",
        out / "litert_export.json",
        LITERT_CACHE_LENGTH,
        LITERT_PREFILL_LENGTHS,
    )
    flatbuffer, report = litert_convert.convert(
        out / "saved_model", litert_export.signature_keys(info)
    )
    atomic.write_bytes(out / "fp32.tflite", flatbuffer)
    files = {"info": info, "fp32": out / "fp32.tflite", "reports": {"fp32": report}}
    for variant in ("int8", "int4"):
        flatbuffer, report = litert_quantize.quantize(out / "fp32.tflite", variant)
        atomic.write_bytes(out / f"{variant}.tflite", flatbuffer)
        files[variant], files["reports"][variant] = out / f"{variant}.tflite", report
    return files


def test_litert_fp32_logits_equal_keras(gemma3_export, gemma3_litert):
    """Prefill in two chunks (the second padded), then decode past the window: every decode
    step's logits are Keras' logits at that position."""
    from test_litert_route import Session, _keras_logits, _random_ids

    info = gemma3_litert["info"]
    assert info["stop_token_ids"] == [1, 106] and info["vocabulary_size"] == (
        info["tokenizer_vocabulary_size"] + EXTRA_EMBEDDING_ROWS
    )
    ids = [2, *_random_ids(LITERT_CACHE_LENGTH - 1, info["tokenizer_vocabulary_size"])]
    expected = _keras_logits(gemma3_export["causal_lm"], ids)[0]
    session = Session(gemma3_litert["fp32"], info)
    session.prefill(ids[:19])  # prefill_16 + prefill_4 (1 padding row)
    scale = float(np.abs(expected).max())
    for position in range(19, len(ids)):
        np.testing.assert_allclose(
            session.decode(ids[position]), expected[position], rtol=0, atol=1e-5 * scale
        )


def test_litert_fp32_greedy_ids_equal_keras_generate(gemma3_export, gemma3_litert):
    """Greedy ids of a prefill/decode loop over the fp32 file are KerasHub's, stop included."""
    from test_litert_route import Session

    causal_lm, info = gemma3_export["causal_lm"], gemma3_litert["info"]
    prompts = [*PROMPTS[:4], STOP_PROMPT]
    packed = causal_lm.preprocessor.generate_preprocess(
        prompts, sequence_length=LITERT_CACHE_LENGTH
    )
    # generate_step: Gemma3CausalLM.generate() without a preprocessor cannot return ids (it
    # returns "images": None, which its output normalization chokes on).
    generated = causal_lm.generate_step(packed, stop_token_ids=info["stop_token_ids"])
    stopped = False
    for row, prompt in enumerate(prompts):
        prompt_ids = np.asarray(packed["token_ids"][row])[
            np.asarray(packed["padding_mask"][row], bool)
        ].tolist()
        expected = np.asarray(generated["token_ids"][row])[
            np.asarray(generated["padding_mask"][row], bool)
        ].tolist()
        if expected[-1] in info["stop_token_ids"]:  # KerasHub keeps the stop token
            expected, stopped = expected[:-1], True
        got = Session(gemma3_litert["fp32"], info).greedy(
            prompt_ids, LITERT_CACHE_LENGTH, info["stop_token_ids"]
        )
        assert got == expected, prompt
    assert stopped  # STOP_PROMPT ends at <end_of_turn>


def test_litert_builtins_only_with_one_quantized_table(gemma3_litert):
    from llm2tflite.core import flatbuffer
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import quantize as litert_quantize

    info = gemma3_litert["info"]
    vocabulary = info["vocabulary_size"]
    schema = flatbuffer.schema()
    for variant in ("fp32", "int8", "int4"):
        model = litert_convert.read_model(gemma3_litert[variant].read_bytes())
        litert_convert.check_builtins_only(model)
        for signature, ops in gemma3_litert["reports"][variant]["op_counts"].items():
            assert ops.get("EMBEDDING_LOOKUP") == 1 and "GATHER" not in ops, (variant, signature)
            assert ops["DYNAMIC_UPDATE_SLICE"] == 2 * SMALL_GEMMA3["num_layers"]
            # The window narrows the causal mask once per call, for every sliding layer.
            assert ops["SELECT_V2"] == 1 and ops["LESS_EQUAL"] == 1, (variant, ops)
        if variant == "fp32":
            continue
        tables = {
            tensor.buffer: tensor.type
            for subgraph in model.subgraphs
            for tensor in subgraph.tensors
            if list(tensor.shape) == [vocabulary, SMALL_GEMMA3["hidden_dim"]]
            and litert_convert._is_constant(model, tensor)
        }
        expected_type = {"int8": schema.TensorType.INT8, "int4": schema.TensorType.INT4}[variant]
        assert list(tables.values()) == [expected_type], variant
        largest = litert_quantize.largest_float_constants(model)
        assert all(entry["bytes"] < vocabulary * 4 for entry in largest), largest


def test_litert_quantized_variants_track_fp32(gemma3_litert):
    """int8/int4 logits follow fp32's: correlation over the tokenizer's ids. Measured on this
    7-layer, 32-wide model: int8 >= 0.998, int4 0.74-0.85 (its blocks of 32 are whole rows
    here); unrelated logits would correlate ~0."""
    from test_litert_route import Session, _random_ids

    info = gemma3_litert["info"]
    used = info["tokenizer_vocabulary_size"]
    ids = [2, *_random_ids(11, used, seed=2)]
    logits = {}
    for variant in ("fp32", "int8", "int4"):
        session = Session(gemma3_litert[variant], info)
        session.prefill(ids[:-1])
        logits[variant] = session.decode(ids[-1])
        assert np.isfinite(logits[variant]).all(), variant
    for variant, least in (("int8", 0.99), ("int4", 0.5)):
        correlation = np.corrcoef(logits["fp32"][:used], logits[variant][:used])[0, 1]
        assert correlation > least, (variant, correlation)


def test_litert_window_no_longer_than_cache_adds_no_ops(gemma3_export, tmp_path):
    """A cache no longer than the window: no query has a key old enough to hide, the causal
    mask is KerasHub's already, and the graph narrows nothing."""
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export

    window = SMALL_GEMMA3["sliding_window_size"]
    info = litert_export.export(
        gemma3_export["causal_lm"], tmp_path / "sm", tmp_path / "info.json", window, [4]
    )
    _, report = litert_convert.convert(tmp_path / "sm", litert_export.signature_keys(info))
    for signature, ops in report["op_counts"].items():
        assert "SELECT_V2" not in ops and "LESS_EQUAL" not in ops, (signature, ops)
