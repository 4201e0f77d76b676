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


# Held-out lines the tests score themselves (the first ones of the model's held-out split).
HELDOUT_LINES_SCORED = 200


@pytest.fixture(scope="module")
def kerashub_models(default_run):
    """Each trained preset loaded by KerasHub's own loader (none of llm2tflite's code)."""
    import keras_hub

    workdir, _ = default_run
    return {
        model: keras_hub.models.CausalLM.from_preset(str(workdir / f"results/{model}/preset"))
        for model in MODELS
    }


def heldout_loss_by_hand(causal_lm, lines) -> tuple[float, int]:
    """Mean next-token cross-entropy (nats) of the model on ``lines``, each line on its own:
    KerasHub's preprocessor, the logits of its forward pass, NumPy for the rest."""
    # Each line whole: start and end tokens around at most one token per byte.
    preprocessor = causal_lm.preprocessor
    sequence_length = preprocessor.sequence_length
    preprocessor.sequence_length = 2 + max(len(line.encode()) for line in lines)
    total, count = 0.0, 0
    for start in range(0, len(lines), 50):
        x, labels, weights = preprocessor(lines[start : start + 50])
        logits = np.asarray(causal_lm(x), dtype=np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        picked = np.take_along_axis(log_probs, np.asarray(labels)[..., None], axis=-1)[..., 0]
        weights = np.asarray(weights, dtype=np.float64)
        total -= float((picked * weights).sum())
        count += int(weights.sum())
    preprocessor.sequence_length = sequence_length
    return total / count, causal_lm.backbone.vocabulary_size


@pytest.mark.parametrize("model", sorted(MODELS))
def test_training_learned_the_language(default_run, kerashub_models, model):
    """The trained model's held-out loss, recomputed here, far below a uniform guess over its
    vocabulary (ln V nats per token), and the figure training reported within 10 % of it."""
    workdir, _ = default_run
    results = workdir / f"results/{model}"
    metrics = json.loads((results / "train_metrics.json").read_text())
    assert metrics["architecture"] == registry.for_model_source(MODELS[model]).name
    lines = [
        line for line in (results / "corpus/heldout.txt").read_text().splitlines() if line.strip()
    ][:HELDOUT_LINES_SCORED]
    loss, vocabulary_size = heldout_loss_by_hand(kerashub_models[model], lines)
    print(f"{model}: held-out loss {loss:.3f} nats/token (uniform {np.log(vocabulary_size):.3f})")
    # Measured: tiny 1.69 of ln 2170 = 7.68 (0.22); a model that learned nothing sits near 1.
    assert loss < 0.4 * np.log(vocabulary_size)
    assert metrics["heldout_loss_trained"] == pytest.approx(loss, rel=0.1)


VARIANTS = ("fp32", "int8", "fp16")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_smoke_outputs_are_kerashubs_own_generation(default_run, kerashub_models, model):
    """Every codelab variant's smoke output is the text KerasHub's own ``generate`` gives with
    the greedy sampler. For fp32 that is the exact-match promise; for fp16 and int8 a margin
    over their quality gates (a few leading tokens), measured on both default models."""
    workdir, _ = default_run
    results = workdir / f"results/{model}"
    max_length = json.loads((results / "traced/llm2tflite_export.json").read_text())["max_length"]
    causal_lm = kerashub_models[model]
    causal_lm.compile(sampler="greedy")
    for variant in VARIANTS:
        smoke = json.loads((results / f"tflite/smoke/{variant}.json").read_text())
        assert smoke["route"] == "tflite"
        (record,) = smoke["results"]
        expected = causal_lm.generate(record["prompt"], max_length=max_length)
        assert record["output"] == expected, variant
        assert len(expected) > len(record["prompt"])


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


def operator_names(path) -> list[str]:
    """Every operator of every subgraph of a .tflite file, by its name in the schema (builtin)
    or its custom code (Flex ops), read with LiteRT's own flatbuffer schema."""
    from ai_edge_litert import schema_py_generated as schema

    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    codes = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(int(code.DeprecatedBuiltinCode()), int(code.BuiltinCode()))
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else builtin_names[builtin])
    return [
        codes[model.Subgraphs(s).Operators(o).OpcodeIndex()]
        for s in range(model.SubgraphsLength())
        for o in range(model.Subgraphs(s).OperatorsLength())
    ]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_model_files_hold_no_variable_ops(default_run, model):
    """No operator of any subgraph, builtin or Flex, touches a resource variable (any name
    with VAR or Variable: broader than the workflow's own list), on both routes."""
    workdir, _ = default_run
    files = sorted((workdir / f"results/{model}").glob("*/*.tflite"))
    assert {f.parent.name for f in files} == {"tflite", "litert"}
    for path in files:
        names = operator_names(path)
        assert len(names) > 100, (path, len(names))
        assert [n for n in names if "VAR" in n.upper()] == [], path


def test_second_run_has_nothing_to_do(default_run):
    workdir, _ = default_run
    completed = run_snakemake(workdir, "--cores", "2", "--dry-run")
    assert "Nothing to be done" in completed.stdout + completed.stderr


def markdown_table(section: str, title: str) -> list[dict]:
    """The rows of the table under ``### <title>`` of a summary section, by column header."""
    lines = [
        line
        for line in section.split(f"### {title}")[1].split("\n###")[0].splitlines()
        if line.startswith("|")
    ]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_summary_fidelity_figures_are_the_jsons(default_run, model):
    """The summary's fidelity table shows each variant's figures from its fidelity JSON, and
    "pass" exactly where a gate file was written; the Keras perplexity is far from a uniform
    guess (thousands for these vocabularies)."""
    workdir, _ = default_run
    summary = (workdir / "results/reports/default/summary.md").read_text()
    section = summary.split(f"## {model}\n")[1].split("\n## ")[0]
    rows = {(r["route"], r["variant"]): r for r in markdown_table(section, "Fidelity")}
    fidelity_files = sorted((workdir / f"results/{model}").glob("*/fidelity/*.json"))
    assert {(f.parent.parent.name, f.stem) for f in fidelity_files} == set(rows)
    for path in fidelity_files:
        route, variant = path.parent.parent.name, path.stem
        figures = json.loads(path.read_text())
        row = rows[(route, variant)]
        perplexity, keras_perplexity = row["perplexity (Keras)"].replace(")", "").split(" (")
        assert float(perplexity) == pytest.approx(figures["perplexity"], abs=6e-4)
        assert float(keras_perplexity) == pytest.approx(figures["keras_perplexity"], abs=6e-4)
        assert float(row["KL mean"]) == pytest.approx(figures["kl_mean"], abs=6e-5)
        assert float(row["top-1"].rstrip("%")) == pytest.approx(
            100 * figures["top1_agreement"], abs=0.06
        )
        assert figures["keras_perplexity"] < 50
        gate_written = (path.parent.parent / "gate" / f"{variant}.json").is_file()
        assert row["quality gates"].startswith("pass") == gate_written, (route, variant)


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


def test_snakemake_html_report_embeds_the_run_s_reports(default_run, tmp_path):
    """The HTML report embeds, byte for byte, the summary, the benchmark table, each plot and
    each op audit of the run (its data URIs decoded)."""
    import base64
    import re

    workdir, _ = default_run
    report = tmp_path / "report.html"  # outside the run's results/, which other tests compare
    run_snakemake(workdir, "--report", str(report))
    html = report.read_text(errors="replace")
    embedded = [
        base64.b64decode(data)
        for data in re.findall(r'"data_uri": "data:[^"]*?;base64,([A-Za-z0-9+/=]+)"', html)
    ]
    expected = [
        workdir / "results/reports/default" / name
        for name in ("summary.md", "benchmarks.csv", *(f"plots/{m}.png" for m in MODELS))
    ] + sorted(workdir.glob("results/*/*/ops/*.md"))
    assert len(expected) == 2 + len(MODELS) * 7  # 3 + 3 variants' audits per model, a plot
    missing = [str(p.relative_to(workdir)) for p in expected if p.read_bytes() not in embedded]
    assert missing == []


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
