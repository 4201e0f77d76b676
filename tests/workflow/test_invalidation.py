"""After a complete default run, a config or code edit reruns exactly the artifacts it affects;
nothing else does (moving or copying the project, running another config in it).

Each case edits the config or a package module of the finished e2e run (a copy of the
checkout: the checkout's own files are never touched), asks Snakemake for a dry run, and
compares the planned jobs with what the edit should rebuild.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO, run_snakemake

# Jobs that consume every model's results (the summary reads all smoke, fidelity, ops and benchmark
# results), and so rerun after any change.
AGGREGATES = {("all", ""), ("manifest", ""), ("summary", "")}


def planned_jobs(workdir, *args) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans (``args``: more options and targets)."""
    completed = run_snakemake(workdir, "--dry-run", *args)
    jobs, rule = set(), None
    for line in completed.stdout.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            if rule is not None:
                jobs.add((rule, ""))
            rule = match.group(1)
            continue
        match = re.match(r"^\s+wildcards: (.*)$", line)
        if match and rule is not None:
            jobs.add((rule, match.group(1)))
            rule = None
    if rule is not None:
        jobs.add((rule, ""))
    return jobs


# Every model of the default config: an edit of a shared setting reruns each one's jobs.
MODELS = tuple(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"])


def per_variant(rule, *variants, models=MODELS, route="tflite"):
    if rule in ("convert", "litert_quantize", "litertlm_bundle"):
        return {(rule, f"model={m}, variant={v}") for m in models for v in variants}
    # The per-variant checks have the route in their paths: results/<m>/<route>/<stage>/<v>.json
    return {(rule, f"model={m}, route={route}, variant={v}") for m in models for v in variants}


def of_model(*rules, models=MODELS):
    return {(rule, f"model={m}") for m in models for rule in rules}


ALL_VARIANTS = ("fp32", "int8", "fp16")  # every configured variant
LITERT_VARIANTS = ("fp32", "int8", "int4")  # config `litert: variants`
RUNTIME_TOKENIZERS = {"tiny": "tokenizer.json", "tiny_llama": "tokenizer.model"}
DOWNSTREAM_OF_VARIANT = ("smoke", "fidelity", "quality_gate", "audit")
ANDROID_VARIANT = "int8"  # config `android: variant`
ANDROID_MODEL = MODELS[0]  # config `android: model: null`: the first model


def gated(*variants, models=MODELS, route="tflite"):
    """The fidelity of these variants, their quality gates, and the hand-off that needs one."""
    jobs = per_variant("fidelity", *variants, models=models, route=route) | per_variant(
        "quality_gate", *variants, models=models, route=route
    )
    if route == "tflite" and ANDROID_VARIANT in variants and ANDROID_MODEL in models:
        jobs.add(("android", ""))
    return jobs


def smoked(models=MODELS):
    """The smoke test of every variant of both routes."""
    return per_variant("smoke", *ALL_VARIANTS, models=models) | per_variant(
        "smoke", *LITERT_VARIANTS, models=models, route="litert"
    )


def converted(*variants, models=MODELS):
    """The conversion of these variants and every job that reads the converted files."""
    jobs = {
        job
        for rule in ("convert", *DOWNSTREAM_OF_VARIANT)
        for job in per_variant(rule, *variants, models=models)
    }
    # One benchmark job per model times every variant against the baseline.
    jobs |= of_model("bench", models=models) | {("benchmark_table", "")}
    if ANDROID_VARIANT in variants and ANDROID_MODEL in models:
        jobs.add(("android", ""))
    return jobs


def traced(models=MODELS):
    """The trace, every conversion, and the benchmark of the traced model."""
    return of_model("trace", models=models) | converted(*ALL_VARIANTS, models=models)


def web_pages(models=MODELS):
    """The demo pages (workflow/rules/web.smk): each reads its model's LiteRT files."""
    return of_model("web_page", models=models)


def litert_exported(models=MODELS):
    """The LiteRT route's export, every LiteRT variant (workflow/rules/litert.smk) and every job
    that reads them: their checks, bundles, demo pages and the benchmark."""
    jobs = of_model("litert_export", "litert_convert", "bench", models=models) | web_pages(models)
    jobs |= per_variant("litert_quantize", "int8", "int4", models=models)
    jobs |= per_variant("litertlm_bundle", *LITERT_VARIANTS, models=models)
    for rule in DOWNSTREAM_OF_VARIANT:
        jobs |= per_variant(rule, *LITERT_VARIANTS, models=models, route="litert")
    return jobs | {("benchmark_table", "")}


def runtime_tokenizer(models=MODELS):
    """The LiteRT route's tokenizer file, written from the preset, and the bundles and demo
    pages holding it."""
    return (
        {
            ("runtime_tokenizer", f"model={m}, tokenizer_file={RUNTIME_TOKENIZERS[m]}")
            for m in models
        }
        | per_variant("litertlm_bundle", *LITERT_VARIANTS, models=models)
        | web_pages(models)
    )


CASES = {
    "smoke prompts": (
        ('    - "Estoy disfrutando de"\n\n', '    - "Estoy disfrutando de"\n    - "Hola"\n\n'),
        of_model("reference") | smoked(),
    ),
    "int8 quantization option": (
        ("per_channel: true", "per_channel: false"),
        converted("int8"),
    ),
    "max_length": (
        ("max_length: 100", "max_length: 80"),
        # The LiteRT cache length defaults to max_length.
        traced() | of_model("reference", "keras_fidelity_reference") | litert_exported(),
    ),
    "sequence_length": (
        ("\n  sequence_length: 256", "\n  sequence_length: 128"),
        traced(),
    ),
    "training hyperparameter": (  # tiny's alone
        ("epochs: 2", "epochs: 3"),
        traced(models=("tiny",))
        | of_model("train", "reference", "keras_fidelity_reference", models=("tiny",))
        | litert_exported(models=("tiny",))
        | runtime_tokenizer(models=("tiny",)),
    ),
    "fidelity prompts": (
        ('    - "Every morning I"\n', '    - "Every morning I"\n    - "Hola"\n'),
        of_model("keras_fidelity_reference")
        | gated(*ALL_VARIANTS)
        | gated(*LITERT_VARIANTS, route="litert"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_edit_reruns_exactly_what_it_affects(default_run, case):
    workdir, _ = default_run
    (old, new), expected = CASES[case]
    config_file = workdir / "config" / "config.yaml"
    original = config_file.read_text()
    assert old in original, old
    try:
        config_file.write_text(original.replace(old, new, 1))
        assert planned_jobs(workdir) - AGGREGATES == expected
    finally:
        config_file.write_text(original)
    assert planned_jobs(workdir) == set()


def trained():
    """Training and everything that reads the trained model."""
    return (
        traced()
        | of_model("train", "reference", "keras_fidelity_reference")
        | litert_exported()
        | runtime_tokenizer()
    )


@contextlib.contextmanager
def edited_module(workdir, module):
    """The project's copy of a package module (``module``: a path below llm2tflite/) edited for
    the duration, then restored with its timestamps (the checkout is never touched)."""
    source = workdir / "llm2tflite" / module
    original, stat = source.read_bytes(), source.stat()
    try:
        # A real edit: Snakemake 9 compares the content of small inputs with what it recorded,
        # so a newer modification time alone (touch) reruns nothing.
        source.write_bytes(original + b"\n# edited by the workflow tests\n")
        yield
    finally:
        source.write_bytes(original)
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize(
    "module, expected",
    [
        ("evaluate/smoke.py", smoked()),
        ("codelab/convert.py", converted(*ALL_VARIANTS)),
        ("inputs/train.py", trained()),
        # Modules a stage imports: once missing from the hand-written code inputs.
        (
            "inputs/vocab.py",
            {("vocab", "model=tiny"), ("vocab_sentencepiece", "model=tiny_llama")} | trained(),
        ),
        # Every stage that loads a preset or imports the trace (which does).
        (
            "inputs/sources.py",
            traced()
            | of_model("reference", "keras_fidelity_reference")
            | litert_exported()
            | runtime_tokenizer(),
        ),
        # The demo pages carry the blocklist normalized by the safety module.
        ("core/safety.py", smoked() | web_pages()),
    ],
)
def test_editing_a_stage_module_reruns_that_stage(default_run, module, expected):
    workdir, _ = default_run
    with edited_module(workdir, module):
        assert planned_jobs(workdir) - AGGREGATES == expected
    assert planned_jobs(workdir) == set()


def _copy_with_cp(source, target):
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def _copy_with_rsync(source, target):
    subprocess.run(["rsync", "-a", f"{source}/", f"{target}/"], check=True)


def _move(source, target):
    # Move a copy: the session's finished project stays for the other tests.
    _copy_with_cp(source, target.parent / "before_move")
    subprocess.run(["mv", str(target.parent / "before_move"), str(target)], check=True)


@pytest.mark.parametrize(
    "method", [_copy_with_cp, _copy_with_rsync, _move], ids=["cp -a", "rsync -a", "mv"]
)
def test_finished_project_elsewhere_has_nothing_to_do(default_run, tmp_path, method):
    """A finished project moved or copied to another path (another machine's mount point)
    keeps every input path: nothing reruns."""
    if method is _copy_with_rsync and shutil.which("rsync") is None:
        from conftest import skip_or_fail

        skip_or_fail("rsync is not installed (.ci/install-tools.sh installs it)")
    workdir, _ = default_run
    target = tmp_path / "elsewhere" / "project"
    target.parent.mkdir()
    method(workdir, target)
    completed = run_snakemake(target, "--dry-run")
    assert "Nothing to be done" in completed.stdout + completed.stderr, completed.stdout[-3000:]


SECOND_CONFIG = """\
# A second, small model in the same project (what the 124M twin's config is to the default).
models:
  mini:
    train:
      corpus: {seed: 1, train_lines: 1000, heldout_lines: 20}
      vocabulary: {size: 300}
      model: {num_layers: 1, num_heads: 2, hidden_dim: 32, intermediate_dim: 64,
              max_sequence_length: 64}
      fit: {seed: 1, sequence_length: 40, batch_size: 32, epochs: 2, learning_rate: 0.01}
generation: {max_length: 12, sequence_length: 8}
variants: [fp32]
smoke: {prompts: ["Hola"]}
fidelity: {prompts: ["Hola"], perplexity_lines: 10}
benchmark: {runs: 1, threads: 1}
android: {variant: fp32}
# The codelab route alone: the reports are what this test is about.
litert: {variants: []}
web: {models: []}
"""


def test_second_config_in_the_same_project_rebuilds_nothing_of_the_first(default_run, tmp_path):
    """default -> another config -> default: the last run has nothing to do, and each config
    has its own summary, benchmark table, manifest and Android hand-off."""
    workdir, _ = default_run
    project = tmp_path / "project"
    subprocess.run(["cp", "-a", str(workdir), str(project)], check=True)
    (project / "config" / "mini.yaml").write_text(SECOND_CONFIG)
    run_snakemake(project, "--cores", "2", "--configfile", "config/mini.yaml")
    completed = run_snakemake(project, "--dry-run")
    assert "Nothing to be done" in completed.stdout + completed.stderr, completed.stdout[-3000:]
    for config_name, model, android_variant in (
        ("default", "tiny", "int8"),
        ("mini", "mini", "fp32"),
    ):
        reports = project / "results" / "reports" / config_name
        assert model in (reports / "summary.md").read_text()
        assert (reports / "benchmarks.csv").is_file() and (reports / "manifest.json").is_file()
        assert (reports / f"plots/{model}.png").is_file()
        handed_off = reports / "android/app/src/main/assets/autocomplete.tflite"
        assert (
            handed_off.read_bytes()
            == (project / f"results/{model}/tflite/{android_variant}.tflite").read_bytes()
        )
    assert "mini" not in (project / "results/reports/default/summary.md").read_text()
