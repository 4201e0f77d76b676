"""The slow tests' paths, checked fast: every file a slow DAG test reads is an output that a dry
run of the same command declares (a path inside a directory output counts, as the directory
holds it). A rule that moves or renames a file then fails here, in CI, rather than in a slow run
nobody starts for weeks."""

from __future__ import annotations

import pytest
import test_gemma3_twin
import test_qwen_twin
import test_smollm2_twin
import test_twin

from conftest import copy_default_config, run_snakemake

# Each: its MODEL, the workflow's SNAKEMAKE_ARGS and paths_read() (a module of one slow test, or
# one parameter of a parametrized one).
SLOW_DAG_TESTS = [test_twin, test_gemma3_twin, test_smollm2_twin]
SLOW_DAG_RUNS = [
    *((module.MODEL, module.SNAKEMAKE_ARGS, module.paths_read) for module in SLOW_DAG_TESTS),
    *((twin.model, twin.snakemake_args, twin.paths_read) for twin in test_qwen_twin.QWEN_TWINS),
]


def declared_outputs(completed) -> set[str]:
    """The output column of ``snakemake --summary``: one line per output file or directory."""
    lines = completed.stdout.splitlines()
    (header,) = [i for i, line in enumerate(lines) if line.startswith("output_file\t")]
    return {line.split("\t")[0] for line in lines[header + 1 :] if "\t" in line}


def undeclared(paths, outputs: set[str]) -> list[str]:
    return [
        path
        for path in paths
        if path not in outputs and not any(path.startswith(f"{o}/") for o in outputs)
    ]


@pytest.mark.parametrize(
    ("model", "snakemake_args", "paths_read"), SLOW_DAG_RUNS, ids=[run[0] for run in SLOW_DAG_RUNS]
)
def test_every_path_a_slow_test_reads_is_a_declared_output(
    model, snakemake_args, paths_read, tmp_path
):
    copy_default_config(tmp_path)
    # --summary before --configfile, which takes every argument after it.
    completed = run_snakemake(tmp_path, "--dry-run", "--summary", *snakemake_args)
    outputs = declared_outputs(completed)
    assert any(o.startswith(f"results/{model}/") for o in outputs), sorted(outputs)[:20]
    paths = paths_read()
    assert len(set(paths)) == len(paths), "a path listed twice"
    assert undeclared(paths, outputs) == []


def test_a_path_no_rule_writes_is_caught():
    outputs = {"results/m/traced", "results/m/bench.json"}
    assert undeclared(["results/m/traced/saved_model.pb", "results/m/bench.json"], outputs) == []
    # The layout before bench.json (one file per variant) and a directory's name as a prefix.
    assert undeclared(["results/m/bench/fp32.json", "results/m/traced2/x"], outputs) == [
        "results/m/bench/fp32.json",
        "results/m/traced2/x",
    ]
