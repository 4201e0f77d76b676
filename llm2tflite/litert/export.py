"""Export a KerasHub causal LM as the LiteRT route's prefill/decode SavedModel (KV cache outside).

The model contract (what LiteRT-LM's executor and ``llm2tflite.codelab.runtime`` expect; every
``.tflite`` of the route converted from this SavedModel has it):

Signatures ``prefill_<T>`` (one per configured prefill length T) and ``decode`` (T = 1):

=================  =========  ====================  ==========================================
tensor             dtype      shape                 meaning
=================  =========  ====================  ==========================================
``tokens``         int32      [1, T]                token ids at positions ``input_pos``
``input_pos``      int32      [T]                   their positions: contiguous,
                                                    input_pos[0] + T <= S
``mask``           float32    [1, 1, T, S]          additive: 0 visible, ``MASK_HIDDEN``
                                                    (-0.7 * float32 max) hidden
``kv_cache_k_<i>`` float32    [1, S, kv_heads_i,    layer i's keys (input and output)
                              head_dim_i]
``kv_cache_v_<i>`` float32    same                  layer i's values (input and output)
``logits``         float32    [1, T, V]             output of ``decode`` (and of ``prefill_<T>``
                                                    only when ``prefill_logits`` is set)
=================  =========  ====================  ==========================================

The caches come back under their input names (LiteRT-LM swaps the buffers by name; on CPU it
even binds one buffer to both, which this graph allows: every cache is read only through its
updated copy). S is the cache length, the context's maximum (start token, prompt and generated
tokens together).

The runtime's duties (the graph cannot check them):

- fill ``mask`` per query row t: 0 at cache positions s <= input_pos[t], ``MASK_HIDDEN``
  elsewhere (never -inf: a fully hidden padding row would give NaN);
- prefill chunks: write positions p .. p + T - 1 with p + T <= S. The cache update is one
  DYNAMIC_UPDATE_SLICE at input_pos[0], which *clamps* its start so that the T rows fit: a
  chunk started past S - T silently overwrites earlier rows. A short tail is padded (any token
  ids; its rows are rewritten before anything attends them) or finished with smaller
  signatures or ``decode`` steps. ``export`` refuses any T > S. LiteRT-LM does not check this
  (it pads its tail chunk whatever the position): give it ``max_num_tokens`` =
  ``info["litert_lm_max_num_tokens"]`` (97 for S = 100 and T in {8, 32}), with which no chunk
  of any prompt it accepts can overrun the cache.
- prefill all prompt tokens but the last and let ``decode`` consume it (LiteRT-LM does), so the
  first new token comes from ``decode``'s logits.

``info`` (``litert_export.json``, next to the ``.tflite`` files) tells the runtime all of this:
see ``export_info``.

Weights: read once per signature through ``keras.StatelessScope`` (as ``llm2tflite.codelab.trace``
does): the SavedModel keeps them as variables, which the converter freezes into constants.
Tracking the Keras model in the module instead leaves uninitialised VAR_HANDLE ops: NaN logits.
The family's graph comes from its module (``Architecture.litert_decoder`` / ``litert_logits``);
this module names no family.

Defaults, chosen by measurement (GPT-2 124M twin, int8, ai-edge-litert 2.3.0, XNNPACK, 2
threads, the files interleaved in one process on a shared 2-core Xeon; a decode invoke took
4.6 ms in the quietest run, ratios held in runs 3-8x slower):

- ``prefill_logits`` off: logits [1, T, V] make every prefill invoke 36-55 % slower (T = 4, 8,
  16, 32, 64: 6.6/8.9, 8.1/11.6, 11.2/15.2, 13.0/20.1, 18.7/27.6 ms without/with) and LiteRT-LM
  never reads them (its first new token comes from ``decode``). Switch them on for perplexity in
  chunks; otherwise score with ``decode`` steps, whose logits are exactly the generation's.
- prefill lengths 8 and 32: a prefill invoke costs a decode step plus the work of its T rows
  (prefill_8 1.7 decode steps, prefill_32 2.8, prefill_64 4.0), so short prompts (the usual
  5-10 tokens) take prefill_8, and long ones 32-token chunks at 0.4 of the cost per token of
  8-token chunks; a 64-token signature saves little more under a 100-position cache, where it
  fits only at the start. Each signature adds ~1.2 MB to the int8 file and conversion time.
- cache length = ``generation.max_length`` (100): every decode step attends the whole cache;
  S = 128 cost +4 % per invoke, S = 256 +33 % (+60 % with the Python loop's cache copies).
- attention over the cache as explicit transposes + matmuls: a transposed-B matmul and Keras'
  own einsum convert to the same ops (24 TRANSPOSE, 24 BATCH_MATMUL) and ran within 2 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite.core import atomic
from llm2tflite.families import base, registry

INFO_FILE = "litert_export.json"
# Version of the contract above; bump it when a runtime would misread a new export.
CONTRACT_VERSION = 1
PREFILL_PREFIX = "prefill_"
DECODE_SIGNATURE = "decode"
TOKENS, INPUT_POS, MASK, LOGITS = "tokens", "input_pos", "mask", "logits"
# LiteRT-LM's fill value for hidden positions of a float32 mask (defined beside the family
# interface, which the families' forward passes read it from).
MASK_HIDDEN = base.MASK_HIDDEN

# The `litert:` config section's defaults (cache_length: generation.max_length).
DEFAULT_VARIANTS = ("fp32", "int8", "int4")
# Prefill lengths: a short one for short prompts (a prefill invoke costs about a decode step
# plus the per-token compute of all T rows, padding included) and a longer one for long prompts.
DEFAULT_PREFILL_LENGTHS = (8, 32)
DEFAULT_PREFILL_LOGITS = False


def prefill_signature(length: int) -> str:
    return f"{PREFILL_PREFIX}{length}"


def cache_names(layer: int) -> tuple[str, str]:
    return f"kv_cache_k_{layer}", f"kv_cache_v_{layer}"


class LiteRTSettingsError(ValueError):
    """The `litert:` settings cannot give a working model (one line, names the key)."""


def resolve_settings(config: dict) -> dict:
    """The `litert:` section with its defaults filled in (light: used while the DAG is parsed).

    ``cache_length`` defaults to ``generation.max_length`` (the codelab route's context);
    prefill lengths longer than the cache are dropped from the default list, never from a
    configured one (that is an error, see ``check_lengths``).
    """
    section = dict(config.get("litert") or {})
    cache_length = section.get("cache_length") or config["generation"]["max_length"]
    lengths = section.get("prefill_lengths")
    if lengths is None:
        lengths = [t for t in DEFAULT_PREFILL_LENGTHS if t <= cache_length] or [cache_length]
    settings = {
        "variants": list(
            DEFAULT_VARIANTS if section.get("variants") is None else section["variants"]
        ),
        "cache_length": int(cache_length),
        "prefill_lengths": sorted({int(t) for t in lengths}),
        "prefill_logits": bool(section.get("prefill_logits", DEFAULT_PREFILL_LOGITS)),
    }
    check_lengths(settings["cache_length"], settings["prefill_lengths"])
    return settings


def model_errors(config: dict, settings: dict) -> list[str]:
    """The cache against each configured model's positions, before anything is built (light)."""
    errors = []
    for name, source in config["models"].items():
        try:
            family = registry.for_model_source(source)
            if "train" in source:
                backbone = family.train_model_config(source["train"].get("model"))
            else:
                backbone = registry.for_preset(source.get("shape_of") or source["preset"])[1]
        except (registry.UnsupportedArchitectureError, ValueError):
            continue  # the config check reports these
        limit = family.max_sequence_length(backbone or {})
        if limit is not None and settings["cache_length"] > limit:
            errors.append(
                f"litert.cache_length: {settings['cache_length']} exceeds model "
                f"{name!r}'s {limit} positions; set litert.cache_length <= {limit}"
            )
    return errors


def check_lengths(cache_length: int, prefill_lengths, max_positions: int | None = None) -> None:
    """Every prefill chunk must fit the cache; the cache must fit the model's positions."""
    if cache_length < 2:
        raise LiteRTSettingsError(
            f"litert.cache_length: {cache_length} < 2 (the start token and one new token)"
        )
    if not prefill_lengths:
        raise LiteRTSettingsError("litert.prefill_lengths: give at least one length")
    too_long = [t for t in prefill_lengths if t > cache_length or t < 1]
    if too_long:
        raise LiteRTSettingsError(
            f"litert.prefill_lengths: {too_long} do not fit a cache of {cache_length} positions "
            "(DYNAMIC_UPDATE_SLICE would clamp the chunk over earlier rows); use lengths "
            f"1..{cache_length} or raise litert.cache_length"
        )
    if max_positions is not None and cache_length > max_positions:
        raise LiteRTSettingsError(
            f"litert.cache_length: {cache_length} exceeds the model's {max_positions} positions; "
            f"set litert.cache_length (or generation.max_length) <= {max_positions}"
        )


def litert_lm_prefill_chunks(count: int, prefill_lengths) -> list[tuple[int, int]]:
    """How LiteRT-LM splits ``count`` prompt ids over the prefill signatures.

    ``[(signature length T, ids in the chunk)]``, as LiteRT-LM's executor does
    (``GetOptimizedPrefillWorkGroups``, runtime/executor/): the longest T while at least T ids
    remain, then the shortest T that holds the rest, padded.
    """
    lengths = sorted(prefill_lengths, reverse=True)
    chunks = []
    while count >= lengths[0]:
        chunks.append((lengths[0], lengths[0]))
        count -= lengths[0]
    if count > 0:
        chunks.append((min(t for t in lengths if t >= count), count))
    return chunks


def litert_lm_max_num_tokens(cache_length: int, prefill_lengths) -> int:
    """The largest ``max_num_tokens`` for LiteRT-LM with which no prefill chunk is clamped.

    LiteRT-LM checks only that the prompt is shorter than ``max_num_tokens``, then prefills in
    padded chunks (``litert_lm_prefill_chunks``): the first chunk writes its ids but the last
    one (kept for the next call) from position 0, each later chunk the kept id and all but its
    own last. A chunk of length T started at p needs p + T <= S; near a full cache the padded
    tail can overrun S and DYNAMIC_UPDATE_SLICE then moves it back over earlier rows. Every
    prompt of fewer ids than the returned value fits (decode positions stay below it too).
    """

    def fits(count):
        start, written = 0, 0
        for index, (length, ids) in enumerate(litert_lm_prefill_chunks(count, prefill_lengths)):
            if start + length > cache_length:
                return False
            written += ids - 1 if index == 0 else ids
            start = written
        return True

    limit = 1
    while limit < cache_length and fits(limit):
        limit += 1
    return limit


def _signature_specs(length: int, cache_length: int, cache_shapes):
    import tensorflow as tf

    specs = [
        tf.TensorSpec([1, length], tf.int32, name=TOKENS),
        tf.TensorSpec([length], tf.int32, name=INPUT_POS),
        tf.TensorSpec([1, 1, length, cache_length], tf.float32, name=MASK),
    ]
    for layer, shape in enumerate(cache_shapes):
        for name in cache_names(layer):
            specs.append(
                tf.TensorSpec(
                    [1, cache_length, shape.kv_heads, shape.head_dim], tf.float32, name=name
                )
            )
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
                    outputs[LOGITS] = tf.cast(logits, tf.float32)
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
        functions[prefill_signature(length)] = (length, bool(prefill_logits))
    functions[DECODE_SIGNATURE] = (1, True)

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
    prefill = {prefill_signature(t): t for t in prefill_lengths}

    def io(length, with_logits):
        inputs = {
            TOKENS: ["int32", [1, length]],
            INPUT_POS: ["int32", [length]],
            MASK: ["float32", [1, 1, length, cache_length]],
        }
        outputs = {LOGITS: ["float32", [1, length, vocabulary_size]]} if with_logits else {}
        for layer, shape in enumerate(cache_shapes):
            for name in cache_names(layer):
                spec = ["float32", [1, cache_length, shape.kv_heads, shape.head_dim]]
                inputs[name] = outputs[name] = spec
        return {"inputs": inputs, "outputs": outputs}

    # The family's generate() stop tokens (Gemma 3: <eos> and <end_of_turn>).
    stop_ids = sorted(set(family.stop_token_ids(tokenizer)))
    return {
        "contract_version": CONTRACT_VERSION,
        "architecture": family.name,
        "causal_lm_class": type(causal_lm).__name__,
        "num_parameters": int(causal_lm.count_params()),
        "cache_length": cache_length,
        "prefill_lengths": list(prefill_lengths),
        "prefill_signatures": prefill,
        "decode_signature": DECODE_SIGNATURE,
        "prefill_logits": bool(prefill_logits),
        # LiteRT-LM's max_num_tokens for this file (see litert_lm_max_num_tokens).
        "litert_lm_max_num_tokens": litert_lm_max_num_tokens(cache_length, prefill_lengths),
        "num_layers": len(cache_shapes),
        "layers": [{"kv_heads": s.kv_heads, "head_dim": s.head_dim} for s in cache_shapes],
        "hidden_dim": int(backbone.hidden_dim),
        "vocabulary_size": vocabulary_size,
        "tokenizer_vocabulary_size": int(tokenizer.vocabulary_size()),
        "tokenizer_kind": family.tokenizer_kind,
        "tokenizer_files": list(family.tokenizer_files),
        "start_token_id": int(tokenizer.start_token_id),
        "stop_token_ids": stop_ids,
        "pad_token_id": int(tokenizer.pad_token_id),
        # KerasHub's causal-LM preprocessor puts the start token before the prompt's ids.
        "add_start_token": bool(getattr(causal_lm.preprocessor, "add_start_token", True)),
        "mask": {
            "dtype": "float32",
            "visible": 0.0,
            "hidden": MASK_HIDDEN,
            "rule": "query t sees cache positions s <= input_pos[t]",
        },
        "kv_cache_dtype": "float32",
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
            DECODE_SIGNATURE: io(1, True),
        },
        **(extra or {}),
    }


def export(
    causal_lm,
    out_dir,
    info_path,
    cache_length: int,
    prefill_lengths,
    prefill_logits: bool = DEFAULT_PREFILL_LOGITS,
    extra_info: dict | None = None,
) -> dict:
    """Write the SavedModel (``out_dir``) and its info JSON (``info_path``), atomically."""
    import tensorflow as tf

    family = registry.for_causal_lm(causal_lm)
    prefill_lengths = sorted({int(t) for t in prefill_lengths})
    check_lengths(cache_length, prefill_lengths, family.litert_max_positions(causal_lm))
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
            extra_info={"preset": args.preset},
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
