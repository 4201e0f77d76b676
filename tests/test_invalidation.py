"""After a complete default run, a config or code edit reruns exactly the artifacts it affects.

Each case edits the config (or a stage's module mtime) of the finished e2e run, asks Snakemake
for a dry run, and compares the planned jobs with what the edit should rebuild.
"""

from __future__ import annotations

import os
import re

import pytest

from conftest import REPO, run_snakemake

# Jobs that consume every model's results (the summary reads all smoke, fidelity, ops and benchmark
# results), and so rerun after any change.
AGGREGATES = {("all", ""), ("manifest", ""), ("summary", "")}


def planned_jobs(workdir) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans."""
    completed = run_snakemake(workdir, "--dry-run")
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


def per_variant(rule, *variants):
    if rule == "convert":
        return {(rule, f"model=tiny, variant={v}") for v in variants}
    # The per-variant checks have the route in their paths: results/tiny/tflite/<stage>/<v>.json
    return {(rule, f"model=tiny, route=tflite, variant={v}") for v in variants}


def of_model(*rules):
    return {(rule, "model=tiny") for rule in rules}


ALL_VARIANTS = ("fp32", "int8", "fp16")  # every configured variant
DOWNSTREAM_OF_VARIANT = ("smoke", "fidelity", "quality_gate", "audit")
ANDROID_VARIANT = "int8"  # config `android: variant`


def gated(*variants):
    """The fidelity of these variants, their quality gates, and the hand-off that needs one."""
    jobs = per_variant("fidelity", *variants) | per_variant("quality_gate", *variants)
    if ANDROID_VARIANT in variants:
        jobs.add(("android_assets", ""))
    return jobs


def converted(*variants):
    """The conversion of these variants and every job that reads the converted files."""
    jobs = {job for rule in ("convert", *DOWNSTREAM_OF_VARIANT)
            for job in per_variant(rule, *variants)}
    # One benchmark job per model times every variant against the baseline.
    jobs |= {("bench", "model=tiny"), ("benchmark_table", "")}
    if ANDROID_VARIANT in variants:
        jobs.add(("android_assets", ""))
    return jobs


def traced():
    """The trace, every conversion, and the benchmark of the traced model."""
    return of_model("trace") | converted(*ALL_VARIANTS)


CASES = {
    "smoke prompts": (
        ('    - "Estoy disfrutando de"\n\n', '    - "Estoy disfrutando de"\n    - "Hola"\n\n'),
        of_model("smoke_reference") | per_variant("smoke", *ALL_VARIANTS),
    ),
    "int8 quantization option": (
        ("per_channel: true", "per_channel: false"),
        converted("int8"),
    ),
    "max_length": (
        ("max_length: 100", "max_length: 80"),
        traced() | of_model("smoke_reference", "keras_fidelity_reference"),
    ),
    "sequence_length": (
        ("\n  sequence_length: 256", "\n  sequence_length: 128"),
        traced(),
    ),
    "training hyperparameter": (
        ("epochs: 3", "epochs: 4"),
        traced() | of_model("train", "smoke_reference", "keras_fidelity_reference"),
    ),
    "fidelity prompts": (
        ('    - "Every morning I"\n', '    - "Every morning I"\n    - "Hola"\n'),
        of_model("keras_fidelity_reference") | gated(*ALL_VARIANTS),
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


@pytest.mark.parametrize("module, expected", [
    ("smoke", per_variant("smoke", *ALL_VARIANTS)),
    ("convert", converted(*ALL_VARIANTS)),
    ("train", traced() | of_model("train", "smoke_reference", "keras_fidelity_reference")),
])
def test_editing_a_stage_module_reruns_that_stage(default_run, module, expected):
    workdir, _ = default_run
    source = REPO / "llm2tflite" / f"{module}.py"
    original, stat = source.read_bytes(), source.stat()
    try:
        # A real edit: Snakemake 9 compares the content of small inputs with what it recorded,
        # so a newer modification time alone (touch) reruns nothing.
        source.write_bytes(original + b"\n# edited by test_invalidation\n")
        assert planned_jobs(workdir) - AGGREGATES == expected
    finally:
        source.write_bytes(original)
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(workdir) == set()
