"""Train a small GPT-2 with KerasHub on the generated corpus and save it as a KerasHub preset.

This is the offline default model source (codelab step 1, "train a language model using
Keras"): `GPT2Tokenizer` on our BPE files, `GPT2CausalLMPreprocessor` packing each line between
start/end tokens, a tiny `GPT2Backbone`, `GPT2CausalLM`, Adam and `fit()`.

Everything is seeded (`keras.utils.set_random_seed`, op determinism, a seeded shuffle), so two
runs with the same inputs give the same weights. The run fails (exit 1, no preset written) when
training did not clearly lower the held-out loss: a model that learned nothing would otherwise
flow silently into conversion and smoke tests, which only check that *something* is generated.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite import atomic
from llm2tflite.vocab import read_lines, vocabulary_paths

PROMPT = "Estoy disfrutando de"
SAMPLE_MAX_LENGTH = 30
# Training must bring the held-out loss below this fraction of the untrained model's.
MAX_LOSS_RATIO = 0.8

# Architecture ("model") and optimisation ("fit") settings. The workflow passes the union of the
# config's `model:` and `fit:` sections; missing keys take these values.
DEFAULT_HYPERPARAMETERS = {
    # GPT2Backbone
    "num_layers": 2,
    "num_heads": 4,
    "hidden_dim": 128,
    "intermediate_dim": 512,
    "max_sequence_length": 256,
    "dropout": 0.1,
    # fit
    "seed": 42,
    "sequence_length": 48,  # tokens per training line; the corpus's lines are far shorter
    "batch_size": 64,
    "epochs": 3,
    "learning_rate": 0.002,  # peak of the warmup + cosine schedule
}
_INTEGER_KEYS = {"num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                 "max_sequence_length", "seed", "sequence_length", "batch_size", "epochs"}


class TrainingFailedError(RuntimeError):
    """Training ran but the model is not good enough to ship."""


def resolve_hyperparameters(overrides: dict | None = None) -> dict:
    """Defaults updated with `overrides`; unknown keys are an error (a typo must not be ignored)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEFAULT_HYPERPARAMETERS))
    if unknown:
        raise ValueError(
            f"unknown hyperparameters {unknown}; known: {sorted(DEFAULT_HYPERPARAMETERS)}"
        )
    hyperparameters = {**DEFAULT_HYPERPARAMETERS, **overrides}
    for key in _INTEGER_KEYS:
        value = hyperparameters[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ValueError(f"hyperparameter {key} must be a positive integer, got {value!r}")
    if hyperparameters["hidden_dim"] % hyperparameters["num_heads"]:
        raise ValueError("hidden_dim must be divisible by num_heads")
    if hyperparameters["sequence_length"] + 1 > hyperparameters["max_sequence_length"]:
        raise ValueError("sequence_length must be below max_sequence_length")
    if not hyperparameters["learning_rate"] > 0:
        raise ValueError("learning_rate must be positive")
    return hyperparameters


def enable_determinism() -> None:
    """Make TF kernels deterministic (process-wide: the CLI calls it; library callers opt in).

    With the seeds set by `build_causal_lm`, this makes reruns on the same machine and TF build
    give byte-identical weights.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def build_causal_lm(vocab_dir, hyperparameters: dict | None = None):
    """A freshly initialised GPT2CausalLM on the BPE files in `vocab_dir` (seeded: deterministic).

    Not compiled; `train_causal_lm` compiles it for training.
    """
    import keras_hub

    import keras

    hyperparameters = resolve_hyperparameters(hyperparameters)
    # Python, NumPy, TF and Keras seeds: the same initial weights and dropout masks every time.
    keras.utils.set_random_seed(hyperparameters["seed"])
    vocab_path, merges_path = vocabulary_paths(vocab_dir)
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab_path, merges=merges_path)
    end_of_text = tokenizer.end_token_id
    if end_of_text == tokenizer.pad_token_id:
        # KerasHub pads with id 0: padding would read as end-of-text (see llm2tflite.vocab).
        raise ValueError(f"<|endoftext|> has id {end_of_text}, the padding id")
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=hyperparameters["sequence_length"]
    )
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=hyperparameters["num_layers"],
        num_heads=hyperparameters["num_heads"],
        hidden_dim=hyperparameters["hidden_dim"],
        intermediate_dim=hyperparameters["intermediate_dim"],
        dropout=hyperparameters["dropout"],
        max_sequence_length=hyperparameters["max_sequence_length"],
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def pack_lines(preprocessor, lines: list[str], batch_size: int = 512) -> dict:
    """Tokenize and pack `lines` once, as the preprocessor does inside `fit()`.

    Returns NumPy arrays: token_ids and padding_mask (the model input), labels (the next
    token) and sample_weight (1 where a label is a real token, 0 on padding). Runs the
    preprocessor in a tf.data graph, i.e. through the TF tokenizer path that training and
    TFLite use. Tokenizing once (instead of in every epoch) also keeps the BPE's stateful
    cache out of the training pipeline, where op determinism would serialize it.
    """
    import numpy as np
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(lines, dtype=tf.string))
    parts = {"token_ids": [], "padding_mask": [], "labels": [], "sample_weight": []}
    for x, labels, sample_weight in dataset.batch(batch_size).map(preprocessor):
        parts["token_ids"].append(x["token_ids"].numpy())
        parts["padding_mask"].append(x["padding_mask"].numpy())
        parts["labels"].append(labels.numpy())
        parts["sample_weight"].append(sample_weight.numpy())
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def _packed_dataset(packed: dict, batch_size: int, shuffle_seed: int | None = None):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((
        {"token_ids": packed["token_ids"], "padding_mask": packed["padding_mask"]},
        packed["labels"],
        packed["sample_weight"],
    ))
    if shuffle_seed is not None:
        # A fixed seed: the same batches in the same order on every run.
        dataset = dataset.shuffle(len(packed["labels"]), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)


def heldout_loss(causal_lm, lines: list[str], batch_size: int = 64) -> dict:
    """Mean next-token cross-entropy (nats) over every predicted token of `lines`.

    Tokens are weighted equally (not lines, not batches), padding excluded: the first token
    after the start token through the end token of each line, as packed for training.
    """
    import numpy as np
    import tensorflow as tf

    @tf.function
    def summed_loss(x, labels, sample_weight):
        logits = causal_lm(x, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
        weights = tf.cast(sample_weight, tf.float32)
        return tf.reduce_sum(losses * weights), tf.reduce_sum(weights)

    total, count = 0.0, 0.0
    packed = pack_lines(causal_lm.preprocessor, lines)
    for batch in _packed_dataset(packed, batch_size):
        loss_sum, weight_sum = summed_loss(*batch)
        total += float(np.float64(loss_sum))
        count += float(weight_sum)
    return {"loss": total / count, "tokens": int(count)}


def _learning_rate_schedule(peak: float, total_steps: int):
    import keras

    # Short linear warmup (transformers diverge easily with a cold Adam at a high rate), then a
    # cosine decay to a tenth of the peak.
    warmup_steps = max(1, min(100, total_steps // 10))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10,
        warmup_target=peak,
        warmup_steps=warmup_steps,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.1,
    )


def compile_for_training(causal_lm, hyperparameters: dict, total_steps: int) -> None:
    import keras

    causal_lm.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=_learning_rate_schedule(hyperparameters["learning_rate"], total_steps),
            global_clipnorm=1.0,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Weighted: the preprocessor's sample_weight masks out padding.
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )


def train_causal_lm(causal_lm, lines: list[str], hyperparameters: dict | None = None,
                    max_steps: int | None = None, verbose: int = 2):
    """Compile and fit `causal_lm` on `lines`; return the Keras History.

    `max_steps` (for tests) stops after that many batches instead of `epochs` full passes.
    """
    hyperparameters = resolve_hyperparameters(hyperparameters)
    batch_size, epochs = hyperparameters["batch_size"], hyperparameters["epochs"]
    steps_per_epoch = math.ceil(len(lines) / batch_size)
    preprocessor = causal_lm.preprocessor
    packed = pack_lines(preprocessor, lines)
    dataset = _packed_dataset(packed, batch_size, shuffle_seed=hyperparameters["seed"])
    if max_steps is not None:
        dataset, epochs = dataset.repeat().take(max_steps), 1
        total_steps = max_steps
    else:
        total_steps = steps_per_epoch * epochs
    compile_for_training(causal_lm, hyperparameters, total_steps)
    # The data is already packed: detach the preprocessor so fit() does not map it again
    # (KerasHub's documented way to feed preprocessed data), and reattach it for saving.
    causal_lm.preprocessor = None
    try:
        return causal_lm.fit(dataset, epochs=epochs, verbose=verbose)
    finally:
        causal_lm.preprocessor = preprocessor


def generate_sample(causal_lm, prompt: str = PROMPT, max_length: int = SAMPLE_MAX_LENGTH) -> str:
    """Greedy continuation of `prompt` (deterministic, comparable across reloads)."""
    causal_lm.compile(sampler="greedy")
    return causal_lm.generate(prompt, max_length=max_length)


def save_preset(causal_lm, out_dir, prompt: str = PROMPT,
                max_length: int = SAMPLE_MAX_LENGTH) -> str:
    """Save a KerasHub preset to `out_dir` atomically, after checking that it reloads.

    The check runs on the temporary directory: a preset that cannot be loaded, or that
    generates differently from the model in memory, never appears under `out_dir`.
    Returns the reloaded model's greedy generation of `prompt`.
    """
    import keras_hub

    expected = generate_sample(causal_lm, prompt, max_length)
    with atomic.atomic_path(out_dir, is_dir=True) as tmp_dir:
        causal_lm.save_to_preset(str(tmp_dir))
        reloaded = keras_hub.models.CausalLM.from_preset(str(tmp_dir))
        if not isinstance(reloaded, keras_hub.models.GPT2CausalLM):
            raise TrainingFailedError(f"preset reloads as {type(reloaded).__name__}")
        generated = generate_sample(reloaded, prompt, max_length)
        if generated != expected:
            raise TrainingFailedError(
                f"reloaded preset generates {generated!r}, the trained model {expected!r}"
            )
    return generated


def train_and_evaluate(train_lines: list[str], heldout_lines: list[str], vocab_dir,
                       hyperparameters: dict | None = None, max_steps: int | None = None):
    """Build, measure untrained held-out loss, fit, measure again. Returns (causal_lm, metrics)."""
    hyperparameters = resolve_hyperparameters(hyperparameters)
    causal_lm = build_causal_lm(vocab_dir, hyperparameters)
    untrained = heldout_loss(causal_lm, heldout_lines, hyperparameters["batch_size"])
    print(f"held-out loss before training: {untrained['loss']:.4f} "
          f"({untrained['tokens']} tokens)", flush=True)

    started = time.perf_counter()
    history = train_causal_lm(causal_lm, train_lines, hyperparameters, max_steps=max_steps)
    train_seconds = time.perf_counter() - started

    trained = heldout_loss(causal_lm, heldout_lines, hyperparameters["batch_size"])
    print(f"held-out loss after training: {trained['loss']:.4f}", flush=True)
    tokenizer = causal_lm.preprocessor.tokenizer
    metrics = {
        "heldout_loss_untrained": untrained["loss"],
        "heldout_loss_trained": trained["loss"],
        "heldout_loss_ratio": trained["loss"] / untrained["loss"],
        "heldout_perplexity_trained": math.exp(trained["loss"]),
        "heldout_tokens": trained["tokens"],
        "heldout_lines": len(heldout_lines),
        "train_lines": len(train_lines),
        "final_train_loss": float(history.history["loss"][-1]),
        "train_seconds": round(train_seconds, 2),
        "epochs": len(history.history["loss"]),
        "steps": max_steps if max_steps is not None else (
            math.ceil(len(train_lines) / hyperparameters["batch_size"])
            * hyperparameters["epochs"]),
        "num_parameters": int(causal_lm.backbone.count_params()),
        "vocabulary_size": int(tokenizer.vocabulary_size()),
        "end_token_id": int(tokenizer.end_token_id),
        "hyperparameters": hyperparameters,
    }
    return causal_lm, metrics


def check_improvement(metrics: dict, max_loss_ratio: float = MAX_LOSS_RATIO) -> None:
    if not metrics["heldout_loss_trained"] < max_loss_ratio * metrics["heldout_loss_untrained"]:
        raise TrainingFailedError(
            f"training did not clearly lower the held-out loss: "
            f"{metrics['heldout_loss_trained']:.4f} after vs "
            f"{metrics['heldout_loss_untrained']:.4f} before (must be < {max_loss_ratio} x). "
            "Train longer (epochs), raise learning_rate, or check the corpus and vocabulary."
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llm2tflite.train",
        description="Train a small KerasHub GPT-2 and save it as a KerasHub preset.",
    )
    parser.add_argument("--corpus", required=True, help="Training text, one sentence per line.")
    parser.add_argument("--heldout", required=True, help="Held-out text for the loss check.")
    parser.add_argument("--vocab-dir", required=True, help="Directory with vocab.json, merges.txt.")
    parser.add_argument(
        "--hyperparameters-json", default="{}",
        help=f"JSON object overriding the defaults {json.dumps(DEFAULT_HYPERPARAMETERS)}",
    )
    parser.add_argument("--out-preset", required=True, help="Preset directory to create.")
    parser.add_argument("--out-metrics", required=True, help="Metrics JSON file to write.")
    parser.add_argument("--max-loss-ratio", type=float, default=MAX_LOSS_RATIO,
                        help="Fail unless trained held-out loss < this x untrained (default: "
                             f"{MAX_LOSS_RATIO}).")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="Stop after this many batches (quick checks; default: full epochs).")
    args = parser.parse_args(argv)
    try:
        overrides = json.loads(args.hyperparameters_json)
        if not isinstance(overrides, dict):
            raise ValueError("--hyperparameters-json must be a JSON object")
        hyperparameters = resolve_hyperparameters(overrides)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        parser.error(str(error))
    for path in (args.corpus, args.heldout, *vocabulary_paths(args.vocab_dir)):
        if not Path(path).is_file():
            parser.error(f"missing input file {path}")
    print(f"hyperparameters: {json.dumps(hyperparameters, sort_keys=True)}", flush=True)
    enable_determinism()

    causal_lm, metrics = train_and_evaluate(
        read_lines(args.corpus), read_lines(args.heldout), args.vocab_dir, hyperparameters,
        max_steps=args.max_steps,
    )
    try:
        check_improvement(metrics, args.max_loss_ratio)
        generated = save_preset(causal_lm, args.out_preset)
    except TrainingFailedError as error:
        print(json.dumps(metrics, indent=2), file=sys.stderr)
        print(f"llm2tflite.train: error: {error}", file=sys.stderr)
        sys.exit(1)
    metrics["sample_generation"] = {
        "prompt": PROMPT, "max_length": SAMPLE_MAX_LENGTH, "sampler": "greedy",
        "output": generated,
    }
    atomic.write_json(args.out_metrics, metrics)
    print(f"sample: {generated!r}")
    print(f"wrote {args.out_preset} and {args.out_metrics} "
          f"(held-out loss {metrics['heldout_loss_untrained']:.3f} -> "
          f"{metrics['heldout_loss_trained']:.3f}, {metrics['train_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
