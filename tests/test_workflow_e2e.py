"""End to end: the default config, run by Snakemake in a fresh directory, as a user runs it."""

from __future__ import annotations

import json

import pytest

from conftest import run_snakemake


def test_default_run_builds_every_artifact(default_run):
    workdir, _ = default_run
    results = workdir / "results" / "tiny"
    for relative in [
        "corpus/train.txt", "corpus/heldout.txt", "vocab/vocab.json", "vocab/merges.txt",
        "preset/config.json", "train_metrics.json", "traced/saved_model.pb",
        "tflite/fp32.tflite", "tflite/int8.tflite", "reference/smoke.json",
        "smoke/fp32.json", "smoke/int8.json",
    ]:
        assert (results / relative).is_file(), relative
    # Quantization must shrink the model (int8 weights vs float32).
    assert (results / "tflite/int8.tflite").stat().st_size < 0.6 * (
        results / "tflite/fp32.tflite").stat().st_size
    # No temporary write left behind.
    assert not list(workdir.glob("results/**/.*.tmp-*"))


def test_training_beats_untrained_model(default_run):
    workdir, _ = default_run
    metrics = json.loads((workdir / "results/tiny/train_metrics.json").read_text())
    assert metrics["heldout_loss_trained"] < 0.8 * metrics["heldout_loss_untrained"]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_smoke_results(default_run, variant):
    workdir, _ = default_run
    smoke = json.loads((workdir / f"results/tiny/smoke/{variant}.json").read_text())
    assert smoke["passed"] is True
    (record,) = smoke["results"]
    assert record["prompt"] == "Estoy disfrutando de"
    assert record["output"].startswith("Estoy disfrutando de")
    assert record["new_tokens"] >= 1
    if variant == "fp32":
        assert record["equals_keras"] is True
        assert record["output"] == record["keras_output"]


def test_converted_model_has_no_variables(default_run):
    workdir, _ = default_run
    for variant in ("fp32", "int8"):
        flatbuffer = (workdir / f"results/tiny/tflite/{variant}.tflite").read_bytes()
        assert b"VarHandleOp" not in flatbuffer
        assert b"ReadVariableOp" not in flatbuffer


def test_second_run_has_nothing_to_do(default_run):
    workdir, _ = default_run
    completed = run_snakemake(workdir, "--cores", "2", "--dry-run")
    assert "Nothing to be done" in completed.stdout + completed.stderr
