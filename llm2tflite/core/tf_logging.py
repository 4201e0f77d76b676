"""TensorFlow's and TFLite's own (C++) logging: quiet unless the user asks for it.

Two loggers write to stderr from C++, each with its own threshold:

- TensorFlow's (oneDNN notices, the CPU-feature note, XLA): ``TF_CPP_MIN_LOG_LEVEL``, read
  once when TensorFlow loads. ``llm2tflite/__init__.py`` defaults it to 2 (errors only) before
  any stage imports TensorFlow; :func:`configure` sets it for the command line.
- TFLite's minimal logger ("INFO: Created TensorFlow Lite delegate for select TF ops.",
  "INFO: TfLiteFlexDelegate delegate: 8 nodes delegated out of 41 ..."): it ignores
  ``TF_CPP_MIN_LOG_LEVEL``; its threshold is TFLite's ``tflite::LoggerOptions::
  SetMinimumLogSeverity``, exported by TensorFlow's ``libtensorflow_cc``. :func:`quiet_tflite`
  calls it (through ctypes); ``llm2tflite/__init__.py`` registers it to run as soon as any
  process of ours imports TensorFlow (wrapt's post-import hook; wrapt is a TensorFlow dependency),
  so every stage's log and the command line get it without calling anything.

ai-edge-litert's interpreter (the LiteRT route) has its own copy of TFLite's logger, whose
threshold its libraries do not export: its INFO lines are dropped as below.

Parts of TensorFlow log through their own copy of absl (the TFLite converter, in
``libtensorflow_cc``: "W0000 ... Ignored output_format."), which no setting reaches; before absl is
initialised, which TensorFlow never does, those lines all go to stderr.
:func:`native_notes_hidden` drops their INFO and WARNING lines (errors pass) around such calls.

The CUDA/cuDNN/cuBLAS "Unable to register ... factory" errors are not logging to configure: they
come from the CUDA build of TensorFlow (the ``tensorflow`` wheel) on a machine without a GPU, and
are printed before any threshold applies. requirements.txt installs the CPU build only
(``tensorflow-cpu``; see packaging/tensorflow-cpu-as-tensorflow).

Light: nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path

TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# TF_CPP_MIN_LOG_LEVEL: 0 everything, 1 no INFO, 2 errors only, 3 nothing.
QUIET_TF_LOG_LEVEL = "2"
VERBOSE_TF_LOG_LEVEL = "0"
# tflite::LogSeverity (tensorflow/lite/logger.h).
TFLITE_LOG_VERBOSE, TFLITE_LOG_INFO, TFLITE_LOG_WARNING = 0, 1, 2
_SET_SEVERITY = "_ZN6tflite13LoggerOptions21SetMinimumLogSeverityENS_11LogSeverityE"
_GET_SEVERITY = "_ZN6tflite13LoggerOptions21GetMinimumLogSeverityEv"
_verbose = False


def configure(verbose: bool) -> None:
    """Show (``verbose``) or hide TensorFlow's and TFLite's notes; call before TensorFlow is
    imported."""
    global _verbose
    if "tensorflow" in sys.modules:
        raise RuntimeError("configure() must run before TensorFlow is imported")
    _verbose = verbose
    os.environ[TF_LOG_LEVEL_ENV] = VERBOSE_TF_LOG_LEVEL if verbose else QUIET_TF_LOG_LEVEL


def quiet_when_tensorflow_loads() -> None:
    """Run :func:`quiet_tflite` as soon as TensorFlow is imported (nothing if it never is)."""
    try:
        import wrapt
    except ImportError:  # no TensorFlow in this environment either
        return
    wrapt.register_post_import_hook(lambda _module: quiet_tflite(_verbose), "tensorflow")


def _tensorflow_cc():
    import tensorflow as tf

    library = Path(tf.__file__).parent / "libtensorflow_cc.so.2"
    # Already loaded by `import tensorflow`: RTLD_NOLOAD returns that copy, never a second one.
    return ctypes.CDLL(str(library), mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)


def tflite_log_severity() -> int:
    """TFLite's current minimum log severity (tflite::LogSeverity)."""
    return int(getattr(_tensorflow_cc(), _GET_SEVERITY)())


def quiet_tflite(verbose: bool = False) -> None:
    """Show TFLite's warnings and errors only (its INFO lines too when ``verbose``).

    Imports TensorFlow. Does nothing where the library or its symbol is missing (another
    platform or TensorFlow build): the only cost is TFLite's INFO lines.
    """
    try:
        set_severity = getattr(_tensorflow_cc(), _SET_SEVERITY)
    except (OSError, AttributeError):
        return
    set_severity.argtypes = [ctypes.c_int]
    set_severity(TFLITE_LOG_INFO if verbose else TFLITE_LOG_WARNING)


# absl's INFO and WARNING lines before initialisation ("W0000 00:00:1795779135.793578   8945
# tf_tfl_flatbuffer_helpers.cc:365] Ignored output_format.": the date is never set, the seconds
# count from the epoch) and the banner it prints before the first one.
_ABSL_NOTE = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_ABSL_BANNER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)


# Notes TensorFlow logs at ERROR level although nothing failed (it falls back and goes on).
_MISLEVELED_NOTES = ("oneDNN supports DT_INT64 only on platforms with AVX-512",)


# The INFO lines of the TFLite copy inside ai-edge-litert ("INFO: Created TensorFlow Lite XNNPACK
# delegate for CPU."): its logger's threshold is not exported by its libraries.
_TFLITE_INFO = "INFO: "


def is_native_note(line: str) -> bool:
    """An INFO/WARNING line of TensorFlow's C++ logging that no log level setting reaches."""
    return (
        bool(_ABSL_NOTE.match(line))
        or line.startswith(_TFLITE_INFO)
        or line.rstrip("\n") == _ABSL_BANNER
        or any(note in line for note in _MISLEVELED_NOTES)
    )


def verbose() -> bool:
    """Whether ``configure(verbose=True)`` asked to see the native notes."""
    return _verbose


def _without_native_notes(lines: list[str]) -> list[str]:
    return [line for line in lines if not is_native_note(line)]


@contextlib.contextmanager
def native_notes_hidden(kept_lines=_without_native_notes, pass_on_after_error: bool = True):
    """Drop the notes native code writes to stderr in the block (TensorFlow's C++ INFO/WARNING
    lines by default; ``kept_lines(lines)`` chooses what is passed on).

    stderr (file descriptor 2, so native code's writes too) goes to a temporary file while the
    block runs; afterwards the kept lines are written to stderr, in order, errors included, or
    none when the block raised and ``pass_on_after_error`` is false (the caller's one-line error
    then says what they said). If the process dies in the block, the file stays
    (``$TMPDIR/llm2tflite-stderr-*.log``). With ``configure(verbose=True)`` nothing is hidden.
    """
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    capture = tempfile.NamedTemporaryFile(prefix="llm2tflite-stderr-", suffix=".log", delete=False)
    failed = False
    try:
        os.dup2(capture.fileno(), 2)
        yield
    except BaseException:
        failed = True
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
        capture.close()
        os.unlink(capture.name)
        if pass_on_after_error or not failed:
            sys.stderr.write("".join(kept_lines(lines)))
            sys.stderr.flush()
