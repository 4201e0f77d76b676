"""A clean terminal: the command line prints the answer (and real problems) only, and the
workflow's logs hold the stages' own messages, not the runtime's notes (issue 9 item 6)."""

from __future__ import annotations

import re
import subprocess
import sys

# What TensorFlow and TFLite print on their own at every start on a CPU machine: CUDA plugin
# registration and probing (the CUDA build), oneDNN and CPU-feature notes, absl's pre-init banner
# and INFO/WARNING lines (converter, XLA), the Flex delegate's INFO lines.
RUNTIME_NOISE = re.compile(
    r"cuda|cuDNN|cuBLAS|cuFFT|oneDNN|cpu_feature_guard|absl::InitializeLog|"
    r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+ |"
    r"Created TensorFlow Lite delegate|TfLiteFlexDelegate delegate",
    re.IGNORECASE | re.MULTILINE,
)
PROMPT = "Estoy disfrutando de"


def _generate(model, *extra):
    return subprocess.run(
        [sys.executable, "-m", "llm2tflite", "generate", *extra, str(model), PROMPT],
        capture_output=True,
        text=True,
    )


def test_generate_prints_the_answer_and_nothing_else(small_export):
    completed = _generate(small_export["tflite"])
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(PROMPT) and completed.stdout.count("\n") == 1
    assert completed.stderr == ""


def test_verbose_shows_what_the_default_hides(small_export):
    """-v brings the runtime's notes back: the quiet default hides something real."""
    completed = _generate(small_export["tflite"], "-v")
    assert completed.returncode == 0, completed.stderr
    assert "Created TensorFlow Lite delegate for select TF ops" in completed.stderr
    assert completed.stdout == _generate(small_export["tflite"]).stdout


def test_workflow_logs_hold_no_runtime_noise(default_run):
    workdir, _ = default_run
    logs = sorted((workdir / "logs").rglob("*.log"))
    assert len(logs) >= 20
    noisy = {
        str(log.relative_to(workdir)): RUNTIME_NOISE.findall(log.read_text(errors="replace"))
        for log in logs
    }
    assert not {log: found for log, found in noisy.items() if found}


def test_native_notes_are_hidden_and_everything_else_kept_in_order(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text(
        "import os, sys\n"
        "from llm2tflite.core import tf_logging\n"
        "print('before', file=sys.stderr)\n"
        "with tf_logging.native_notes_hidden():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are"
        " written to STDERR\\n')\n"
        "    os.write(2, b'W0000 00:00:1795779135.793578    8945 x.cc:365] Ignored.\\n')\n"
        "    print('python warning', file=sys.stderr)\n"
        "    os.write(2, b'E0000 00:00:1795779135.793600    8945 x.cc:9] a real error\\n')\n"
        "    os.write(2, b'I0000 00:00:1795779136.186568    8945 y.cc:401] MLIR note\\n')\n"
        "print('after', file=sys.stderr)\n"
    )
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.splitlines() == [
        "before",
        "python warning",
        "E0000 00:00:1795779135.793600    8945 x.cc:9] a real error",
        "after",
    ]
