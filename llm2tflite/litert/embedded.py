"""The LiteRT route's runtime files inside its ``.tflite``: export info and tokenizer as metadata.

A LiteRT-route file carries what a runtime needs beside its graph, so that it runs when copied
alone (docs/litert-contract.md#self-describing-files). Both are entries of the flatbuffer's
``Model.metadata`` list (name -> buffer index), which LiteRT and LiteRT-LM skip (they read only
the names they know, e.g. ``min_runtime_version``):

- ``llm2tflite.litert_export.json``: the export info, the JSON text of ``litert_export.json``;
- ``llm2tflite.tokenizer.json`` or ``llm2tflite.tokenizer.model``: the runtime tokenizer file
  (``llm2tflite.litert.runtime_tokenizer``), its bytes as written.

``llm2tflite.litert.convert`` embeds them in the fp32 file and ``llm2tflite.litert.quantize``
carries the fp32 file's entries into each quantized one, both through ``embed``. The runtime
reads them with ``read`` (``llm2tflite.litert.runtime``); the sidecar files stay for the tools
that take them (LiteRT-LM's bundler, the demo pages). Standard library and
``llm2tflite.core.flatbuffer`` only: no TensorFlow.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import NamedTuple

from llm2tflite.core import flatbuffer
from llm2tflite.litert.contract import INFO_FILE, RUNTIME_TOKENIZER_FILES

PREFIX = "llm2tflite."
INFO_ENTRY = PREFIX + INFO_FILE
TOKENIZER_ENTRIES = {PREFIX + name: name for name in RUNTIME_TOKENIZER_FILES.values()}


class EmbeddedFilesError(ValueError):
    """The file's embedded runtime files cannot be read or do not fit together (one line)."""


class Embedded(NamedTuple):
    """What a file carries: the export info, the tokenizer file's name and bytes (None: absent)."""

    info: dict | None
    tokenizer_name: str | None
    tokenizer: bytes | None


NOTHING = Embedded(None, None, None)


def info_bytes(info: dict) -> bytes:
    """The export info as ``litert_export.json`` holds it (``llm2tflite.core.atomic``)."""
    return (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def runtime_entries(info: dict, tokenizer_path) -> dict[str, bytes]:
    """The metadata entries of a LiteRT-route file: its export info and tokenizer file."""
    tokenizer_path = Path(tokenizer_path)
    expected = RUNTIME_TOKENIZER_FILES.get(info.get("tokenizer_kind"))
    if tokenizer_path.name != expected:
        raise EmbeddedFilesError(
            f"{tokenizer_path}: the export info's tokenizer kind "
            f"{info.get('tokenizer_kind')!r} is read from {expected}"
        )
    return {INFO_ENTRY: info_bytes(info), PREFIX + expected: tokenizer_path.read_bytes()}


def embed(model, entries: dict[str, bytes]) -> None:
    """Put ``entries`` into an object-API model (``ModelT``) before it is serialized."""
    flatbuffer.set_metadata(model, entries)


def read_entries(path) -> dict[str, bytes]:
    """The file's ``llm2tflite.*`` metadata entries (raw bytes), memory-mapped."""
    try:
        return flatbuffer.read_metadata(path, PREFIX)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as error:
        raise EmbeddedFilesError(
            f"{path} is damaged (its metadata cannot be read: {type(error).__name__}); rebuild "
            "it or copy it again"
        ) from None


def read(path) -> Embedded:
    """The runtime files a LiteRT-route file carries (``NOTHING`` for a file built without)."""
    entries = read_entries(path)
    tokenizers = sorted(name for name in entries if name in TOKENIZER_ENTRIES)
    if len(tokenizers) > 1:
        raise EmbeddedFilesError(f"{path} carries {len(tokenizers)} tokenizers ({tokenizers})")
    info = None
    if INFO_ENTRY in entries:
        try:
            info = json.loads(entries[INFO_ENTRY].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            at = error.start if isinstance(error, UnicodeDecodeError) else error.pos
            raise EmbeddedFilesError(
                f"{path}: its embedded export info ({INFO_ENTRY}) is damaged "
                f"({type(error).__name__} at byte {at}); rebuild it or copy it again"
            ) from None
        if not isinstance(info, dict):
            raise EmbeddedFilesError(f"{path}: its embedded {INFO_ENTRY} is not a JSON object")
    if not tokenizers:
        return Embedded(info, None, None)
    name = TOKENIZER_ENTRIES[tokenizers[0]]
    kind = (info or {}).get("tokenizer_kind")
    if info is not None and RUNTIME_TOKENIZER_FILES.get(kind) != name:
        raise EmbeddedFilesError(
            f"{path} carries {name}, but its export info names tokenizer kind {kind!r}"
        )
    return Embedded(info, name, entries[tokenizers[0]])
