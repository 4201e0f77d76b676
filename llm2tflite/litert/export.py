"""Export a KerasHub causal LM as the LiteRT route's prefill/decode SavedModel (KV cache outside).

Every ``.tflite`` of the route converted from this SavedModel has the LiteRT contract:
``prefill_<T>`` and ``decode`` over an external KV cache, its tensors, and the runtime's duties.
It is written once, in docs/litert-contract.md; ``export_info`` writes what a runtime needs of it
into ``litert_export.json`` next to the ``.tflite`` files.

Weights: read once per signature through ``keras.StatelessScope`` (as ``llm2tflite.codelab.trace``
does): the SavedModel keeps them as variables, which the converter freezes into constants.
Tracking the Keras model in the module instead leaves uninitialised VAR_HANDLE ops: NaN logits.
The family's graph comes from its module (``Architecture.litert_decoder`` / ``litert_logits``);
this module names no family.

The names, the settings' checks and LiteRT-LM's ``max_num_tokens`` arithmetic live in
``llm2tflite.litert.contract`` (light: the workflow reads them while parsing the DAG); this
module traces the graph.

Defaults (the ``litert:`` section of config/config.schema.yaml; the prefill lengths in
``llm2tflite.litert.contract``) were chosen by measurement: prefill logits off, prefill lengths 8
and 32, cache length = ``generation.max_length``, each cache stored in the layout its attention
matmul reads (``contract.KV_CACHE_LAYOUT``).
The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite.core import atomic, chat
from llm2tflite.core.chat import ChatTemplate
from llm2tflite.families import registry
from llm2tflite.litert import contract

# Also read from here by the route's other stages and tests (the module they trace with).
from llm2tflite.litert.contract import INFO_FILE, MASK_HIDDEN, LiteRTSettingsError, cache_names


def _signature_specs(length: int, cache_length: int, cache_shapes):
    import tensorflow as tf

    specs = [
        tf.TensorSpec([1, length], tf.int32, name=contract.TOKENS),
        tf.TensorSpec([length], tf.int32, name=contract.INPUT_POS),
        tf.TensorSpec([1, 1, length, cache_length], tf.float32, name=contract.MASK),
    ]
    for layer, shape in enumerate(cache_shapes):
        layout = contract.kv_cache_shapes(cache_length, shape.kv_heads, shape.head_dim)
        for name, cache_shape in zip(cache_names(layer), layout):
            specs.append(tf.TensorSpec(cache_shape, tf.float32, name=name))
    return specs


def build_module(causal_lm, cache_length: int, prefill_lengths, prefill_logits: bool):
    """A ``tf.Module`` and its signature functions: {name: concrete function}."""
    import keras
    import tensorflow as tf

    family = registry.for_causal_lm(causal_lm)
    cache_shapes = list(family.litert_cache_shapes(causal_lm))
    keras_variables = list(causal_lm.variables)

    class LiteRTModule(tf.Module):
        def __init__(self):
            super().__init__()
            # Plain tf.Variables (not the Keras model): saved in the checkpoint, frozen by the
            # converter, each read once per signature (see the module docstring).
            self.weights = [variable.value for variable in keras_variables]

        def forward(self, tokens, input_pos, mask, *flat_caches, with_logits: bool):
            state_mapping = [
                (variable, tf.identity(weight))
                for variable, weight in zip(keras_variables, self.weights)
            ]
            kv_caches = list(zip(flat_caches[0::2], flat_caches[1::2]))
            with keras.StatelessScope(state_mapping=state_mapping):
                hidden, new_caches = family.litert_decoder(
                    causal_lm, tokens, input_pos, mask, kv_caches
                )
                outputs = {}
                if with_logits:
                    logits = family.litert_logits(causal_lm, hidden)
                    outputs[contract.LOGITS] = tf.cast(logits, tf.float32)
            if len(new_caches) != len(cache_shapes):
                raise ValueError(
                    f"{family.name}.litert_decoder returned {len(new_caches)} "
                    f"caches for {len(cache_shapes)} layers"
                )
            for layer, pair in enumerate(new_caches):
                for name, cache in zip(cache_names(layer), pair):
                    outputs[name] = cache
            return outputs

    module = LiteRTModule()
    functions = {}
    for length in prefill_lengths:
        functions[contract.prefill_signature(length)] = (length, bool(prefill_logits))
    functions[contract.DECODE_SIGNATURE] = (1, True)

    def signature_function(length, with_logits):
        def call(*args):
            return module.forward(*args, with_logits=with_logits)

        specs = _signature_specs(length, cache_length, cache_shapes)
        return tf.function(call, input_signature=specs, autograph=False).get_concrete_function()

    signatures = {
        name: signature_function(length, with_logits)
        for name, (length, with_logits) in functions.items()
    }
    return module, signatures


def export_info(
    causal_lm, cache_length: int, prefill_lengths, prefill_logits: bool, extra: dict | None = None
) -> dict:
    """What a runtime needs to drive the exported signatures (``litert_export.json``)."""
    family = registry.for_causal_lm(causal_lm)
    cache_shapes = list(family.litert_cache_shapes(causal_lm))
    tokenizer = causal_lm.preprocessor.tokenizer
    backbone = causal_lm.backbone
    vocabulary_size = int(backbone.token_embedding.input_dim)
    prefill = {contract.prefill_signature(t): t for t in prefill_lengths}

    def io(length, with_logits):
        inputs = {
            contract.TOKENS: ["int32", [1, length]],
            contract.INPUT_POS: ["int32", [length]],
            contract.MASK: ["float32", [1, 1, length, cache_length]],
        }
        outputs = (
            {contract.LOGITS: ["float32", [1, length, vocabulary_size]]} if with_logits else {}
        )
        for layer, shape in enumerate(cache_shapes):
            layout = contract.kv_cache_shapes(cache_length, shape.kv_heads, shape.head_dim)
            for name, cache_shape in zip(cache_names(layer), layout):
                inputs[name] = outputs[name] = ["float32", cache_shape]
        return {"inputs": inputs, "outputs": outputs}

    extra = dict(extra or {})
    # The model's chat template: the config's or the checkpoint's (in ``extra``, None when the
    # checkpoint's was refused), else its family's. llm2tflite.core.chat.
    template = extra.pop("chat_template", family.chat_template)
    # The family's generate() stop tokens (Gemma 3: <eos> and <end_of_turn>) and the template's
    # end-of-turn token (ChatML: <|im_end|>).
    stop_ids = sorted(
        set(family.stop_token_ids(tokenizer)) | set(template_stop_ids(tokenizer, template))
    )
    return {
        "contract_version": contract.CONTRACT_VERSION,
        "architecture": family.name,
        "causal_lm_class": type(causal_lm).__name__,
        "num_parameters": int(causal_lm.count_params()),
        "cache_length": cache_length,
        "prefill_lengths": list(prefill_lengths),
        "prefill_signatures": prefill,
        "decode_signature": contract.DECODE_SIGNATURE,
        "prefill_logits": bool(prefill_logits),
        # LiteRT-LM's max_num_tokens for this file (see contract.litert_lm_max_num_tokens).
        "litert_lm_max_num_tokens": contract.litert_lm_max_num_tokens(
            cache_length, prefill_lengths
        ),
        "num_layers": len(cache_shapes),
        "layers": [{"kv_heads": s.kv_heads, "head_dim": s.head_dim} for s in cache_shapes],
        "hidden_dim": int(backbone.hidden_dim),
        "vocabulary_size": vocabulary_size,
        "tokenizer_vocabulary_size": int(tokenizer.vocabulary_size()),
        "tokenizer_kind": family.tokenizer_kind,
        "tokenizer_files": list(family.tokenizer_files),
        # None: the family puts nothing before the text (Qwen).
        "start_token_id": (
            None if tokenizer.start_token_id is None else int(tokenizer.start_token_id)
        ),
        "stop_token_ids": stop_ids,
        # None: the model continues text only.
        "chat_template": template,
        "pad_token_id": int(tokenizer.pad_token_id),
        # KerasHub's causal-LM preprocessor puts the start token before the prompt's ids.
        "add_start_token": tokenizer.start_token_id is not None
        and bool(getattr(causal_lm.preprocessor, "add_start_token", True)),
        "mask": {
            "dtype": "float32",
            "visible": 0.0,
            "hidden": MASK_HIDDEN,
            "rule": "query t sees cache positions s <= input_pos[t]",
        },
        "kv_cache_dtype": "float32",
        "kv_cache_layout": contract.KV_CACHE_LAYOUT,
        "runtime_duties": [
            "input_pos contiguous and input_pos[0] + T <= cache_length for every call "
            "(DYNAMIC_UPDATE_SLICE clamps its start)",
            "pad a short prefill chunk (any ids; its rows are rewritten before being attended)",
            "prefill all prompt tokens but the last; decode consumes it and yields the first "
            "new token",
            "feed each call's output caches back as the next call's input caches",
        ],
        "signatures": {
            **{name: io(t, prefill_logits) for name, t in prefill.items()},
            contract.DECODE_SIGNATURE: io(1, True),
        },
        **extra,
    }


def template_stop_ids(tokenizer, template_fields) -> list[int]:
    """The template's end-of-turn token (``ChatTemplate.end_of_turn``) when the tokenizer reads
    its text as one token: the model ends a reply with it."""
    import numpy as np

    if not template_fields:
        return []
    text = ChatTemplate.from_dict(template_fields).end_of_turn
    if not text:
        return []
    ids = np.asarray(tokenizer(text)).reshape(-1).tolist()
    return [int(ids[0])] if len(ids) == 1 else []


def export(
    causal_lm,
    out_dir,
    info_path,
    cache_length: int,
    prefill_lengths,
    prefill_logits: bool = False,
    extra_info: dict | None = None,
) -> dict:
    """Write the SavedModel (``out_dir``) and its info JSON (``info_path``), atomically."""
    import tensorflow as tf

    family = registry.for_causal_lm(causal_lm)
    prefill_lengths = sorted({int(t) for t in prefill_lengths})
    contract.check_lengths(cache_length, prefill_lengths, family.litert_max_positions(causal_lm))
    if causal_lm.preprocessor is None:
        raise ValueError(
            "the causal LM has no preprocessor: its tokenizer gives the start and "
            "stop tokens of the export info"
        )
    started = time.perf_counter()
    module, signatures = build_module(causal_lm, cache_length, prefill_lengths, prefill_logits)
    info = export_info(causal_lm, cache_length, prefill_lengths, prefill_logits, extra_info)
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        (Path(tmp) / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    # No timing inside: the info is an input of the runtime and byte-identical across runs.
    atomic.write_json(info_path, info)
    return {**info, "export_seconds": round(time.perf_counter() - started, 2)}


def read_info(path) -> dict:
    """The export info, from its JSON file or from a SavedModel directory holding a copy."""
    path = Path(path)
    if path.is_dir():
        path = path / INFO_FILE
    return json.loads(path.read_text())


def signature_keys(info: dict) -> list[str]:
    return [*info["prefill_signatures"], info["decode_signature"]]


def _extra_info(args) -> dict:
    """The export info's entries from the command line: the preset and the chat template, the
    config's (``--chat-template-json``) before a Hugging Face checkpoint's (its
    tokenizer_config.json ``chat_template``, derived by ``llm2tflite.core.chat.from_jinja``).
    A checkpoint template that prefix/suffix per role cannot express is not carried, nor
    replaced by the family's: ``chat_template`` None and the reason in
    ``chat_template_refused`` (also printed, one line)."""
    extra = {"preset": args.preset}
    if args.chat_template_json and json.loads(args.chat_template_json):
        template = ChatTemplate.from_dict(json.loads(args.chat_template_json))
        extra["chat_template"] = template.to_dict()
    elif registry.transformers_config(args.preset) is not None:
        try:
            template = chat.from_tokenizer_config(args.preset)
        except chat.ChatTemplateError as error:
            extra["chat_template"] = None
            extra["chat_template_refused"] = str(error)
            print(
                f"llm2tflite: note: the checkpoint's chat template is not carried: {error}; "
                "set litert.chat_templates.<model> in the config to give one",
                file=sys.stderr,
            )
        else:
            if template is not None:
                extra["chat_template"] = template.to_dict()
    return extra


def main(argv=None):
    from llm2tflite.inputs.sources import PresetUnavailableError, load_causal_lm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="KerasHub preset name or directory")
    parser.add_argument("--cache-length", type=int, required=True)
    parser.add_argument("--prefill-lengths", type=int, nargs="+", required=True)
    parser.add_argument(
        "--prefill-logits",
        action="store_true",
        help="prefill signatures output logits [1, T, V] too",
    )
    parser.add_argument("--out", required=True, help="SavedModel directory to write")
    parser.add_argument("--info", required=True, help="export info JSON to write")
    parser.add_argument(
        "--chat-template-json",
        help='the model\'s chat template, replacing its family\'s: {"user": {"prefix": ...,'
        ' "suffix": ...}, "model": {...}} (llm2tflite.core.chat)',
    )
    args = parser.parse_args(argv)
    try:
        causal_lm = load_causal_lm(args.preset)
        info = export(
            causal_lm,
            args.out,
            args.info,
            args.cache_length,
            args.prefill_lengths,
            args.prefill_logits,
            extra_info=_extra_info(args),
        )
    except (
        PresetUnavailableError,
        LiteRTSettingsError,
        registry.UnsupportedArchitectureError,
    ) as error:
        print(f"llm2tflite: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(
        f"exported {args.preset} ({info['architecture']}) -> {args.out}: "
        f"{', '.join(signature_keys(info))}, cache {info['cache_length']}, "
        f"{info['export_seconds']} s"
    )


if __name__ == "__main__":
    main()
