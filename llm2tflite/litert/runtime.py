"""Run the LiteRT route's prefill/decode ``.tflite``: tokenizer outside, sampling, streaming.

The file holds ``prefill_<T>`` signatures and ``decode`` over an external KV cache (the contract is
docs/litert-contract.md), and as metadata the export info (cache length, start/stop tokens, ...)
and the runtime tokenizer (``llm2tflite.litert.embedded``); the same files lie beside it
(``litert_export.json``, ``tokenizer.json`` or ``tokenizer.model``,
``llm2tflite.litert.runtime_tokenizer``). A file copied alone runs from its own; a file built
without them needs the files beside it; a file beside files that differ from its own is refused
in one line (one of them is from another build). :class:`LiteRTModel` is the route's runtime for
the CLI, smoke, fidelity and benchmark stages (``llm2tflite.model_files.open_model`` returns it).

One generation, as LiteRT-LM runs the same file:

1. the prompt is tokenized outside the graph and the start token put first; a prompt longer than
   ``min(sequence_length, max_length - 1)`` tokens (start token included) keeps its first tokens,
   as the codelab route does (``llm2tflite.codelab.trace``), so at least one token is generated;
2. every prompt token but the last is prefilled in chunks of the exported lengths: the longest
   length while the rest is at least that long, then the shortest length that holds the rest
   (padded: zero ids, position 0, fully hidden mask rows, as LiteRT-LM pads). A chunk must fit in
   the cache (position + T <= S): DYNAMIC_UPDATE_SLICE clamps its start and would overwrite
   earlier rows. Near the end of the cache, shorter lengths are used, and ``decode`` steps when no
   exported length fits;
3. ``decode`` consumes the last prompt token and then each new one, one position at a time, until
   a stop token (not kept) or ``max_length`` tokens in all (start token included, as KerasHub's
   ``generate(max_length)``; at most the cache length).

The mask is filled like LiteRT-LM's: 0 where query row t may see cache position s
(s <= input_pos[t]), -0.7 * float32 max elsewhere.

Speed: the file runs in LiteRT's ``CompiledModel`` on XNNPACK (``threads`` configurable), whose
packed weights are kept in a weight cache file and mapped back on later loads
(``llm2tflite.litert.weight_cache``: created on first use, keyed on the model file, never stale).
The KV caches are one set of LiteRT tensor buffers bound to every signature as input and output
of the same name (as LiteRT-LM binds them): each call writes its rows in place and no step copies
cache rows. A decode step writes the token, its position and the mask row (S floats) into their
buffers and reads the logits (V floats) back. The ai-edge-litert ``Interpreter`` is used only to
verify the flatbuffer before LiteRT maps it (``check_flatbuffer``: LiteRT's loader crashes on a
bit-flipped file) and as the independent "naive loop" of ``measure_loop``.

The tokenizer runs outside the graph; ``on_text`` streaming decodes the ids so far at each
step and passes on only text that can no longer change (a byte-level BPE token can end in the
middle of a multi-byte character: the incomplete character waits for the next token).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from llm2tflite.core import flatbuffer, tf_logging
from llm2tflite.core.generation import Generation, ModelOpenError
from llm2tflite.core.sampling import GREEDY, Sampler
from llm2tflite.litert import embedded
from llm2tflite.litert.contract import (
    DECODE_SIGNATURE,
    INFO_FILE,
    INPUT_POS,
    LOGITS,
    MASK,
    MASK_HIDDEN,
    PREFILL_PREFIX,
    TOKENS,
)
from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer, tokenizer_from_bytes
from llm2tflite.litert.weight_cache import weight_cache_for

ROUTE = "litert"
_CACHE_NAME = re.compile(r"kv_cache_([kv])_(\d+)$")
_REPLACEMENT = "\ufffd"


class LiteRTModelError(ModelOpenError):
    """The file (or the files beside it) does not follow the LiteRT route's contract, or is
    damaged (one line: what and what to do)."""


# YNNPACK off: ai-edge-litert 2.3.0's wheel has no YNNPACK (creating a CompiledModel with
# enable_ynnpack=True fails: "litert/runtime/compiled_model.cc:1036"), measured by
# ``python -m llm2tflite.litert.runtime --ynnpack``; docs/benchmarks.md.
YNNPACK_DEFAULT = False


def _one_line(error) -> str:
    """LiteRT's message on one line: its lines joined (the last one says what failed, e.g.
    "ERROR: [...litert_compiled_model.h:562]" then "└ Failed to allocate tensors")."""
    lines = [line.strip(" └") for line in str(error).splitlines() if line.strip(" └")]
    return ": ".join(lines) if lines else type(error).__name__


def check_flatbuffer(path) -> None:
    """Refuse a damaged file in one line before LiteRT maps it (LiteRT's CompiledModel crashes
    the process on a bit-flipped flatbuffer): ``llm2tflite.core.flatbuffer.verify``."""
    try:
        flatbuffer.verify(path)
    except flatbuffer.DamagedFlatbufferError as error:
        raise LiteRTModelError(
            f"{path} is damaged (truncated or altered since it was built: {error}); "
            "rebuild it or copy it again"
        ) from None


def _first_difference(beside: dict, inside: dict) -> str:
    key = next(k for k in sorted(set(beside) | set(inside)) if beside.get(k) != inside.get(k))
    return f"{key}: {_short(beside.get(key))} beside it, {_short(inside.get(key))} inside"


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _export_info(path: Path, info_path: Path, given: bool, inside: dict | None):
    """The export info and where it is read from: the file's own, the sidecar's (a file built
    without), never two that differ. A sidecar named by the caller (``given``) must exist."""
    if not info_path.is_file():
        if inside is not None and not given:
            return inside, f"the export info inside {path}"
        raise LiteRTModelError(
            f"{info_path} is missing: the LiteRT model's export info (written by the workflow's "
            f"litert export) must lie beside it"
            + ("" if inside is not None else f" ({path.name} carries none of its own)")
        )
    beside = _read_info(info_path)
    if inside is not None and beside != inside:
        raise LiteRTModelError(
            f"{info_path} differs from the export info inside {path} "
            f"({_first_difference(beside, inside)}): one of them is from another build; "
            "remove it or rebuild"
        )
    return beside, str(info_path)


def _runtime_tokenizer(path: Path, own: embedded.Embedded):
    """The tokenizer: the file's own (a file beside it of the same name must hold the same
    bytes), else the one beside it."""
    try:
        if own.tokenizer is None:
            return load_runtime_tokenizer(path.parent)
        beside = path.parent / own.tokenizer_name
        if beside.is_file() and beside.read_bytes() != own.tokenizer:
            raise LiteRTModelError(
                f"{beside} differs from the tokenizer inside {path} ({beside.stat().st_size} "
                f"bytes beside it, {len(own.tokenizer)} inside): one of them is from another "
                "build; remove it or rebuild"
            )
        origin = f"{path}:{embedded.PREFIX}{own.tokenizer_name}"
        return tokenizer_from_bytes(own.tokenizer_name, own.tokenizer, origin)
    except LiteRTModelError:
        raise
    except FileNotFoundError as error:
        raise LiteRTModelError(f"{error} ({path.name} carries none of its own)") from None
    except Exception as error:  # noqa: BLE001  (tokenizers and sentencepiece raise their own)
        where = (
            f"its embedded tokenizer ({embedded.PREFIX}{own.tokenizer_name})"
            if own.tokenizer is not None
            else "the tokenizer beside it"
        )
        raise LiteRTModelError(
            f"{path}: {where} cannot be read ({_one_line(error)[:200]}); rebuild it or copy it "
            "again"
        ) from None


# LiteRT's own notes: "INFO: [environment.cc:36] ...", "WARNING: [npu_registry.cc:34] NPU
# accelerator could not be loaded" (no NPU or OpenVINO on a CPU host is not news) and the "└ "
# lines that continue them.
_LITERT_NOTE = re.compile(r"^(INFO|WARNING): ")
_CONTINUATION = "\u2514 "
_environment = None


def _without_litert_notes(lines: list[str]) -> list[str]:
    """LiteRT's own notes (and their continuation lines) and TensorFlow's dropped."""
    kept, dropping = [], False
    for line in lines:
        if line.startswith(_CONTINUATION) and dropping:
            continue
        dropping = bool(_LITERT_NOTE.match(line)) or tf_logging.is_native_note(line)
        if not dropping:
            kept.append(line)
    return kept


def _litert_notes_hidden():
    """A LiteRT call's stderr notes dropped; its other lines are passed on after it, unless it
    raises (its one-line error then says what the lines said)."""
    return tf_logging.native_notes_hidden(_without_litert_notes, pass_on_after_error=False)


def _quiet_exit():
    # LiteRT's environment logs "INFO: DestroyAccelerator" lines when Python finalises it, after
    # every atexit handler: stderr has nothing left to say by then (tracebacks come before).
    if not tf_logging.verbose():
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def _litert_environment():
    """One LiteRT environment per process (each CompiledModel would otherwise make its own)."""
    global _environment
    if _environment is None:
        with _litert_notes_hidden():
            from ai_edge_litert import compiled_model

            _environment = compiled_model._create_default_environment()  # noqa: SLF001
        atexit.register(_quiet_exit)
    return _environment


def _compile(path, threads, weight_cache: bool, weight_cache_dir, ynnpack: bool):
    """The ``CompiledModel`` on XNNPACK, through the model's weight cache when there is one."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.options import Options

    cache = weight_cache_for(path, weight_cache_dir) if weight_cache else None

    def create(cache_file):
        cpu = CpuOptions(
            num_threads=threads or 0,
            enable_ynnpack=ynnpack,
            xnnpack_weight_cache_path=str(cache_file) if cache_file else "",
        )
        environment = _litert_environment()
        with _litert_notes_hidden():
            return CompiledModel.from_file(
                str(path), environment=environment, options=Options(cpu_options=cpu)
            )

    try:
        if cache is None:
            return create(None), None
        try:
            compiled = create(cache.creation_path)
        except RuntimeError:
            # A cache file XNNPACK refuses (written by another build, damaged): without it.
            cache.discard()
            return create(None), None
        cache.created()
        return compiled, cache
    except RuntimeError as error:
        raise LiteRTModelError(f"{path}: LiteRT cannot load it ({_one_line(error)})") from None


def _read_info(info_path) -> dict:
    try:
        info = json.loads(Path(info_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LiteRTModelError(
            f"{info_path} is not readable export info ({_one_line(error)}); rerun the litert export"
        ) from None
    if not isinstance(info, dict):
        raise LiteRTModelError(f"{info_path} is not export info (a JSON object)")
    return info


def prefill_plan(count: int, lengths, cache_length: int, start: int = 0) -> list[tuple[int, int]]:
    """How to prefill ``count`` tokens from position ``start``: ``[(T, tokens), ...]``.

    ``T`` is an exported prefill length, or 1 for a ``decode`` step when no length fits the cache
    at that position. Each step writes positions ``p .. p + T - 1``, so ``p + T <= cache_length``
    always holds (DYNAMIC_UPDATE_SLICE clamps a start past ``S - T``).
    """
    if start + count > cache_length:
        raise ValueError(
            f"{count} tokens from position {start} exceed the cache of {cache_length} positions"
        )
    plan, position = [], start
    lengths = sorted(set(lengths))
    while count > 0:
        fitting = [t for t in lengths if position + t <= cache_length]
        if not fitting:
            step = (1, 1)  # decode
        elif count >= fitting[-1]:
            step = (fitting[-1], fitting[-1])
        else:
            step = (next(t for t in fitting if t >= count), count)
        plan.append(step)
        position += step[1]
        count -= step[1]
    return plan


def _as_text(prompt) -> str:
    if isinstance(prompt, (bytes, bytearray)):
        # As the codelab route: bytes that are not UTF-8 become U+FFFD.
        return bytes(prompt).decode("utf-8", errors="replace")
    return str(prompt)


def _as_sampler(sampler) -> Sampler:
    if sampler is None or sampler == "greedy":
        return GREEDY
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, dict):
        return Sampler(**sampler)
    raise ValueError(
        f"sampler {sampler!r}: give 'greedy', llm2tflite.core.sampling.Sampler(...) or "
        "its settings as a dict"
    )


class _Signature:
    """One signature of the compiled model with the tensor buffers bound to it.

    The KV caches are one set of buffers (``caches``, by name) bound to every signature as the
    input *and* the output of the same name, as LiteRT-LM binds them: a call's
    DYNAMIC_UPDATE_SLICE writes its rows in place, the next call of any signature reads them
    there. Nothing copies cache rows between calls. Tokens, positions and the mask are written
    into their buffers before each call; the logits are read out of theirs after it.
    """

    def __init__(self, compiled, name: str, caches: dict):
        inputs = compiled.get_input_tensor_details(name)
        outputs = compiled.get_output_tensor_details(name)
        missing = {TOKENS, INPUT_POS, MASK} - set(inputs)
        if missing:
            raise LiteRTModelError(f"signature {name} lacks input(s) {sorted(missing)}")
        self.name = name
        self.length = int(inputs[TOKENS]["shape"][1])
        cache_names = [n for n in inputs if _CACHE_NAME.match(n)]
        if not cache_names or set(cache_names) - set(outputs):
            raise LiteRTModelError(
                f"signature {name}: every kv_cache_* input must come back as "
                f"an output of the same name ({sorted(outputs)})"
            )
        self.cache_shape = tuple(inputs[cache_names[0]]["shape"])
        self.inputs, self.outputs = {}, {}
        for cache in cache_names:
            shape = tuple(inputs[cache]["shape"])
            if cache not in caches:
                buffer = compiled.create_input_buffer_by_name(name, cache)
                # Fresh buffers hold whatever the allocator left; NaN bit patterns at hidden
                # positions would still turn into NaN (NaN * 0): every cache starts as zeros.
                buffer.write(np.zeros(shape, np.float32))
                caches[cache] = (buffer, shape)
            buffer, bound_shape = caches[cache]
            if bound_shape != shape:
                raise LiteRTModelError(
                    f"signature {name}: {cache} has shape {list(shape)}, another signature's "
                    f"{list(bound_shape)}: the signatures must share one cache"
                )
            self.inputs[cache] = self.outputs[cache] = buffer
        for tensor in (TOKENS, INPUT_POS, MASK):
            self.inputs[tensor] = compiled.create_input_buffer_by_name(name, tensor)
        self.tokens = np.zeros(inputs[TOKENS]["shape"], np.int32)
        self.input_pos = np.zeros(inputs[INPUT_POS]["shape"], np.int32)
        self.mask = np.full(inputs[MASK]["shape"], MASK_HIDDEN, np.float32)
        self.logits_shape = None
        if LOGITS in outputs:
            self.logits_shape = tuple(outputs[LOGITS]["shape"])
            self.outputs[LOGITS] = compiled.create_output_buffer_by_name(name, LOGITS)
            self._logits_count = int(np.prod(self.logits_shape))
        self.visible = 0  # mask columns [0, visible) are 0 (decode's incremental mask)
        self._tokens_buffer = self.inputs[TOKENS]
        self._input_pos_buffer = self.inputs[INPUT_POS]
        self._mask_buffer = self.inputs[MASK]
        self._run = compiled.run_by_name
        self._write_inputs()  # fresh buffers hold arbitrary bytes (an id out of range)

    def _write_inputs(self):
        self._tokens_buffer.write(self.tokens)
        self._input_pos_buffer.write(self.input_pos)
        self._mask_buffer.write(self.mask)

    def invoke(self):
        """Write tokens, positions and mask into their buffers, then run the signature."""
        self._write_inputs()
        self._run(self.name, self.inputs, self.outputs)

    def logits(self) -> np.ndarray:
        """The last call's logits, ``logits_shape`` (a copy: V floats per row, no cache)."""
        return self.outputs[LOGITS].read(self._logits_count, np.float32).reshape(self.logits_shape)


class LiteRTModel:
    """A LiteRT-route ``.tflite`` with its tokenizer and export info (see the module docstring).

    ``threads``: XNNPACK's thread count; None leaves the runtime's default.
    ``info``: the export info path; default ``litert_export.json`` next to the model if it is
    there, else the info inside the file (see the module docstring).
    ``weight_cache``: keep XNNPACK's packed weights in a file and map them back on later loads
    (``llm2tflite.litert.weight_cache``); False packs them at every load (a cold load).
    ``weight_cache_dir``: where that file goes (default: ``.xnnpack_cache/`` beside the model).
    ``ynnpack``: let YNNPACK take the operations it supports before XNNPACK (see
    ``YNNPACK_DEFAULT``).

    ``load_seconds``: the constructor's time; ``load_breakdown`` splits it (seconds):
    ``verify_s`` (the flatbuffer verifier, ``check_flatbuffer``), ``metadata_s`` (the embedded
    files and export info), ``tokenizer_s`` (the tokenizer parsed), ``environment_s`` (LiteRT's
    environment, made by the first load of a process: 0.45 s on the twin's machine, about 0 after
    it), ``compile_s`` (the
    ``CompiledModel``: XNNPACK packs the weights, or maps its weight cache), ``signatures_s``
    (tensor buffers bound, signatures checked).
    """

    route = ROUTE

    def __init__(
        self,
        path,
        threads: int | None = None,
        info=None,
        weight_cache: bool = True,
        weight_cache_dir=None,
        ynnpack: bool = YNNPACK_DEFAULT,
    ):
        clock = time.perf_counter
        started = clock()
        self.path = Path(path)
        self.threads = threads
        # Verified before anything of it is read (the metadata too).
        check_flatbuffer(self.path)
        verified = clock()
        try:
            own = embedded.read(self.path)
        except embedded.EmbeddedFilesError as error:
            raise LiteRTModelError(str(error)) from None
        info_path = Path(info) if info else self.path.parent / INFO_FILE
        self.info, info_source = _export_info(self.path, info_path, bool(info), own.info)
        metadata_read = clock()
        self.tokenizer = _runtime_tokenizer(self.path, own)
        tokenizer_read = clock()
        _litert_environment()  # once per process
        environment_made = clock()
        expected = self.info.get("tokenizer_vocabulary_size")
        if expected is not None and self.tokenizer.vocabulary_size() != int(expected):
            raise LiteRTModelError(
                f"{self.tokenizer.path} has {self.tokenizer.vocabulary_size()} tokens, the model's "
                f"tokenizer {expected}: not this model's tokenizer (rerun the runtime_tokenizer "
                "rule)"
            )
        # One block for compiling and preparing: what LiteRT printed while compiling a file
        # whose preparation then fails (e.g. "failed to delegate ... node") is said by the
        # one-line error instead.
        with _litert_notes_hidden():
            self.compiled, self.weight_cache = _compile(
                self.path, threads, weight_cache, weight_cache_dir, ynnpack
            )
            compiled = clock()
            try:
                self._prepare_signatures(path)
            except RuntimeError as error:  # e.g. a damaged constant: "Failed to allocate tensors"
                raise LiteRTModelError(
                    f"{path}: LiteRT cannot prepare its signatures ({_one_line(error)}): the "
                    "file is damaged; rebuild it or copy it again"
                ) from None
        self._check_signatures(path, info_source)
        self.load_seconds = clock() - started
        # Where the load's time went (seconds): see ``load_breakdown`` in the class docstring.
        self.load_breakdown = {
            "verify_s": verified - started,
            "metadata_s": metadata_read - verified,
            "tokenizer_s": tokenizer_read - metadata_read,
            "environment_s": environment_made - tokenizer_read,
            "compile_s": compiled - environment_made,
            "signatures_s": clock() - compiled,
        }

    def _prepare_signatures(self, path):
        names = list(self.compiled.get_signature_list())
        prefill_names = [n for n in names if n.startswith(PREFILL_PREFIX)]
        if DECODE_SIGNATURE not in names or not prefill_names:
            raise LiteRTModelError(
                f"{path}: signatures {names}, expected {DECODE_SIGNATURE} and {PREFILL_PREFIX}<T>"
            )
        caches = {}
        self._decode = _Signature(self.compiled, DECODE_SIGNATURE, caches)
        if self._decode.logits_shape is None or self._decode.length != 1:
            raise LiteRTModelError(
                f"{path}: {DECODE_SIGNATURE} must take one token and return {LOGITS}"
            )
        self._prefill = {}
        for name in prefill_names:
            signature = _Signature(self.compiled, name, caches)
            self._prefill[signature.length] = signature

    def _check_signatures(self, path, info_source: str):
        self.cache_length = int(self._decode.mask.shape[-1])
        for signature in self._signatures():
            if signature.mask.shape[-1] != self.cache_length:
                raise LiteRTModelError(
                    f"{path}: {signature.name}'s mask covers "
                    f"{signature.mask.shape[-1]} positions, decode's "
                    f"{self.cache_length}"
                )
        if self.info.get("cache_length", self.cache_length) != self.cache_length:
            raise LiteRTModelError(
                f"{info_source} describes a cache of {self.info['cache_length']} "
                f"positions, {path} has {self.cache_length}: not its export "
                "info"
            )
        self.prefill_lengths = sorted(self._prefill)
        self.prefill_logits = all(s.logits_shape is not None for s in self._prefill.values())
        try:
            start = self.info["start_token_id"]
            self.start_token_id = None if start is None else int(start)
            self.stop_token_ids = frozenset(int(i) for i in self.info["stop_token_ids"])
        except (KeyError, TypeError, ValueError) as error:
            raise LiteRTModelError(
                f"{info_source}: no valid start_token_id/stop_token_ids ({error}): not a LiteRT "
                "export info"
            ) from None
        self.add_start_token = self.start_token_id is not None and bool(
            self.info.get("add_start_token", True)
        )
        # Generation defaults: the config's generation settings when the export recorded them,
        # else the whole cache.
        self.max_length = min(
            int(self.info.get("max_length") or self.cache_length), self.cache_length
        )
        self.sequence_length = int(self.info.get("sequence_length") or self.max_length)
        self._hidden_ids = frozenset({self.start_token_id, *self.stop_token_ids} - {None})

    # ---- the interface every route offers (llm2tflite.core.generation.CausalLMRuntime) ------

    def token_ids(self, text, with_start: bool = False) -> list[int]:
        ids = self.tokenizer.encode(_as_text(text))
        return [self.start_token_id, *ids] if with_start and self.add_start_token else ids

    def text(self, token_ids) -> str:
        """The text of ids, start and stop tokens left out (as KerasHub's generate output)."""
        return self.tokenizer.decode([i for i in token_ids if int(i) not in self._hidden_ids])

    def prompt_token_limit(self, max_length: int | None = None) -> int:
        """Most prompt tokens kept (start token included), as the codelab route's rule."""
        max_length = self._max_length(max_length)
        return max(1, min(self.sequence_length, max_length - 1))

    def generate(
        self,
        prompt,
        max_length: int | None = None,
        sampler=None,
        on_text=None,
        timings: bool = False,
    ) -> Generation:
        """Continue ``prompt`` (str, or bytes: invalid UTF-8 becomes U+FFFD).

        ``max_length``: tokens in the result, start token included (default: the export's
        ``max_length``, else the cache length; capped at the cache length). ``sampler``: None or
        "greedy", a :class:`llm2tflite.core.sampling.Sampler` or a dict of its settings.
        ``on_text(piece)`` receives the text as it grows (first the kept prompt); the pieces add
        up to ``Generation.text``. An exception raised by ``on_text`` stops generation and
        propagates. ``timings``: fill
        ``Generation.timings`` (seconds): ``tokenize_s``, ``prefill_s``, ``first_token_s`` (call
        to first generated id), ``decode_step_s`` (each step: inputs, invoke, sampling),
        ``decode_invoke_s`` (the runtime's part of each step: buffer writes, run, logits read),
        ``prefill_steps`` (the chunk lengths used).
        """
        started = time.perf_counter()
        settings = _as_sampler(sampler)
        max_length = self._max_length(max_length)
        ids = self.token_ids(prompt, with_start=True)
        if not ids:
            raise ValueError("the prompt is empty and this model has no start token")
        ids = ids[: self.prompt_token_limit(max_length)]
        prompt_tokens = len(ids)
        tokenized = time.perf_counter()
        stream = _TextStream(self.text, on_text) if on_text is not None else None
        if stream is not None:
            stream.update(ids)
        record = {"tokenize_s": tokenized - started, "decode_step_s": [], "decode_invoke_s": []}

        self.rewind()
        record["prefill_steps"] = self.prefill(ids[:-1], 0)
        prefilled = time.perf_counter()
        record["prefill_s"] = prefilled - tokenized
        record["first_token_s"] = None
        pick = settings.start()
        token, position = ids[-1], len(ids) - 1
        steps, invokes = record["decode_step_s"], record["decode_invoke_s"]
        clock = time.perf_counter
        while len(ids) < max_length:
            step_started = clock()
            logits = self.decode_step(token, position)
            invoked = clock()
            token = pick(logits)
            step_ended = clock()
            steps.append(step_ended - step_started)
            invokes.append(invoked - step_started)
            if record["first_token_s"] is None:
                record["first_token_s"] = step_ended - started
            if token in self.stop_token_ids:
                break
            ids.append(token)
            position += 1
            if stream is not None:
                stream.update(ids)
        generation = Generation(self.text(ids), ids, prompt_tokens, record if timings else None)
        if stream is not None:
            stream.finish(generation.text)
        return generation

    @property
    def score_limit(self) -> int:
        """Most ids ``log_likelihoods`` scores at once: the cache length."""
        return self.cache_length

    def log_likelihoods(self, token_ids_with_start) -> list[float]:
        """log p(id_i | ids before it) for every id after the first, through the model's graph.

        From the prefill signatures' logits when the export has them, else one ``decode`` step
        per position (the same computation generation uses). At most the cache length of ids.
        """
        ids = [int(i) for i in token_ids_with_start]
        if len(ids) > self.cache_length:
            raise ValueError(
                f"{len(ids)} ids exceed the cache of {self.cache_length} positions; "
                "score shorter pieces"
            )
        if len(ids) < 2:
            return []
        self.rewind()
        rows = []
        if self.prefill_logits:
            position = 0
            for length, count in prefill_plan(
                len(ids) - 1, self.prefill_lengths, self.cache_length
            ):
                chunk = ids[position : position + count]
                if length == 1 and count == 1 and 1 not in self._prefill:
                    rows.append(np.array(self.decode_step(chunk[0], position), np.float64))
                else:
                    signature = self._prefill[length]
                    self._run(signature, chunk, position)
                    rows.extend(np.array(signature.logits()[0, :count], np.float64))
                position += count
        else:
            for position, token in enumerate(ids[:-1]):
                rows.append(np.array(self.decode_step(token, position), np.float64))
        logits = np.stack(rows)
        log_normalizer = np.logaddexp.reduce(logits, axis=-1)
        targets = np.asarray(ids[1:])
        return (logits[np.arange(len(targets)), targets] - log_normalizer).tolist()

    # ---- internals ---------------------------------------------------------------------------

    def _signatures(self):
        return [self._decode, *self._prefill.values()]

    def _max_length(self, max_length):
        if max_length is None:
            return self.max_length
        if max_length < 1:
            raise ValueError("max_length must be at least 1 (the start token)")
        return min(int(max_length), self.cache_length)

    # ---- stepping: the calls ``generate`` makes, for callers that keep one sequence across
    # calls (``llm2tflite.litert.chat``: a conversation's turns). Positions are the caller's:
    # ``prefill`` from p writes rows p .., ``decode_step`` at p writes row p and returns the
    # logits of the token at p + 1; ``rewind(p)`` forgets the rows from p on.

    def rewind(self, position: int = 0):
        """Continue from ``position`` (0: a new sequence): the rows from there on, of an earlier
        sequence or of a chat turn taken back, stay in the caches, hidden by the mask until
        overwritten."""
        decode = self._decode
        if decode.visible > position:
            decode.mask[..., position : decode.visible] = MASK_HIDDEN
            decode.visible = position

    def prefill(self, tokens, position: int) -> list[int]:
        """Prefill ``tokens`` from ``position`` (see ``prefill_plan``); the lengths used."""
        used = []
        for length, count in prefill_plan(
            len(tokens), self.prefill_lengths, self.cache_length, position
        ):
            chunk = tokens[:count]
            tokens = tokens[count:]
            if length == 1 and 1 not in self._prefill:
                self.decode_step(chunk[0], position)
            else:
                self._run(self._prefill[length], chunk, position)
            used.append(length)
            position += count
        return used

    def _run(self, signature, tokens, position: int):
        """One prefill call: ``tokens`` (at most T) at ``position``, padded as LiteRT-LM pads."""
        count, length = len(tokens), signature.length
        if position + length > self.cache_length or count > length:
            raise AssertionError(f"{signature.name} at position {position}: would clamp")
        signature.tokens[...] = 0
        signature.tokens[0, :count] = tokens
        signature.input_pos[...] = 0
        signature.input_pos[:count] = np.arange(position, position + count, dtype=np.int32)
        columns = np.arange(self.cache_length)
        rows = np.arange(position, position + count)[:, None]
        signature.mask[0, 0, :count] = np.where(columns <= rows, 0.0, MASK_HIDDEN)
        signature.mask[0, 0, count:] = MASK_HIDDEN
        signature.invoke()

    def decode_step(self, token: int, position: int):
        """``decode`` at ``position``: the logits of the next token."""
        if not 0 <= position < self.cache_length:
            # DYNAMIC_UPDATE_SLICE would clamp the row onto the last one.
            raise ValueError(f"position {position} is outside the cache of {self.cache_length}")
        decode = self._decode
        decode.tokens[0, 0] = token
        decode.input_pos[0] = position
        if position >= decode.visible:
            decode.mask[0, 0, 0, decode.visible : position + 1] = 0.0
            decode.visible = position + 1
        decode.invoke()
        return decode.logits()[0, 0]


class _TextStream:
    """Pass on the text of a growing id list piece by piece, never a piece that could change."""

    def __init__(self, text_of, on_text):
        self._text_of = text_of
        self._on_text = on_text
        self.emitted = ""

    def update(self, ids):
        text = self._text_of(ids).rstrip(_REPLACEMENT)
        self._emit(text)

    def finish(self, text):
        self._emit(text)

    def _emit(self, text):
        # Decoding more ids only changes an incomplete character at the end (held back above).
        if len(text) > len(self.emitted) and text.startswith(self.emitted):
            piece, self.emitted = text[len(self.emitted) :], text
            self._on_text(piece)


# ---- measuring the Python loop -------------------------------------------------------------------


def _naive_decode_steps(path, threads, steps: int) -> list[float]:
    """Seconds of each decode step of the contract followed literally: signature runner calls
    that pass every cache in and out (what a first Python loop does)."""
    from ai_edge_litert.interpreter import Interpreter

    decode = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner(
        DECODE_SIGNATURE
    )
    details = decode.get_input_details()
    caches = {
        name: np.zeros(d["shape"], np.float32)
        for name, d in details.items()
        if _CACHE_NAME.match(name)
    }
    length = details[MASK]["shape"][-1]
    mask = np.full((1, 1, 1, length), MASK_HIDDEN, np.float32)
    seconds = []
    for position in range(steps):
        started = time.perf_counter()
        mask[..., position] = 0
        out = decode(
            tokens=np.array([[1]], np.int32),
            input_pos=np.array([position], np.int32),
            mask=mask,
            **caches,
        )
        caches = {name: out[name] for name in caches}
        int(np.argmax(out[LOGITS][0, 0]))
        seconds.append(time.perf_counter() - started)
    return seconds


def measure_loop(
    path,
    threads: int | None = None,
    rounds: int = 5,
    prompt: str = "Estoy disfrutando de",
    ynnpack: bool = YNNPACK_DEFAULT,
) -> dict:
    """Per-decode-step milliseconds, timed interleaved (A B C D A B C D ...) in this process.

    - ``invoke``: the ``decode`` signature's run alone (buffers bound, no writes), each call timed;
    - ``loop``: a step of ``LiteRTModel.generate`` (buffer writes, run, logits read, greedy
      pick), from
      ``Generation.timings["decode_step_s"]``;
    - ``loop_streaming``: the same with an ``on_text`` callback (as the CLI streams): the time
      between consecutive pieces of text (a step whose token ends inside a character passes no
      piece on, so a few intervals span two steps);
    - ``naive``: a step of a loop over the Interpreter's signature runner that passes whole caches
      in and out.
    Medians of every step of every round (a shared machine's preemptions inflate means). Stop
    tokens are ignored here, so that every generation runs to the end of the cache.
    """
    model = LiteRTModel(path, threads=threads, ynnpack=ynnpack)
    model.stop_token_ids = frozenset()
    decode = model._decode
    run = model.compiled.run_by_name
    figures = {name: [] for name in ("invoke", "loop", "loop_streaming", "naive")}
    steps = model.cache_length - len(model.token_ids(prompt, with_start=True))
    clock = time.perf_counter
    for _ in range(rounds):
        for _ in range(steps):
            started = clock()
            run(decode.name, decode.inputs, decode.outputs)
            figures["invoke"].append(clock() - started)
        generation = model.generate(prompt, max_length=model.cache_length, timings=True)
        figures["loop"] += generation.timings["decode_step_s"]
        stamps = []
        model.generate(
            prompt,
            max_length=model.cache_length,
            on_text=lambda piece, stamp=stamps.append: stamp(clock()),
        )
        figures["loop_streaming"] += [b - a for a, b in zip(stamps[1:], stamps[2:])]
        figures["naive"] += _naive_decode_steps(path, threads, steps)
    return {
        "model": str(path),
        "threads": threads,
        "rounds": rounds,
        "steps": steps,
        "ms_per_step": {k: statistics.median(v) * 1e3 for k, v in figures.items()},
        "p90_ms": {k: float(np.percentile(v, 90)) * 1e3 for k, v in figures.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Measure the LiteRT runtime's Python loop against bare decode invokes."
    )
    parser.add_argument("models", nargs="+", help="LiteRT-route .tflite files (interleaved)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--ynnpack", action="store_true", help="let YNNPACK take the operations it supports"
    )
    args = parser.parse_args(argv)
    results = {str(path): [] for path in args.models}
    for _ in range(args.rounds):  # one round of each file per pass: A B C A B C ...
        for path in args.models:
            results[str(path)].append(
                measure_loop(path, args.threads, rounds=1, ynnpack=args.ynnpack)
            )
    for path, mine in results.items():
        median = {
            key: round(statistics.median(r["ms_per_step"][key] for r in mine), 4)
            for key in mine[0]["ms_per_step"]
        }
        print(
            json.dumps(
                {
                    "model": path,
                    "threads": args.threads,
                    "ynnpack": args.ynnpack,
                    "rounds": args.rounds,
                    "steps_per_round": mine[0]["steps"],
                    "median_ms_per_step": median,
                    "python_loop_overhead_ms": round(median["loop"] - median["invoke"], 4),
                    "loop_over_invoke": round(median["loop"] / median["invoke"], 3),
                    "naive_over_loop": round(median["naive"] / median["loop"], 3),
                }
            )
        )


if __name__ == "__main__":
    main()
