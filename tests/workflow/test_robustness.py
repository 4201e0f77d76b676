"""Interruption and reproducibility: a killed job leaves nothing that looks finished, a plain
rerun completes the DAG, and the manifest names each artifact with its digest."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from conftest import run_snakemake, start_atomic_writer


def _wait_for_python_module(module: str, argument: str, timeout: float) -> int:
    """The pid of the Python process running ``python -m module ... argument ...`` (not the
    shell that started it, whose command line holds the same words)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = subprocess.run(["pgrep", "-f", module], capture_output=True, text=True)
        for pid in map(int, found.stdout.split()):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except FileNotFoundError:
                continue
            is_python = Path(argv[0]).name.startswith("python")
            if (
                is_python
                and module in argv
                and argv[argv.index(module) - 1] == "-m"
                and (argument in argv)
            ):
                return pid
        time.sleep(0.2)
    raise AssertionError(f"no process running {module} {argument} within {timeout} s")


def test_sigkill_during_an_atomic_write_leaves_no_artifact(tmp_path):
    target = tmp_path / "model.tflite"
    writer = start_atomic_writer(
        target,
        """
        import time
        with open(tmp, "wb") as f:
            for _ in range(1000):
                f.write(b"x" * 65536)
                f.flush()
                time.sleep(0.01)
        """,
    )
    deadline = time.time() + 30
    while not list(tmp_path.glob(".model.tflite.tmp-*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert not target.exists()
    # The next write of the same artifact cleans up the killed one's temporary.
    from llm2tflite.core import atomic

    atomic.write_bytes(target, b"complete")
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def _process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T for stopped, ...), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _state_once_settled(pid: int, timeout: float = 10) -> str | None:
    """The process's state once a signal sent to it took effect: stopped ("T") or gone (None);
    a signal is delivered asynchronously, so the state read at once may still be "R"."""
    deadline = time.time() + timeout
    while (state := _process_state(pid)) not in ("T", None) and time.time() < deadline:
        time.sleep(0.05)
    return state


def test_sigkill_during_conversion_then_plain_rerun_finishes(default_run, tmp_path):
    """Snakemake and its int8 conversion killed together while the conversion runs (proved
    below: the converter was still alive, frozen, when the kill came, and neither it nor
    Snakemake had reported the job done); a plain rerun then finishes the DAG."""
    source, _ = default_run
    workdir = tmp_path / "killed"
    shutil.copytree(source, workdir, symlinks=True)
    int8 = workdir / "results/tiny/tflite/int8.tflite"
    job_log = workdir / "logs/tiny/convert_int8.log"
    snakemake_log = tmp_path / "snakemake.log"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(workdir / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        # The target before --forcerun, which takes every rule name after it: after it, the
        # target would be read as a rule and the whole DAG run with every conversion forced.
        str(int8.relative_to(workdir)),
        "--forcerun",
        "convert",
    ]
    with open(snakemake_log, "w") as log:
        run = subprocess.Popen(
            command, cwd=workdir, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        converter = _wait_for_python_module(
            "llm2tflite.codelab.convert", str(int8.relative_to(workdir)), 120
        )
        time.sleep(3)  # into the conversion (~15 s for tiny's int8 on 2 cores)
        # Freeze the whole group first: nothing can finish between the check and the kill.
        os.killpg(run.pid, signal.SIGSTOP)
        state_at_kill = _state_once_settled(converter)
    finally:
        # Kill Snakemake and its job at once, as a power cut or an OOM kill of the session would.
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    # The kill landed before the job finished: the converter was alive (stopped by SIGSTOP),
    # it had not printed its last line (after its write), Snakemake had not seen it finish.
    assert state_at_kill == "T", f"converter {converter} was {state_at_kill!r} at the kill"
    assert "converted " not in (job_log.read_text() if job_log.exists() else "")
    log_text = snakemake_log.read_text()
    assert "rule convert:" in log_text, log_text[-3000:]
    assert not re.search(r"^Finished job.*\bconvert\b", log_text, re.MULTILINE), log_text[-3000:]
    assert not int8.exists(), "a killed conversion left a file under the artifact's name"
    # Snakemake's lock survives a SIGKILL; releasing it is the documented first step.
    run_snakemake(workdir, "--unlock")
    planned = run_snakemake(workdir, "--dry-run").stdout
    assert "rule convert:" in planned and "variant=int8" in planned
    # The profile sets rerun-incomplete, so the plain command finishes the DAG.
    run_snakemake(workdir, "--cores", "2")
    smoke = json.loads((workdir / "results/tiny/tflite/smoke/int8.json").read_text())
    assert smoke["passed"] and int8.stat().st_size > 0
    assert "converted " in job_log.read_text()
    assert not list(workdir.glob("results/**/.*.tmp-*"))


# Key artifacts of the default run: the manifest must name each, with the SHA-256 of its bytes.
# (That two clean runs give the same bytes, for every file of results/, is checked by
# tests/workflow/test_slurm.py's real DAG test against this same session's default run: the
# Slurm run is the second cold run.)
KEY_ARTIFACTS = [
    "results/tiny/corpus/train.txt",
    "results/tiny/vocab/vocab.json",
    "results/tiny/preset/model.weights.h5",
    "results/tiny/traced/saved_model.pb",
    "results/tiny/tflite/int8.tflite",
    "results/tiny/litert/int4.tflite",
    "results/tiny/litert/int4.litertlm",
    "results/tiny_llama/vocab/tokenizer.model",
    "results/tiny_llama/preset/model.weights.h5",
    "results/tiny_llama/tflite/fp16.tflite",
    "results/tiny_llama/litert/int8.tflite",
    "results/reports/default/android/app/src/main/assets/autocomplete.tflite",
]


def test_manifest_records_artifacts_and_versions(default_run):
    workdir, _ = default_run
    manifest = json.loads((workdir / "results/reports/default/manifest.json").read_text())
    for name in ("tensorflow", "keras", "keras-hub", "tensorflow-text", "snakemake"):
        assert manifest["versions"][name] == metadata.version(name), name
    for path in KEY_ARTIFACTS:
        data = (workdir / path).read_bytes()
        assert manifest["artifacts"][path] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }, path
