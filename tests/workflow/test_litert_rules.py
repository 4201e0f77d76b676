"""The LiteRT route in the DAG: default targets, the `litert:` settings, refusals at parse time."""

from __future__ import annotations

import re

import pytest

from conftest import copy_default_config, run_snakemake

LITERT_RULES = ("litert_export", "litert_convert", "litert_quantize")


def _dry_run(workdir, *args, check=True):
    completed = run_snakemake(workdir, "--dry-run", "--quiet", "rules", *args, check=check)
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
    _set_litert(config_file, "  variants: [int4]\n")
    _, output = _dry_run(tmp_path)
    jobs = dict(re.findall(r"^(litert_\w+)\s+(\d+)$", output, re.MULTILINE))
    assert jobs == {"litert_export": "2", "litert_convert": "2", "litert_quantize": "2"}, output


@pytest.mark.parametrize(
    "block,expected",
    [
        (
            "  prefill_lengths: [8, 128]\n",
            r"litert.prefill_lengths: \[128\] do not fit a cache of 100 positions",
        ),
        (
            "  cache_length: 16\n  prefill_lengths: [32]\n",
            r"litert.prefill_lengths: \[32\] do not fit a cache of 16 positions",
        ),
        ("  cache_length: 300\n", r"litert.cache_length: 300 exceeds model 'tiny'.s 256 positions"),
        ("  variants: [int3]\n", r"litert.variants\[0\]: 'int3' is not allowed"),
    ],
)
def test_bad_litert_settings_fail_at_parse_time(tmp_path, block, expected):
    config_file = copy_default_config(tmp_path)
    _set_litert(config_file, block)
    completed, output = _dry_run(tmp_path, check=False)
    assert completed.returncode != 0
    assert re.search(expected, output), output[-3000:]
    assert not (tmp_path / "results").exists()


def test_litert_edits_rerun_only_the_litert_route(default_run):
    """After a complete default run: a `litert:` setting or a LiteRT module edit reruns the
    route's jobs it affects, nothing of the codelab route (edits in the run's copy of the
    project, never the checkout)."""
    import os

    from test_invalidation import (
        AGGREGATES,
        DOWNSTREAM_OF_VARIANT,
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
    quantized |= of_model("bench") | {("benchmark_table", "")}
    source = workdir / "llm2tflite" / "litert_quantize.py"
    data, stat = source.read_bytes(), source.stat()
    try:
        source.write_bytes(data + b"\n# edited by test_litert_rules\n")
        assert planned_jobs(workdir) - AGGREGATES == quantized
    finally:
        source.write_bytes(data)
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(workdir) == set()
