"""Command line: ``python -m llm2tflite generate MODEL "prompt" [--max-length N] [sampling]``.

``python -m llm2tflite serve [DIR] [--port N]`` serves the demo pages (``llm2tflite.web``).

The workflow's stages have their own CLIs (``python -m llm2tflite.<stage> --help``); this one is
for people: run a converted model from the terminal, behind the codelab app's safety filter.
MODEL is either route's ``.tflite``, told apart by its signatures (``llm2tflite.model_files``):

- the codelab route (``results/<model>/tflite/<variant>.tflite``): generation and tokenizer run
  inside one call; the output is printed when it is complete; greedy only (its sampler is fixed
  when it is traced);
- the LiteRT route (``results/<model>/litert/<variant>.tflite``, which carries its export info
  and tokenizer: it runs copied alone): tokens are printed as they are generated, and
  --temperature, --top-k, --top-p and --seed choose how they are sampled.

Safety filter: a prompt with a blocklisted word is refused before the model runs. The output is
checked before it is printed: the codelab route's as a whole; the LiteRT route's word by word as it
streams (a word is printed once the text after it shows it is complete), so a blocklisted word
stops the stream with the refusal message, and the text printed before it stays on the screen.

``python -m llm2tflite chat MODEL [--max-new-tokens N] [sampling] < turns.txt`` holds a
conversation with a LiteRT-route ``.tflite`` whose model has a chat template (its family's, or
the config's ``litert.chat_templates``): one user turn per stdin line, each reply streamed on one
line; the KV cache is kept across turns (only the new turn is prefilled,
``llm2tflite.litert.chat``), every turn passes the safety filter (a refused turn is dropped and
the conversation goes on; exit 3 at the end). A turn that does not fit the context, or a reply
that reaches its end, ends the conversation with one line saying so (exit 4). A ``.litertlm``
is LiteRT-LM's: ``python -m llm2tflite.litertlm.bundle chat`` in its environment.

``python -m llm2tflite verify [results/reports/<config>/manifest.json]`` re-hashes every artifact
the manifest lists and prints one line per file missing or changed since it was built (exit 1 if
any).

Exit codes: 0 generated; 2 bad input (empty prompt, --max-length out of range, missing model or
not a model of this workflow, a broken model file, sampling options for the codelab route); 3
refused by the safety filter (prompt or output on the blocklist). A broken file gets one line,
never a traceback, also when it fails only as it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_CHANGED = 1  # verify: an artifact changed since it was built


def _prompt_bytes(prompt: str) -> bytes:
    # argv that is not valid UTF-8 arrives as surrogate escapes: pass the raw bytes on, the model
    # replaces invalid sequences with U+FFFD (see llm2tflite.codelab.trace).
    return prompt.encode("utf-8", errors="surrogateescape")


def _fail(message: str, code: int) -> int:
    print(f"llm2tflite: {message}", file=sys.stderr)
    return code


SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "seed")
# Temperature when --top-k or --top-p is given without --temperature: sample the distribution as is.
DEFAULT_SAMPLING_TEMPERATURE = 1.0


class _StreamRefused(Exception):
    def __init__(self, words):
        super().__init__(words)
        self.words = words


class _SafeStream:
    """Print streamed text behind the safety filter, one complete word at a time.

    Text is held back up to the end of its last complete word (a word is complete when a
    character that is not a word character follows it); each time more becomes complete, the
    whole text so far is checked, and a blocklisted word raises before anything after the last
    printed word is shown. The held-back end is checked and printed by ``close``.
    """

    def __init__(self, safety, out):
        import re

        self._safety, self._out = safety, out
        self._boundary = re.compile(r"\W(?=\w*$)")
        self.text, self.printed = "", 0

    def write(self, piece: str):
        self.text += piece
        boundary = self._boundary.search(self.text, self.printed)
        if boundary is None:
            return
        complete = boundary.end()
        self._check(self.text[:complete])
        self._print(self.text[self.printed : complete])
        self.printed = complete

    def close(self, text: str):
        self._check(text)
        self._print(text[self.printed :] + "\n")
        self.printed = len(text)

    def _check(self, text: str):
        blocked = self._safety.blocked_words(text)
        if blocked:
            raise _StreamRefused(blocked)

    def _print(self, text: str):
        self._out.write(text)
        self._out.flush()


def _sampler(args):
    """The LiteRT route's sampler from the flags (ValueError on a bad value)."""
    from llm2tflite.core.sampling import Sampler

    temperature = args.temperature
    if temperature is None:
        sampling = args.top_k is not None or args.top_p is not None
        temperature = DEFAULT_SAMPLING_TEMPERATURE if sampling else 0.0
    return Sampler(temperature=temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)


def _generate(args) -> int:
    from llm2tflite.core.safety import RefusedError, SafetyFilter

    if not args.prompt.strip():
        return _fail("error: the prompt is empty; give the text to continue", EXIT_BAD_INPUT)
    if not os.path.isfile(args.model):
        return _fail(f"error: model file {args.model!r} does not exist", EXIT_BAD_INPUT)
    if args.max_length is not None and args.max_length < 2:
        return _fail(
            "error: --max-length must be at least 2 (start token + one new token)", EXIT_BAD_INPUT
        )
    if args.threads is not None and args.threads < 1:
        return _fail("error: --threads must be at least 1", EXIT_BAD_INPUT)
    try:
        sampler = _sampler(args)
    except ValueError as error:
        return _fail(f"error: {error}", EXIT_BAD_INPUT)
    safety = SafetyFilter.from_file(args.blocklist)
    prompt = _prompt_bytes(args.prompt)
    readable_prompt = prompt.decode("utf-8", errors="replace")
    blocked = safety.blocked_words(readable_prompt)
    if blocked:
        return _fail(str(RefusedError("prompt", blocked)), EXIT_REFUSED)

    from llm2tflite.core import tf_logging

    tf_logging.configure(verbose=args.verbose)
    from llm2tflite.model_files import LITERT_ROUTE, ModelOpenError, open_model, route_of

    try:
        # The route from the file's signature table alone, before anything heavy is loaded.
        route = route_of(args.model)
        if route != LITERT_ROUTE:
            given = [
                f"--{name.replace('_', '-')}"
                for name in SAMPLING_FLAGS
                if getattr(args, name) is not None
            ]
            if given:
                return _fail(
                    f"error: {', '.join(given)}: {args.model} is a codelab-route model, whose "
                    "sampler is fixed when it is traced (greedy); sample with a LiteRT-route "
                    "model (results/<model>/litert/<variant>.tflite)",
                    EXIT_BAD_INPUT,
                )
        model = open_model(args.model, threads=args.threads)
    except (ModelOpenError, FileNotFoundError) as error:
        return _fail(f"error: {error}", EXIT_BAD_INPUT)
    try:
        if route != LITERT_ROUTE:
            return _generate_whole(model, prompt, readable_prompt, args.max_length, safety)
        return _generate_streaming(model, prompt, args.max_length, sampler, safety)
    except ModelOpenError as error:  # a damaged file that fails only when it runs
        sys.stdout.flush()
        return _fail(f"error: {error}", EXIT_BAD_INPUT)


def _note_truncated_prompt(model, prompt, generation):
    if generation.prompt_tokens < len(model.token_ids(prompt, with_start=True)):
        print(
            "llm2tflite: note: the prompt was longer than the model's prompt limit and was "
            "cut to its first tokens",
            file=sys.stderr,
        )


def _generate_whole(model, prompt, readable_prompt, max_length, safety) -> int:
    """The codelab route: one call returns the whole text, checked before it is printed."""
    from llm2tflite.core.safety import RefusedError

    # max_length counts the start token, as in KerasHub's generate(). The output is cut after
    # that many of the ids the model generated; a value above the traced max_length has no
    # effect (the codelab model cannot generate more than it was traced for).
    generation = model.generate(prompt, max_length=max_length)
    output = generation.text
    if not output.startswith(readable_prompt):
        _note_truncated_prompt(model, prompt, generation)
    blocked = safety.blocked_words(output)
    if blocked:
        return _fail(str(RefusedError("output", blocked)), EXIT_REFUSED)
    print(output)
    return 0


def _generate_streaming(model, prompt, max_length, sampler, safety) -> int:
    """The LiteRT route: tokens are printed as they come, behind the safety filter."""
    if max_length is not None and max_length > model.cache_length:
        print(
            f"llm2tflite: note: --max-length {max_length} exceeds the model's context of "
            f"{model.cache_length} tokens; generating at most {model.cache_length}",
            file=sys.stderr,
        )
    stream = _SafeStream(safety, sys.stdout)
    try:
        generation = model.generate(
            prompt, max_length=max_length, sampler=sampler, on_text=stream.write
        )
        stream.close(generation.text)
    except _StreamRefused as refused:
        count = len(refused.words)
        if stream.printed:
            sys.stdout.write("\n")
            sys.stdout.flush()
        return _fail(
            f"refused: the generated text contains language on the blocklist ({count} match"
            f"{'es' if count != 1 else ''}); generation stopped before it (the text printed "
            "above came before the match)",
            EXIT_REFUSED,
        )
    _note_truncated_prompt(model, prompt, generation)
    return 0


EXIT_CONTEXT_FULL = 4  # chat: a turn did not fit the context


def _chat(args) -> int:
    """A conversation on the LiteRT route's .tflite: one user turn per stdin line."""
    from llm2tflite.core.safety import RefusedError, SafetyFilter

    if args.model.endswith(".litertlm"):
        return _fail(
            f"error: {args.model} is a LiteRT-LM bundle, which this runtime cannot open; chat "
            "with the LiteRT route's .tflite it was packed from (results/<model>/litert/"
            "<variant>.tflite), or in LiteRT-LM's environment: python -m "
            "llm2tflite.litertlm.bundle chat BUNDLE",
            EXIT_BAD_INPUT,
        )
    if not os.path.isfile(args.model):
        return _fail(f"error: model file {args.model!r} does not exist", EXIT_BAD_INPUT)
    if args.max_new_tokens < 1:
        return _fail("error: --max-new-tokens must be at least 1", EXIT_BAD_INPUT)
    try:
        sampler = _sampler(args)
    except ValueError as error:
        return _fail(f"error: {error}", EXIT_BAD_INPUT)
    safety = SafetyFilter.from_file(args.blocklist)
    from llm2tflite.core import tf_logging

    tf_logging.configure(verbose=args.verbose)
    from llm2tflite.litert.chat import ChatSession, ContextFullError, NoChatTemplateError
    from llm2tflite.model_files import LITERT_ROUTE, ModelOpenError, open_model, route_of

    try:
        if route_of(args.model) != LITERT_ROUTE:
            return _fail(
                f"error: {args.model} is a codelab-route model (one call per prompt, no KV "
                "cache between calls); chat with a LiteRT-route model "
                "(results/<model>/litert/<variant>.tflite)",
                EXIT_BAD_INPUT,
            )
        template = None
        if args.chat_template_json:
            from llm2tflite.core.chat import ChatTemplate

            template = ChatTemplate.from_dict(json.loads(args.chat_template_json))
        model = open_model(args.model, threads=args.threads)
        session = ChatSession(model, template, sampler=sampler)
    except (ModelOpenError, FileNotFoundError, NoChatTemplateError, ValueError) as error:
        return _fail(f"error: {error}", EXIT_BAD_INPUT)
    refused = False
    for line in sys.stdin:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        blocked = safety.blocked_words(text)
        if blocked:
            refused = True
            print(f"llm2tflite: {RefusedError('prompt', blocked)}", file=sys.stderr)
            continue
        stream = _SafeStream(safety, sys.stdout)
        try:
            reply = session.reply(text, args.max_new_tokens, on_text=stream.write)
            stream.close(reply.text)
        except ContextFullError as error:
            sys.stdout.flush()
            return _fail(str(error), EXIT_CONTEXT_FULL)
        except _StreamRefused as stopped:
            # The turn is forgotten: the next one continues from the conversation before it.
            session.forget()
            refused = True
            if stream.printed:
                sys.stdout.write("\n")
                sys.stdout.flush()
            count = len(stopped.words)
            print(
                f"llm2tflite: refused: the reply contains language on the blocklist ({count} "
                f"match{'es' if count != 1 else ''}); it stopped before it and the turn is "
                "dropped from the conversation",
                file=sys.stderr,
            )
            continue
        except ModelOpenError as error:
            sys.stdout.flush()
            return _fail(f"error: {error}", EXIT_BAD_INPUT)
        if reply.context_full:
            sys.stdout.flush()
            return _fail(
                f"the context is full: the reply reached the end of the model's "
                f"{session.context_length} tokens and stopped there; the conversation ends",
                EXIT_CONTEXT_FULL,
            )
    return EXIT_REFUSED if refused else 0


def _add_sampling(parser):
    sampling = parser.add_argument_group("sampling (default greedy)")
    sampling.add_argument("--temperature", type=float, help="as generate's")
    sampling.add_argument("--top-k", type=int, help="as generate's")
    sampling.add_argument("--top-p", type=float, help="as generate's")
    sampling.add_argument("--seed", type=int, help="as generate's")


def _verify(args) -> int:
    """Re-hash every artifact of a manifest; one line per file changed since it was built."""
    from llm2tflite.report.verify import ManifestError, changed_artifacts, find_manifest

    try:
        manifest = find_manifest(args.manifest)
        checked, changed = changed_artifacts(manifest)
    except ManifestError as error:
        return _fail(f"error: {error}", EXIT_BAD_INPUT)
    for line in changed:
        print(line)
    print(f"{checked} artifacts of {manifest} checked: {len(changed) or 'none'} changed")
    return EXIT_CHANGED if changed else 0


def _serve(args) -> int:
    from llm2tflite.web.serve import serve

    return serve(args.directory, args.port, args.verbose)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="llm2tflite", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate",
        help="continue a prompt with a .tflite model converted by the workflow (either route)",
    )
    generate.add_argument(
        "model",
        help="a .tflite file converted by the workflow: codelab "
        "route (tflite/) or LiteRT route (litert/)",
    )
    generate.add_argument("prompt")
    generate.add_argument(
        "--max-length",
        type=int,
        help="keep at most N tokens, start token and prompt included. Codelab route: values "
        "above the max_length the model was traced with have no effect (greedy generation "
        "is causal, so the result equals that of a model traced with N). LiteRT route: "
        "default generation.max_length, at most the model's cache length",
    )
    generate.add_argument(
        "--blocklist",
        help="word list of the safety filter "
        "(default: the package's llm2tflite/data/blocklist.txt)",
    )
    generate.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TensorFlow's and TFLite's own log lines (hidden by default: they are notes "
        "about the runtime, not about your prompt)",
    )
    generate.add_argument(
        "--threads", type=int, help="CPU threads of the interpreter (default: the interpreter's)"
    )
    sampling = generate.add_argument_group(
        "sampling (LiteRT route only; default greedy)",
        "The codelab route's sampler is traced into the model (greedy) and refuses these.",
    )
    sampling.add_argument(
        "--temperature",
        type=float,
        help="divide the logits by T before sampling; 0: greedy (default 0, or "
        f"{DEFAULT_SAMPLING_TEMPERATURE:g} when --top-k/--top-p is given)",
    )
    sampling.add_argument("--top-k", type=int, help="sample among the K most likely tokens")
    sampling.add_argument(
        "--top-p",
        type=float,
        help="sample among the fewest most likely tokens whose probability "
        "adds up to at least P (nucleus sampling)",
    )
    sampling.add_argument(
        "--seed", type=int, help="random seed: the same seed, prompt and model give the same text"
    )
    generate.set_defaults(run=_generate)
    chat = commands.add_parser(
        "chat",
        help="a multi-turn conversation (one user turn per stdin line) with a LiteRT-route "
        ".tflite whose model has a chat template",
    )
    chat.add_argument("model", help="results/<model>/litert/<variant>.tflite")
    chat.add_argument("--max-new-tokens", type=int, default=64, help="per reply (default 64)")
    chat.add_argument("--blocklist", help="word list of the safety filter (as generate's)")
    chat.add_argument("--threads", type=int)
    chat.add_argument(
        "--chat-template-json",
        help='a template replacing the model\'s: {"user": {"prefix": ..., "suffix": ...}, '
        '"model": {...}}',
    )
    chat.add_argument("-v", "--verbose", action="store_true")
    _add_sampling(chat)
    chat.set_defaults(run=_chat)
    verify = commands.add_parser(
        "verify",
        help="re-hash the artifacts of a run's manifest; say which changed since they were built",
    )
    verify.add_argument(
        "manifest",
        nargs="?",
        help="results/reports/<config>/manifest.json (default: the only one under the current "
        "directory)",
    )
    verify.set_defaults(run=_verify)
    serve = commands.add_parser(
        "serve",
        help="serve the demo pages (results/reports/<config>/web) on 127.0.0.1 for a browser",
    )
    serve.add_argument("directory", nargs="?", default="results/reports/default/web")
    serve.add_argument("--port", type=int, default=8000, help="default 8000; 0: any free port")
    serve.add_argument("-v", "--verbose", action="store_true", help="log every request")
    serve.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
