"""Smoke-test a converted model (either route) on the configured prompts.

A variant passes when, for every prompt, its output starts with the prompt and the model
generated at least one token (counted from the ids it generated, ``llm2tflite.core.generation``);
with ``--require-keras-match`` (the workflow passes it for variants whose quality gate demands
an exact match: fp32) its generated ids and text must also equal the Keras model's greedy output.
How far quantized variants drift is measured and gated by the fidelity stage. As in the codelab's
app, a prompt or an output with blocklisted language is refused, and a refusal fails the smoke
test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import llm2tflite  # noqa: F401
from llm2tflite.core import atomic, cli_options


def smoke_test(
    model_path: str,
    variant: str,
    prompts,
    keras_reference: dict | None,
    blocklist: str | None = None,
    require_keras_match: bool = False,
) -> dict:
    from llm2tflite.core.safety import RefusedError, SafetyFilter
    from llm2tflite.model_files import open_model

    safety = SafetyFilter.from_file(blocklist)
    model = open_model(model_path)
    keras_generations = {g["prompt"]: g for g in (keras_reference or {}).get("generations", [])}
    results, failures = [], []
    for prompt in prompts:
        blocked = safety.blocked_words(prompt)
        if blocked:
            failures.append(f"{RefusedError('prompt', blocked)}: {prompt!r}")
            results.append({"prompt": prompt, "refused": "prompt"})
            continue
        started = time.perf_counter()
        generation = model.generate(prompt)
        latency = time.perf_counter() - started
        output, new_tokens = generation.text, generation.new_tokens
        keras = keras_generations.get(prompt)
        keras_output = None if keras is None else keras["output"]
        equals_keras = None
        if keras is not None:
            equals_keras = output == keras_output and (
                "token_ids" not in keras or generation.token_ids == keras["token_ids"]
            )
        blocked = safety.blocked_words(output)
        refused = bool(blocked)
        if refused:
            failures.append(f"{RefusedError('output', blocked)} (prompt {prompt!r})")
        record = {
            "prompt": prompt,
            "refused": "output" if refused else None,
            # A refused output is not repeated in the report.
            "output": None if refused else output,
            "prompt_tokens": generation.prompt_tokens,
            "new_tokens": new_tokens,
            "latency_s": round(latency, 4),
            "keras_output": None if refused else keras_output,
            "keras_new_tokens": None if keras is None else keras.get("new_tokens"),
            "equals_keras": equals_keras,
        }
        if not output.startswith(prompt):
            failures.append(f"output does not start with the prompt {prompt!r}: {output!r}")
        if new_tokens < 1:
            failures.append(f"no token added to the prompt {prompt!r}: {output!r}")
        if require_keras_match:
            if keras is None:
                failures.append(f"no Keras reference output for the prompt {prompt!r}")
            elif not equals_keras:
                failures.append(
                    f"{variant} output differs from Keras for {prompt!r}: "
                    f"{model.route}: {output!r} ({new_tokens} new tokens), "
                    f"keras: {keras_output!r} ({keras.get('new_tokens')} new tokens)"
                )
        results.append(record)
    return {
        "model": str(model_path),
        "route": model.route,
        "variant": variant,
        "passed": not failures,
        "failures": failures,
        "load_s": round(model.load_seconds, 4),
        "results": results,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=".tflite file of either route")
    parser.add_argument("--variant", required=True)
    parser.add_argument(
        "--keras-reference", required=True, help="reference JSON of the Keras model"
    )
    cli_options.add_prompts_option(parser)
    parser.add_argument("--blocklist", help="safety filter word list (default: the package's)")
    parser.add_argument(
        "--require-keras-match",
        action="store_true",
        help="fail unless every output (ids and text) equals the Keras model's",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    keras_reference = json.loads(Path(args.keras_reference).read_text(encoding="utf-8"))
    report = smoke_test(
        args.model,
        args.variant,
        args.prompts,
        keras_reference,
        args.blocklist,
        require_keras_match=args.require_keras_match,
    )
    for record in report["results"]:
        if record["refused"]:
            print(f"[{args.variant}] {record['prompt']!r} -> refused ({record['refused']})")
        else:
            print(
                f"[{args.variant}] {record['prompt']!r} -> {record['output']!r} "
                f"(+{record['new_tokens']} tokens, {record['latency_s']} s)"
            )
    if not report["passed"]:
        # No output file: Snakemake must not take a failed smoke test for a finished one.
        print(
            f"smoke test FAILED for {args.model}: " + "; ".join(report["failures"]), file=sys.stderr
        )
        sys.exit(1)
    atomic.write_json(args.out, report)


if __name__ == "__main__":
    main()
