"""Read a .tflite flatbuffer without loading its weights: schema bindings, signatures, metadata.

One home for the TFLite schema's Python bindings (``schema_py_generated``): the route dispatcher,
the op audit and the LiteRT converter's graph edits all read files through it. ai-edge-litert's
copy of the bindings imports no TensorFlow (a LiteRT model's process should not pay for it);
TensorFlow's is the same schema.

``verify`` runs LiteRT's flatbuffer verifier on a file before a runtime maps it (both routes'
interpreters crash the process on some damaged files); ``read_metadata`` / ``set_metadata`` read
and write the ``Model.metadata`` entries (name -> buffer), where a file can carry files of its
own (``llm2tflite.litert.embedded``).
"""

from __future__ import annotations

import mmap

TFLITE_IDENTIFIER = b"TFL3"


class NotAFlatbufferError(ValueError):
    """The bytes are not a TFLite flatbuffer."""


class DamagedFlatbufferError(ValueError):
    """The flatbuffer fails LiteRT's verifier (truncated, or altered since it was written)."""


def schema():
    """The TFLite flatbuffer schema's Python bindings."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:  # pragma: no cover - both are pinned in requirements.txt
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def is_flatbuffer(data) -> bool:
    return len(data) >= 8 and bytes(data[4:8]) == TFLITE_IDENTIFIER


def root_model(data):
    """The flatbuffer's ``Model`` table over ``data`` (bytes or a memory map), read lazily."""
    model_class = schema().Model
    get_root = getattr(model_class, "GetRootAs", None) or model_class.GetRootAsModel
    return get_root(data, 0)


def signature_keys(path) -> list[str]:
    """The signature keys of a .tflite file.

    The file is memory-mapped: only the pages holding the signature table are read.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if not is_flatbuffer(data):
            raise NotAFlatbufferError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
        model = root_model(data)
        keys = []
        for i in range(model.SignatureDefsLength()):
            key = model.SignatureDefs(i).SignatureKey()
            keys.append(key.decode("utf-8") if isinstance(key, bytes) else str(key))
        del model  # release the views into the map before it closes
    return keys


def _first_line(error) -> str:
    lines = [line.strip(" \u2514") for line in str(error).splitlines() if line.strip(" \u2514")]
    return lines[0] if lines else type(error).__name__


def verify(path) -> None:
    """Refuse a damaged file (``DamagedFlatbufferError``, one line) before a runtime maps it.

    LiteRT's ``Interpreter`` without delegates runs the flatbuffer verifier (every offset, vector
    and string inside the file; buffer offsets and sizes) and builds the graph (each tensor's
    buffer index in range), allocating nothing and packing no weight: milliseconds, following
    the tables rather than the weights (docs/cli.md). TensorFlow's interpreter (the codelab
    route) skips the verifier and LiteRT's ``CompiledModel`` crashes on some files it refuses.
    Custom and Flex ops are not resolved here (the codelab route's runtime resolves them);
    weight bytes are not read.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    except (ValueError, RuntimeError) as error:
        raise DamagedFlatbufferError(_first_line(error)) from None


def _vector_bytes(table, field_offset: int, data) -> bytes | None:
    offset = table.Offset(field_offset)
    if not offset:
        return None
    start = table.Vector(offset)
    length = table.VectorLen(offset)
    if start + length > len(data):
        raise IndexError(f"vector of {length} bytes at {start} runs past the end ({len(data)})")
    return bytes(data[start : start + length])


def metadata_entries(data, prefix: str = "") -> dict[str, bytes]:
    """The ``Model.metadata`` entries of a flatbuffer whose names start with ``prefix``:
    name -> the bytes of its buffer (inside the flatbuffer, or at the buffer's file offset)."""
    model = root_model(data)
    entries = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = entry.Name()
        name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
        if not name.startswith(prefix):
            continue
        if entry.Buffer() >= model.BuffersLength():
            raise IndexError(f"metadata {name!r} names buffer {entry.Buffer()}, out of range")
        buffer = model.Buffers(entry.Buffer())
        content = _vector_bytes(buffer._tab, 4, data)  # Buffer.data
        if not content and buffer.Offset() > 1:  # stored after the flatbuffer (> 2 GB files)
            start, size = buffer.Offset(), buffer.Size()
            if start + size > len(data):
                raise IndexError(f"metadata {name!r} runs past the end of the file")
            content = bytes(data[start : start + size])
        entries[name] = content or b""
    return entries


def read_metadata(path, prefix: str = "") -> dict[str, bytes]:
    """``metadata_entries`` of a .tflite file, memory-mapped: only the pages read are loaded."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if not is_flatbuffer(data):
            raise NotAFlatbufferError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
        return metadata_entries(data, prefix)


def set_metadata(model, entries: dict[str, bytes]) -> None:
    """Put ``entries`` (name -> bytes) into an object-API ``ModelT``'s metadata, in place.

    An entry of the same name gets the new bytes in its buffer; new names are appended in sorted
    order (the same entries give the same flatbuffer).
    """
    import numpy as np

    bindings = schema()
    model.metadata = list(model.metadata or [])
    by_name = {
        (m.name.decode("utf-8") if isinstance(m.name, bytes) else m.name): m for m in model.metadata
    }
    for name in sorted(entries):
        data = np.frombuffer(bytes(entries[name]), dtype=np.uint8)
        if name in by_name:
            model.buffers[by_name[name].buffer].data = data
            continue
        buffer = bindings.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        entry = bindings.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)


def _buffer_size(buffer) -> int:
    size = buffer.DataLength()
    if not size and buffer.Offset() > 1:  # stored after the flatbuffer (> 2 GB files)
        size = buffer.Size()
    return int(size)


def constant_bytes(path) -> dict:
    """The bytes of the constant tensors of a .tflite file (weights, quantized or not), read from
    its tables without loading them (memory-mapped).

    ``file_bytes``: the file's size; ``constant_bytes``: every buffer a tensor of any subgraph
    refers to, each counted once (metadata buffers are not tensors' and are left out);
    ``signatures``: per signature key, the constant bytes of its subgraph's tensors, i.e. what
    one call of that signature must read at least once (its weights).
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if not is_flatbuffer(data):
            raise NotAFlatbufferError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
        # In a function of its own: no view into the map outlives it.
        return _constant_bytes(data)


def _constant_bytes(data) -> dict:
    model = root_model(data)
    sizes = [_buffer_size(model.Buffers(i)) for i in range(model.BuffersLength())]
    by_subgraph = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        indices = {subgraph.Tensors(t).Buffer() for t in range(subgraph.TensorsLength())}
        by_subgraph.append({i for i in indices if 0 < i < len(sizes) and sizes[i]})
    signatures = {}
    for i in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(i)
        key = signature.SignatureKey()
        key = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        signatures[key] = sum(sizes[b] for b in by_subgraph[signature.SubgraphIndex()])
    every = set().union(*by_subgraph)
    return {
        "file_bytes": len(data),
        "constant_bytes": sum(sizes[b] for b in every),
        "signatures": signatures,
    }
