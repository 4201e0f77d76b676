"""A clean terminal: the command line prints the answer (and real problems) only, and the
workflow's logs hold the stages' own messages, not the runtime's notes (issue 9 item 6)."""

from __future__ import annotations

import re
import subprocess
import sys

# What TensorFlow and TFLite print on their own at every start on a CPU machine: CUDA plugin
# registration and probing (the CUDA build), oneDNN and CPU-feature notes, absl's pre-init
# warning, the Flex delegate's INFO lines.
RUNTIME_NOISE = re.compile(
    r"cuda|cuDNN|cuBLAS|cuFFT|oneDNN|cpu_feature_guard|absl::InitializeLog|"
    r"Created TensorFlow Lite delegate|TfLiteFlexDelegate delegate",
    re.IGNORECASE,
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
