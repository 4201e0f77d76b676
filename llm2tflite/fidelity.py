"""What quantization costs in quality: each variant against the Keras model, on the same inputs.

- Greedy continuations of the fidelity prompts: exact-match rate (whole output equal to Keras's)
  and the mean number of leading generated tokens that agree with Keras's.
- Perplexity on a held-out text slice, through the model's ``score`` signature (same weights and
  quantization as its generation path). fp32 must equal Keras's perplexity within 1e-3 relative.

Two steps, two CLIs: ``python -m llm2tflite.fidelity keras ...`` writes the Keras reference once
per model; ``python -m llm2tflite.fidelity tflite ...`` compares one variant with it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import llm2tflite  # noqa: F401
from llm2tflite import atomic

# fp32's perplexity must equal Keras's within this relative tolerance.
FP32_PERPLEXITY_RTOL = 1e-3


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


def compare_generations(prompt_ids, variant_ids, keras_ids) -> dict:
    """Exact match and leading agreement of the generated part (after the prompt's ids)."""
    variant_new, keras_new = variant_ids[len(prompt_ids):], keras_ids[len(prompt_ids):]
    return {
        "exact_match": variant_ids == keras_ids,
        "leading_tokens_agree": leading_agreement(variant_new, keras_new),
        "keras_new_tokens": len(keras_new),
    }


def summarize(comparisons: list[dict]) -> dict:
    n = len(comparisons)
    return {
        "exact_match_rate": sum(c["exact_match"] for c in comparisons) / n,
        "mean_leading_tokens_agree": sum(c["leading_tokens_agree"] for c in comparisons) / n,
    }


def keras_reference(preset: str, max_length: int, sampler: str, prompts, lines) -> dict:
    import numpy as np
    import tensorflow as tf

    from llm2tflite.sources import load_causal_lm
    from llm2tflite.trace import next_token_log_likelihoods

    causal_lm = load_causal_lm(preset, sampler=sampler)
    tokenizer = causal_lm.preprocessor.tokenizer
    tokenize = tf.function(tokenizer)
    start = int(tokenizer.start_token_id)
    generations = []
    for prompt in prompts:
        output = causal_lm.generate(prompt, max_length=max_length)
        generations.append({
            "prompt": prompt,
            "output": output,
            "prompt_ids": [int(i) for i in tokenize(tf.constant([prompt])).to_list()[0]],
            "output_ids": [int(i) for i in tokenize(tf.constant([output])).to_list()[0]],
        })
    total, count = 0.0, 0
    for line in lines:
        ids = [start] + tokenize(tf.constant([line])).to_list()[0]
        token_ids = tf.constant([ids], tf.int32)
        logits = causal_lm({"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids, tf.bool)})
        log_likelihoods = next_token_log_likelihoods(logits, token_ids).numpy()[0]
        total += float(np.sum(log_likelihoods.astype(np.float64)))
        count += len(ids) - 1
    return {
        "preset": preset,
        "max_length": max_length,
        "generations": generations,
        "perplexity_lines": len(lines),
        "perplexity_tokens": count,
        "perplexity": perplexity(total, count),
    }


def variant_fidelity(model_path: str, model_name: str, variant: str, reference: dict,
                     lines) -> dict:
    from llm2tflite.runtime import TFLiteModel

    model = TFLiteModel(model_path)
    prompts = []
    for generation in reference["generations"]:
        output = model.generate(generation["prompt"])
        comparison = compare_generations(
            generation["prompt_ids"], model.token_ids(output), generation["output_ids"])
        prompts.append({"prompt": generation["prompt"], "output": output,
                        "keras_output": generation["output"], **comparison})
    total, count = 0.0, 0
    for line in lines:
        ids = model.token_ids(line, with_start=True)
        total += math.fsum(model.log_likelihoods(ids))
        count += len(ids) - 1
    result = {
        "model": model_name,
        "variant": variant,
        **summarize(prompts),
        "perplexity": perplexity(total, count),
        "keras_perplexity": reference["perplexity"],
        "perplexity_tokens": count,
        "prompts": prompts,
    }
    result["perplexity_relative_difference"] = abs(
        result["perplexity"] - result["keras_perplexity"]) / result["keras_perplexity"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keras_cli = commands.add_parser("keras", help="the Keras model's reference")
    keras_cli.add_argument("--preset", required=True)
    keras_cli.add_argument("--max-length", type=int, required=True)
    keras_cli.add_argument("--sampler", default="greedy")
    keras_cli.add_argument("--prompts-json", required=True, type=json.loads, dest="prompts")
    keras_cli.add_argument("--text", required=True, help="held-out text, one line per sample")
    keras_cli.add_argument("--lines", type=int, required=True, help="lines scored")
    keras_cli.add_argument("--out", required=True)
    tflite_cli = commands.add_parser("tflite", help="one variant against the reference")
    tflite_cli.add_argument("--model", required=True)
    tflite_cli.add_argument("--model-name", required=True)
    tflite_cli.add_argument("--variant", required=True)
    tflite_cli.add_argument("--keras-reference", required=True)
    tflite_cli.add_argument("--text", required=True)
    tflite_cli.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "keras":
        from llm2tflite.sources import exit_on_unavailable_preset

        reference = exit_on_unavailable_preset(keras_reference)(
            args.preset, args.max_length, args.sampler, args.prompts,
            read_lines(args.text, args.lines))
        atomic.write_json(args.out, reference)
        print(f"Keras perplexity {reference['perplexity']:.4f} on "
              f"{reference['perplexity_tokens']} tokens")
        return
    with open(args.keras_reference, encoding="utf-8") as f:
        reference = json.load(f)
    result = variant_fidelity(args.model, args.model_name, args.variant, reference,
                              read_lines(args.text, reference["perplexity_lines"]))
    print(f"[{args.variant}] exact match {result['exact_match_rate']:.2f}, leading tokens "
          f"{result['mean_leading_tokens_agree']:.1f}, perplexity {result['perplexity']:.4f} "
          f"(Keras {result['keras_perplexity']:.4f})")
    if args.variant == "fp32" and result["perplexity_relative_difference"] > FP32_PERPLEXITY_RTOL:
        print(f"fidelity FAILED: fp32 perplexity differs from Keras by "
              f"{result['perplexity_relative_difference']:.2e} (> {FP32_PERPLEXITY_RTOL})",
              file=sys.stderr)
        sys.exit(1)
    atomic.write_json(args.out, result)


if __name__ == "__main__":
    main()
