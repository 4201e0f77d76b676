"""End to end: the default config, run by Snakemake in a fresh directory, as a user runs it."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO, run_snakemake
from llm2tflite import architectures

# The default config's models: a GPT-2 and a Llama, each trained by the workflow.
MODELS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_default_run_builds_every_artifact(default_run, model):
    workdir, _ = default_run
    results = workdir / "results" / model
    tokenizer_files = architectures.for_model_source(MODELS[model]).tokenizer_files
    for relative in [
        "corpus/train.txt", "corpus/heldout.txt", *(f"vocab/{f}" for f in tokenizer_files),
        "preset/config.json", "train_metrics.json", "traced/saved_model.pb",
        "tflite/fp32.tflite", "tflite/int8.tflite", "tflite/fp16.tflite", "reference/smoke.json",
        "reference/fidelity.json", "bench/tf.json",
        *[f"{stage}/{variant}.json" for stage in ("smoke", "fidelity", "ops", "bench")
          for variant in VARIANTS],
    ]:
        assert (results / relative).is_file(), relative
    for relative in ["benchmarks.csv", "summary.md", f"plots/{model}.png", "manifest.json",
                     "android/app/src/main/assets/autocomplete.tflite",
                     "android/app/src/main/assets/autocomplete.json"]:
        assert (workdir / "results" / relative).is_file(), relative
    # Quantization must shrink the model (int8 weights vs float32).
    assert (results / "tflite/int8.tflite").stat().st_size < 0.6 * (
        results / "tflite/fp32.tflite").stat().st_size
    # No temporary write left behind.
    assert not list(workdir.glob("results/**/.*.tmp-*"))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_training_beats_untrained_model(default_run, model):
    workdir, _ = default_run
    metrics = json.loads((workdir / f"results/{model}/train_metrics.json").read_text())
    assert metrics["heldout_loss_trained"] < 0.8 * metrics["heldout_loss_untrained"]
    assert metrics["architecture"] == architectures.for_model_source(MODELS[model]).name


VARIANTS = ("fp32", "int8", "fp16")


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_smoke_results(default_run, model, variant):
    workdir, _ = default_run
    smoke = json.loads((workdir / f"results/{model}/smoke/{variant}.json").read_text())
    assert smoke["passed"] is True
    (record,) = smoke["results"]
    assert record["prompt"] == "Estoy disfrutando de"
    assert record["output"].startswith("Estoy disfrutando de")
    assert record["new_tokens"] >= 1
    if variant == "fp32":
        assert record["equals_keras"] is True
        assert record["output"] == record["keras_output"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_converted_model_has_no_variables(default_run, model):
    workdir, _ = default_run
    from llm2tflite.convert import variable_ops

    for variant in VARIANTS:
        flatbuffer = (workdir / f"results/{model}/tflite/{variant}.tflite").read_bytes()
        assert variable_ops(flatbuffer) == []


def test_second_run_has_nothing_to_do(default_run):
    workdir, _ = default_run
    completed = run_snakemake(workdir, "--cores", "2", "--dry-run")
    assert "Nothing to be done" in completed.stdout + completed.stderr


@pytest.mark.parametrize("model", sorted(MODELS))
def test_fidelity_of_every_variant(default_run, model):
    workdir, _ = default_run
    for variant in VARIANTS:
        fidelity = json.loads((workdir / f"results/{model}/fidelity/{variant}.json").read_text())
        assert 0 <= fidelity["exact_match_rate"] <= 1
        assert fidelity["perplexity"] > 1
    fp32 = json.loads((workdir / f"results/{model}/fidelity/fp32.json").read_text())
    assert fp32["exact_match_rate"] == 1.0
    assert fp32["perplexity_relative_difference"] < 1e-3
    # The trained model is far better than chance on its held-out text.
    assert fp32["perplexity"] < 50


def test_benchmark_table_has_every_variant_and_the_baseline(default_run):
    import pandas as pd

    workdir, _ = default_run
    table = pd.read_csv(workdir / "results/benchmarks.csv")
    assert sorted(table["model"].unique()) == sorted(MODELS)
    for model in MODELS:
        assert sorted(table[table["model"] == model]["variant"]) == sorted(["tf", *VARIANTS])
    assert (table["median_s"] > 0).all() and table["speedup_vs_tf"].notna().all()


def test_snakemake_html_report_names_every_variant(default_run):
    workdir, _ = default_run
    run_snakemake(workdir, "--report", "results/report.html")
    report = workdir / "results/report.html"
    assert report.stat().st_size > 10_000
    summary = (workdir / "results/summary.md").read_text()
    for variant in VARIANTS:
        assert variant in summary
    html = report.read_text(errors="replace")
    for variant in VARIANTS:
        assert f"{variant}.md" in html or variant in html


def test_android_hand_off(default_run):
    workdir, _ = default_run
    assets = workdir / "results/android/app/src/main/assets"
    assert (assets / "autocomplete.tflite").read_bytes() == (
        workdir / "results/tiny/tflite/int8.tflite").read_bytes()
    description = json.loads((assets / "autocomplete.json").read_text())
    assert description["variant"] == "int8"
