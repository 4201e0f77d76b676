"""Smoke-test a converted model in the TFLite interpreter on the configured prompts.

A variant passes when, for every prompt, its output starts with the prompt and adds at least one
token; the fp32 variant must also reproduce the Keras model's greedy output exactly (quantized
variants may differ: how much is measured by the fidelity stage, not failed here). As in the
codelab's app, a prompt or an output with blocklisted language is refused, and a refusal fails
the smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import llm2tflite  # noqa: F401
from llm2tflite import atomic

# The variant whose output must equal the Keras model's.
EXACT_VARIANT = "fp32"


def smoke_test(model_path: str, variant: str, prompts, keras_reference: dict | None,
               blocklist: str | None = None) -> dict:
    from llm2tflite.runtime import TFLiteModel
    from llm2tflite.safety import RefusedError, SafetyFilter

    safety = SafetyFilter.from_file(blocklist)
    model = TFLiteModel(model_path)
    keras_outputs = {
        g["prompt"]: g["output"] for g in (keras_reference or {}).get("generations", [])
    }
    must_match_keras = variant == EXACT_VARIANT
    results, failures = [], []
    for prompt in prompts:
        blocked = safety.blocked_words(prompt)
        if blocked:
            failures.append(f"{RefusedError('prompt', blocked)}: {prompt!r}")
            results.append({"prompt": prompt, "refused": "prompt"})
            continue
        started = time.perf_counter()
        output = model.generate(prompt)
        latency = time.perf_counter() - started
        new_tokens = model.count_new_tokens(prompt, output)
        keras_output = keras_outputs.get(prompt)
        blocked = safety.blocked_words(output)
        refused = bool(blocked)
        if refused:
            failures.append(f"{RefusedError('output', blocked)} (prompt {prompt!r})")
        record = {
            "prompt": prompt,
            "refused": "output" if refused else None,
            # A refused output is not repeated in the report.
            "output": None if refused else output,
            "new_tokens": new_tokens,
            "latency_s": round(latency, 4),
            "keras_output": None if refused else keras_output,
            "equals_keras": None if keras_output is None else output == keras_output,
        }
        if not output.startswith(prompt):
            failures.append(f"output does not start with the prompt {prompt!r}: {output!r}")
        if new_tokens < 1:
            failures.append(f"no token added to the prompt {prompt!r}: {output!r}")
        if must_match_keras:
            if keras_output is None:
                failures.append(f"no Keras reference output for the prompt {prompt!r}")
            elif output != keras_output:
                failures.append(
                    f"{variant} output differs from Keras for {prompt!r}:\n"
                    f"  tflite: {output!r}\n  keras:  {keras_output!r}"
                )
        results.append(record)
    return {
        "model": str(model_path),
        "variant": variant,
        "passed": not failures,
        "failures": failures,
        "load_s": round(model.load_seconds, 4),
        "results": results,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=".tflite file")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--keras-reference", required=True, help="reference JSON of the Keras model")
    parser.add_argument("--prompts-json", required=True, type=json.loads, dest="prompts",
                        help='JSON list of prompts, e.g. \'["Estoy disfrutando de"]\'')
    parser.add_argument("--blocklist", help="safety filter word list (default: the package's)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.keras_reference, encoding="utf-8") as f:
        keras_reference = json.load(f)
    report = smoke_test(args.model, args.variant, args.prompts, keras_reference, args.blocklist)
    for record in report["results"]:
        if record["refused"]:
            print(f"[{args.variant}] {record['prompt']!r} -> refused ({record['refused']})")
        else:
            print(f"[{args.variant}] {record['prompt']!r} -> {record['output']!r} "
                  f"(+{record['new_tokens']} tokens, {record['latency_s']} s)")
    if not report["passed"]:
        # No output file: Snakemake must not take a failed smoke test for a finished one.
        print(f"smoke test FAILED for {args.model}:", file=sys.stderr)
        for failure in report["failures"]:
            print(f"  - {failure}", file=sys.stderr)
        sys.exit(1)
    atomic.write_json(args.out, report)


if __name__ == "__main__":
    main()
