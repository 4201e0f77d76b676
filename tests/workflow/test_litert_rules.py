"""The LiteRT route in the DAG: default targets, the `litert:` settings, what an edit reruns (its
refusals at parse time are cases of tests/workflow/config_errors.yaml)."""

from __future__ import annotations

import json
import re

from conftest import copy_default_config, run_snakemake

LITERT_RULES = ("litert_export", "litert_convert", "litert_quantize")


def _dry_run(workdir):
    completed = run_snakemake(workdir, "--dry-run", "--quiet", "rules")
    return completed, completed.stdout + completed.stderr


def _set_litert(config_file, block: str) -> None:
    text = config_file.read_text()
    start = text.index("\nlitert:\n")
    config_file.write_text(text[:start] + "\nlitert:\n" + block)


def test_default_run_builds_every_litert_variant(tmp_path):
    copy_default_config(tmp_path)
    _, output = _dry_run(tmp_path)
    jobs = dict(re.findall(r"^(litert_\w+)\s+(\d+)$", output, re.MULTILINE))
    # Both default models (tiny, tiny_llama): one export and one fp32 conversion each; int8 and
    # int4 quantized from it.
    assert jobs == {"litert_export": "2", "litert_convert": "2", "litert_quantize": "4"}, output


def test_variants_empty_turns_the_route_off(tmp_path):
    config_file = copy_default_config(tmp_path)
    _set_litert(config_file, "  variants: []\n")
    _, output = _dry_run(tmp_path)
    assert not any(rule in output for rule in LITERT_RULES), output


def test_only_int4_still_converts_fp32_first(tmp_path):
    config_file = copy_default_config(tmp_path)
    # The demo pages run a variant the route builds (config `web: variant`, default int8).
    _set_litert(config_file, "  variants: [int4]\nweb:\n  variant: int4\n")
    _, output = _dry_run(tmp_path)
    jobs = dict(re.findall(r"^(litert_\w+)\s+(\d+)$", output, re.MULTILINE))
    assert jobs == {"litert_export": "2", "litert_convert": "2", "litert_quantize": "2"}, output


def test_int4_recipe_variants_are_built_and_gated_like_int4(tmp_path):
    """A variant named after an int4 recipe is quantized from the fp32 file with its recipe, and
    its quality gate is int4's but for the gates it states itself."""
    config_file = copy_default_config(tmp_path)
    text = config_file.read_text().replace(
        "\nquality_gates:\n", "\nquality_gates:\n  int4_c:\n    max_kl_mean: 0.05\n", 1
    )
    config_file.write_text(text)
    _set_litert(config_file, "  variants: [fp32, int8, int4, int4_c]\n")
    completed = run_snakemake(
        tmp_path,
        "--dry-run",
        "--printshellcmds",
        "results/tiny/litert/gate/int4_c.json",
        "results/tiny/litert/gate/int4.json",
    )
    output = completed.stdout + completed.stderr
    assert "--variant int4_c --out results/tiny/litert/int4_c.tflite" in output, output
    gates = {
        variant: json.loads(value)
        for value, variant in re.findall(
            r"--gates-json '([^']*)' --out results/tiny/litert/gate/(\w+)\.json", output
        )
    }
    assert gates["int4_c"] == {**gates["int4"], "max_kl_mean": 0.05}, output
    assert gates["int4"]["max_kl_mean"] == 0.03


def test_litert_edits_rerun_only_the_litert_route(default_run):
    """After a complete default run: a `litert:` setting or a LiteRT module edit reruns the
    route's jobs it affects, nothing of the codelab route (edits in the run's copy of the
    project, never the checkout)."""
    from test_invalidation import (
        AGGREGATES,
        DOWNSTREAM_OF_VARIANT,
        edited_module,
        litert_exported,
        of_model,
        per_variant,
        planned_jobs,
    )

    workdir, _ = default_run
    config_file = workdir / "config" / "config.yaml"
    original = config_file.read_text()
    try:
        config_file.write_text(
            original.replace("  prefill_lengths: null", "  prefill_lengths: [8, 16]", 1)
        )
        assert planned_jobs(workdir) - AGGREGATES == litert_exported()
    finally:
        config_file.write_text(original)
    # The quantized variants and what reads them; not the fp32 file.
    quantized = per_variant("litert_quantize", "int8", "int4") | per_variant(
        "litertlm_bundle", "int8", "int4"
    )
    for rule in DOWNSTREAM_OF_VARIANT:
        quantized |= per_variant(rule, "int8", "int4", route="litert")
    # The demo pages run int8 (config `web: variant`).
    quantized |= of_model("bench", "web_page") | {("benchmark_table", "")}
    with edited_module(workdir, "litert/quantize.py"):
        assert planned_jobs(workdir) - AGGREGATES == quantized
    assert planned_jobs(workdir) == set()
