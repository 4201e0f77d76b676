"""The llama3 family (``Llama3CausalLM``: Llama 3.x, SmolLM2) and its id-exact tokenizer.

KerasHub 0.31 has no Llama exporter, so the checkpoint is written by hand (conftest's
``llama3_checkpoint``: a Llama 3.2-like config.json, seeded tensors saved by the ``safetensors``
library, a tokenizer.json trained by ``tokenizers`` with Llama 3's settings):

- it loads as a Llama3CausalLM whose weights are exactly the tensors read back with
  ``safetensors`` (mapped to Keras layouts here, independently of KerasHub's converter), and the
  family's light reading of config.json is the converter's;
- the tokenizer the workflow uses (``byte_level_bpe``) gives the ids of ``tokenizers`` with the
  checkpoint's own tokenizer.json, on >= 1,000 held-out lines and hard cases: on TensorFlow's
  graph path (traced into the codelab route), its eager path (KerasHub's generate()) and the
  LiteRT route's runtime tokenizer file; for Llama 3's pre-tokenizer and for SmolLM2's (digits
  alone, then GPT-2's regex). KerasHub's own Llama3Tokenizer fails the same check;
- the graph path's split (RE2, no lookahead) equals tokenizers' Oniguruma regexes on random
  strings of a hard alphabet for the Llama 3, Qwen 2 and SmolLM2 patterns, and its character
  classes equal tokenizers' code point by code point;
- the LiteRT route's fp32 forward pass equals Keras's (logits, greedy ids over the runtime).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from test_litert_route import Session, _keras_logits, _random_ids
from test_litert_runtime import keras_greedy_ids
from test_tokenizer_parity import _assert_same, _parity_texts

from llm2tflite.families import byte_level_bpe, registry

from conftest import (
    LLAMA3_SPECIAL_TOKENS,
    LLAMA3_TOKENIZER_PATTERN,
    SMALL_LLAMA3_CONFIG,
    SMALL_MAX_LENGTH,
    export_litert,
    write_byte_level_tokenizer,
)

LLAMA3 = registry.by_name("llama3")
# Where Llama 3's pre-tokenizer differs from GPT-2's (KerasHub's graph path) or needs care.
LLAMA3_HARD_CASES = [
    "1 12 123 1234 12345 1234567 2026-12-04 3.14159",
    "I'M HERE, YOU'RE THERE, HE'S GONE, WE'LL SEE, THEY'D KNOW, I'VE DONE, DON'T",
    "it's 'S 'LL 'Ll 's 'ſ",
    "line one\r\nline two\r\n\r\nline three",
    "a\n\n\nb\n \n c",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\tand\t\ttabs \t x",
    '(parenthesis) "quotes" ...dots!!!\n\n',
    "a\u3000\u3000b\xa0\xa0c \u2009d",
    "<|begin_of_text|>Hola<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|reserved_special_token_0|> <|python_tag|>x<|end_of_text|>",
    "<|eot_id|<|eot_id|>>",
    "six ६ marker Ĵ ĴA ĴB",
    "emoji 🤖🎉👍🏽 👨‍👩‍👧‍👦 café naïve 日本語のテキスト 中文 한국어",
    "x" * 50 + " " * 20 + "\n" * 5,
]


def _texts(default_corpus_and_vocab):
    return _parity_texts(default_corpus_and_vocab / "heldout.txt") + LLAMA3_HARD_CASES


def _reference_ids(tokenizer_json, texts):
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(tokenizer_json))
    return [reference.encode(text, add_special_tokens=False).ids for text in texts]


def _graph_ids(tokenizer, texts):
    """The TensorFlow graph path (the one the codelab route traces)."""
    import tensorflow as tf

    return [[int(i) for i in row] for row in tf.function(tokenizer)(tf.constant(texts)).to_list()]


@pytest.fixture(scope="module")
def llama3_model(llama3_checkpoint):
    from llm2tflite.inputs.sources import load_causal_lm

    return load_causal_lm(str(llama3_checkpoint))


def test_checkpoint_loads_with_its_tensors(llama3_checkpoint, llama3_model):
    from safetensors import safe_open

    assert type(llama3_model).__name__ == "Llama3CausalLM"
    assert registry.for_causal_lm(llama3_model) is LLAMA3
    with safe_open(str(llama3_checkpoint / "model.safetensors"), framework="np") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    backbone = llama3_model.backbone
    d, heads = SMALL_LLAMA3_CONFIG["hidden_size"], SMALL_LLAMA3_CONFIG["num_attention_heads"]

    def heads_in(kernel):  # Keras [d, heads, head_dim] -> Hugging Face [heads * head_dim, d]
        return kernel.numpy().reshape(d, -1).T

    expected = {
        "model.embed_tokens.weight": backbone.token_embedding.embeddings.numpy(),
        "model.norm.weight": backbone.get_layer("sequence_output_layernorm").scale.numpy(),
    }
    for i, layer in enumerate(backbone.transformer_layers):
        attention, name = layer._self_attention_layer, f"model.layers.{i}"
        expected |= {
            f"{name}.input_layernorm.weight": layer._self_attention_layernorm.scale.numpy(),
            f"{name}.post_attention_layernorm.weight": layer._feedforward_layernorm.scale.numpy(),
            f"{name}.self_attn.q_proj.weight": heads_in(attention._query_dense.kernel),
            f"{name}.self_attn.k_proj.weight": heads_in(attention._key_dense.kernel),
            f"{name}.self_attn.v_proj.weight": heads_in(attention._value_dense.kernel),
            # Keras [heads, head_dim, d] -> [d, heads * head_dim]
            f"{name}.self_attn.o_proj.weight": attention._output_dense.kernel.numpy()
            .reshape(-1, d)
            .T,
            f"{name}.mlp.gate_proj.weight": layer._feedforward_gate_dense.kernel.numpy().T,
            f"{name}.mlp.up_proj.weight": layer._feedforward_intermediate_dense.kernel.numpy().T,
            f"{name}.mlp.down_proj.weight": layer._feedforward_output_dense.kernel.numpy().T,
        }
    assert sorted(tensors) == sorted(expected)  # tied: no lm_head.weight
    for name, tensor in tensors.items():
        np.testing.assert_array_equal(tensor, expected[name], err_msg=name)
    assert backbone.token_embedding.tie_weights and heads == backbone.num_query_heads
    assert sum(t.size for t in tensors.values()) == backbone.count_params()


def test_family_reads_config_json_as_keras_hub_converts_it(llama3_checkpoint, llama3_model):
    from keras_hub.src.utils.preset_utils import get_preset_loader

    family, backbone_config = registry.for_preset(str(llama3_checkpoint))
    assert family is LLAMA3
    hf_config = registry.transformers_config(llama3_checkpoint)
    converted = get_preset_loader(str(llama3_checkpoint)).converter.convert_backbone_config(
        hf_config
    )
    assert backbone_config == converted
    assert backbone_config["rope_frequency_adjustment_factor"] == 32.0
    assert family.parameter_count(backbone_config) == llama3_model.backbone.count_params()
    assert registry.local_preset_files(llama3_checkpoint) == sorted(
        str(llama3_checkpoint / name)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    )


def test_unsupported_checkpoints_are_refused_in_one_line(llama3_checkpoint, tmp_path):
    import shutil

    for change, message in (
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, r"rope_scaling type 'yarn'"),
        ({"tie_word_embeddings": None}, None),
    ):
        broken = shutil.copytree(llama3_checkpoint, tmp_path / f"c{len(message or '')}")
        config = json.loads((broken / "config.json").read_text())
        config.update(change)
        config = {k: v for k, v in config.items() if v is not None}
        (broken / "config.json").write_text(json.dumps(config))
        expected = message or r"config.json has no 'tie_word_embeddings'"
        with pytest.raises(registry.UnsupportedArchitectureError, match=expected) as error:
            registry.for_preset(str(broken))
        assert "\n" not in str(error.value)
    # A tokenizer.json the graph path cannot reproduce: refused when the DAG is parsed.
    for edit, message in (
        (
            lambda t: t["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+(?=\s)"),
            r"tokenizer.json: split pattern '.*': lookaround RE2 cannot run$",
        ),
        (
            lambda t: t.update(normalizer={"type": "Lowercase"}),
            r"tokenizer.json: normalizer Lowercase \(supported: none, NFC\)$",
        ),
        (
            lambda t: t["added_tokens"][0].update(lstrip=True),
            r"tokenizer.json: added token '<\|begin_of_text\|>' with lstrip$",
        ),
    ):
        broken = shutil.copytree(
            llama3_checkpoint, tmp_path / f"tokenizer{len(message)}_{id(edit)}"
        )
        tokenizer = json.loads((broken / "tokenizer.json").read_text())
        edit(tokenizer)
        (broken / "tokenizer.json").write_text(json.dumps(tokenizer))
        with pytest.raises(registry.UnsupportedArchitectureError, match=message) as error:
            registry.for_preset(str(broken))
        assert str(error.value).startswith(f"Hugging Face checkpoint '{broken}' (llama): ")


def test_presets_parameter_counts():
    """The family's parameter count of every preset it knows is the published one (KerasHub's
    llama3_presets.py; SmolLM2: its checkpoint's tensors), so a twin of any can be built."""
    for preset, config in LLAMA3.presets.items():
        assert LLAMA3.parameter_count(config) == LLAMA3.preset_parameters[preset], preset
        assert registry.for_preset(preset) == (LLAMA3, config)
    smollm2 = LLAMA3.presets["hf://HuggingFaceTB/SmolLM2-135M"]
    assert (smollm2["hidden_dim"], smollm2["num_layers"], smollm2["vocabulary_size"]) == (
        576,
        30,
        49_152,
    )


# ---- tokenizer parity ---------------------------------------------------------------------------


def test_tokenizer_ids_equal_tokenizers_on_every_path(
    llama3_checkpoint, llama3_model, default_corpus_and_vocab, tmp_path
):
    """Graph path, eager path and the runtime tokenizer file: the checkpoint's tokenizer.json's
    ids (tokenizers, no special tokens added) on >= 1,000 lines and hard cases."""
    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer, write_runtime_tokenizer

    texts = _texts(default_corpus_and_vocab)
    reference = _reference_ids(llama3_checkpoint / "tokenizer.json", texts)
    tokenizer = llama3_model.preprocessor.tokenizer
    _assert_same("graph path", _graph_ids(tokenizer, texts), "tokenizers", reference, texts)
    eager = [list(ids) for ids in tokenizer(texts)]
    _assert_same("eager path", eager, "tokenizers", reference, texts)
    written = write_runtime_tokenizer(tokenizer, LLAMA3.tokenizer_kind, tmp_path)
    runtime = load_runtime_tokenizer(written)
    _assert_same("runtime", [runtime.encode(t) for t in texts], "tokenizers", reference, texts)
    assert (
        runtime.vocabulary_size()
        == tokenizer.vocabulary_size()
        == len(json.loads((llama3_checkpoint / "tokenizer.json").read_text())["model"]["vocab"])
        + len(SPECIALS)
    )
    # The special tokens are single ids, reserved ones included; text comes back whole.
    assert _reference_ids(llama3_checkpoint / "tokenizer.json", SPECIALS) == [
        [tokenizer.token_to_id(token)] for token in SPECIALS
    ]
    assert [runtime.decode(ids) for ids in reference] == texts
    assert list(tokenizer.detokenize(reference[:50])) == texts[:50]
    # The file is the checkpoint's own, without the template that adds <|begin_of_text|>.
    original = json.loads((llama3_checkpoint / "tokenizer.json").read_text())
    carried = json.loads(written.read_text())
    assert original["post_processor"] is not None and carried["post_processor"] is None
    assert {k: v for k, v in carried.items() if k != "post_processor"} == {
        k: v for k, v in original.items() if k != "post_processor"
    }
    assert sum(len(ids) for ids in reference) > 5 * len(texts)
    assert (tokenizer.start_token_id, LLAMA3.stop_token_ids(tokenizer)) == (
        tokenizer.token_to_id("<|begin_of_text|>"),
        [tokenizer.token_to_id("<|end_of_text|>"), tokenizer.token_to_id("<|eot_id|>")],
    )


SPECIALS = list(LLAMA3_SPECIAL_TOKENS)


def test_keras_hubs_own_tokenizer_is_not_exact(llama3_checkpoint, default_corpus_and_vocab):
    """Why the family has its own: KerasHub's Llama3Tokenizer, as its converter builds it,
    differs from tokenizers on its graph path (GPT-2's regex: "¿Quieres" is two pre-tokens, one
    in Llama 3) and on its eager path (the reserved special tokens are not in its vocabulary)."""
    import keras_hub

    texts = _texts(default_corpus_and_vocab)
    reference = _reference_ids(llama3_checkpoint / "tokenizer.json", texts)
    keras_tokenizer = keras_hub.models.Llama3Tokenizer.from_preset(str(llama3_checkpoint))
    graph = _graph_ids(keras_tokenizer, texts)
    differ = [text for text, g, r in zip(texts, graph, reference) if g != r]
    assert len(differ) >= 10 and "¿Quieres escuchar la música?" in differ
    reserved = [text for text in texts if "<|reserved_special_token_0|>" in text]
    eager = [list(ids) for ids in keras_tokenizer(reserved)]
    assert eager != _reference_ids(llama3_checkpoint / "tokenizer.json", reserved)


def test_smollm2_style_tokenizer_parity(default_corpus_and_vocab, tmp_path):
    """SmolLM2's tokenizer.json settings (digits alone, then GPT-2's byte-level regex; special
    tokens first): the graph and eager paths and the runtime file give tokenizers' ids."""
    from keras_hub.models import Llama3Tokenizer

    from llm2tflite.litert.runtime_tokenizer import HuggingFaceTokenizer

    lines = (default_corpus_and_vocab / "train.txt").read_text(encoding="utf-8").splitlines()
    directory = write_byte_level_tokenizer(lines[:5000], tmp_path / "smollm2", "smollm2", 800)
    spec = byte_level_bpe.from_tokenizer_json((directory / "tokenizer.json").read_text())
    assert spec.split_patterns == (r"\p{N}", byte_level_bpe.GPT2_SPLIT_PATTERN)
    assert not spec.ignore_merges and spec.vocabulary["<|endoftext|>"] == 0
    tokenizer = byte_level_bpe.exact_tokenizer_class(Llama3Tokenizer)(
        spec,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        misc_special_tokens={"<|im_start|>", "<|im_end|>"},
    )
    texts = (
        _parity_texts(default_corpus_and_vocab / "heldout.txt")
        + LLAMA3_HARD_CASES
        + ["<|im_start|>user\nhi 2025<|im_end|>\n"]
    )
    reference = _reference_ids(directory / "tokenizer.json", texts)
    _assert_same("graph path", _graph_ids(tokenizer, texts), "tokenizers", reference, texts)
    _assert_same("eager path", [list(i) for i in tokenizer(texts)], "tokenizers", reference, texts)
    runtime = HuggingFaceTokenizer(None, tokenizer.hugging_face_json().encode())
    _assert_same("runtime", [runtime.encode(t) for t in texts], "tokenizers", reference, texts)


# ---- the graph path's pre-tokenizer --------------------------------------------------------------

_ALPHABET = [
    *"aZsSdDlLtTmMvVrReEkK'’09١٢ \t\n\r\x0b\x0c\u3000\xa0\u2009\u0085.!?(\"—é日🤖_-",
    *["'s", "'LL", "  ", "\r\n", "\n\n", "   ", "123456", "<|eot_id|>", "६"],
]
QWEN2_PATTERN = LLAMA3_TOKENIZER_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")


@pytest.mark.parametrize(
    "patterns",
    [
        pytest.param([LLAMA3_TOKENIZER_PATTERN], id="llama3"),
        pytest.param([QWEN2_PATTERN], id="qwen2"),
        pytest.param([r"\p{N}", byte_level_bpe.GPT2_SPLIT_PATTERN], id="smollm2"),
    ],
)
def test_pre_tokenizer_equals_tokenizers_on_random_strings(patterns):
    """RE2 without lookahead (cut points, see byte_level_bpe) splits like tokenizers'
    Oniguruma: 3,000 random strings of the characters where the patterns differ (whitespace
    runs before words, digits, contractions in any case, newlines, Unicode spaces)."""
    import tensorflow as tf
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

    reference = Tokenizer(models.BPE())
    reference.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in patterns]
    )
    reference.add_special_tokens([AddedToken("<|eot_id|>", special=True, normalized=False)])
    rng = random.Random(0)
    texts = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 16))) for _ in range(3000)]
    expected = [[piece for piece, _ in _pieces(reference, text)] for text in texts]
    spec = byte_level_bpe.ByteLevelBPE({}, [], ("<|eot_id|>",), tuple(patterns))
    got = [
        [piece.decode() for piece in row]
        for row in byte_level_bpe.pre_tokenize(tf.constant(texts), spec).to_list()
    ]
    mismatches = [(t, g, e) for t, g, e in zip(texts, got, expected) if g != e]
    assert not mismatches, mismatches[:3]


def _pieces(tokenizer, text):
    """tokenizers' pre-tokenized pieces of ``text``, added tokens split out first (as encode)."""
    pieces, rest = [], text
    while "<|eot_id|>" in rest:
        before, rest = rest.split("<|eot_id|>", 1)
        pieces += tokenizer.pre_tokenizer.pre_tokenize_str(before) if before else []
        pieces.append(("<|eot_id|>", None))
    return pieces + (tokenizer.pre_tokenizer.pre_tokenize_str(rest) if rest else [])


def test_character_classes_equal_tokenizers_on_every_code_point():
    """The RE2 classes the graph path uses for \\s, \\p{L}, \\p{N} hold exactly the code points
    tokenizers' Oniguruma classes hold (RE2's \\s is ASCII, its Unicode tables older)."""
    import tensorflow as tf
    from tokenizers import Regex, pre_tokenizers

    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(characters)
    every = tf.constant(characters)
    for oniguruma in (r"\s", r"\p{L}", r"\p{N}"):
        outside = pre_tokenizers.Split(Regex(oniguruma + "+"), behavior="removed")
        others = set("".join(piece for piece, _ in outside.pre_tokenize_str(text)))
        expected = {c for c in characters if c not in others}
        matched = tf.strings.regex_full_match(every, byte_level_bpe.re2_pattern(oniguruma))
        got = {c for c, hit in zip(characters, matched.numpy()) if hit}
        assert got == expected, (oniguruma, sorted(got ^ expected)[:10])
        assert len(expected) > 20


# ---- the LiteRT route ---------------------------------------------------------------------------

PROMPTS = [
    "Estoy disfrutando de",
    "I'M HERE 2026 and 12345\n\n",
    "<|start_header_id|>user<|end_header_id|>\n\nHola<|eot_id|>",
    "¿Dónde está la estación? 🤖 日本語",
]


@pytest.fixture(scope="module")
def llama3_litert(llama3_model, tmp_path_factory):
    return export_litert(llama3_model, tmp_path_factory.mktemp("llama3_litert"))


def test_litert_fp32_equals_keras(llama3_model, llama3_litert):
    """Decode logits at every position of a prefilled sequence, and greedy ids over the runtime
    for prompts with digits, special tokens and emoji, equal Keras's."""
    from llm2tflite.model_files import open_model

    info = llama3_litert["info"]
    assert info["architecture"] == "llama3" and info["tokenizer_kind"] == "byte_level_bpe"
    assert llama3_litert["tokenizer"].name == "tokenizer.json"
    ids = _random_ids(30, info["vocabulary_size"], seed=3)
    expected = _keras_logits(llama3_model, ids)[0]
    session = Session(llama3_litert["tflite"]["fp32"], info)
    session.prefill(ids[:19])
    for position in range(19, 30):
        logits = session.decode(ids[position])
        scale = float(np.abs(expected[position]).max())
        np.testing.assert_allclose(logits, expected[position], rtol=0, atol=1e-5 * scale)
    model = open_model(llama3_litert["tflite"]["fp32"], threads=1)
    tokenizer = llama3_model.preprocessor.tokenizer
    texts_compared = 0
    for prompt in PROMPTS:
        assert model.token_ids(prompt) == [int(i) for i in tokenizer(prompt)]
        generation = model.generate(prompt, max_length=SMALL_MAX_LENGTH)
        kept = generation.token_ids[: generation.prompt_tokens]
        expected_ids = keras_greedy_ids(llama3_model, kept, SMALL_MAX_LENGTH, model.stop_token_ids)
        assert generation.token_ids == expected_ids, prompt
        assert generation.new_tokens >= 1
        whole_prompt = len(kept) == len(model.token_ids(prompt)) + 1
        if whole_prompt and "<|" not in prompt:  # KerasHub's text leaves special tokens out
            assert generation.text == llama3_model.generate(prompt, max_length=SMALL_MAX_LENGTH)
            texts_compared += 1
    assert texts_compared >= 2


# ---- a KerasHub preset of the family (the twin's path) ------------------------------------------


def test_vocab_stage_and_a_tied_keras_hub_preset(default_corpus_and_vocab, tmp_path):
    """The twin's path, small: the vocabulary stage learns a byte-level BPE with Llama 3's split
    and special tokens; a tied model built on it, saved as a KerasHub preset (the arguments
    get_config drops written back), reloads tied with its weights, and its exact tokenizer (Llama
    3's settings) gives the same ids in the graph and in its runtime tokenizer.json."""
    import keras
    import tensorflow as tf

    from llm2tflite.inputs import twin
    from llm2tflite.inputs.sources import load_causal_lm
    from llm2tflite.litert.runtime_tokenizer import HuggingFaceTokenizer

    from conftest import run_module

    completed = run_module(
        "llm2tflite.inputs.vocab",
        "--at-most",
        architecture="llama3",
        corpus=default_corpus_and_vocab / "train.txt",
        vocab_size=49_152,
        out_dir=tmp_path / "vocab",
    )
    assert completed.returncode == 0, completed.stderr
    assert "all the corpus supports; at most 49152" in completed.stdout
    vocabulary = json.loads((tmp_path / "vocab" / "vocab.json").read_text())
    assert list(vocabulary)[-5:] == list(LLAMA3.byte_level_bpe_layout["special_tokens"])
    keras.utils.set_random_seed(0)
    tokenizer = LLAMA3.load_tokenizer(tmp_path / "vocab")
    config = {
        **LLAMA3.train_model_config(),
        "vocabulary_size": len(vocabulary),
        "tie_word_embeddings": True,
    }
    causal_lm = LLAMA3.build_causal_lm(config, tokenizer, 32)
    causal_lm.save_to_preset(str(tmp_path / "preset"))
    assert twin.keep_backbone_arguments(tmp_path / "preset", config) == ["tie_word_embeddings"]
    loaded = load_causal_lm(str(tmp_path / "preset"))
    assert loaded.backbone.token_embedding.tie_weights
    for ours, theirs in zip(loaded.weights, causal_lm.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    exact = loaded.preprocessor.tokenizer
    runtime = HuggingFaceTokenizer(None, exact.hugging_face_json().encode())
    texts = _texts(default_corpus_and_vocab)
    _assert_same(
        "graph path",
        _graph_ids(exact, texts),
        "runtime",
        [runtime.encode(t) for t in texts],
        texts,
    )
    assert runtime.encode("¿Quieres") == [int(i) for i in exact("¿Quieres")]
    # Training packs lines with the exact tokenizer too (in a tf.data graph, as the train stage).
    packer = LLAMA3.line_preprocessor(causal_lm.preprocessor)
    (x, _, _), *_ = tf.data.Dataset.from_tensor_slices(["¿Quieres 2026"]).batch(1).map(packer)
    expected = [exact.start_token_id, *runtime.encode("¿Quieres 2026")]
    assert x["token_ids"][0][: len(expected)].numpy().tolist() == expected
    assert LLAMA3.stop_token_ids(exact) == [vocabulary["<|end_of_text|>"], vocabulary["<|eot_id|>"]]
