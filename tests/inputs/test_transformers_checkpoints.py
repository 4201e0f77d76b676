"""Hugging Face checkpoints as a model source (`preset:` a directory with config.json, safetensors
weights and tokenizer files), loaded by KerasHub's own converters (llm2tflite/inputs/sources.py).

The checkpoints are written by KerasHub's Transformers exporter (`export_to_transformers`) from
small random models the tests build: a GPT-2 (byte-level BPE; the exporter leaves
`architectures` out of its config.json), a Gemma 3 (SentencePiece) and a Qwen 2 (byte-level BPE
with Qwen's pre-tokenizer; completed with the config keys and tokenizer.json KerasHub's Qwen
converter reads, as Qwen's own checkpoints have them: conftest's `complete_qwen_checkpoint`).
KerasHub 0.31 has no exporter for Llama or Qwen 3, and loads any `model_type: llama` checkpoint
as a Llama 3 (byte-level BPE, the `llama3` family): tests/families/test_llama3.py and
test_qwen3.py write theirs by hand.

- loaded back, each is the original model: same class, same weights, same greedy ids; the
  user's files are not edited;
- the `safetensors` library reads every tensor the Hugging Face way (names, layouts) and each
  equals the Keras model's weight it stands for: a check independent of KerasHub's converters;
- the light backbone config a family reads from config.json (config check, resource sizing) is
  what KerasHub's converter builds;
- broken checkpoints are refused in one line, by the registry and the loader alike.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_gemma3 import SMALL_GEMMA3

from llm2tflite.families import registry

from conftest import SMALL_MAX_LENGTH, build_small_causal_lm, export_transformers_checkpoint

PROMPTS = ["Estoy disfrutando de", "I am enjoying the", "¿Dónde está"]


@pytest.fixture(scope="module")
def gemma3_checkpoint(gemma3_vocab, tmp_path_factory):
    """A small random Gemma 3 (sliding-window and global layers, multi-query attention) on a
    SentencePiece vocabulary with Gemma's special pieces, and its Transformers export."""
    out = tmp_path_factory.mktemp("gemma3_checkpoint")
    causal_lm = build_small_causal_lm("gemma3", gemma3_vocab, SMALL_GEMMA3)
    causal_lm.compile(sampler="greedy")
    checkpoint = export_transformers_checkpoint(causal_lm, out / "checkpoint")
    return {"causal_lm": causal_lm, "checkpoint": checkpoint}


@pytest.fixture(params=["gpt2", "gemma3", "qwen"])
def checkpoint(request):
    return request.param, request.getfixturevalue(f"{request.param}_checkpoint")


def _greedy_ids(causal_lm):
    from llm2tflite.inputs.reference import keras_generate

    causal_lm.compile(sampler="greedy")
    return [keras_generate(causal_lm, p, SMALL_MAX_LENGTH).token_ids for p in PROMPTS]


def test_checkpoint_loads_as_the_original_model(checkpoint):
    from llm2tflite.inputs.sources import load_causal_lm

    family_name, built = checkpoint
    files = {p.name: p.read_bytes() for p in built["checkpoint"].iterdir()}
    original = built["causal_lm"]
    loaded = load_causal_lm(str(built["checkpoint"]))
    assert type(loaded) is type(original)
    assert registry.for_causal_lm(loaded).name == family_name
    assert len(loaded.weights) == len(original.weights)
    for ours, theirs in zip(loaded.weights, original.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=theirs.path)
    expected = _greedy_ids(original)
    assert _greedy_ids(loaded) == expected
    assert all(len(ids) > 5 for ids in expected)
    # The checkpoint is read as it is: no `architectures` written into the user's config.json.
    assert {p.name: p.read_bytes() for p in built["checkpoint"].iterdir()} == files
    config = json.loads(files["config.json"])
    assert ("architectures" in config) == (family_name == "gemma3")


def _gpt2_tensors(causal_lm) -> dict:
    """Hugging Face GPT2LMHeadModel's tensors (Conv1D weights [in, out]) from the Keras weights."""
    backbone = causal_lm.backbone
    d = backbone.hidden_dim
    tensors = {
        "transformer.wte.weight": backbone.token_embedding.embeddings,
        "transformer.wpe.weight": backbone.position_embedding.position_embeddings,
        "transformer.ln_f.weight": backbone.layer_norm.gamma,
        "transformer.ln_f.bias": backbone.layer_norm.beta,
        "lm_head.weight": backbone.token_embedding.embeddings,  # tied
    }
    for i, layer in enumerate(backbone.transformer_layers):
        attention, h = layer._self_attention_layer, f"transformer.h.{i}"
        qkv = (attention._query_dense, attention._key_dense, attention._value_dense)
        tensors |= {
            f"{h}.ln_1.weight": layer._self_attention_layer_norm.gamma,
            f"{h}.ln_1.bias": layer._self_attention_layer_norm.beta,
            f"{h}.ln_2.weight": layer._feedforward_layer_norm.gamma,
            f"{h}.ln_2.bias": layer._feedforward_layer_norm.beta,
            f"{h}.attn.c_attn.weight": np.concatenate(
                [dense.kernel.numpy().reshape(d, d) for dense in qkv], axis=-1
            ),
            f"{h}.attn.c_attn.bias": np.concatenate(
                [dense.bias.numpy().reshape(-1) for dense in qkv]
            ),
            f"{h}.attn.c_proj.weight": attention._output_dense.kernel.numpy().reshape(d, d),
            f"{h}.attn.c_proj.bias": attention._output_dense.bias,
            f"{h}.mlp.c_fc.weight": layer._feedforward_intermediate_dense.kernel,
            f"{h}.mlp.c_fc.bias": layer._feedforward_intermediate_dense.bias,
            f"{h}.mlp.c_proj.weight": layer._feedforward_output_dense.kernel,
            f"{h}.mlp.c_proj.bias": layer._feedforward_output_dense.bias,
        }
    return tensors


def _gemma3_tensors(causal_lm) -> dict:
    """Hugging Face Gemma3ForCausalLM's tensors (Linear weights [out, in]; output projection
    tied to the embedding, so no lm_head) from the Keras weights."""
    backbone = causal_lm.backbone
    d = backbone.hidden_dim

    def heads_in(kernel):  # Keras [heads, d, head_dim] -> [heads * head_dim, d]
        kernel = kernel.numpy()
        return kernel.transpose(0, 2, 1).reshape(-1, d)

    tensors = {
        "model.embed_tokens.weight": backbone.token_embedding.embeddings,
        "model.norm.weight": backbone.get_layer("final_normalization").scale,
    }
    for i, block in enumerate(backbone.transformer_layers):
        attention, layer = block.attention, f"model.layers.{i}"
        tensors |= {
            f"{layer}.self_attn.q_proj.weight": heads_in(attention.query_dense.kernel),
            f"{layer}.self_attn.k_proj.weight": heads_in(attention.key_dense.kernel),
            f"{layer}.self_attn.v_proj.weight": heads_in(attention.value_dense.kernel),
            # Keras [heads, head_dim, d] -> [d, heads * head_dim]
            f"{layer}.self_attn.o_proj.weight": attention.output_dense.kernel.numpy()
            .reshape(-1, d)
            .T,
            f"{layer}.self_attn.q_norm.weight": attention.query_norm.scale,
            f"{layer}.self_attn.k_norm.weight": attention.key_norm.scale,
            f"{layer}.mlp.gate_proj.weight": block.gating_ffw.kernel.numpy().T,
            f"{layer}.mlp.up_proj.weight": block.gating_ffw_2.kernel.numpy().T,
            f"{layer}.mlp.down_proj.weight": block.ffw_linear.kernel.numpy().T,
            f"{layer}.input_layernorm.weight": block.pre_attention_norm.scale,
            f"{layer}.post_attention_layernorm.weight": block.post_attention_norm.scale,
            f"{layer}.pre_feedforward_layernorm.weight": block.pre_ffw_norm.scale,
            f"{layer}.post_feedforward_layernorm.weight": block.post_ffw_norm.scale,
        }
    return tensors


def _qwen_tensors(causal_lm) -> dict:
    """Hugging Face Qwen2ForCausalLM's tensors (Linear weights [out, in], biases on q/k/v; the
    exporter writes lm_head even when tied) from the Keras weights."""
    backbone = causal_lm.backbone
    d = backbone.hidden_dim

    def linear(kernel):  # Keras [d, heads, head_dim] or [heads, head_dim, d] -> [out, in]
        kernel = kernel.numpy()
        return kernel.reshape(d, -1).T if kernel.shape[0] == d else kernel.reshape(-1, d).T

    embeddings = backbone.token_embedding.embeddings
    tensors = {
        "model.embed_tokens.weight": embeddings,
        "model.norm.weight": backbone.layer_norm.scale,
        "lm_head.weight": embeddings,  # tied
    }
    for i, block in enumerate(backbone.transformer_layers):
        attention, layer = block._self_attention_layer, f"model.layers.{i}"
        tensors |= {
            f"{layer}.input_layernorm.weight": block._self_attention_layernorm.scale,
            f"{layer}.post_attention_layernorm.weight": block._feedforward_layernorm.scale,
            f"{layer}.self_attn.o_proj.weight": linear(attention._output_dense.kernel),
            f"{layer}.mlp.gate_proj.weight": block._feedforward_gate_dense.kernel.numpy().T,
            f"{layer}.mlp.up_proj.weight": block._feedforward_intermediate_dense.kernel.numpy().T,
            f"{layer}.mlp.down_proj.weight": block._feedforward_output_dense.kernel.numpy().T,
        }
        for name, dense in (
            ("q", attention._query_dense),
            ("k", attention._key_dense),
            ("v", attention._value_dense),
        ):
            tensors[f"{layer}.self_attn.{name}_proj.weight"] = linear(dense.kernel)
            tensors[f"{layer}.self_attn.{name}_proj.bias"] = dense.bias.numpy().reshape(-1)
    return tensors


HF_TENSORS = {"gpt2": _gpt2_tensors, "gemma3": _gemma3_tensors, "qwen": _qwen_tensors}


def test_safetensors_hold_the_keras_weights_under_hugging_face_names(checkpoint):
    """Read by the `safetensors` library, not KerasHub: every tensor has the name and layout
    Hugging Face's model class expects, and the Keras weight's values."""
    from safetensors import safe_open

    family_name, built = checkpoint
    expected = {
        name: np.asarray(getattr(value, "numpy", lambda v=value: v)())
        for name, value in HF_TENSORS[family_name](built["causal_lm"]).items()
    }
    files = registry.checkpoint_weight_files(built["checkpoint"])
    assert files == ["model.safetensors"]
    with safe_open(str(built["checkpoint"] / files[0]), framework="np") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    assert sorted(tensors) == sorted(expected)
    for name, tensor in tensors.items():
        assert tensor.dtype == np.float32, name
        assert tensor.shape == expected[name].shape, name
        np.testing.assert_array_equal(tensor, expected[name], err_msg=name)
    stored = sum(t.size for name, t in tensors.items() if name != "lm_head.weight")
    assert stored == built["causal_lm"].backbone.count_params()


def test_family_reads_config_json_as_keras_hub_converts_it(checkpoint):
    """The family's light translation of config.json (config check, resource sizing) equals
    KerasHub's converter's backbone arguments, and its parameter count the loaded model's."""
    import keras_hub
    from keras_hub.src.utils.preset_utils import get_preset_loader

    family_name, built = checkpoint
    family, backbone_config = registry.for_preset(str(built["checkpoint"]))
    assert family.name == family_name
    hf_config = registry.transformers_config(built["checkpoint"])
    converter = get_preset_loader(str(built["checkpoint"])).converter
    converted = converter.convert_backbone_config(hf_config)
    assert {k: converted[k] for k in backbone_config if k in converted} == {
        k: v for k, v in backbone_config.items() if k in converted
    }
    assert set(converted) - set(backbone_config) <= {
        "use_bidirectional_attention",
        "is_embedding_model",
        "pooling_intermediate_dim",
        "embedding_dim",
        # KerasHub's Qwen converter's name for it, which QwenBackbone does not read (see
        # Qwen.transformers_backbone_config).
        "use_sliding_window",
    }
    backbone = getattr(keras_hub.models, family.causal_lm_class).backbone_cls(**converted)
    assert family.parameter_count(backbone_config) == backbone.count_params()
    assert family.max_sequence_length(backbone_config) == (128 if family_name == "gpt2" else None)


def _broken(checkpoint_dir, tmp_path, edit):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_dir, broken)
    edit(broken)
    return broken


def _set_config(**changes):
    def edit(directory):
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, **changes}))

    return edit


BROKEN = {
    "llama2 model_type": (
        _set_config(model_type="llama2"),
        r"model_type 'llama2' is not supported; supported model_types: gpt2 \(gpt2\), "
        r"gemma3_text \(gemma3\), llama \(llama3\), qwen2 \(qwen\), qwen3 \(qwen3\)",
    ),
    "multimodal gemma3": (
        _set_config(model_type="gemma3"),
        r"model_type 'gemma3' is not supported; supported model_types: gpt2 \(gpt2\), ",
    ),
    "no weights": (
        lambda d: (d / "model.safetensors").unlink(),
        r"\(gpt2\): no \*\.safetensors weights; KerasHub reads safetensors only",
    ),
    "missing shard": (
        lambda d: (d / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"wte.weight": "model-00001-of-00002.safetensors"}})
        ),
        r"no \*\.safetensors weights \(model-00001-of-00002\.safetensors missing\)",
    ),
    "no tokenizer": (
        lambda d: (d / "merges.txt").unlink(),
        r"\(gpt2\): no tokenizer files \(vocab\.json \+ merges\.txt\)",
    ),
    "MLP width": (
        _set_config(n_inner=64),
        r"n_inner 64 is not 4 \* n_embd = 128, the only MLP width KerasHub's GPT-2 converter",
    ),
    "config key": (
        lambda d: _drop_key(d, "n_positions"),
        r"\(gpt2\): config.json has no 'n_positions'",
    ),
    "invalid config.json": (
        lambda d: (d / "config.json").write_text('{"model_type": "gpt2",'),
        r"config\.json' is not valid JSON: Expecting property name enclosed in double quotes",
    ),
    "neither format": (
        lambda d: (d / "config.json").unlink(),
        r"has no task.json: not a KerasHub causal LM preset directory .* and no config.json "
        r"with a model_type: not a Hugging Face checkpoint",
    ),
}


def _drop_key(directory, key):
    config = json.loads((directory / "config.json").read_text())
    del config[key]
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_checkpoint_is_refused_in_one_line(gpt2_checkpoint, tmp_path, case):
    """By the registry (the config check, at parse time) and, for a checkpoint, by the loader
    (a stage run by hand) with the same line, before KerasHub reads anything."""
    from llm2tflite.inputs.sources import PresetUnavailableError, load_causal_lm

    edit, message = BROKEN[case]
    broken = _broken(gpt2_checkpoint["checkpoint"], tmp_path, edit)
    with pytest.raises(registry.UnsupportedArchitectureError, match=message) as error:
        registry.for_preset(str(broken))
    assert "\n" not in str(error.value)
    if case != "neither format":
        with pytest.raises(PresetUnavailableError, match=message):
            load_causal_lm(str(broken))


# ---- the checkpoint's chat template ----------------------------------------------------------


def _with_chat_template(checkpoint_dir, tmp_path, source):
    """A copy of the checkpoint whose tokenizer_config.json carries ``source`` as its template."""
    copy = shutil.copytree(checkpoint_dir, tmp_path / "checkpoint")
    path = copy / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**config, "chat_template": source}))
    return copy


def _export_info(causal_lm, preset, chat_template_json=""):
    from argparse import Namespace

    from llm2tflite.litert import export as litert_export

    extra = litert_export._extra_info(
        Namespace(preset=str(preset), chat_template_json=chat_template_json)
    )
    return litert_export.export_info(causal_lm, SMALL_MAX_LENGTH, [8], False, extra)


def test_checkpoint_chat_template_travels_into_the_export_info(gemma3_checkpoint, tmp_path):
    """tokenizer_config.json's Jinja template becomes the export's chat template (Gemma 3's:
    the family's prefixes and suffixes, content stripped); the config's template wins; one that
    cannot be expressed is refused in one line, and not replaced by the family's; a default
    system prompt travels as the preamble."""
    from test_chat_templates import GEMMA3_JINJA, LLAMA3_FIRST_JINJA, QWEN25_JINJA

    from llm2tflite.litert.chat import ChatSession, NoChatTemplateError

    causal_lm = gemma3_checkpoint["causal_lm"]
    checkpoint = _with_chat_template(gemma3_checkpoint["checkpoint"], tmp_path, GEMMA3_JINJA)
    assert str(checkpoint / "tokenizer_config.json") in registry.local_preset_files(checkpoint)
    info = _export_info(causal_lm, checkpoint)
    assert info["chat_template"] == {**registry.by_name("gemma3").chat_template, "trim": True}
    assert info["stop_token_ids"] == [1, 106]  # <eos>, <end_of_turn>
    plain = {"user": {"prefix": "U: "}, "model": {"prefix": "M: ", "suffix": "\n"}}
    info = _export_info(causal_lm, checkpoint, json.dumps(plain))
    assert info["chat_template"] == {
        "user": {"prefix": "U: ", "suffix": ""},
        "model": {"prefix": "M: ", "suffix": "\n"},
    }
    # Qwen 2.5's default system prompt travels as the preamble.
    (checkpoint / "tokenizer_config.json").write_text(json.dumps({"chat_template": QWEN25_JINJA}))
    info = _export_info(causal_lm, checkpoint)
    assert info["chat_template"]["preamble"].startswith("<|im_start|>system\nYou are Qwen,")
    (checkpoint / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": LLAMA3_FIRST_JINJA})
    )
    info = _export_info(causal_lm, checkpoint)
    assert info["chat_template"] is None
    refused = info["chat_template_refused"]
    assert "\n" not in refused and "a later turn changes the turns before it" in refused

    class Model:
        path = "m.tflite"

    Model.info = info
    with pytest.raises(NoChatTemplateError, match="its checkpoint's was refused: .*a later turn"):
        ChatSession(Model())


def test_template_end_of_turn_is_a_stop_token_when_it_is_one_token(gpt2_checkpoint):
    """A template's end-of-turn text joins the stop tokens when the tokenizer reads it as one
    token, and only then."""
    causal_lm = gpt2_checkpoint["causal_lm"]
    tokenizer = causal_lm.preprocessor.tokenizer
    family_stops = registry.for_causal_lm(causal_lm).stop_token_ids(tokenizer)

    def ids(text):
        return np.asarray(tokenizer(text)).reshape(-1).tolist()

    word = next(w for w in ("the", "and", "of", "el", "la", "de") if len(ids(w)) == 1)
    (word_id,) = ids(word)
    assert len(ids("<|im_end|>")) > 1
    assert word_id not in family_stops
    for suffix, stops in (
        (f"{word}\n", sorted({*family_stops, word_id})),
        ("<|im_end|>\n", sorted(family_stops)),  # not one token of this vocabulary
        ("\n", sorted(family_stops)),
    ):
        template = {"user": {"prefix": "U: "}, "model": {"prefix": "M: ", "suffix": suffix}}
        info = _export_info(causal_lm, gpt2_checkpoint["preset"], json.dumps(template))
        assert info["stop_token_ids"] == stops, suffix
