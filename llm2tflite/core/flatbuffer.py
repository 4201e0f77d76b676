"""Read a .tflite flatbuffer without loading its weights: the schema bindings and signatures.

One home for the TFLite schema's Python bindings (``schema_py_generated``): the route dispatcher,
the op audit and the LiteRT converter's graph edits all read files through it. ai-edge-litert's
copy of the bindings imports no TensorFlow (a LiteRT model's process should not pay for it);
TensorFlow's is the same schema.
"""

from __future__ import annotations

import mmap

TFLITE_IDENTIFIER = b"TFL3"


class NotAFlatbufferError(ValueError):
    """The bytes are not a TFLite flatbuffer."""


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
