"""Interruption and reproducibility: a killed job leaves nothing that looks finished, a plain
rerun completes the DAG, and two clean runs of the default config give the same artifacts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import make_project, run_snakemake, start_atomic_writer


def _wait_for_process(pattern: str, timeout: float) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        if found.stdout.strip():
            return int(found.stdout.split()[0])
        time.sleep(0.2)
    raise AssertionError(f"no process matching {pattern!r} within {timeout} s")


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


def test_sigkill_during_conversion_then_plain_rerun_finishes(default_run, tmp_path):
    source, _ = default_run
    workdir = tmp_path / "killed"
    shutil.copytree(source, workdir, symlinks=True)
    int8 = workdir / "results/tiny/tflite/int8.tflite"
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
        "--forcerun",
        "convert",
        str(int8.relative_to(workdir)),
    ]
    run = subprocess.Popen(
        command,
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_process(f"llm2tflite.codelab.convert .*{int8.relative_to(workdir)}", 120)
        time.sleep(3)  # well into the conversion
    finally:
        # Kill Snakemake and its job at once, as a power cut or an OOM kill of the session would.
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert not int8.exists(), "a killed conversion left a file under the artifact's name"
    # Snakemake's lock survives a SIGKILL; releasing it is the documented first step.
    run_snakemake(workdir, "--unlock")
    planned = run_snakemake(workdir, "--dry-run").stdout
    assert "rule convert:" in planned and "variant=int8" in planned
    # The profile sets rerun-incomplete, so the plain command finishes the DAG.
    run_snakemake(workdir, "--cores", "2")
    smoke = json.loads((workdir / "results/tiny/tflite/smoke/int8.json").read_text())
    assert smoke["passed"] and int8.stat().st_size > 0
    assert not list(workdir.glob("results/**/.*.tmp-*"))


# Artifacts that must be byte-identical between two clean runs of the default config.
REPRODUCIBLE = [
    "results/tiny/corpus/train.txt",
    "results/tiny/corpus/heldout.txt",
    "results/tiny/vocab/vocab.json",
    "results/tiny/vocab/merges.txt",
    "results/tiny/preset/model.weights.h5",
    "results/tiny/traced/saved_model.pb",
    "results/tiny/traced/variables/variables.data-00000-of-00001",
    "results/tiny/tflite/fp32.tflite",
    "results/tiny/tflite/int8.tflite",
    "results/tiny/tflite/fp16.tflite",
    "results/tiny_llama/corpus/train.txt",
    "results/tiny_llama/vocab/tokenizer.model",
    "results/tiny_llama/preset/model.weights.h5",
    "results/tiny_llama/traced/saved_model.pb",
    "results/tiny_llama/traced/variables/variables.data-00000-of-00001",
    "results/tiny_llama/tflite/fp32.tflite",
    "results/tiny_llama/tflite/int8.tflite",
    "results/tiny_llama/tflite/fp16.tflite",
    "results/reports/default/android/app/src/main/assets/autocomplete.tflite",
]


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    workdir = make_project(tmp_path_factory.mktemp("e2e_second") / "project")
    run_snakemake(workdir, "--cores", "2")
    return workdir


def _manifest(workdir):
    return json.loads((workdir / "results/reports/default/manifest.json").read_text())


def test_manifest_records_artifacts_and_versions(default_run):
    workdir, _ = default_run
    manifest = _manifest(workdir)
    for name in ("tensorflow", "keras", "keras-hub", "tensorflow-text", "snakemake"):
        assert manifest["versions"][name], name
    for path in REPRODUCIBLE:
        assert len(manifest["artifacts"][path]["sha256"]) == 64


def test_two_clean_runs_are_identical(default_run, second_run):
    first, _ = default_run
    first_manifest, second_manifest = _manifest(first), _manifest(second_run)
    differing = [
        p
        for p in REPRODUCIBLE
        if first_manifest["artifacts"][p]["sha256"] != second_manifest["artifacts"][p]["sha256"]
    ]
    assert not differing, f"not byte-identical across two clean runs: {differing}"
    for variant in ("fp32", "int8"):
        outputs = [
            json.loads((d / f"results/tiny/tflite/smoke/{variant}.json").read_text())["results"]
            for d in (first, second_run)
        ]
        assert [r["output"] for r in outputs[0]] == [r["output"] for r in outputs[1]]
