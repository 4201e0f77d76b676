"""Command line: ``python -m llm2tflite generate MODEL.tflite "prompt" [--max-length N]``.

The workflow's stages have their own CLIs (``python -m llm2tflite.<stage> --help``); this one is
for people: run a converted model from the terminal, behind the codelab app's safety filter.

Exit codes: 0 generated; 2 bad input (empty prompt, --max-length out of range, missing model);
3 refused by the safety filter (prompt or output on the blocklist).
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


def _prompt_bytes(prompt: str) -> bytes:
    # argv that is not valid UTF-8 arrives as surrogate escapes: pass the raw bytes on, the model
    # replaces invalid sequences with U+FFFD (see llm2tflite.trace).
    return prompt.encode("utf-8", errors="surrogateescape")


def _fail(message: str, code: int) -> int:
    print(f"llm2tflite: {message}", file=sys.stderr)
    return code


def _generate(args) -> int:
    from llm2tflite.safety import RefusedError, SafetyFilter

    if not args.prompt.strip():
        return _fail("error: the prompt is empty; give the text to continue", EXIT_BAD_INPUT)
    if not os.path.isfile(args.model):
        return _fail(f"error: model file {args.model!r} does not exist", EXIT_BAD_INPUT)
    if args.max_length is not None and args.max_length < 2:
        return _fail("error: --max-length must be at least 2 (start token + one new token)",
                     EXIT_BAD_INPUT)
    safety = SafetyFilter.from_file(args.blocklist)
    prompt = _prompt_bytes(args.prompt)
    readable_prompt = prompt.decode("utf-8", errors="replace")
    blocked = safety.blocked_words(readable_prompt)
    if blocked:
        return _fail(str(RefusedError("prompt", blocked)), EXIT_REFUSED)

    from llm2tflite import tf_logging

    tf_logging.configure(verbose=args.verbose)
    from llm2tflite.runtime import ModelOpenError, open_model

    try:
        model = open_model(args.model)
    except ModelOpenError as error:
        return _fail(f"error: {error}", EXIT_BAD_INPUT)
    # max_length counts the start token, as in KerasHub's generate(). The output is cut after
    # that many of the ids the model generated; a value above the traced max_length has no effect
    # (the codelab model cannot generate more than it was traced for).
    output = model.generate(prompt, max_length=args.max_length).text
    if not output.startswith(readable_prompt):
        print("llm2tflite: note: the prompt was longer than the model's prompt limit and was "
              "cut to its first tokens", file=sys.stderr)
    blocked = safety.blocked_words(output)
    if blocked:
        return _fail(str(RefusedError("output", blocked)), EXIT_REFUSED)
    print(output)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="llm2tflite", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate", help="continue a prompt with a .tflite model converted by the workflow")
    generate.add_argument("model", help="a .tflite file converted by the workflow")
    generate.add_argument("prompt")
    generate.add_argument(
        "--max-length", type=int,
        help="keep at most N tokens, start token and prompt included; values above the max_length "
             "the model was traced with have no effect (greedy generation is causal, so the "
             "result equals that of a model traced with N)")
    generate.add_argument("--blocklist", help="word list of the safety filter "
                                               "(default: the package's llm2tflite/data/blocklist.txt)")
    generate.add_argument(
        "-v", "--verbose", action="store_true",
        help="show TensorFlow's and TFLite's own log lines (hidden by default: they are notes "
             "about the runtime, not about your prompt)")
    generate.set_defaults(run=_generate)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
