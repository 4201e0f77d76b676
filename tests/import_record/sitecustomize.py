"""Test instrumentation, on PYTHONPATH only in tests (conftest.recording_imports): with
LLM2TFLITE_RECORD_IMPORTS set, a Python process writes what it imported when it exits.

The tests compare it with what the workflow declares: each stage's code inputs must cover the
package files the stage really imported, and parsing the DAG must not import TensorFlow.
"""

import atexit
import json
import os
import sys

_RECORD_DIR = os.environ.get("LLM2TFLITE_RECORD_IMPORTS")


def _record():
    package_files = sorted(
        module.__file__
        for name, module in list(sys.modules.items())
        if (name == "llm2tflite" or name.startswith("llm2tflite."))
        and getattr(module, "__file__", None)
    )
    record = {
        "argv": sys.argv,
        "top_level": sorted({name.split(".")[0] for name in list(sys.modules)}),
        "package_files": package_files,
    }
    path = os.path.join(_RECORD_DIR, f"{os.getpid()}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)


if _RECORD_DIR:
    atexit.register(_record)
