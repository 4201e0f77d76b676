"""Project rules that keep the workflow reproducible and its DAG instant to parse."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import yaml

from conftest import REPO, copy_default_config, run_snakemake


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_conda_env_matches_requirements():
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs" / "llm2tflite.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == requirements
    assert requirements["tensorflow-cpu"] == "2.18.1"
    assert requirements["numpy"].startswith(("1.", "2.0."))


def test_workflow_files_do_not_import_tensorflow():
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(tensorflow|keras|keras_hub|keras_nlp)\b",
                             text, re.M), path


def test_dag_parses_fast_without_tensorflow(tmp_path):
    copy_default_config(tmp_path)
    started = time.perf_counter()
    completed = run_snakemake(tmp_path, "--dry-run", "--quiet", "all")
    elapsed = time.perf_counter() - started
    print(f"dry run of the default DAG: {elapsed:.1f} s")
    assert completed.returncode == 0


def test_unknown_variant_is_a_schema_error(tmp_path):
    config = copy_default_config(tmp_path)
    config.write_text(config.read_text().replace("variants: [fp32, int8, fp16]",
                                                 "variants: [fp32, int3]"))
    completed = run_snakemake(tmp_path, "--dry-run", check=False)
    assert completed.returncode != 0
    assert "int3" in completed.stdout + completed.stderr


def test_lint_is_clean():
    completed = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO,
                               capture_output=True, text=True)
    assert "Lints for" not in completed.stdout + completed.stderr, completed.stdout
