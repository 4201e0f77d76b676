"""The Keras model's own greedy generation for the smoke prompts: the fp32 model must match it.

:func:`keras_generate` is how every stage asks Keras for a reference: KerasHub's public
``generate()`` (its text, exactly), with the ids its generate function produced recorded on the
way (never re-tokenized from the text), as a ``llm2tflite.core.generation.Generation``.
"""

from __future__ import annotations

import argparse
import time

import llm2tflite  # noqa: F401
from llm2tflite.core import atomic, cli_options, tf_logging
from llm2tflite.core.generation import Generation, kept_token_ids
from llm2tflite.inputs.sources import exit_on_unavailable_preset, load_causal_lm


def stop_token_ids(causal_lm) -> list[int]:
    """The ids that end KerasHub's generation (its ``stop_token_ids="auto"``)."""
    tokenizer = causal_lm.preprocessor.tokenizer
    ids = [int(tokenizer.end_token_id)]
    if hasattr(tokenizer, "end_token2_id"):
        ids.append(int(tokenizer.end_token2_id))
    return ids


def keras_generate(causal_lm, prompt: str, max_length: int) -> Generation:
    """``causal_lm.generate(prompt, max_length)`` and the ids behind its text.

    ``generate()`` runs ``causal_lm.generate_function`` (public; built by
    ``make_generate_function``) on the packed prompt; a recording wrapper in its place keeps the
    packed prompt and the output buffer, from which the generated ids are read with the same rule
    the traced graph applies (``generation.kept_token_ids``).
    """
    import numpy as np

    generate_function = causal_lm.make_generate_function()
    calls = []

    def recording(inputs, stop_token_ids=None):
        outputs = generate_function(inputs, stop_token_ids=stop_token_ids)
        calls.append((inputs, outputs, stop_token_ids))
        return outputs

    causal_lm.generate_function = recording
    try:
        text = causal_lm.generate(prompt, max_length=max_length)
    finally:
        causal_lm.generate_function = generate_function
    if len(calls) != 1:
        raise RuntimeError(f"expected one call of the generate function, saw {len(calls)}")
    inputs, outputs, stops = calls[0]
    prompt_tokens = int(np.sum(np.asarray(inputs["padding_mask"])[0]))
    ids = kept_token_ids(
        np.asarray(outputs["token_ids"])[0],
        np.asarray(outputs["padding_mask"])[0],
        prompt_tokens,
        stops if stops is not None else stop_token_ids(causal_lm),
    )
    return Generation(text, ids, prompt_tokens)


def keras_generations(causal_lm, prompts, max_length: int) -> list[dict]:
    results = []
    for prompt in prompts:
        started = time.perf_counter()
        generation = keras_generate(causal_lm, prompt, max_length)
        results.append(
            {
                "prompt": prompt,
                "output": generation.text,
                "token_ids": generation.token_ids,
                "prompt_tokens": generation.prompt_tokens,
                "new_tokens": generation.new_tokens,
                "latency_s": round(time.perf_counter() - started, 4),
            }
        )
    return results


@exit_on_unavailable_preset
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--sampler", default="greedy")
    cli_options.add_prompts_option(parser)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    causal_lm = load_causal_lm(args.preset, sampler=args.sampler)
    atomic.write_json(
        args.out,
        {
            "preset": args.preset,
            "max_length": args.max_length,
            "sampler": args.sampler,
            "generations": keras_generations(causal_lm, args.prompts, args.max_length),
        },
    )


if __name__ == "__main__":
    # The log keeps the stage's own lines, not Keras's XLA notes ("XLA service ... initialized").
    with tf_logging.native_notes_hidden():
        main()
