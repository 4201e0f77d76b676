"""LiteRT-LM bundles (``.litertlm``): pack the LiteRT route's model and run bundles.

A bundle is what LiteRT-LM (its CLI, its Kotlin/Swift/C++ APIs) loads as one file: the
prefill/decode ``.tflite``, the tokenizer (``tokenizer.json`` as ``hf_tokenizer``, or a
SentencePiece ``tokenizer.model`` as ``sp_tokenizer``) and an ``LlmMetadata`` proto:

- ``llm_model_type { generic_model {} }``: no chat template, prompts go in as written;
- ``start_token`` / ``stop_tokens``: from the export info (LiteRT-LM prepends the start token);
- ``max_num_tokens``: the context (start token, prompt and generated tokens together): the
  export info's ``litert_lm_max_num_tokens``, the largest with which LiteRT-LM's padded prefill
  chunks never run past the cache (it is a little under the cache length);
- ``sampler_params``: the default sampler (config ``litertlm: sampler:``, greedy by default).
  LiteRT-LM's CPU sampler implements only ``TOP_P`` (``TOP_K`` and ``GREEDY`` fail with
  "Sampler type: N not implemented yet"), so every setting is written as ``TOP_P``: greedy is
  k = 1 (LiteRT-LM then takes the first largest logit, as our greedy does).

The ``.tflite`` is added with ``prefer_activation_type`` (config ``litertlm:
activation_type:``, default fp32): LiteRT-LM's loader otherwise defaults a text decoder's
activations to fp16 ("System's default activation type for Text decoder is fp16"), which
changes the numerics wherever the CPU computes in fp16.

``litert-lm-builder`` and ``litert_lm`` need protobuf >= 6.31, which TensorFlow 2.18.1 cannot
import: this module runs in the LiteRT-LM environment (``requirements-litert-lm.txt``: a venv the
workflow creates with ``llm2tflite.litertlm.env``, or ``envs/litert-lm.yaml`` under ``--sdm
conda``) with the repository on ``PYTHONPATH``; at module level it imports only the standard
library and the package's standard-library-only helpers (atomic, manifest, tf_logging).

Packing goes through litert-lm-builder's Python API (``LitertLmFileBuilder``), with the two
system metadata entries it would make random (``uuid``, ``creation_timestamp``) derived from the
inputs and ``SOURCE_DATE_EPOCH``: the same inputs give a byte-identical bundle.

After packing, ``build`` loads the bundle with LiteRT-LM's Python ``Engine`` and records its greedy
continuation of a check prompt in ``<bundle>.json`` (with the metadata, size and sha256): what an
app running the bundle must print, and what ``llm2tflite.report.android`` compares with our runtime.

CLI (see ``--help`` of each)::

    <env>/bin/python -m llm2tflite.litertlm.bundle build --model results/M/litert/int8.tflite \
        --info results/M/litert/litert_export.json --tokenizer results/M/litert/tokenizer.json \
        --out results/M/litert/int8.litertlm [--sampler-json '{"temperature": 0}']
    <env>/bin/python -m llm2tflite.litertlm.bundle generate BUNDLE "prompt" ...   (LiteRT-LM's text)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from llm2tflite import CODELAB_PROMPT
from llm2tflite.core import atomic, tf_logging
from llm2tflite.core.chat import ChatTemplate
from llm2tflite.core.hashing import sha256_file

ENV_FILE = "envs/litert-lm.yaml"
ACTIVATION_TYPES = ("fp32", "fp16", "fp32_fp16")
DEFAULT_ACTIVATION_TYPE = "fp32"
DEFAULT_CHECK_PROMPT = CODELAB_PROMPT
TOKENIZER_SECTIONS = {"tokenizer.json": "hf_tokenizer", "tokenizer.model": "sp_tokenizer"}


# ---- metadata (plain data: no protobuf needed to compute it) ----------------------------------


def sampler_params(sampler: dict | None, vocabulary_size: int) -> dict:
    """LiteRT-LM ``SamplerParameters`` for our sampler settings (``llm2tflite.core.sampling``).

    Always ``TOP_P`` (the only type LiteRT-LM's CPU sampler implements): greedy is k = 1 with
    temperature 1 (a temperature must be positive); otherwise k = top_k (all tokens when
    unset), p = top_p (1 when unset), the temperature and the seed if given.
    """
    sampler = dict(sampler or {})
    unknown = set(sampler) - {"temperature", "top_k", "top_p", "seed"}
    if unknown:
        raise ValueError(
            f"unknown sampler setting(s) {sorted(unknown)}; known: temperature, top_k, top_p, seed"
        )
    temperature = float(sampler.get("temperature") or 0.0)
    top_k = sampler.get("top_k")
    if temperature == 0.0 or top_k == 1:
        params = {"type": "TOP_P", "k": 1, "p": 1.0, "temperature": 1.0}
    else:
        top_p = sampler.get("top_p")
        params = {
            "type": "TOP_P",
            "k": int(top_k or vocabulary_size),
            "p": float(1.0 if top_p is None else top_p),
            "temperature": temperature,
        }
    if sampler.get("seed") is not None:
        params["seed"] = int(sampler["seed"])
    return params


def llm_metadata(info: dict, sampler: dict | None = None) -> dict:
    """The bundle's ``LlmMetadata`` fields, from the export info (``litert_export.json``)."""
    fields = {
        "stop_tokens": [{"token_ids": {"ids": [int(i)]}} for i in info["stop_token_ids"]],
        # The largest context with which LiteRT-LM's padded prefill chunks never run past the
        # cache end (llm2tflite.litert.export.litert_lm_max_num_tokens); the cache length
        # for an export info without it.
        "max_num_tokens": int(info.get("litert_lm_max_num_tokens") or info["cache_length"]),
        "llm_model_type": {"generic_model": {}},
        "sampler_params": sampler_params(sampler, int(info["vocabulary_size"])),
    }
    if info.get("start_token_id") is not None:  # a family without one (Qwen) sets none
        fields["start_token"] = {"token_ids": {"ids": [int(info["start_token_id"])]}}
    if info.get("chat_template"):
        # Rendered by LiteRT-LM's Conversation API (llm2tflite.core.chat.ChatTemplate.jinja).
        fields["jinja_prompt_template"] = ChatTemplate.from_dict(info["chat_template"]).jinja()
    return fields


def _metadata_proto(fields: dict):
    from google.protobuf import json_format
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    return json_format.ParseDict(fields, llm_metadata_pb2.LlmMetadata())


# ---- build -------------------------------------------------------------------------------------


def _creation_timestamp() -> str:
    """``SOURCE_DATE_EPOCH`` (the reproducible-builds convention) or the Unix epoch, UTC."""
    import datetime

    seconds = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


@contextlib.contextmanager
def _reproducible_system_metadata(content_id: str):
    """The builder stamps every file with a random ``uuid`` and the current time; here the uuid
    is derived from the bundle's inputs and the time from ``SOURCE_DATE_EPOCH``, so that the same
    inputs give the same bytes (litert-lm-builder 0.18.1, ``populate_system_metadata``)."""
    import uuid

    from litert_lm_builder import litertlm_builder

    original = litertlm_builder.populate_system_metadata

    def populate(system_metadata):
        entries = [m for m in system_metadata if m.key not in ("uuid", "creation_timestamp")]
        string = litertlm_builder.DType.STRING
        return [
            *entries,
            litertlm_builder.Metadata(
                key="uuid",
                dtype=string,
                value=str(uuid.uuid5(uuid.NAMESPACE_URL, f"llm2tflite:{content_id}")),
            ),
            litertlm_builder.Metadata(
                key="creation_timestamp", dtype=string, value=_creation_timestamp()
            ),
        ]

    litertlm_builder.populate_system_metadata = populate
    try:
        yield
    finally:
        litertlm_builder.populate_system_metadata = original


def build_bundle(
    model,
    tokenizer,
    info: dict,
    out,
    sampler: dict | None = None,
    activation_type: str = DEFAULT_ACTIVATION_TYPE,
    authors: str = "llm2tflite",
):
    """Pack ``model`` + ``tokenizer`` + metadata into ``out`` (litert-lm-builder's Python API).

    Returns the ``LlmMetadata`` fields written. Same inputs, same bytes.
    """
    from google.protobuf import text_format
    from litert_lm_builder import litertlm_builder

    tokenizer = Path(tokenizer)
    if tokenizer.name not in TOKENIZER_SECTIONS:
        raise ValueError(
            f"{tokenizer}: not a runtime tokenizer file ({' or '.join(TOKENIZER_SECTIONS)})"
        )
    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(f"activation type {activation_type!r}; known: {ACTIVATION_TYPES}")
    fields = llm_metadata(info, sampler)
    metadata_text = text_format.MessageToString(_metadata_proto(fields))
    content_id = hashlib.sha256(
        "\n".join(
            [
                sha256_file(model),
                sha256_file(tokenizer),
                metadata_text,
                activation_type,
                authors,
            ]
        ).encode()
    ).hexdigest()
    builder = litertlm_builder.LitertLmFileBuilder()
    builder.add_system_metadata(
        litertlm_builder.Metadata(key="Authors", value=authors, dtype=litertlm_builder.DType.STRING)
    )
    with (
        tempfile.TemporaryDirectory() as scratch,
        atomic.atomic_path(out) as tmp,
        _reproducible_system_metadata(content_id),
        contextlib.redirect_stdout(sys.stderr),
    ):
        metadata_path = Path(scratch) / "llm_metadata.pbtxt"
        metadata_path.write_text(metadata_text)
        # A plain text-continuation model: no thinking channel, no tool calls (the builder's
        # validation asks for both to be stated).
        builder.add_llm_metadata(
            str(metadata_path), supports_thinking=False, supports_function_calling=False
        )
        if TOKENIZER_SECTIONS[tokenizer.name] == "hf_tokenizer":
            builder.add_hf_tokenizer(str(tokenizer))
        else:
            builder.add_sentencepiece_tokenizer(str(tokenizer))
        builder.add_tflite_model(
            str(model),
            litertlm_builder.TfLiteModelType.PREFILL_DECODE,
            backend_constraint="cpu",
            prefer_activation_type=activation_type,
        )
        with open(tmp, "wb") as stream:
            builder.build(stream, validate_metadata=True)
    return fields


# ---- run a bundle with LiteRT-LM's Python engine ---------------------------------------------


def open_engine(
    bundle,
    max_num_tokens: int | None = None,
    threads: int | None = None,
    activation_type: str | None = DEFAULT_ACTIVATION_TYPE,
    cache_dir=None,
    enable_benchmark: bool = False,
):
    """``litert_lm.Engine`` on CPU. ``cache_dir``: where LiteRT-LM may keep its XNNPACK weight
    cache (by default it writes ``<bundle>_<mtime>_<size>.xnnpack_cache`` next to the bundle).
    ``enable_benchmark``: LiteRT-LM counts the tokens of each prefill (``engine_chat``)."""
    import litert_lm
    from litert_lm._ffi import ActivationDataType

    options = {}
    if activation_type is not None:
        options["activation_data_type"] = ActivationDataType.from_str(activation_type)
    return litert_lm.Engine(
        str(bundle),
        backend=litert_lm.interfaces.Backend.CPU(thread_count=threads),
        max_num_tokens=max_num_tokens,
        cache_dir=str(cache_dir) if cache_dir else None,
        enable_benchmark=enable_benchmark,
        **options,
    )


def engine_generate(engine, prompt: str, sampler: dict | None = None) -> str:
    """LiteRT-LM's continuation of ``prompt`` (no template; the start token is prepended by
    LiteRT-LM). ``sampler`` None: the bundle's default; else our settings, as LiteRT-LM's."""
    import litert_lm

    config = None
    if sampler is not None:
        params = sampler_params(sampler, vocabulary_size=1 << 30)
        config = litert_lm.interfaces.SamplerConfig(
            top_k=params["k"],
            top_p=params["p"],
            temperature=params["temperature"],
            seed=params.get("seed"),
        )
    session = engine.create_session(apply_prompt_template=False, sampler_config=config)
    try:
        session.run_prefill([prompt])
        return session.run_decode().texts[0]
    finally:
        session.close()


def check_record(bundle, prompt: str, max_num_tokens: int, activation_type: str) -> dict:
    """LiteRT-LM's greedy continuation of ``prompt`` on the bundle."""
    with tempfile.TemporaryDirectory() as cache_dir:
        engine = open_engine(
            bundle, max_num_tokens, activation_type=activation_type, cache_dir=cache_dir
        )
        try:
            text = engine_generate(engine, prompt, {"temperature": 0})
        finally:
            engine.close()
    return {
        "prompt": prompt,
        "continuation": text,
        "sampler": "greedy",
        "max_num_tokens": max_num_tokens,
        "activation_type": activation_type,
    }


def engine_chat(engine, turns, max_new_tokens: int, benchmarked: bool = False) -> list[dict]:
    """LiteRT-LM's Conversation API, greedy, on ``turns`` (user texts): the bundle's template
    applied by LiteRT-LM; per turn the reply text, the conversation's token count after it, the
    text LiteRT-LM renders for the turn (``rendered``) and, on an engine opened with
    ``enable_benchmark`` (``benchmarked``), the tokens it prefilled for the turn
    (``prefill_tokens``: the new turn's only, when it keeps the conversation's KV cache)."""
    import litert_lm

    greedy = litert_lm.interfaces.SamplerConfig(top_k=1, top_p=1.0, temperature=1.0)
    conversation = engine.create_conversation(
        sampler_config=greedy, max_output_tokens=max_new_tokens
    )
    replies = []
    try:
        for turn in turns:
            rendered = conversation.render_message_to_string(turn)
            message = conversation.send_message(turn)
            text = "".join(getattr(part, "text", "") for part in message.contents)
            reply = {"text": text, "token_count": conversation.token_count, "rendered": rendered}
            if benchmarked:
                reply["prefill_tokens"] = conversation.get_benchmark_info().last_prefill_token_count
            replies.append(reply)
    finally:
        conversation.close()
    return replies


def _versions() -> dict:
    from importlib import metadata

    return {
        name: metadata.version(name)
        for name in ("litert-lm", "litert-lm-builder", "litert-lm-api", "protobuf")
    }


# ---- CLI ---------------------------------------------------------------------------------------


def _build_main(args):
    info = json.loads(Path(args.info).read_text(encoding="utf-8"))
    sampler = json.loads(args.sampler_json) if args.sampler_json else None
    fields = build_bundle(args.model, args.tokenizer, info, args.out, sampler, args.activation_type)
    record = {
        "bundle": str(args.out),
        "size_bytes": os.path.getsize(args.out),
        "sha256": sha256_file(args.out),
        "model": {"path": str(args.model), "sha256": sha256_file(args.model)},
        "tokenizer": {
            "path": str(args.tokenizer),
            "section": TOKENIZER_SECTIONS[Path(args.tokenizer).name],
        },
        "llm_metadata": fields,
        "activation_type": args.activation_type,
        "versions": _versions(),
    }
    if args.check_prompt:
        record["check"] = check_record(
            args.out, args.check_prompt, fields["max_num_tokens"], args.activation_type
        )
    atomic.write_json(args.record, record)
    check = record.get("check", {})
    print(
        f"packed {args.out} ({record['size_bytes'] / 1e6:.1f} MB): "
        f"{check.get('prompt', '')!r} -> {check.get('continuation', '')!r}"
    )


def _generate_main(args):
    sampler = json.loads(args.sampler_json) if args.sampler_json else None
    with tempfile.TemporaryDirectory() as cache_dir:
        engine = open_engine(
            args.bundle, args.max_num_tokens, args.threads, args.activation_type, cache_dir
        )
        try:
            texts = [engine_generate(engine, prompt, sampler) for prompt in args.prompt]
        finally:
            engine.close()
    print(json.dumps({"continuations": texts}, ensure_ascii=False))


def _chat_main(args):
    turns = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with tempfile.TemporaryDirectory() as cache_dir:
        engine = open_engine(
            args.bundle,
            args.max_num_tokens,
            args.threads,
            args.activation_type,
            cache_dir,
            enable_benchmark=True,
        )
        try:
            replies = engine_chat(engine, turns, args.max_new_tokens, benchmarked=True)
        finally:
            engine.close()
    print(json.dumps({"replies": replies}, ensure_ascii=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="pack a LiteRT-route model into a .litertlm")
    build.add_argument("--model", required=True, help="the LiteRT route's .tflite")
    build.add_argument("--info", required=True, help="its litert_export.json")
    build.add_argument("--tokenizer", required=True, help="tokenizer.json or tokenizer.model")
    build.add_argument("--out", required=True, help=".litertlm to write")
    build.add_argument("--record", help="JSON to write (default: OUT.json)")
    build.add_argument("--sampler-json", help='default sampler, e.g. {"temperature": 0}')
    build.add_argument(
        "--activation-type", default=DEFAULT_ACTIVATION_TYPE, choices=ACTIVATION_TYPES
    )
    build.add_argument(
        "--check-prompt",
        default=DEFAULT_CHECK_PROMPT,
        help="prompt whose greedy continuation by LiteRT-LM goes in the record ('' to skip)",
    )

    generate = commands.add_parser("generate", help="LiteRT-LM's continuations of prompts")
    generate.add_argument("bundle")
    generate.add_argument("prompt", nargs="+")
    generate.add_argument("--max-num-tokens", type=int)
    generate.add_argument("--threads", type=int)
    generate.add_argument(
        "--activation-type", default=DEFAULT_ACTIVATION_TYPE, choices=ACTIVATION_TYPES
    )
    generate.add_argument("--sampler-json", help="our sampler settings (default: the bundle's)")

    chat = commands.add_parser(
        "chat", help="LiteRT-LM's greedy conversation (one user turn per stdin line), as JSON"
    )
    chat.add_argument("bundle")
    chat.add_argument("--max-new-tokens", type=int, default=64)
    chat.add_argument("--max-num-tokens", type=int)
    chat.add_argument("--threads", type=int)
    chat.add_argument(
        "--activation-type", default=DEFAULT_ACTIVATION_TYPE, choices=ACTIVATION_TYPES
    )

    args = parser.parse_args(argv)
    if args.command == "chat":
        _chat_main(args)
    elif args.command == "build":
        args.record = args.record or f"{args.out}.json"
        _build_main(args)
    else:
        _generate_main(args)


if __name__ == "__main__":
    # The log keeps the stage's own lines, not LiteRT-LM's loader notes.
    with tf_logging.native_notes_hidden():
        main()
