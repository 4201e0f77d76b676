"""The Keras model's own greedy generation for the smoke prompts: the fp32 model must match it."""

from __future__ import annotations

import argparse
import json
import time

import llm2tflite  # noqa: F401
from llm2tflite import atomic
from llm2tflite.sources import exit_on_unavailable_preset, load_causal_lm


def keras_generations(causal_lm, prompts, max_length: int) -> list[dict]:
    results = []
    for prompt in prompts:
        started = time.perf_counter()
        output = causal_lm.generate(prompt, max_length=max_length)
        results.append({
            "prompt": prompt,
            "output": output,
            "latency_s": round(time.perf_counter() - started, 4),
        })
    return results


@exit_on_unavailable_preset
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--sampler", default="greedy")
    parser.add_argument("--prompts-json", required=True, type=json.loads, dest="prompts",
                        help='JSON list of prompts, e.g. \'["Estoy disfrutando de"]\'')
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    causal_lm = load_causal_lm(args.preset, sampler=args.sampler)
    atomic.write_json(args.out, {
        "preset": args.preset,
        "max_length": args.max_length,
        "sampler": args.sampler,
        "generations": keras_generations(causal_lm, args.prompts, args.max_length),
    })


if __name__ == "__main__":
    main()
