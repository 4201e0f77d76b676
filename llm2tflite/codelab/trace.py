"""Trace a KerasHub causal LM's generation into a SavedModel (the codelab's "concrete function").

The codelab wrapped ``gpt2_lm.generate()`` in ``tf.function``; current KerasHub no longer traces
that way (``generate_postprocess`` calls ``convert_to_numpy``), so the graph is assembled from the
public parts instead: tokenizer -> the preprocessor's packer -> ``generate_step`` -> stop-token mask
-> ``tokenizer.detokenize``.

Signatures of the SavedModel (and so of the ``.tflite`` files converted from it):

- ``serving_default(prompt: string[1]) -> generated_text: string[1], token_ids: int32[1, n],
  prompt_tokens: int32[1]``: the prompt followed by its continuation, ``max_length`` tokens at
  most (the start token included), as KerasHub's ``generate(prompt, max_length)``; and the ids
  behind it: the start token, the prompt's kept ids and the generated ids (the stop token that
  ended generation excluded), of which the first ``prompt_tokens`` are start token and prompt.
  Tokens are counted from these ids (``llm2tflite.core.generation``), never by re-tokenizing text.
- ``tokenize(prompt: string[1]) -> token_ids: int32[1, 1 + n], start_tokens: int32[1]``: the
  start token followed by the prompt's n ids (not truncated), as the generation path packs them,
  so tests can prove the in-graph tokenizer is exact inside TFLite. (The start token also keeps
  the output non-empty: the Python interpreter cannot return a zero-size tensor.) A family
  without a start token (Qwen) puts its padding id there as a placeholder and says so with
  ``start_tokens`` 0 (1: a real start token); everywhere else its ids simply have no start
  token (``serving_default``'s ids, ``score``'s input, whose first id is then not scored).
- ``detokenize(token_ids: int32[1, n]) -> text: string[1]``: the inverse, without weights, so the
  CLI can cut an output to fewer tokens than the traced ``max_length``.
- ``score(token_ids: int32[1, n]) -> log_likelihoods: float32[1, n - 1], logits: float32[1, n,
  V]``: log p(token i | tokens before it) for i >= 1, for perplexity, and every position's logits
  over the vocabulary, for the per-token comparison with Keras (``llm2tflite.evaluate.fidelity``:
  KL, top-1, logit correlation). It reads the same weight constants as the generation
  path; the converter stores each weight once, so the file barely grows and each variant
  scores with exactly the weights and quantization it generates with.

The prompt is a batch of one (shape [1]), never a scalar: a scalar string reshaped by a TFLite
builtin op can reach the next Select-TF op as raw pointer bytes and the tokenizer then returns
garbage ids.

Input rules (documented in docs/codelab-route.md):
- bytes that are not valid UTF-8 are replaced by U+FFFD before tokenizing;
- a prompt longer than ``prompt_token_limit = min(sequence_length, max_length - 1)`` tokens (start
  token included) keeps its first tokens, so at least one new token is always generated;
- an empty prompt is legal: generation starts from the start token alone (a family without a
  start token needs at least one prompt token; KerasHub's generate() too).

Weights are frozen by the converter, not by the trace: the SavedModel keeps them as tf.Variables
(its checkpoint), every one read exactly once at the top level of the signature function and mapped
into the Keras layers with ``keras.StatelessScope(state_mapping=...)``, so the loop bodies of
``generate_step`` only see tensors. The TFLite converter's SavedModel importer then turns the
read-only variables into constants (no ``VarHandleOp`` survives). Weights as ``tf.constant``s in
the GraphDef instead cost ~18x their size to serialize and convert (GPT-2 124M: 9.5 GB).

Speed: the model's family module (``llm2tflite/families/``) may replace the cache seeding
and the per-layer cache reads of ``generate_step`` while it is traced (``fast_decoding``; e.g.
GPT-2 seeds its cache over the prompt's tokens only and reads each layer's cache with a builtin
slice). The output stays equal to KerasHub's ``generate()`` (tested).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite.core import atomic
from llm2tflite.families import registry
from llm2tflite.inputs.sources import exit_on_unavailable_preset, load_causal_lm

EXPORT_INFO_FILE = "llm2tflite_export.json"
GENERATE_SIGNATURE = "serving_default"
TOKENIZE_SIGNATURE = "tokenize"
DETOKENIZE_SIGNATURE = "detokenize"
SCORE_SIGNATURE = "score"
SIGNATURES = (GENERATE_SIGNATURE, TOKENIZE_SIGNATURE, DETOKENIZE_SIGNATURE, SCORE_SIGNATURE)


def prompt_token_limit(max_length: int, sequence_length: int) -> int:
    """Most prompt tokens (start token included) the traced model keeps."""
    return min(sequence_length, max_length - 1)


def next_token_log_likelihoods(logits, token_ids):
    """log p(token_ids[:, i] | token_ids[:, :i]) for i >= 1, from the model's logits."""
    import tensorflow as tf

    log_probs = tf.nn.log_softmax(tf.cast(logits[:, :-1, :], tf.float32), axis=-1)
    return tf.gather(log_probs, token_ids[:, 1:], batch_dims=2)


def generated_token_ids(generated, prompt_length, stop_token_ids, max_length: int) -> dict:
    """The ids a generation kept, as ``llm2tflite.core.generation.kept_token_ids`` computes them.

    ``generate_step``'s mask is true over the prompt, the generated ids and the stop token that
    ended generation; the stop token (a stop id at a position after the prompt) is dropped.
    """
    import tensorflow as tf

    token_ids = tf.cast(generated["token_ids"], tf.int32)
    positions = tf.range(max_length, dtype=tf.int32)[tf.newaxis, :]
    is_stop = tf.reduce_any(
        tf.equal(token_ids[:, :, tf.newaxis], tf.constant(stop_token_ids, tf.int32)), axis=-1
    )
    generated_stop = tf.logical_and(positions >= prompt_length, is_stop)
    keep = tf.logical_and(
        tf.cast(generated["padding_mask"], tf.bool), tf.logical_not(generated_stop)
    )
    return {
        "token_ids": tf.boolean_mask(token_ids, keep)[tf.newaxis, :],
        "prompt_tokens": tf.reshape(tf.cast(prompt_length, tf.int32), [1]),
    }


def build_export_module(causal_lm, max_length: int, sequence_length: int):
    """Return a ``tf.Module`` whose tf.functions are the SavedModel's signatures."""
    import keras
    import tensorflow as tf
    from keras_hub.src.utils.tensor_utils import strip_to_ragged

    family = registry.for_causal_lm(causal_lm)
    preprocessor = causal_lm.preprocessor
    if preprocessor is None:
        raise ValueError("the causal LM has no preprocessor: the graph needs its tokenizer")
    # The packer and tokenizer are created by build(); generate() normally does this lazily
    # (and a built preprocessor refuses a second build).
    if not preprocessor.built:
        preprocessor.build(None)
    tokenizer = preprocessor.tokenizer
    pack_prompt = family.prompt_packer(preprocessor)
    keep_tokens = prompt_token_limit(max_length, sequence_length)
    # The family's generate() stop tokens (e.g. Gemma 3 stops at <end_of_turn> too).
    stop_token_ids = family.stop_token_ids(tokenizer)
    # A family without a start token (Qwen) packs the prompt's ids alone.
    start_tokens = 0 if tokenizer.start_token_id is None else 1
    first_id = int(tokenizer.pad_token_id if start_tokens == 0 else tokenizer.start_token_id)
    keras_variables = list(causal_lm.variables)
    prompt_spec = tf.TensorSpec([1], tf.string, name="prompt")

    def tokenize_ragged(prompt):
        prompt = tf.strings.unicode_transcode(
            prompt, input_encoding="UTF-8", output_encoding="UTF-8", errors="replace"
        )
        return tokenizer(prompt)

    class ExportModule(tf.Module):
        def __init__(self):
            super().__init__()
            # Tracked so the tokenizer's lookup tables are saved with the graph.
            self.tokenizer = tokenizer
            # The weights as plain tf.Variables (not the Keras model): written to the SavedModel's
            # checkpoint (variables/), never as constants in its GraphDef. The converter's
            # SavedModel importer freezes them (read-only global tensors -> constants).
            self.weights = [variable.value for variable in keras_variables]

        def _read_weights_once(self):
            """The Keras variables mapped to one read each, at the top level of the caller.

            generate_step's while-loop bodies then capture tensors, not resource variables, so
            no VarHandleOp / ReadVariableOp survives conversion.
            """
            return [
                (variable, tf.identity(weight))
                for variable, weight in zip(keras_variables, self.weights)
            ]

        @tf.function(input_signature=[prompt_spec])
        def generate(self, prompt):
            token_ids = tokenize_ragged(prompt)
            # One slot is taken by the start token the packer prepends, if any.
            token_ids = token_ids[:, : keep_tokens - start_tokens]
            token_ids, padding_mask = pack_prompt(token_ids, max_length)
            # The packer's output has an unknown batch size (it comes from a ragged tensor).
            # Pinning it to the real [1, max_length] lets the converter fold every shape
            # computation of the decoding loop and gives its kernels static tensors.
            token_ids = tf.reshape(token_ids, [1, max_length])
            padding_mask = tf.reshape(padding_mask, [1, max_length])
            prompt_length = tf.reduce_sum(tf.cast(padding_mask, tf.int32))
            state_mapping = self._read_weights_once()
            with (
                keras.StatelessScope(state_mapping=state_mapping),
                family.fast_decoding(causal_lm, prompt_length),
            ):
                generated = causal_lm.generate_step(
                    {"token_ids": token_ids, "padding_mask": padding_mask},
                    stop_token_ids=stop_token_ids,
                )
            kept_ids = strip_to_ragged(
                generated["token_ids"], generated["padding_mask"], tokenizer.special_token_ids
            )
            return {
                "generated_text": tokenizer.detokenize(kept_ids),
                **generated_token_ids(generated, prompt_length, stop_token_ids, max_length),
            }

        @tf.function(input_signature=[prompt_spec])
        def tokenize(self, prompt):
            token_ids = tf.cast(tokenize_ragged(prompt).to_tensor(), tf.int32)
            start = tf.fill([1, 1], tf.constant(first_id, tf.int32))
            return {
                "token_ids": tf.concat([start, token_ids], axis=1),
                "start_tokens": tf.constant([start_tokens], tf.int32),
            }

        @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32, name="token_ids")])
        def detokenize(self, token_ids):
            return {"text": tokenizer.detokenize(token_ids)}

        @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32, name="token_ids")])
        def score(self, token_ids):
            state_mapping = self._read_weights_once()
            with keras.StatelessScope(state_mapping=state_mapping):
                logits = causal_lm(
                    {"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids, tf.bool)}
                )
            return {
                "log_likelihoods": next_token_log_likelihoods(logits, token_ids),
                "logits": tf.cast(logits, tf.float32),
            }

    return ExportModule()


def export_saved_model(
    causal_lm, out_dir, max_length: int, sequence_length: int, extra_info: dict | None = None
) -> dict:
    """Trace ``causal_lm`` and write the SavedModel to ``out_dir`` atomically; return its info."""
    import tensorflow as tf

    backbone_max = getattr(causal_lm.backbone, "max_sequence_length", None)
    if backbone_max is not None and max_length > backbone_max:
        raise ValueError(
            f"max_length {max_length} exceeds the model's max_sequence_length {backbone_max}"
        )
    if max_length < 2:
        raise ValueError("max_length must be at least 2 (the start token and one new token)")
    started = time.perf_counter()
    module = build_export_module(causal_lm, max_length, sequence_length)
    signatures = {
        GENERATE_SIGNATURE: module.generate.get_concrete_function(),
        TOKENIZE_SIGNATURE: module.tokenize.get_concrete_function(),
        DETOKENIZE_SIGNATURE: module.detokenize.get_concrete_function(),
        SCORE_SIGNATURE: module.score.get_concrete_function(),
    }
    tokenizer = causal_lm.preprocessor.tokenizer
    info = {
        "max_length": max_length,
        "sequence_length": sequence_length,
        "prompt_token_limit": prompt_token_limit(max_length, sequence_length),
        "vocabulary_size": int(tokenizer.vocabulary_size()),
        "end_token_id": int(tokenizer.end_token_id),
        "start_token_id": (
            None if tokenizer.start_token_id is None else int(tokenizer.start_token_id)
        ),
        "stop_token_ids": registry.for_causal_lm(causal_lm).stop_token_ids(tokenizer),
        "num_parameters": int(causal_lm.count_params()),
        "signatures": {
            GENERATE_SIGNATURE: {
                "inputs": {"prompt": "string[1]"},
                "outputs": {
                    "generated_text": "string[1]",
                    "token_ids": "int32[1,n]",
                    "prompt_tokens": "int32[1]",
                },
            },
            TOKENIZE_SIGNATURE: {
                "inputs": {"prompt": "string[1]"},
                "outputs": {"token_ids": "int32[1,1+n]", "start_tokens": "int32[1]"},
            },
            DETOKENIZE_SIGNATURE: {
                "inputs": {"token_ids": "int32[1,n]"},
                "outputs": {"text": "string[1]"},
            },
            SCORE_SIGNATURE: {
                "inputs": {"token_ids": "int32[1,n]"},
                "outputs": {"log_likelihoods": "float32[1,n-1]", "logits": "float32[1,n,V]"},
            },
        },
        **(extra_info or {}),
    }
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        info["trace_seconds"] = round(time.perf_counter() - started, 2)
        (Path(tmp) / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def read_export_info(saved_model_dir) -> dict:
    return json.loads((Path(saved_model_dir) / EXPORT_INFO_FILE).read_text())


@exit_on_unavailable_preset
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="KerasHub preset name or directory")
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--sequence-length", type=int, required=True)
    parser.add_argument("--sampler", default="greedy")
    parser.add_argument("--out", required=True, help="SavedModel directory to write")
    args = parser.parse_args(argv)
    causal_lm = load_causal_lm(args.preset, sampler=args.sampler)
    info = export_saved_model(
        causal_lm,
        args.out,
        args.max_length,
        args.sequence_length,
        extra_info={"preset": args.preset, "sampler": args.sampler},
    )
    print(f"traced {args.preset} -> {args.out} in {info['trace_seconds']} s")


if __name__ == "__main__":
    main()
