"""End to end: the default config, run by Snakemake in a fresh directory, as a user runs it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from llm2tflite.families import registry

from conftest import REPO, run_snakemake

# The default config's models: a GPT-2 and a Llama, each trained by the workflow.
MODELS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_default_run_builds_every_artifact(default_run, model):
    workdir, _ = default_run
    results = workdir / "results" / model
    tokenizer_files = registry.for_model_source(MODELS[model]).tokenizer_files
    for relative in [
        "corpus/train.txt",
        "corpus/heldout.txt",
        *(f"vocab/{f}" for f in tokenizer_files),
        "preset/config.json",
        "train_metrics.json",
        "traced/saved_model.pb",
        "tflite/fp32.tflite",
        "tflite/int8.tflite",
        "tflite/fp16.tflite",
        "reference/smoke.json",
        "reference/fidelity.json",
        "bench.json",
        *[
            f"tflite/{stage}/{variant}.json"
            for stage in ("smoke", "fidelity", "gate", "ops")
            for variant in VARIANTS
        ],
    ]:
        assert (results / relative).is_file(), relative
    for relative in [
        "benchmarks.csv",
        "summary.md",
        f"plots/{model}.png",
        "manifest.json",
        "android/app/src/main/assets/autocomplete.tflite",
        "android/app/src/main/assets/autocomplete.json",
    ]:
        assert (workdir / "results/reports/default" / relative).is_file(), relative
    # Quantization must shrink the model (int8 weights vs float32).
    assert (results / "tflite/int8.tflite").stat().st_size < 0.6 * (
        results / "tflite/fp32.tflite"
    ).stat().st_size
    # No temporary write left behind.
    assert not list(workdir.glob("results/**/.*.tmp-*"))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_training_beats_untrained_model(default_run, model):
    workdir, _ = default_run
    metrics = json.loads((workdir / f"results/{model}/train_metrics.json").read_text())
    assert metrics["heldout_loss_trained"] < 0.8 * metrics["heldout_loss_untrained"]
    assert metrics["architecture"] == registry.for_model_source(MODELS[model]).name


VARIANTS = ("fp32", "int8", "fp16")


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_smoke_results(default_run, model, variant):
    workdir, _ = default_run
    smoke = json.loads((workdir / f"results/{model}/tflite/smoke/{variant}.json").read_text())
    assert smoke["passed"] is True and smoke["route"] == "tflite"
    (record,) = smoke["results"]
    assert record["prompt"] == "Estoy disfrutando de"
    assert record["output"].startswith("Estoy disfrutando de")
    assert record["new_tokens"] >= 1
    if variant == "fp32":
        assert record["equals_keras"] is True
        assert record["output"] == record["keras_output"]
        # The ids the .tflite generated, counted as Keras's own generate_step produced them.
        assert record["new_tokens"] == record["keras_new_tokens"]


def test_new_tokens_are_the_generated_ids(default_run):
    """Every count of new tokens is the model's generated ids: bench, smoke and Keras agree."""
    workdir, _ = default_run
    results = workdir / "results/tiny"
    record = json.loads((results / "bench.json").read_text())
    keras = {
        g["prompt"]: g
        for g in json.loads((results / "reference/smoke.json").read_text())["generations"]
    }
    max_length = json.loads((results / "traced/llm2tflite_export.json").read_text())["max_length"]
    for entry in record["entries"]:
        assert entry["new_tokens"] == len(entry["token_ids"]) - entry["prompt_tokens"] >= 1
        assert entry["prompt_tokens"] + entry["new_tokens"] <= max_length
    by_label = {(e["route"], e["variant"]): e for e in record["entries"]}
    fp32, baseline = by_label[("tflite", "fp32")], by_label[("tensorflow", "tf")]
    reference = keras[record["prompt"]]
    assert fp32["token_ids"] == baseline["token_ids"] == reference["token_ids"]
    assert fp32["new_tokens"] == reference["new_tokens"]
    # The trained model ends its sentence: generation stopped at the stop token, which no count
    # includes (Keras's generate_step and the traced graph agree on the ids above).
    assert fp32["prompt_tokens"] + fp32["new_tokens"] < max_length - 1
    smoke = json.loads((results / "tflite/smoke/fp32.json").read_text())["results"]
    assert [r["new_tokens"] for r in smoke if r["prompt"] == record["prompt"]] == [
        fp32["new_tokens"]
    ]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_converted_model_has_no_variables(default_run, model):
    workdir, _ = default_run
    from llm2tflite.codelab.convert import variable_ops

    for variant in VARIANTS:
        flatbuffer = (workdir / f"results/{model}/tflite/{variant}.tflite").read_bytes()
        assert variable_ops(flatbuffer) == []


def test_second_run_has_nothing_to_do(default_run):
    workdir, _ = default_run
    completed = run_snakemake(workdir, "--cores", "2", "--dry-run")
    assert "Nothing to be done" in completed.stdout + completed.stderr


@pytest.mark.parametrize("model", sorted(MODELS))
def test_fidelity_of_every_variant_meets_its_gates(default_run, model):
    from llm2tflite.evaluate.fidelity import gate_failures

    workdir, _ = default_run
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    for variant in VARIANTS:
        fidelity = json.loads(
            (workdir / f"results/{model}/tflite/fidelity/{variant}.json").read_text()
        )
        gates = config["quality_gates"][variant]
        assert gate_failures(fidelity, gates) == []
        assert (
            fidelity["perplexity_relative_difference"]
            <= gates["max_perplexity_relative_difference"]
        )
        verdict = json.loads((workdir / f"results/{model}/tflite/gate/{variant}.json").read_text())
        assert verdict["passed"] is True and verdict["gates"] == gates
    fp32 = json.loads((workdir / f"results/{model}/tflite/fidelity/fp32.json").read_text())
    assert fp32["exact_match_rate"] == 1.0
    assert fp32["perplexity_relative_difference"] < 1e-3
    # The trained model is far better than chance on its held-out text: a model that guesses
    # uniformly over its vocabulary (thousands of tokens) has perplexity in the thousands.
    assert fp32["keras_perplexity"] < 50
    summary = (workdir / "results/reports/default/summary.md").read_text()
    section = summary.split(f"## {model}\n")[1].split("\n## ")[0]
    fidelity_table = section.split("### Fidelity")[1].split("###")[0]
    assert [
        line.rstrip(" |").rsplit("|", 1)[1].strip()
        for line in fidelity_table.splitlines()
        if line.startswith("| tflite")
    ] == ["pass"] * len(VARIANTS)


def test_benchmark_table_has_every_variant_and_the_baseline(default_run):
    import pandas as pd

    from llm2tflite.evaluate.bench import cpu_model

    workdir, _ = default_run
    table = pd.read_csv(workdir / "results/reports/default/benchmarks.csv")
    assert sorted(table["model"].unique()) == sorted(MODELS)
    for model in MODELS:
        assert list(zip(*[table[table["model"] == model][c] for c in ("route", "variant")])) == [
            ("tensorflow", "tf"),
            ("tflite", "fp32"),
            ("tflite", "fp16"),
            ("tflite", "int8"),
            ("litert", "fp32"),
            ("litert", "int8"),
            ("litert", "int4"),
        ]
    assert (table["median_s"] > 0).all() and table["speedup_vs_tf"].notna().all()
    assert set(table["cpu_model"]) == {cpu_model()} and set(table["threads"]) == {2}
    # The codelab route cannot measure per-step figures: empty, not estimated. The LiteRT
    # route measures them per call.
    codelab = table[table["route"] != "litert"]
    assert codelab["decode_ms_per_token"].isna().all() and codelab["prefill_s"].isna().all()
    litert = table[table["route"] == "litert"]
    assert (litert["decode_ms_per_token"] > 0).all() and (litert["prefill_s"] > 0).all()
    record = json.loads((workdir / "results/tiny/bench.json").read_text())
    rows = table[table["model"] == "tiny"].set_index(["route", "variant"])
    for entry in record["entries"]:
        row = rows.loc[(entry["route"], entry["variant"])]
        assert row["speedup_vs_tf"] == entry["speedup_vs_tf"]["median"]
        assert row["equal_work"] == (entry["new_tokens"] == record["entries"][0]["new_tokens"])


def test_snakemake_html_report_names_every_variant(default_run):
    workdir, _ = default_run
    run_snakemake(workdir, "--report", "results/report.html")
    report = workdir / "results/report.html"
    assert report.stat().st_size > 10_000
    summary = (workdir / "results/reports/default/summary.md").read_text()
    for variant in VARIANTS:
        assert variant in summary
    html = report.read_text(errors="replace")
    for variant in VARIANTS:
        assert f"{variant}.md" in html or variant in html


def test_android_hand_off(default_run):
    workdir, _ = default_run
    assets = workdir / "results/reports/default/android/app/src/main/assets"
    assert (assets / "autocomplete.tflite").read_bytes() == (
        workdir / "results/tiny/tflite/int8.tflite"
    ).read_bytes()
    description = json.loads((assets / "autocomplete.json").read_text())
    assert description["variant"] == "int8"


# Bytes per element of the flatbuffer's TensorType values (schema.fbs) that hold weights.
_ITEM_SIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1}


def scramble_largest_buffer(path, seed=0) -> str:
    """Permute the elements of the largest weight buffer of a .tflite file, in place.

    The file stays a valid model of the same size and ops, with the same weight values, in the
    wrong places: what a bad quantization or a corrupted copy can produce. Returns the name of a
    tensor that reads the buffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(path.read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    _, index = max((model.Buffers(i).DataLength(), i) for i in range(model.BuffersLength()))
    readers = [
        model.Subgraphs(s).Tensors(t)
        for s in range(model.SubgraphsLength())
        for t in range(model.Subgraphs(s).TensorsLength())
        if model.Subgraphs(s).Tensors(t).Buffer() == index
    ]
    item_size = _ITEM_SIZE[readers[0].Type()]
    elements = model.Buffers(index).DataAsNumpy().reshape(-1, item_size)  # a view into data
    elements[:] = elements[np.random.default_rng(seed).permutation(len(elements))]
    path.write_bytes(bytes(data))
    return readers[0].Name().decode()


def test_a_scrambled_model_fails_its_quality_gate(default_run, tmp_path):
    """Weights scrambled in the int8 flatbuffer: its gate job fails with a one-line reason."""
    from llm2tflite.evaluate.fidelity import GATE_KEYS as FIDELITY_GATE_KEYS

    workdir, _ = default_run
    copy = tmp_path / "project"
    shutil.copytree(workdir, copy, symlinks=True)
    model = copy / "results/tiny/tflite/int8.tflite"
    size = model.stat().st_size
    scramble_largest_buffer(model)
    assert model.stat().st_size == size
    completed = run_snakemake(
        copy, "--cores", "2", "results/tiny/tflite/gate/int8.json", check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output[-3000:]
    reasons = [line for line in output.splitlines() if "quality gate FAILED" in line]
    assert reasons and all(r.startswith("quality gate FAILED: tflite/int8: ") for r in reasons)
    # The line names the figure (gate name) that failed.
    assert any(f"tflite/int8: {gate}: " in reasons[0] for gate in FIDELITY_GATE_KEYS)
    assert not (copy / "results/tiny/tflite/gate/int8.json").exists()
    # The figures of the failed variant stay, for the summary to show FAIL and why; the healthy
    # run's KL is far lower (an independent margin, not the gate).
    figures = json.loads((copy / "results/tiny/tflite/fidelity/int8.json").read_text())
    healthy = json.loads((workdir / "results/tiny/tflite/fidelity/int8.json").read_text())
    assert figures["kl_mean"] > 20 * max(healthy["kl_mean"], 1e-6)
