"""Real (not mocked) Slurm execution tests, on the private single-node cluster of
``tests/slurm/slurm_harness.py`` (the ``slurm_cluster`` fixture of ``tests/conftest.py``).

Skipped, with the reason, when Slurm/munge are not installed (``.ci/install-slurm.sh``) or when
not running as root; under ``CI=true`` (set by ``.ci/run``) that fails instead, so CI cannot pass
without running them.

``test_real_dag_on_slurm_matches_local`` runs the repository's default DAG through
``profiles/slurm`` and compares its artifacts with the local run of the end-to-end tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import textwrap
from pathlib import Path

import pytest
from slurm_harness import explain, finish_workflow_on_slurm, format_records, run_workflow_on_slurm

from conftest import SLURM_CONFIG_NAME, SLURM_MODELS

# --------------------------------------------------------------------------
# Toy DAG: fast check of the harness + profile
# --------------------------------------------------------------------------

# rule -> (mem_mb, runtime_min); a and b are independent, c needs both.
TOY_RESOURCES = {"a": (200, 5), "b": (300, 6), "c": (250, 7)}


def write_toy_workflow(directory: Path) -> Path:
    """A three-rule DAG; each rule records the Slurm job id it ran under."""
    ra, rb, rc = (TOY_RESOURCES[k] for k in "abc")
    snakefile = directory / "Snakefile"
    snakefile.write_text(
        textwrap.dedent(f"""\
        localrules: all

        rule all:
            input: "out/c.txt"

        rule a:
            output: "out/a.txt"
            threads: 1
            resources: mem_mb={ra[0]}, runtime={ra[1]}
            shell:
                "python -c 'import os, socket; "
                "print(os.environ[\\"SLURM_JOB_ID\\"], socket.gethostname())' > {{output}}"

        rule b:
            output: "out/b.txt"
            threads: 1
            resources: mem_mb={rb[0]}, runtime={rb[1]}
            shell: "echo $SLURM_JOB_ID $(hostname) > {{output}}"

        rule c:
            input: "out/a.txt", "out/b.txt"
            output: "out/c.txt"
            threads: 1
            resources: mem_mb={rc[0]}, runtime={rc[1]}
            shell: "cat {{input}} > {{output}} && echo $SLURM_JOB_ID $(hostname) >> {{output}}"
        """)
    )
    return snakefile


@pytest.mark.slurm
def test_toy_dag_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    snakefile = write_toy_workflow(tmp_path)
    workdir = tmp_path / "run"
    proc, records = run_workflow_on_slurm(snakefile, workdir, cluster=slurm_cluster)
    assert proc.returncode == 0, explain(proc, slurm_cluster)

    outs = {k: workdir / "out" / f"{k}.txt" for k in "abc"}
    for k, p in outs.items():
        assert p.is_file() and p.stat().st_size > 0, f"missing output of rule {k}"

    # Exactly one scheduler job per rule (`all` is a localrule), all completed.
    by_rule = {}
    for r in records:
        assert r.rule not in by_rule, f"two jobs for rule {r.rule}: {records}"
        by_rule[r.rule] = r
    assert set(by_rule) == set(TOY_RESOURCES), format_records(records)
    for rule, r in by_rule.items():
        assert r.state == "COMPLETED" and r.exit_code == "0:0", format_records(records)
        assert r.node_list == slurm_cluster.node
        assert r.elapsed_s is not None and r.elapsed_s >= 0
        # resources declared in the rule reached sbatch (--mem, -t)
        mem, runtime = TOY_RESOURCES[rule]
        assert r.tres_dict.get("mem") == f"{mem}M", r.tres
        assert r.time_limit == str(runtime), r.raw

    # Each output was written inside the Slurm job the scheduler recorded.
    for rule in ("a", "b"):
        job_id = outs[rule].read_text().split()[0]
        assert job_id == str(by_rule[rule].job_id)
    assert outs["c"].read_text().splitlines()[-1].split()[0] == str(by_rule["c"].job_id)
    # c depends on a and b, so Slurm must have started it after both ended.
    assert by_rule["c"].start >= max(by_rule["a"].end, by_rule["b"].end)


@pytest.mark.slurm
def test_failed_slurm_job_is_reported(slurm_cluster, tmp_path):
    """A failing rule: Slurm records FAILED, Snakemake exits non-zero, and the
    independent rule still completes (--keep-going)."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        textwrap.dedent("""\
        localrules: all
        rule all:
            input: "ok.txt", "bad.txt"
        rule ok:
            output: "ok.txt"
            resources: mem_mb=100, runtime=5
            shell: "echo fine > {output}"
        rule bad:
            output: "bad.txt"
            resources: mem_mb=100, runtime=5
            shell: "echo about to fail; exit 3"
        """)
    )
    workdir = tmp_path / "run"
    proc, records = run_workflow_on_slurm(
        snakefile, workdir, ["--keep-going"], cluster=slurm_cluster, timeout=600
    )
    assert proc.returncode != 0, explain(proc, slurm_cluster)
    assert (workdir / "ok.txt").is_file()
    assert not (workdir / "bad.txt").exists()
    states = {r.rule: r.state for r in records}
    assert states == {"ok": "COMPLETED", "bad": "FAILED"}, format_records(records)


# ---- Comparing two runs' results, file by file ---------------------------------------------
# A measured time, memory peak or ratio of times, or a clock reading, is named by one of these
# words: a unit of time (s, ms, seconds), "rss", "speed"/"speedup", "date", "time", "timestamp",
# "floor" (a time's ratio to the memory floor) and "bandwidth" (the read bandwidth that floor
# comes from). Sizes, counts, ids, texts and quality figures have none of them.
MEASURED_WORDS = frozenset(
    {"s", "ms", "seconds", "rss", "speed", "speedup", "date", "time", "timestamp", "floor"}
    | {"bandwidth"}
)
# A JSON key or CSV column naming a measurement is a snake_case identifier with such a word
# ("median_s", "decode_ms_per_token", "peak_rss_mb", "speedup_vs_tf", Keras's "date_saved"); a
# vocabulary's tokens (keys like "s" or "Ġs") are not.
MEASURED_KEY = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
# Keys describing the process that ran a job rather than what it made: its id, the CPUs the
# scheduler gave it (a Slurm allocation is not the local machine's affinity mask), and whether
# a weight cache was already there when it first loaded a model (another run may have made it).
RUN_ENVIRONMENT_KEYS = frozenset({"pid", "cpus_available", "weight_cache_found"})
# A measured time or bandwidth in running text: "(+6 tokens, 0.025 s)", "(21.3 GB/s, ...)".
MEASURED_TIME_IN_TEXT = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)? ?(?:s|ms|GB/s)\b")


def _names_a_measurement(words) -> bool:
    return bool(MEASURED_WORDS & set(words))


def is_measured_key(key: str) -> bool:
    if key in RUN_ENVIRONMENT_KEYS:
        return True
    return bool(MEASURED_KEY.fullmatch(key)) and _names_a_measurement(key.split("_"))


def is_measured_header(header: str) -> bool:
    """A table column's header: "median s (min-max)", "tokens/s", "peak RSS MiB", ..."""
    return _names_a_measurement(re.split(r"[^a-z0-9]+", header.lower()))


def without_measurements(value):
    """A JSON value with every measured key dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_measurements(v) for k, v in value.items() if not is_measured_key(k)}
    if isinstance(value, list):
        return [without_measurements(v) for v in value]
    return value


def _markdown_without_measurements(text: str) -> list[str]:
    """Markdown (summary.md, ops/*.md): table cells under a measured header dropped (cells
    stripped, since column widths follow the widest value), times in running text masked."""
    lines, measured_columns = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            measured_columns = None
            lines.append(MEASURED_TIME_IN_TEXT.sub("<time>", line))
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if measured_columns is None:  # the header row
            measured_columns = {i for i, cell in enumerate(cells) if is_measured_header(cell)}
        lines.append("|".join(c for i, c in enumerate(cells) if i not in measured_columns))
    return lines


def _csv_without_measurements(text: str) -> list[dict]:
    import csv
    import io

    return [
        {k: v for k, v in row.items() if not is_measured_key(k)}
        for row in csv.DictReader(io.StringIO(text))
    ]


def measurement_free_content(path: Path):
    """What must be equal in two runs' copies of a file whose bytes differ; None for a format
    that holds no measurement (its bytes must be equal)."""
    if path.suffix == ".json":
        return without_measurements(json.loads(path.read_text()))
    if path.suffix == ".csv":
        return _csv_without_measurements(path.read_text())
    if path.suffix == ".md":
        return _markdown_without_measurements(path.read_text())
    if path.suffix == ".png":
        # A plot draws measured latencies: its pixels follow them; its size must not change.
        from PIL import Image

        return Image.open(path).size
    return None


def result_files(workdir: Path, models=None) -> dict[str, Path]:
    """Every file under results/, by path relative to the run's directory, except Snakemake's
    `benchmark:` files (results/benchmarks/: each job's wall-clock time and memory, nothing
    else); with ``models``, only those models' (results/<model>/)."""
    return {
        name: p
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file()
        and (name := str(p.relative_to(workdir))).split("/")[1] != "benchmarks"
        and _of_models(name, models)
    }


def _of_models(name: str, models) -> bool:
    """Whether results/<model>/... is one of ``models`` (None: every file is)."""
    return models is None or name.split("/")[1] in models


def run_differences(
    first: Path, second: Path, models=None, configs=("default", "default")
) -> tuple[list[str], list[str]]:
    """(differences, files equal only without their measurements) between two runs' results
    (with ``models``, those models' only; ``configs``: each run's config name, its reports').

    Every file both runs wrote is compared: bytes equal, or, for a file that records
    measurements, equal once they are dropped (``measurement_free_content``); the manifest by
    its own entries, each checked against the file it names."""
    files = {run: result_files(run, models) for run in (first, second)}
    differences = [
        f"only in {run}: {name}"
        for run, other in ((first, second), (second, first))
        for name in sorted(set(files[run]) - set(files[other]))
    ]
    measured_only = []
    for name in sorted(set(files[first]) & set(files[second])):
        a, b = files[first][name], files[second][name]
        if a.name == "manifest.json":
            continue  # compared below, entry by entry
        if a.read_bytes() == b.read_bytes():
            continue
        content = measurement_free_content(a)
        if content is not None and content == measurement_free_content(b):
            measured_only.append(name)
        else:
            differences.append(f"differs: {name}")
    manifests = {
        run: run / f"results/reports/{config}/manifest.json"
        for run, config in zip((first, second), configs)
    }
    entries = {run: json.loads(path.read_text()) for run, path in manifests.items()}
    for manifest in entries.values():
        manifest["artifacts"] = {
            name: entry for name, entry in manifest["artifacts"].items() if _of_models(name, models)
        }
    for run, manifest in entries.items():
        for name, entry in manifest["artifacts"].items():
            if not (run / name).is_file():
                differences.append(f"{run}: the manifest names a missing file, {name}")
            elif hashlib.sha256((run / name).read_bytes()).hexdigest() != entry["sha256"]:
                differences.append(f"{run}: the manifest's SHA-256 of {name} is not the file's")
    if entries[first]["versions"] != entries[second]["versions"]:
        differences.append("manifest versions differ")
    if set(entries[first]["artifacts"]) != set(entries[second]["artifacts"]):
        differences.append("the manifests list different artifacts")
    return differences, measured_only


@pytest.mark.slurm
def test_real_dag_on_slurm_matches_local(default_run_on_slurm, default_run):
    """The default DAG of one default model (conftest's SLURM_CONFIG), every rule an sbatch
    job, gives the local run's artifacts of that model."""
    local_dir, _ = default_run
    slurm_dir = default_run_on_slurm.workdir
    slurm_cluster = default_run_on_slurm.cluster
    proc, records = finish_workflow_on_slurm(default_run_on_slurm, timeout=3600)
    assert proc.returncode == 0, explain(proc, slurm_cluster)
    assert records and all(r.state == "COMPLETED" for r in records), format_records(records)
    # Every rule of the DAG went through sbatch (the aggregate `all` is a local rule).
    rules = {"corpus", "vocab_sentencepiece", "train", "trace", "convert", "smoke"}
    assert rules | {"litert_export", "litertlm_bundle", "web_page"} <= {r.rule for r in records}
    # Two cold runs of the model's DAG (the local run is default_run's, the same fixture the
    # end-to-end tests read): this also is the check that a clean run reproduces every
    # artifact byte for byte, both routes, bundles and web page (the other model is the local
    # run's alone: a second cold run of it would add ~5 minutes of CI for the same code paths).
    differences, measured_only = run_differences(
        local_dir, slurm_dir, SLURM_MODELS, ("default", SLURM_CONFIG_NAME)
    )
    print(f"\n[slurm] equal once their measurements are dropped: {measured_only}")
    assert not differences, "\n".join(differences)
    manifest = json.loads(
        (slurm_dir / f"results/reports/{SLURM_CONFIG_NAME}/manifest.json").read_text()
    )
    compared = set(result_files(slurm_dir, SLURM_MODELS)) - set(measured_only)
    assert len(compared) > 40, compared
    for model in SLURM_MODELS:
        for route, variant in (("tflite", "int8"), ("litert", "int4")):
            assert f"results/{model}/{route}/{variant}.tflite" in manifest["artifacts"]
        assert f"results/{model}/litert/int4.litertlm" in compared
        assert f"results/{model}/preset/model.weights.h5" in compared


# ---- The comparison itself, on two small hand-made runs (fast, no cluster) -------------------


def _write_run(root: Path, perplexity=6.665, median_s=0.0127, weights=b"\x00\x01", cell="6"):
    files = {
        "results/m/preset/model.weights.h5": weights,
        "results/m/bench.json": json.dumps(
            {
                "entries": [
                    {
                        "median_s": median_s,
                        "pid": os.getpid() + int(median_s * 1e4),
                        "floor": {"decode_vs_floor": median_s * 90, "weight_bytes": 1024},
                    }
                ],
                "memory_bandwidth": {"per_repetition": [median_s * 1e12]},
            }
        ).encode(),
        "results/m/tflite/fidelity/int8.json": json.dumps({"perplexity": perplexity}).encode(),
        "results/reports/default/benchmarks.csv": f"model,median_s,new_tokens\nm,{median_s},6\n",
        "results/reports/default/summary.md": (
            "| variant | median s (min-max) | new tokens |\n|:--|:--|:--|\n"
            f"| int8 | {median_s} ({median_s}-{median_s}) | {cell} |\n\n"
            f'[int8] passed\n  "a" -> "a b" (+1 tokens, {median_s} s)\n'
        ),
        "results/benchmarks/m/train.tsv": f"s\n{median_s}\n",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        (root / name).write_bytes(data)
    artifacts = {
        name: {"sha256": hashlib.sha256((root / name).read_bytes()).hexdigest()}
        for name in files
        if "benchmarks/m" not in name
    }
    manifest = root / "results/reports/default/manifest.json"
    manifest.write_text(json.dumps({"versions": {"keras": "3"}, "artifacts": artifacts}))
    return root


def test_runs_that_differ_only_in_measurements_are_equal(tmp_path):
    first = _write_run(tmp_path / "a")
    second = _write_run(tmp_path / "b", median_s=0.0234)
    differences, measured_only = run_differences(first, second)
    assert differences == []
    assert measured_only == [
        "results/m/bench.json",
        "results/reports/default/benchmarks.csv",
        "results/reports/default/summary.md",
    ]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"perplexity": 6.7}, "differs: results/m/tflite/fidelity/int8.json"),
        ({"weights": b"\x00\x02"}, "differs: results/m/preset/model.weights.h5"),
        ({"cell": "7"}, "differs: results/reports/default/summary.md"),
    ],
)
def test_a_difference_beyond_measurements_is_reported(tmp_path, change, expected):
    first = _write_run(tmp_path / "a")
    second = _write_run(tmp_path / "b", median_s=0.0234, **change)
    differences, _ = run_differences(first, second)
    assert differences == [expected]


def test_a_missing_file_and_a_wrong_manifest_entry_are_reported(tmp_path):
    first = _write_run(tmp_path / "a")
    second = _write_run(tmp_path / "b")
    (second / "results/m/preset/model.weights.h5").unlink()
    (first / "results/m/tflite/fidelity/int8.json").write_text("{}")
    differences, _ = run_differences(first, second)
    assert f"only in {first}: results/m/preset/model.weights.h5" in differences
    assert f"{second}: the manifest names a missing file, results/m/preset/model.weights.h5" in (
        differences
    )
    assert (
        f"{first}: the manifest's SHA-256 of results/m/tflite/fidelity/int8.json is not the file's"
        in differences
    )
