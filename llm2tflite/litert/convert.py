"""Convert the LiteRT route's SavedModel to a builtins-only fp32 ``.tflite`` (all signatures).

Steps, each checked:

1. ``TFLiteConverter`` with ``TFLITE_BUILTINS`` only (no Select TF ops, no custom ops): an op
   without a builtin kernel fails the conversion, reported in one line with the op names.
2. Embedding GATHERs become EMBEDDING_LOOKUPs (``rewrite_embedding_lookups``): a row lookup in
   a constant float table is what EMBEDDING_LOOKUP is, and ai-edge-quantizer quantizes that op
   but not GATHER. With a GATHER, the table shared with the tied output projection would be
   stored twice in a quantized file (float for the lookup, int8 for FULLY_CONNECTED).
3. Every tensor name unique across signatures (``unique_tensor_names``): ai-edge-quantizer
   refuses a model whose subgraphs repeat a name ("Tensor name ... is not unique").
4. Audit: any custom (or Flex) op left fails with one line (``BuiltinsOnlyError``).
5. With ``--tokenizer``: the export info and the runtime tokenizer embedded as metadata
   (``llm2tflite.litert.embedded``), so that the file runs when copied alone.

The report (``<variant>.conversion.json``): time, peak RSS, size, op counts per signature,
rewritten lookups.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import llm2tflite  # noqa: F401
from llm2tflite.core import conversion_report, flatbuffer, memory, tf_logging
from llm2tflite.core.conversion_report import summary
from llm2tflite.litert import embedded
from llm2tflite.litert import export as litert_export


class BuiltinsOnlyError(RuntimeError):
    """The model needs an op that is not a TFLite builtin (Flex / custom)."""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _saved_model_converter(saved_model_dir, signature_keys):
    """``TFLiteConverter.from_saved_model`` without its two Python restores of the model.

    ``from_saved_model`` restores the whole SavedModel in Python (every weight) to look up the
    signature keys, and ``convert`` restores it once more only to read its graph debug info;
    the MLIR importer then reads the SavedModel on its own. At 124M parameters each restore
    took 6-9 s of a 30-50 s conversion. This builds the same converter object
    (``TFLiteSavedModelConverterV2``, TF 2.18) from the SavedModel's protos instead: the keys
    are checked against its signature defs and the debug info is the one the restore would
    read. The flatbuffer is byte-identical (tested).
    """
    import types
    from unittest import mock

    from tensorflow.core.framework import graph_debug_info_pb2
    from tensorflow.lite.python import lite
    from tensorflow.python.saved_model import loader_impl

    saved_model_dir = str(saved_model_dir)
    proto, debug_info = loader_impl.parse_saved_model_with_debug_info(saved_model_dir)
    known = {key for graph in proto.meta_graphs for key in graph.signature_def}
    missing = [key for key in signature_keys if key not in known]
    if missing:
        raise ValueError(f"{saved_model_dir} has no signature(s) {missing}; it has {sorted(known)}")
    lite.TFLiteConverterBase._set_original_model_type(
        lite.conversion_metadata_fb.ModelType.TF_SAVED_MODEL
    )
    converter = lite.TFLiteSavedModelConverterV2(saved_model_dir, {"serve"}, list(signature_keys))
    restored = types.SimpleNamespace(
        graph_debug_info=debug_info or graph_debug_info_pb2.GraphDebugInfo()
    )
    convert = converter.convert

    def convert_reading_debug_info_only():
        with mock.patch.object(lite, "_load", lambda *args, **kwargs: restored):
            return convert()

    converter.convert = convert_reading_debug_info_only
    return converter


def convert_builtins_only(saved_model_dir, signature_keys) -> bytes:
    """The SavedModel's signatures as one builtins-only flatbuffer (float32)."""
    import tensorflow as tf
    from tensorflow.lite.python.convert_phase import ConverterError

    converter = _saved_model_converter(saved_model_dir, signature_keys)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    # The pass that rewrites +-inf constants as +-float max visits every weight element: about
    # half of the conversion time of GPT-2 124M (3 signatures, interleaved runs on 2 cores:
    # 28-50 s without, 57-107 s with). These graphs hold no infinite constants (the mask is an
    # input); ``check_finite_constants`` proves it on every converted model.
    converter.canonicalizing_inf_as_min_max_float = False
    try:
        return converter.convert()
    except ConverterError as error:
        ops = sorted({e.operator.name for e in getattr(error, "errors", []) if e.operator.name})
        detail = (
            f"ops without a TFLite builtin kernel: {', '.join(ops)}"
            if ops
            else _one_line(str(error).splitlines()[0] if str(error) else repr(error))
        )
        raise BuiltinsOnlyError(f"builtins-only conversion failed: {detail}") from None


# ---- flatbuffer object API helpers ---------------------------------------------------------


def read_model(flatbuffer):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))


# flatbuffers' builder, and the format's 32-bit offsets, stop at 2 GiB; above this much weight
# data (the tables need room too) the weights go after the flatbuffer.
INLINE_BUFFERS_LIMIT = 2**31 - 2**26


def write_model(model, buffers_outside: bool | None = None) -> bytearray:
    """Serialize a ``ModelT``: weights inside the flatbuffer, or after it when they do not fit.

    Inside, as numpy arrays so that flatbuffers copies them in bulk. After (``buffers_outside``;
    by default only when the weights exceed ``INLINE_BUFFERS_LIMIT``), as TFLite's converter and
    ai-edge-quantizer write models above 2 GB: each weight ``Buffer`` holds an ``offset`` from
    the start of the file and a ``size`` instead of ``data``, the data 16-byte aligned after the
    flatbuffer. The offsets are known only once the tables are built, so the tables are built
    with placeholder values (non-default, so that the fields are stored) and patched in place.
    Metadata buffers (the embedded files) stay inside, where every reader looks for them.
    ``model`` is left as it was.
    """
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils

    for buffer in model.buffers:
        if buffer.data is not None and not isinstance(buffer.data, np.ndarray):
            buffer.data = np.frombuffer(bytes(buffer.data), dtype=np.uint8)
    weights = sum(len(b.data) for b in model.buffers if b.data is not None)
    if buffers_outside is None:
        buffers_outside = weights > INLINE_BUFFERS_LIMIT
    if not buffers_outside:
        return flatbuffer_utils.convert_object_to_bytearray(model)

    kept_inside = {entry.buffer for entry in model.metadata or []}
    moved = {
        index: buffer.data
        for index, buffer in enumerate(model.buffers)
        if index not in kept_inside and buffer.data is not None and len(buffer.data)
    }
    for index in moved:
        buffer = model.buffers[index]
        buffer.data, buffer.offset, buffer.size = None, 1, 1
    try:
        tables = flatbuffer_utils.convert_object_to_bytearray(model)
    finally:
        for index, data in moved.items():
            buffer = model.buffers[index]
            buffer.data, buffer.offset, buffer.size = data, 0, 0

    def aligned(position: int) -> int:
        return (position + 15) & ~15

    offsets, end = {}, aligned(len(tables))
    for index, data in moved.items():
        offsets[index] = end
        end = aligned(end + len(data))
    out = bytearray(end)
    out[: len(tables)] = tables
    del tables
    packed = flatbuffer.root_model(out)
    for index, data in moved.items():
        start = offsets[index]
        flatbuffer_utils.update_packed_buffer(packed.Buffers(index), offset=start, size=len(data))
        out[start : start + len(data)] = memoryview(data)
    return out


def builtin_code(opcode) -> int:
    return max(opcode.builtinCode, opcode.deprecatedBuiltinCode)


def op_name(model, op) -> str:
    """BuiltinOperator name of ``op`` (``CUSTOM:<code>`` for custom and Flex ops)."""
    schema = flatbuffer.schema()
    opcode = model.operatorCodes[op.opcodeIndex]
    code = builtin_code(opcode)
    if code == schema.BuiltinOperator.CUSTOM:
        custom = opcode.customCode
        return f"CUSTOM:{custom.decode() if isinstance(custom, bytes) else custom}"
    return _BUILTIN_NAMES()[code]


_builtin_names_cache: dict[int, str] = {}


def _BUILTIN_NAMES() -> dict[int, str]:  # noqa: N802  (a constant, computed once)
    if not _builtin_names_cache:
        operators = flatbuffer.schema().BuiltinOperator
        _builtin_names_cache.update(
            {value: name for name, value in vars(operators).items() if not name.startswith("_")}
        )
    return _builtin_names_cache


def _opcode_index(model, code: int) -> int:
    schema = flatbuffer.schema()
    for index, opcode in enumerate(model.operatorCodes):
        if builtin_code(opcode) == code and opcode.customCode is None:
            return index
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = code
    # The pre-v3 byte field: codes above 127 are stored as PLACEHOLDER_FOR_GREATER_OP_CODES.
    opcode.deprecatedBuiltinCode = min(code, 127)
    opcode.version = 1
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _tensor_name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else (name or "")


def _signature_key(signature) -> str:
    key = signature.signatureKey
    return key.decode() if isinstance(key, bytes) else key


def _add_tensor(model, subgraph, name, shape, tensor_type, data=None) -> int:
    import numpy as np

    schema = flatbuffer.schema()
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = list(shape)
    tensor.shapeSignature = list(shape)
    tensor.type = tensor_type
    tensor.buffer = 0  # the empty buffer: a computed tensor
    if data is not None:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _reshape_op(model, subgraph, source: int, target: int, shape) -> object:
    import numpy as np

    schema = flatbuffer.schema()
    shape_tensor = _add_tensor(
        model,
        subgraph,
        f"{_tensor_name(subgraph.tensors[target])}/shape",
        [len(shape)],
        schema.TensorType.INT32,
        np.asarray(shape, dtype=np.int32),
    )
    op = schema.OperatorT()
    op.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.RESHAPE)
    op.inputs = [source, shape_tensor]
    op.outputs = [target]
    op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    op.builtinOptions = schema.ReshapeOptionsT()
    op.builtinOptions.newShape = list(shape)
    return op


def _is_constant(model, tensor) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _is_embedding_gather(model, subgraph, op) -> bool:
    """A GATHER of whole rows (axis 0, no batch dims) of a constant 2-D float table by int32
    ids: exactly EMBEDDING_LOOKUP's semantics."""
    schema = flatbuffer.schema()
    if builtin_code(model.operatorCodes[op.opcodeIndex]) != schema.BuiltinOperator.GATHER:
        return False
    table, ids = (subgraph.tensors[i] for i in op.inputs[:2])
    options = op.builtinOptions
    axis = getattr(options, "axis", 0)
    return (
        len(table.shape) == 2
        and table.type == schema.TensorType.FLOAT32
        and _is_constant(model, table)
        and ids.type == schema.TensorType.INT32
        and not _is_constant(model, ids)
        and axis in (0, -2)
        and getattr(options, "batchDims", 0) == 0
    )


def rewrite_embedding_lookups(model) -> list[dict]:
    """Replace every embedding GATHER by EMBEDDING_LOOKUP, in place; return what was rewritten.

    EMBEDDING_LOOKUP takes 1-D ids and returns [n, D]: ids of another rank are flattened by a
    RESHAPE before it and the rows reshaped back to the GATHER's output shape after it.
    """
    import math

    schema = flatbuffer.schema()
    lookup_code = _opcode_index(model, schema.BuiltinOperator.EMBEDDING_LOOKUP)
    rewritten = []
    for subgraph, signature in zip(model.subgraphs, _signatures_by_subgraph(model)):
        operators = []
        for op in subgraph.operators:
            if not _is_embedding_gather(model, subgraph, op):
                operators.append(op)
                continue
            table_index, ids_index = op.inputs[:2]
            table, ids = subgraph.tensors[table_index], subgraph.tensors[ids_index]
            output_index = op.outputs[0]
            output_shape = list(subgraph.tensors[output_index].shape)
            count = math.prod(ids.shape)
            lookup = schema.OperatorT()
            lookup.opcodeIndex = lookup_code
            lookup.builtinOptionsType = schema.BuiltinOptions.NONE
            if len(ids.shape) == 1:
                lookup.inputs, lookup.outputs = [ids_index, table_index], [output_index]
                operators.append(lookup)
            else:
                base = _tensor_name(subgraph.tensors[output_index])
                flat_ids = _add_tensor(
                    model, subgraph, f"{base}/ids", [count], schema.TensorType.INT32
                )
                rows = _add_tensor(
                    model,
                    subgraph,
                    f"{base}/rows",
                    [count, table.shape[1]],
                    schema.TensorType.FLOAT32,
                )
                lookup.inputs, lookup.outputs = [flat_ids, table_index], [rows]
                operators += [
                    _reshape_op(model, subgraph, ids_index, flat_ids, [count]),
                    lookup,
                    _reshape_op(model, subgraph, rows, output_index, output_shape),
                ]
            rewritten.append(
                {
                    "signature": signature,
                    "table": _tensor_name(table),
                    "table_shape": list(table.shape),
                    "ids_shape": list(ids.shape),
                }
            )
        subgraph.operators = operators
    _drop_unused_opcodes(model)
    return rewritten


def _drop_unused_opcodes(model) -> None:
    used = sorted({op.opcodeIndex for sg in model.subgraphs for op in sg.operators})
    remap = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            op.opcodeIndex = remap[op.opcodeIndex]


def _signatures_by_subgraph(model) -> list[str]:
    keys = {sig.subgraphIndex: _signature_key(sig) for sig in model.signatureDefs or []}
    return [keys.get(i, f"subgraph_{i}") for i in range(len(model.subgraphs))]


def unique_tensor_names(model) -> int:
    """Prefix ``<signature>/`` to every tensor name that occurs more than once in the model.

    The converter names each signature's inputs ``<signature>_<input>:0`` but reuses internal
    names (constants, ``StatefulPartitionedCall:0`` outputs) in every subgraph. Signature keys
    (``tokens``, ``kv_cache_k_0``, ...) are separate from tensor names and stay as they are.
    Returns how many tensors were renamed.
    """
    counts = collections.Counter(_tensor_name(t) for sg in model.subgraphs for t in sg.tensors)
    renamed = 0
    for subgraph, signature in zip(model.subgraphs, _signatures_by_subgraph(model)):
        for tensor in subgraph.tensors:
            name = _tensor_name(tensor)
            if counts[name] > 1:
                tensor.name = f"{signature}/{name}"
                renamed += 1
    names = collections.Counter(_tensor_name(t) for sg in model.subgraphs for t in sg.tensors)
    # A name repeated inside one subgraph keeps a duplicate: number those.
    for subgraph in model.subgraphs:
        for index, tensor in enumerate(subgraph.tensors):
            if names[_tensor_name(tensor)] > 1:
                tensor.name = f"{_tensor_name(tensor)}#{index}"
    return renamed


def op_counts(model) -> dict[str, dict[str, int]]:
    """{signature: {op name: count}}, ops sorted by name."""
    counts = {}
    for subgraph, signature in zip(model.subgraphs, _signatures_by_subgraph(model)):
        counter = collections.Counter(op_name(model, op) for op in subgraph.operators)
        counts[signature] = dict(sorted(counter.items()))
    return counts


def check_builtins_only(model) -> None:
    """Fail (one line) if any custom or Flex op is left."""
    custom = sorted(
        {name for ops in op_counts(model).values() for name in ops if name.startswith("CUSTOM:")}
    )
    if custom:
        raise BuiltinsOnlyError(
            f"the model is not builtins-only: custom/Flex ops {', '.join(custom)}"
        )


def check_finite_constants(model) -> None:
    """Fail (one line) if a float constant holds inf or NaN (see ``convert_builtins_only``)."""
    import numpy as np

    schema = flatbuffer.schema()
    dtypes = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16}
    checked = set()
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if (
                tensor.type not in dtypes
                or tensor.buffer in checked
                or not _is_constant(model, tensor)
            ):
                continue
            checked.add(tensor.buffer)
            values = np.frombuffer(model.buffers[tensor.buffer].data, dtype=dtypes[tensor.type])
            if not np.isfinite(values).all():
                raise BuiltinsOnlyError(f"constant {_tensor_name(tensor)} holds inf or NaN")


def tensor_names_unique(model) -> bool:
    names = [_tensor_name(t) for sg in model.subgraphs for t in sg.tensors]
    return len(names) == len(set(names))


def convert(saved_model_dir, signature_keys, tokenizer=None) -> tuple[bytes, dict]:
    """The fp32 builtins-only flatbuffer and its report; with ``tokenizer`` (the runtime
    tokenizer file), the SavedModel's export info and that file embedded in it."""
    started = time.perf_counter()
    flatbuffer = convert_builtins_only(saved_model_dir, signature_keys)
    converted = time.perf_counter()
    model = read_model(flatbuffer)
    del flatbuffer
    lookups = rewrite_embedding_lookups(model)
    renamed = unique_tensor_names(model)
    check_builtins_only(model)
    check_finite_constants(model)
    if not tensor_names_unique(model):
        raise RuntimeError("tensor names are still not unique after renaming")
    embedded_entries = {}
    if tokenizer is not None:
        embedded_entries = embedded.runtime_entries(
            litert_export.read_info(saved_model_dir), tokenizer
        )
        embedded.embed(model, embedded_entries)
    flatbuffer = write_model(model)
    report = {
        "variant": "fp32",
        "signatures": [sig for sig in _signatures_by_subgraph(model)],
        "size_bytes": len(flatbuffer),
        "convert_seconds": round(time.perf_counter() - started, 2),
        "tf_converter_seconds": round(converted - started, 2),
        "peak_rss_mb": round(memory.peak_rss_mb(), 1),
        "embedding_lookups": lookups,
        "renamed_tensors": renamed,
        "op_counts": op_counts(model),
        "embedded_bytes": {name: len(data) for name, data in embedded_entries.items()},
    }
    return flatbuffer, report


def exit_on_builtins_only_error(stage, *args):
    """``stage(*args)``; a file that is not builtins-only ends the process with one line."""
    try:
        return stage(*args)
    except BuiltinsOnlyError as error:
        print(f"llm2tflite: error: {error}", file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", required=True)
    parser.add_argument("--out", required=True, help=".tflite file to write")
    parser.add_argument("--report", required=True, help="conversion report JSON to write")
    parser.add_argument(
        "--tokenizer",
        help="the runtime tokenizer file (tokenizer.json / tokenizer.model) to embed with the "
        "export info",
    )
    args = parser.parse_args(argv)
    info = litert_export.read_info(args.saved_model)
    flatbuffer, report = exit_on_builtins_only_error(
        convert, args.saved_model, litert_export.signature_keys(info), args.tokenizer
    )
    conversion_report.write(args.out, flatbuffer, args.report, report)
    print(
        f"converted {args.saved_model} -> {args.out}: {summary(report)}, "
        f"{len(report['embedding_lookups'])} embedding lookups"
    )


if __name__ == "__main__":
    # The log keeps the stage's own lines, not the converter's absl notes.
    with tf_logging.native_notes_hidden():
        main()
