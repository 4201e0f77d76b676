"""Open a model the workflow built and run it: one interface for every route.

``open_model(path, threads=None)`` tells the routes apart by what the file is:

- a ``.tflite`` file with ``serving_default`` + ``tokenize`` signatures: the codelab route
  (``llm2tflite.codelab.runtime.TFLiteModel``, route ``"tflite"``): the whole generation loop
  and the tokenizer inside
  one signature call, run in ``InterpreterWithCustomOps`` with the TF Text kernels (as in the
  codelab); Select TF ops run in the Flex delegate that the TF 2.18.1 wheel still exports;
- a ``.tflite`` file with ``decode`` + ``prefill_*`` signatures: the LiteRT route (route
  ``"litert"``), run by ``llm2tflite.litert.runtime.LiteRTModel(path, threads=None)`` (imported
  only then; without that module, a one-line ``ModelOpenError``);
- a traced SavedModel directory (``llm2tflite.codelab.trace``): the same generation graph in
  TensorFlow (``llm2tflite.codelab.runtime.SavedModelRuntime``, route ``"tensorflow"``), the
  benchmark's baseline.

Each returns an object with the members of ``llm2tflite.core.generation.CausalLMRuntime``; its
``generate`` returns a ``Generation`` (text and the ids the model generated).
"""

from __future__ import annotations

import struct
from pathlib import Path

from llm2tflite.core import flatbuffer
from llm2tflite.core.generation import ModelOpenError

__all__ = ["ModelOpenError", "open_model", "route_of", "route_from_signatures"]

TFLITE_ROUTE = "tflite"
LITERT_ROUTE = "litert"
TENSORFLOW_ROUTE = "tensorflow"
CODELAB_SIGNATURES = ("serving_default", "tokenize")
LITERT_DECODE_SIGNATURE = "decode"
LITERT_PREFILL_PREFIX = "prefill_"


LITERTLM_MAGIC = b"LITERTLM"


def tflite_signatures(path) -> list[str]:
    """The signature keys of a .tflite file, read from the flatbuffer without loading weights.

    One-line ``ModelOpenError`` for a LiteRT-LM bundle, an empty file, or a flatbuffer whose
    tables point past its end (truncated: reading them raises ``struct.error``/``IndexError``).
    """
    with open(path, "rb") as f:
        head = f.read(len(LITERTLM_MAGIC))
    if head == LITERTLM_MAGIC:
        raise ModelOpenError(
            f"{path} is a LiteRT-LM bundle (.litertlm), run by LiteRT-LM: give its .tflite "
            "(results/<model>/litert/<variant>.tflite)"
        )
    try:
        return flatbuffer.signature_keys(path)
    except flatbuffer.NotAFlatbufferError as error:
        raise ModelOpenError(str(error)) from None
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as error:
        raise ModelOpenError(
            f"{path} is damaged (truncated or altered since it was built: its signature table "
            f"cannot be read, {type(error).__name__}); rebuild it or copy it again"
        ) from None


def route_from_signatures(signatures) -> str | None:
    """``litert`` (decode + prefill_*), ``tflite`` (the codelab's signatures) or None."""
    if LITERT_DECODE_SIGNATURE in signatures and any(
        s.startswith(LITERT_PREFILL_PREFIX) for s in signatures
    ):
        return LITERT_ROUTE
    if all(s in signatures for s in CODELAB_SIGNATURES):
        return TFLITE_ROUTE
    return None


def route_of(path) -> str:
    """``tflite``, ``litert`` or ``tensorflow``, from what the file or directory is."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return TENSORFLOW_ROUTE
        raise ModelOpenError(
            f"{path} is a directory without saved_model.pb: give a .tflite file "
            "or a traced SavedModel directory"
        )
    if not path.is_file():
        raise ModelOpenError(f"model file {str(path)!r} does not exist")
    signatures = tflite_signatures(path)
    route = route_from_signatures(signatures)
    if route is not None:
        return route
    raise ModelOpenError(
        f"{path} has signatures {signatures or 'none'}: not a model of this workflow (expected "
        f"{' + '.join(CODELAB_SIGNATURES)} for the codelab route, or "
        f"{LITERT_DECODE_SIGNATURE} + {LITERT_PREFILL_PREFIX}<T> for the LiteRT route)"
    )


def _litert_model_class(path):
    try:
        from llm2tflite.litert.runtime import LiteRTModel
    except ModuleNotFoundError as error:
        if error.name != "llm2tflite.litert.runtime":
            raise
        raise ModelOpenError(
            f"{path} is a LiteRT prefill/decode model, but this installation has no LiteRT "
            "runtime (llm2tflite/litert/runtime.py is missing); update llm2tflite"
        ) from None
    return LiteRTModel


def open_model(path, threads: int | None = None):
    """Open a model of any route (see the module docstring); ``threads``: None = its default."""
    route = route_of(path)
    if route == TFLITE_ROUTE:
        from llm2tflite.codelab.runtime import TFLiteModel

        return TFLiteModel(path, num_threads=threads)
    if route == TENSORFLOW_ROUTE:
        from llm2tflite.codelab.runtime import SavedModelRuntime

        return SavedModelRuntime(path, threads=threads)
    model = _litert_model_class(path)(str(path), threads=threads)
    if getattr(model, "route", None) != LITERT_ROUTE:
        raise ModelOpenError(
            f"llm2tflite.litert.runtime.LiteRTModel opened {path} with route "
            f"{getattr(model, 'route', None)!r}, expected {LITERT_ROUTE!r}"
        )
    return model
