"""Train a small KerasHub causal LM on the generated corpus and save it as a KerasHub preset.

This is the offline default model source (codelab step 1, "train a language model using
Keras"): the family's tokenizer on our vocabulary files, its causal-LM preprocessor packing each
line between start/end tokens, a small backbone (the family module in ``llm2tflite/families/``
builds them from the config's ``model:`` section), Adam and `fit()`.

Everything is seeded (`keras.utils.set_random_seed`, op determinism, a seeded shuffle), so two
runs with the same inputs give the same weights. The run fails (exit 1, no preset written) when
training did not clearly lower the held-out loss: a model that learned nothing would otherwise
flow silently into conversion and smoke tests, which only check that *something* is generated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite.core import atomic, tf_logging
from llm2tflite.families import registry
from llm2tflite.inputs.vocab import read_lines

PROMPT = llm2tflite.CODELAB_PROMPT
SAMPLE_MAX_LENGTH = 30
# Training must bring the held-out loss below this fraction of the untrained model's.
MAX_LOSS_RATIO = 0.8
# Training batches group lines whose lengths fall in the same LENGTH_BUCKET_WIDTH-token range.
LENGTH_BUCKET_WIDTH = 4

# Optimisation ("fit") settings; the architecture ("model") settings and their defaults are the
# family module's (``llm2tflite/families/``). The workflow passes the config's `model:` and
# `fit:` sections; missing keys take the defaults.
FIT_DEFAULTS = {
    "seed": 42,
    "sequence_length": 32,  # most tokens per line (start + line + end); lines have <= 20
    "batch_size": 64,
    "epochs": 2,
    "learning_rate": 0.005,  # peak of the warmup + cosine schedule
}
_FIT_INTEGER_KEYS = {"seed", "sequence_length", "batch_size", "epochs"}


class TrainingFailedError(RuntimeError):
    """Training ran but the model is not good enough to ship."""


def resolve_fit(overrides: dict | None = None) -> dict:
    """FIT_DEFAULTS updated with ``overrides``; unknown keys are an error (a typo must not be
    ignored)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(FIT_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown fit settings {unknown}; known: {sorted(FIT_DEFAULTS)}")
    fit = {**FIT_DEFAULTS, **overrides}
    for key in _FIT_INTEGER_KEYS:
        value = fit[key]
        smallest = 0 if key == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            raise ValueError(f"fit setting {key} must be an integer >= {smallest}, got {value!r}")
    if not fit["learning_rate"] > 0:
        raise ValueError("learning_rate must be positive")
    return fit


def resolve_model(architecture: str, overrides: dict | None = None) -> dict:
    """The family's ``train: model:`` defaults updated with ``overrides``, checked."""
    family = registry.by_name(architecture)
    model = family.train_model_config(overrides)
    errors = family.semantic_errors(model, "model")
    if errors:
        raise ValueError("; ".join(errors))
    return model


def enable_determinism() -> None:
    """Make TF kernels deterministic (process-wide: the CLI calls it; library callers opt in).

    With the seeds set by `build_causal_lm`, this makes reruns on the same machine and TF build
    give byte-identical weights.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def build_causal_lm(
    vocab_dir,
    architecture: str = registry.DEFAULT_TRAIN_ARCHITECTURE,
    model: dict | None = None,
    fit: dict | None = None,
):
    """A freshly initialised causal LM of the family on the tokenizer files in `vocab_dir`.

    Seeded (deterministic). Not compiled; `train_causal_lm` compiles it for training.
    """
    import keras

    family = registry.by_name(architecture)
    model, fit = resolve_model(architecture, model), resolve_fit(fit)
    longest = family.max_sequence_length(model)
    if longest is not None and fit["sequence_length"] + 1 > longest:
        raise ValueError("fit.sequence_length must be below model.max_sequence_length")
    # Python, NumPy, TF and Keras seeds: the same initial weights and dropout masks every time.
    # Seeded before the tokenizer exists: TF's set_seed clears the eager kernel cache, which
    # deletes the kernel-owned resource of a TF Text SentencePiece tokenizer made before it.
    keras.utils.set_random_seed(fit["seed"])
    tokenizer = family.load_tokenizer(vocab_dir)
    backbone_config = {**model, "vocabulary_size": int(tokenizer.vocabulary_size())}
    return family.build_causal_lm(backbone_config, tokenizer, fit["sequence_length"])


@dataclass
class PackedLines:
    """Lines tokenized and packed as the model's preprocessor packs them, as NumPy arrays."""

    token_ids: np.ndarray  # (lines, sequence_length): start token, line, end token, padding
    padding_mask: np.ndarray
    labels: np.ndarray  # token_ids shifted by one: the next token
    sample_weight: np.ndarray  # 1 where the label is a real token (not padding)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        """Non-padding input positions per line."""
        return self.padding_mask.sum(axis=1)

    @property
    def num_tokens(self) -> int:
        """Predicted (weighted) tokens: each line's tokens plus its end token."""
        return int(self.sample_weight.sum())

    def split(self, index: int) -> tuple[PackedLines, PackedLines]:
        fields = (self.token_ids, self.padding_mask, self.labels, self.sample_weight)
        return (
            PackedLines(*(a[:index] for a in fields)),
            PackedLines(*(a[index:] for a in fields)),
        )


def line_preprocessor(causal_lm):
    """The model's preprocessor as a function of plain text lines (the family knows how)."""
    return registry.for_causal_lm(causal_lm).line_preprocessor(causal_lm.preprocessor)


def pack_lines(preprocessor, lines: list[str], batch_size: int = 1024) -> PackedLines:
    """Tokenize and pack `lines` once with the model's preprocessor (``line_preprocessor``).

    Runs the preprocessor in a tf.data graph, i.e. through KerasHub's TF tokenizer, the one
    that `fit()` and the exported TFLite model use. Packing once, instead of in every epoch,
    saves the tokenization time and keeps the tokenizer's stateful BPE cache out of the
    training pipeline (op determinism would serialize it).
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(lines, dtype=tf.string))
    parts = [[], [], [], []]
    for x, labels, sample_weight in dataset.batch(batch_size).map(preprocessor):
        for part, array in zip(parts, (x["token_ids"], x["padding_mask"], labels, sample_weight)):
            part.append(array.numpy())
    return PackedLines(*(np.concatenate(part) for part in parts))


def _length_bucket_boundaries(sequence_length: int) -> list[int]:
    return list(range(LENGTH_BUCKET_WIDTH + 2, sequence_length + 1, LENGTH_BUCKET_WIDTH))


def batches_per_epoch(packed: PackedLines, batch_size: int) -> int:
    """Batches `_batched_dataset` makes from `packed`: each length bucket ends in a partial one."""
    boundaries = _length_bucket_boundaries(packed.token_ids.shape[1])
    # tf.data puts length l in bucket i when boundaries[i - 1] <= l < boundaries[i].
    buckets = np.searchsorted(boundaries, packed.lengths, side="right")
    counts = np.bincount(buckets, minlength=len(boundaries) + 1)
    return int(sum(math.ceil(count / batch_size) for count in counts))


def _batched_dataset(packed: PackedLines, batch_size: int, shuffle_seed: int | None = None):
    """Batches of similar-length lines, cut to their longest line.

    The corpus's lines are much shorter than `sequence_length`; grouping lines by length and
    dropping the all-padding columns skips most of the padding compute. It changes nothing
    else: attention is causal and padding has zero weight, so the positions kept see exactly
    what they would see in the full-width batch.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(
        (
            {"token_ids": packed.token_ids, "padding_mask": packed.padding_mask},
            packed.labels,
            packed.sample_weight,
        )
    )
    if shuffle_seed is not None:
        # A fixed seed: the same batches in the same order on every run.
        dataset = dataset.shuffle(len(packed), seed=shuffle_seed, reshuffle_each_iteration=True)
    boundaries = _length_bucket_boundaries(packed.token_ids.shape[1])
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda x, labels, weight: tf.reduce_sum(
            tf.cast(x["padding_mask"], tf.int32)
        ),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
    )

    def cut_padding_columns(x, labels, sample_weight):
        length = tf.reduce_max(tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32), axis=1))
        return (
            {name: value[:, :length] for name, value in x.items()},
            labels[:, :length],
            sample_weight[:, :length],
        )

    return dataset.map(cut_padding_columns).prefetch(2)


@contextlib.contextmanager
def _preprocessor_detached(causal_lm):
    """Feed already-packed data: KerasHub skips preprocessing when `preprocessor` is None."""
    preprocessor = causal_lm.preprocessor
    causal_lm.preprocessor = None
    try:
        yield preprocessor
    finally:
        causal_lm.preprocessor = preprocessor


def heldout_loss(causal_lm, heldout, batch_size: int = 64) -> dict:
    """Mean next-token cross-entropy (nats) of `causal_lm` over every predicted token.

    `heldout` is a list of lines or their PackedLines. Tokens are weighted equally (not
    lines, not batches), padding excluded: every token of each line after the start token,
    and its end token, as packed for training. Needs no compile().
    """
    packed = (
        heldout
        if isinstance(heldout, PackedLines)
        else pack_lines(line_preprocessor(causal_lm), heldout)
    )
    total = 0.0
    with _preprocessor_detached(causal_lm):
        for x, labels, sample_weight in _batched_dataset(packed, batch_size):
            logits = causal_lm.predict_on_batch(x).astype(np.float64)
            # Cross-entropy from a numerically stable log-softmax, accumulated in float64.
            logits -= logits.max(axis=-1, keepdims=True)
            log_normalizer = np.log(np.exp(logits).sum(axis=-1))
            labels = labels.numpy()
            label_logits = np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
            total += float(((log_normalizer - label_logits) * sample_weight.numpy()).sum())
    return {"loss": total / packed.num_tokens, "tokens": packed.num_tokens}


def _learning_rate_schedule(peak: float, total_steps: int):
    import keras

    # Short linear warmup (a cold Adam at a high rate easily derails a transformer), then a
    # cosine decay to a tenth of the peak.
    warmup_steps = max(1, min(100, total_steps // 10))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10,
        warmup_target=peak,
        warmup_steps=warmup_steps,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.1,
    )


def compile_for_training(causal_lm, fit: dict, total_steps: int) -> None:
    import keras

    causal_lm.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=_learning_rate_schedule(fit["learning_rate"], total_steps),
            global_clipnorm=1.0,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Weighted by the preprocessor's sample_weight, i.e. real tokens only: "token_loss" is
        # the same quantity as the held-out loss (Keras's "loss" also averages in padding).
        weighted_metrics=[
            keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="token_loss"),
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        ],
        # Batches change length (see _batched_dataset): XLA would recompile for each length.
        jit_compile=False,
    )


def train_causal_lm(
    causal_lm, train, fit: dict | None = None, max_steps: int | None = None, verbose: int = 2
):
    """Compile and fit `causal_lm` on `train` (lines or PackedLines); return the Keras History.

    `max_steps` (for quick runs) stops after that many batches instead of `epochs` passes.
    """
    fit = resolve_fit(fit)
    batch_size, epochs = fit["batch_size"], fit["epochs"]
    packed = (
        train if isinstance(train, PackedLines) else pack_lines(line_preprocessor(causal_lm), train)
    )
    # Repeated, with the exact batch count per epoch, so Keras knows where epochs end.
    dataset = _batched_dataset(packed, batch_size, shuffle_seed=fit["seed"]).repeat()
    if max_steps is not None:
        epochs, steps_per_epoch = 1, max_steps
    else:
        steps_per_epoch = batches_per_epoch(packed, batch_size)
    compile_for_training(causal_lm, fit, steps_per_epoch * epochs)
    with _preprocessor_detached(causal_lm):
        return causal_lm.fit(
            dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose
        )


def generate_sample(causal_lm, prompt: str = PROMPT, max_length: int = SAMPLE_MAX_LENGTH) -> str:
    """Greedy continuation of `prompt` (deterministic, comparable across reloads)."""
    causal_lm.compile(sampler="greedy")
    return causal_lm.generate(prompt, max_length=max_length)


def save_preset(
    causal_lm, out_dir, prompt: str = PROMPT, max_length: int = SAMPLE_MAX_LENGTH
) -> str:
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
        if type(reloaded) is not type(causal_lm):
            raise TrainingFailedError(
                f"preset reloads as {type(reloaded).__name__}, not {type(causal_lm).__name__}"
            )
        generated = generate_sample(reloaded, prompt, max_length)
        if generated != expected:
            raise TrainingFailedError(
                f"reloaded preset generates {generated!r}, the trained model {expected!r}"
            )
    return generated


def train_and_evaluate(
    train_lines: list[str],
    heldout_lines: list[str],
    vocab_dir,
    architecture: str = registry.DEFAULT_TRAIN_ARCHITECTURE,
    model: dict | None = None,
    fit: dict | None = None,
    max_steps: int | None = None,
):
    """Build, measure the untrained held-out loss, fit, measure again.

    Returns (causal_lm, metrics). The untrained loss is the same seeded model before fit().
    """
    model, fit = resolve_model(architecture, model), resolve_fit(fit)
    causal_lm = build_causal_lm(vocab_dir, architecture, model, fit)
    # One pass of the tokenizer graph for both files.
    train, heldout = pack_lines(line_preprocessor(causal_lm), train_lines + heldout_lines).split(
        len(train_lines)
    )
    untrained = heldout_loss(causal_lm, heldout)
    print(
        f"held-out loss before training: {untrained['loss']:.4f} ({untrained['tokens']} tokens)",
        flush=True,
    )

    started = time.perf_counter()
    history = train_causal_lm(causal_lm, train, fit, max_steps=max_steps)
    train_seconds = time.perf_counter() - started

    trained = heldout_loss(causal_lm, heldout)
    print(
        f"held-out loss after training: {trained['loss']:.4f} ({train_seconds:.1f} s of training)",
        flush=True,
    )
    tokenizer = causal_lm.preprocessor.tokenizer
    sequence_length = fit["sequence_length"]
    metrics = {
        "heldout_loss_untrained": untrained["loss"],
        "heldout_loss_trained": trained["loss"],
        "heldout_loss_ratio": trained["loss"] / untrained["loss"],
        "heldout_perplexity_trained": math.exp(trained["loss"]),
        "heldout_tokens": trained["tokens"],
        "heldout_lines": len(heldout_lines),
        "train_lines": len(train_lines),
        "train_tokens": train.num_tokens,
        # Lines that fill the whole window may have lost their end: should be none or few.
        "lines_at_sequence_length": int(
            (train.lengths == sequence_length).sum() + (heldout.lengths == sequence_length).sum()
        ),
        "final_train_token_loss": float(history.history["token_loss"][-1]),
        "train_seconds": round(train_seconds, 2),
        "epochs": len(history.history["loss"]),
        "steps": max_steps
        if max_steps is not None
        else (batches_per_epoch(train, fit["batch_size"]) * fit["epochs"]),
        "num_parameters": int(causal_lm.backbone.count_params()),
        "vocabulary_size": int(tokenizer.vocabulary_size()),
        "end_token_id": int(tokenizer.end_token_id),
        "architecture": architecture,
        "model": model,
        "fit": fit,
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
        prog="python -m llm2tflite.inputs.train",
        description="Train a small KerasHub causal LM and save it as a KerasHub preset.",
    )
    parser.add_argument(
        "--architecture",
        default=registry.DEFAULT_TRAIN_ARCHITECTURE,
        choices=sorted(registry.BY_NAME),
        help="the model family",
    )
    parser.add_argument("--corpus", required=True, help="Training text, one sentence per line.")
    parser.add_argument("--heldout", required=True, help="Held-out text for the loss check.")
    parser.add_argument(
        "--vocab-dir",
        required=True,
        help="The family's tokenizer files (python -m llm2tflite.inputs.vocab).",
    )
    parser.add_argument(
        "--model-json",
        default="{}",
        help="JSON object: the family's backbone settings (config `model:`)",
    )
    parser.add_argument(
        "--fit-json",
        default="{}",
        help=f"JSON object overriding the fit defaults {json.dumps(FIT_DEFAULTS)}",
    )
    parser.add_argument("--out-preset", required=True, help="Preset directory to create.")
    parser.add_argument("--out-metrics", required=True, help="Metrics JSON file to write.")
    parser.add_argument(
        "--max-loss-ratio",
        type=float,
        default=MAX_LOSS_RATIO,
        help=f"Fail unless trained held-out loss < this x untrained (default: {MAX_LOSS_RATIO}).",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="Stop after this many batches (quick checks; default: full epochs).",
    )
    args = parser.parse_args(argv)
    try:
        settings = {}
        for name in ("model", "fit"):
            settings[name] = json.loads(getattr(args, f"{name}_json"))
            if not isinstance(settings[name], dict):
                raise ValueError(f"--{name}-json must be a JSON object")
        model = resolve_model(args.architecture, settings["model"])
        fit = resolve_fit(settings["fit"])
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        parser.error(str(error))
    family = registry.by_name(args.architecture)
    for path in (
        args.corpus,
        args.heldout,
        *(Path(args.vocab_dir) / name for name in family.tokenizer_files),
    ):
        if not Path(path).is_file():
            parser.error(f"missing input file {path}")
    print(
        f"{args.architecture}: model {json.dumps(model, sort_keys=True)}, "
        f"fit {json.dumps(fit, sort_keys=True)}",
        flush=True,
    )
    enable_determinism()

    # XLA's and oneDNN's notes during training reach no log setting (see tf_logging).
    with tf_logging.native_notes_hidden():
        causal_lm, metrics = train_and_evaluate(
            read_lines(args.corpus),
            read_lines(args.heldout),
            args.vocab_dir,
            args.architecture,
            model,
            fit,
            max_steps=args.max_steps,
        )
        try:
            check_improvement(metrics, args.max_loss_ratio)
            generated = save_preset(causal_lm, args.out_preset)
        except TrainingFailedError as error:
            print(json.dumps(metrics, indent=2), file=sys.stderr)
            print(f"llm2tflite.inputs.train: error: {error}", file=sys.stderr)
            sys.exit(1)
    metrics["sample_generation"] = {
        "prompt": PROMPT,
        "max_length": SAMPLE_MAX_LENGTH,
        "sampler": "greedy",
        "output": generated,
    }
    atomic.write_json(args.out_metrics, metrics)
    print(f"sample: {generated!r}")
    print(
        f"wrote {args.out_preset} and {args.out_metrics} "
        f"(held-out loss {metrics['heldout_loss_untrained']:.3f} -> "
        f"{metrics['heldout_loss_trained']:.3f}, {metrics['train_seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
