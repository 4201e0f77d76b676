"""Bad configs fail when the DAG is parsed, with one line naming the key and the fix."""

from __future__ import annotations

import re

import pytest

from conftest import copy_default_config, run_snakemake

TRAIN_MODEL = "models:\n  tiny:\n"


def _edit(config_file, old, new):
    text = config_file.read_text()
    assert old in text, old
    config_file.write_text(text.replace(old, new, 1))


CASES = {
    "unknown key": (
        [("smoke:\n", "smoke:\n  colour: blue\n")],
        r"smoke: unknown key 'colour'; allowed keys: prompts"),
    "unknown top-level key": (
        [("variants:", "varients: [fp32]\nvariants:")],
        r"\(top level\): unknown key 'varients'"),
    "wrong type": (
        [("max_length: 100", "max_length: lots")],
        r"generation.max_length: must be of type integer, got str 'lots'"),
    "unknown variant": (
        [("variants: [fp32, int8, fp16]", "variants: [fp32, int3]")],
        r"variants\[1\]: 'int3' is not allowed; use one of: fp32, int8, fp16"),
    "zero length": (
        [("\n  sequence_length: 256", "\n  sequence_length: 0")],
        r"generation.sequence_length: must be >= 1, got 0"),
    "negative length": (
        [("max_length: 100", "max_length: -5")],
        r"generation.max_length: must be >= 2, got -5"),
    "max_length above the model's": (
        [("max_length: 100", "max_length: 300")],
        r"generation.max_length: 300 exceeds model 'tiny'.s maximum sequence length 256; "
        r"set generation.max_length <= 256"),
    "duplicate model names": (
        [("models:\n", "models:\n  tiny:\n    preset: gpt2_base_en\n")],
        r"duplicate key 'tiny' at line \d+ \(first at line \d+\).*unique name"),
    "missing preset directory": (
        [("models:\n", "models:\n  local:\n    preset: ./presets/missing\n")],
        r"models.local.preset: directory './presets/missing' does not exist; fix the path"),
    "two sources": (
        [("  tiny:\n    train:\n", "  tiny:\n    preset: gpt2_base_en\n    train:\n")],
        r"models.tiny: give exactly one model source \(preset, train, shape_of\)"),
    "empty prompt": (
        [('    - "Estoy disfrutando de"', '    - ""')],
        r"smoke.prompts\[0\]: must not be empty"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_fails_at_parse_time(tmp_path, case):
    edits, expected = CASES[case]
    config_file = copy_default_config(tmp_path)
    for old, new in edits:
        _edit(config_file, old, new)
    completed = run_snakemake(tmp_path, "--dry-run", check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert re.search(expected, output), output[-3000:]
    # Nothing ran: the error comes from parsing, before any job.
    assert not (tmp_path / "results").exists()


def test_valid_config_passes_check():
    import yaml

    from conftest import REPO
    from llm2tflite.config_check import check_config

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    check_config(config, REPO / "config/config.schema.yaml", [REPO / "config/config.yaml"])
