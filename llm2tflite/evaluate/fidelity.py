"""What conversion and quantization cost in quality: each variant against the Keras model.

- Greedy continuations of the fidelity prompts: exact-match rate (the generated ids equal
  Keras's) and the mean number of leading generated tokens that agree with Keras's. Both compare
  the ids the models generated (``llm2tflite.core.generation``), never re-tokenized text.
- Perplexity on a held-out text slice, through the model's ``log_likelihoods`` (the codelab
  route's ``score`` signature: the same weights and quantization as its generation path).

Quality gates (config ``quality_gates:``, one set of thresholds per variant name, for every route)
turn these figures into a verdict; :func:`gate_failures` is the one place that judges, used by
the workflow's gate rule (which fails, one line per missed gate) and by the summary (which shows
pass/FAIL). Gates::

    min_exact_match_rate                fraction of prompts whose generated ids equal Keras's
    min_mean_leading_tokens_agree       mean leading generated tokens equal to Keras's; a prompt
                                        set whose Keras continuations are shorter on average needs
                                        only that mean (a perfect model always passes)
    max_perplexity_relative_difference  |perplexity - Keras perplexity| / Keras perplexity

A figure that is not a number (NaN perplexity of a broken model) misses every gate that reads it.

Three commands: ``python -m llm2tflite.evaluate.fidelity keras ...`` writes the Keras reference
once per
model; ``... variant --model FILE ...`` measures one variant of any route against it (the file's
route is detected, ``llm2tflite.model_files``); ``... gate --fidelity F.json --gates-json ...``
applies the thresholds: exit 1 with a one-line reason when a gate is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import llm2tflite  # noqa: F401
from llm2tflite.core import atomic, cli_options, tf_logging
from llm2tflite.core.generation import Generation

GATE_KEYS = (
    "min_exact_match_rate",
    "min_mean_leading_tokens_agree",
    "max_perplexity_relative_difference",
)


def read_lines(path, count: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return lines[:count]


def perplexity(total_log_likelihood: float, token_count: int) -> float:
    return math.exp(-total_log_likelihood / token_count)


def leading_agreement(ids_a, ids_b) -> int:
    """How many leading ids two sequences share."""
    count = 0
    for a, b in zip(ids_a, ids_b):
        if a != b:
            break
        count += 1
    return count


def compare_generations(variant: Generation, keras: Generation) -> dict:
    """Exact match (all ids) and leading agreement of the generated ids (after the prompt's)."""
    return {
        "exact_match": variant.token_ids == keras.token_ids,
        "leading_tokens_agree": leading_agreement(variant.new_token_ids, keras.new_token_ids),
        "new_tokens": variant.new_tokens,
        "keras_new_tokens": keras.new_tokens,
        "prompt_tokens_equal": variant.prompt_tokens == keras.prompt_tokens,
    }


def summarize(comparisons: list[dict]) -> dict:
    n = len(comparisons)
    return {
        "exact_match_rate": sum(c["exact_match"] for c in comparisons) / n,
        "mean_leading_tokens_agree": sum(c["leading_tokens_agree"] for c in comparisons) / n,
        "mean_keras_new_tokens": sum(c["keras_new_tokens"] for c in comparisons) / n,
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def gate_failures(result: dict, gates: dict | None, named: bool = True) -> list[str]:
    """One line per gate the fidelity ``result`` misses (empty: every gate passed).

    Each line starts with ``route/variant:`` unless ``named`` is false (a table row says it).
    """
    gates = gates or {}
    unknown = sorted(set(gates) - set(GATE_KEYS))
    if unknown:
        raise ValueError(f"unknown quality gate(s) {unknown}; known: {', '.join(GATE_KEYS)}")
    name = "/".join(str(result[k]) for k in ("route", "variant") if result.get(k))
    name = f"{name}: " if named and name else ""
    failures = []
    threshold = gates.get("min_exact_match_rate")
    if threshold is not None:
        rate = result.get("exact_match_rate")
        if not (_finite(rate) and rate >= threshold):
            failures.append(
                f"{name}greedy output equals Keras's on {_pct(rate)} of "
                f"{len(result.get('prompts') or [])} prompts (gate: at least "
                f"{_pct(threshold)})"
            )
    threshold = gates.get("min_mean_leading_tokens_agree")
    if threshold is not None:
        agree = result.get("mean_leading_tokens_agree")
        keras_mean = result.get("mean_keras_new_tokens")
        needed = min(threshold, keras_mean) if _finite(keras_mean) else threshold
        if not (_finite(agree) and agree >= needed):
            failures.append(
                f"{name}{_num(agree, 1)} leading generated tokens agree with "
                f"Keras on average (gate: at least {_num(needed, 1)})"
            )
    threshold = gates.get("max_perplexity_relative_difference")
    if threshold is not None:
        difference = result.get("perplexity_relative_difference")
        if not (_finite(difference) and difference <= threshold):
            failures.append(
                f"{name}perplexity {_num(result.get('perplexity'), 4)} differs from Keras's "
                f"{_num(result.get('keras_perplexity'), 4)} by {_pct(difference, 2)} (gate: at "
                f"most {_pct(threshold, 2)})"
            )
    return failures


def _pct(value, digits: int = 0) -> str:
    return f"{100 * value:.{digits}f}%" if _finite(value) else str(value)


def _num(value, digits: int) -> str:
    return f"{value:.{digits}f}" if _finite(value) else str(value)


def keras_perplexity(causal_lm, lines) -> tuple[float, int, list[list[float]]]:
    """Perplexity of the Keras model on ``lines`` (each scored after the start token), tokens,
    and each line's log-likelihoods (so a variant that can score only a prefix of a line, the
    LiteRT route within its cache, is compared with Keras on the same tokens)."""
    import numpy as np
    import tensorflow as tf

    from llm2tflite.codelab.trace import next_token_log_likelihoods

    tokenizer = causal_lm.preprocessor.tokenizer
    tokenize = tf.function(tokenizer)
    start = int(tokenizer.start_token_id)
    total, count, per_line = 0.0, 0, []
    for line in lines:
        ids = [start] + tokenize(tf.constant([line])).to_list()[0]
        token_ids = tf.constant([ids], tf.int32)
        logits = causal_lm(
            {"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids, tf.bool)}
        )
        log_likelihoods = next_token_log_likelihoods(logits, token_ids).numpy()[0]
        total += float(np.sum(log_likelihoods.astype(np.float64)))
        count += len(ids) - 1
        per_line.append([float(x) for x in log_likelihoods])
    return perplexity(total, count), count, per_line


def keras_reference(preset: str, max_length: int, sampler: str, prompts, lines) -> dict:
    from llm2tflite.inputs.reference import keras_generate
    from llm2tflite.inputs.sources import load_causal_lm

    causal_lm = load_causal_lm(preset, sampler=sampler)
    generations = []
    for prompt in prompts:
        generation = keras_generate(causal_lm, prompt, max_length)
        generations.append(
            {
                "prompt": prompt,
                "output": generation.text,
                "token_ids": generation.token_ids,
                "prompt_tokens": generation.prompt_tokens,
            }
        )
    value, count, per_line = keras_perplexity(causal_lm, lines)
    return {
        "preset": preset,
        "max_length": max_length,
        "generations": generations,
        "perplexity_lines": len(lines),
        "perplexity_tokens": count,
        "perplexity": value,
        "line_log_likelihoods": per_line,
    }


def variant_fidelity(
    model_path: str, model_name: str, variant: str, reference: dict, lines
) -> dict:
    from llm2tflite.model_files import open_model

    model = open_model(model_path)
    prompts = []
    for record in reference["generations"]:
        keras = Generation(record["output"], record["token_ids"], record["prompt_tokens"])
        generation = model.generate(record["prompt"])
        prompts.append(
            {
                "prompt": record["prompt"],
                "output": generation.text,
                "keras_output": keras.text,
                **compare_generations(generation, keras),
            }
        )
    # A model scores at most `score_limit` ids of a line (the LiteRT route: its cache); Keras's
    # perplexity is then taken over the same tokens, from its per-line log-likelihoods.
    limit = getattr(model, "score_limit", None)
    keras_lines = reference["line_log_likelihoods"]
    total, keras_total, count, cut_lines = 0.0, 0.0, 0, 0
    for line, keras_line in zip(lines, keras_lines, strict=True):
        ids = model.token_ids(line, with_start=True)
        if limit is not None and len(ids) > limit:
            ids, cut_lines = ids[:limit], cut_lines + 1
        total += math.fsum(model.log_likelihoods(ids))
        keras_total += math.fsum(keras_line[: len(ids) - 1])
        count += len(ids) - 1
    result = {
        "model": model_name,
        "route": model.route,
        "variant": variant,
        "model_path": str(model_path),
        **summarize(prompts),
        "perplexity": perplexity(total, count),
        "keras_perplexity": perplexity(keras_total, count),
        "perplexity_tokens": count,
        "keras_perplexity_tokens": reference.get("perplexity_tokens"),
        "perplexity_lines_cut_to_score_limit": cut_lines,
        "prompts": prompts,
    }
    result["perplexity_relative_difference"] = (
        abs(result["perplexity"] - result["keras_perplexity"]) / result["keras_perplexity"]
    )
    return result


def _print_result(result: dict) -> None:
    print(
        f"[{result['route']}/{result['variant']}] exact match "
        f"{result['exact_match_rate']:.2f}, leading tokens "
        f"{result['mean_leading_tokens_agree']:.1f} of {result['mean_keras_new_tokens']:.1f}, "
        f"perplexity {result['perplexity']:.4f} (Keras {result['keras_perplexity']:.4f}, "
        f"{100 * result['perplexity_relative_difference']:.3f}% apart)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keras_cli = commands.add_parser("keras", help="the Keras model's reference")
    keras_cli.add_argument("--preset", required=True)
    keras_cli.add_argument("--max-length", type=int, required=True)
    keras_cli.add_argument("--sampler", default="greedy")
    cli_options.add_prompts_option(keras_cli)
    keras_cli.add_argument("--text", required=True, help="held-out text, one line per sample")
    keras_cli.add_argument("--lines", type=int, required=True, help="lines scored")
    keras_cli.add_argument("--out", required=True)
    variant_cli = commands.add_parser("variant", help="one variant (any route) against Keras")
    variant_cli.add_argument("--model", required=True, help=".tflite file of either route")
    variant_cli.add_argument("--model-name", required=True)
    variant_cli.add_argument("--variant", required=True)
    variant_cli.add_argument("--keras-reference", required=True)
    variant_cli.add_argument("--text", required=True)
    variant_cli.add_argument("--out", required=True)
    gate_cli = commands.add_parser("gate", help="apply the variant's quality gates")
    gate_cli.add_argument("--fidelity", required=True, help="the variant's fidelity JSON")
    cli_options.add_json_option(
        gate_cli,
        "--gates-json",
        "gates",
        "thresholds, e.g. '{\"max_perplexity_relative_difference\": 0.05}'",
    )
    gate_cli.add_argument("--out", required=True, help="verdict JSON, written only on a pass")
    args = parser.parse_args(argv)
    if args.command == "keras":
        from llm2tflite.inputs.sources import exit_on_unavailable_preset

        reference = exit_on_unavailable_preset(keras_reference)(
            args.preset,
            args.max_length,
            args.sampler,
            args.prompts,
            read_lines(args.text, args.lines),
        )
        atomic.write_json(args.out, reference)
        print(
            f"Keras perplexity {reference['perplexity']:.4f} on "
            f"{reference['perplexity_tokens']} tokens"
        )
        return
    if args.command == "variant":
        with open(args.keras_reference, encoding="utf-8") as f:
            reference = json.load(f)
        result = variant_fidelity(
            args.model,
            args.model_name,
            args.variant,
            reference,
            read_lines(args.text, reference["perplexity_lines"]),
        )
        _print_result(result)
        atomic.write_json(args.out, result)
        return
    with open(args.fidelity, encoding="utf-8") as f:
        result = json.load(f)
    failures = gate_failures(result, args.gates)
    if failures:
        # One line: the reason, as Snakemake shows it with the failed job.
        print("quality gate FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    atomic.write_json(
        args.out,
        {
            "model": result.get("model"),
            "route": result.get("route"),
            "variant": result.get("variant"),
            "gates": args.gates,
            "passed": True,
        },
    )
    print(f"quality gates passed: {args.fidelity} ({json.dumps(args.gates, sort_keys=True)})")


if __name__ == "__main__":
    # The log keeps the stage's own lines, not Keras's XLA notes ("XLA service ... initialized").
    with tf_logging.native_notes_hidden():
        main()
