"""Bad configs fail when the DAG is parsed, with one line naming the key and the fix."""

from __future__ import annotations

import copy
import re
import shutil

import pytest
import yaml

from llm2tflite.config_check import check_config, fill_defaults

from conftest import REPO, copy_default_config, run_snakemake

TRAIN_MODEL = "models:\n  tiny:\n"


def _edit(config_file, old, new):
    text = config_file.read_text()
    assert old in text, old
    config_file.write_text(text.replace(old, new, 1))


CASES = {
    "unknown key": (
        [("smoke:\n", "smoke:\n  colour: blue\n")],
        r"smoke: unknown key 'colour'; allowed keys: prompts",
    ),
    "unknown top-level key": (
        [("variants:", "varients: [fp32]\nvariants:")],
        r"\(top level\): unknown key 'varients'",
    ),
    "wrong type": (
        [("max_length: 100", "max_length: lots")],
        r"generation.max_length: must be of type integer, got str 'lots'",
    ),
    "unknown variant": (
        [("variants: [fp32, int8, fp16]", "variants: [fp32, int3]")],
        r"variants\[1\]: 'int3' is not allowed; use one of: fp32, int8, fp16",
    ),
    "zero length": (
        [("\n  sequence_length: 256", "\n  sequence_length: 0")],
        r"generation.sequence_length: must be >= 1, got 0",
    ),
    "negative length": (
        [("max_length: 100", "max_length: -5")],
        r"generation.max_length: must be >= 2, got -5",
    ),
    "max_length above the model's": (
        [("max_length: 100", "max_length: 300")],
        r"generation.max_length: 300 exceeds model 'tiny'.s maximum sequence length 256; "
        r"set generation.max_length <= 256",
    ),
    "duplicate model names": (
        [("models:\n", "models:\n  tiny:\n    preset: gpt2_base_en\n")],
        r"duplicate key 'tiny' at line \d+ \(first at line \d+\).*unique name",
    ),
    "missing preset directory": (
        [("models:\n", "models:\n  local:\n    preset: ./presets/missing\n")],
        r"models.local.preset: directory './presets/missing' does not exist; fix the path",
    ),
    "two sources": (
        [("  tiny:\n    train:\n", "  tiny:\n    preset: gpt2_base_en\n    train:\n")],
        r"models.tiny: give exactly one model source \(preset, train, shape_of\)",
    ),
    "empty prompt": (
        [('    - "Estoy disfrutando de"', '    - ""')],
        r"smoke.prompts\[0\]: must not be empty",
    ),
    # Values that passed the check and failed late, in a job (issue 9 item 5).
    "sequence_length without room for a prompt token": (
        [("\n  sequence_length: 256", "\n  sequence_length: 1")],
        r"generation.sequence_length: 1 holds only the start token, no prompt token; "
        r"set it >= 2",
    ),
    "max_length without room for a prompt token": (
        [("max_length: 100", "max_length: 2")],
        r"generation.max_length: 2 leaves room for the start token and one new token but no "
        r"prompt token; set it >= 3",
    ),
    "android model not configured": (
        [("  model: null", "  model: gpt2")],
        r"android.model: 'gpt2' is not a configured model; use one of: tiny",
    ),
    "android variant not converted": (
        [("variants: [fp32, int8, fp16]", "variants: [fp32]")],
        r"android.variant: 'int8' is not converted \(variants: fp32\); add it to variants or "
        r"set android.variant to one of them",
    ),
    "fit sequence_length equal to the model's": (
        [("    sequence_length: 48", "    sequence_length: 256")],
        r"models.tiny.train.fit.sequence_length: 256 must be below "
        r"models.tiny.train.model.max_sequence_length 256 .*; set it <= 255",
    ),
    "missing blocklist": (
        [("  blocklist: null", "  blocklist: ./lists/missing.txt")],
        r"safety.blocklist: file './lists/missing.txt' does not exist; fix the path",
    ),
    "perplexity lines above the held-out text": (
        [("perplexity_lines: 200", "perplexity_lines: 5000")],
        r"fidelity.perplexity_lines: 5000 exceeds the 1500 held-out lines of model 'tiny' "
        r"\(its corpus.heldout_lines\); set fidelity.perplexity_lines <= 1500",
    ),
    "perplexity lines above the evaluation text": (
        [
            ("models:\n", "models:\n  twin:\n    shape_of: gpt2_base_en\n"),
            ("perplexity_lines: 200", "perplexity_lines: 1400"),
        ],
        r"fidelity.perplexity_lines: 1400 exceeds the 1000 held-out lines of model 'twin' "
        r"\(the generated evaluation text\)",
    ),
    "preset name typo": (
        [("models:\n", "models:\n  gpt2:\n    preset: gpt2_bsae_en\n")],
        r"models.gpt2.preset: unknown KerasHub preset 'gpt2_bsae_en'; known presets of the "
        r"supported families: .*gpt2_base_en",
    ),
    "missing preset directory under ~": (
        [("models:\n", "models:\n  local:\n    preset: ~/presets/missing\n")],
        r"models.local.preset: directory '~/presets/missing' does not exist; fix the path",
    ),
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
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    check_config(config, REPO / "config/config.schema.yaml", [REPO / "config/config.yaml"])


@pytest.mark.parametrize(
    "config_file", ["gpt2_124m_twin.yaml", "gpt2_base_en.yaml", "gemma3_270m_twin.yaml"]
)
def test_other_configs_state_only_what_differs(config_file):
    """Every key of a --configfile differs from the default config (the schema's defaults)."""
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    other = yaml.safe_load((REPO / "config" / config_file).read_text())
    for section, value in other.items():
        if section == "models":
            continue
        if isinstance(value, dict):
            for key, setting in value.items():
                assert setting != default[section].get(key), f"{section}.{key} is the default"
        else:
            assert value != default[section], f"{section} is the default"
    check_config(other, REPO / "config/config.schema.yaml", [REPO / "config" / config_file])
    assert other["generation"] == default["generation"]
    assert other["android"] == {"model": None, "route": "tflite", "variant": "int8"}


def test_default_config_spells_out_every_schema_default():
    """config/config.yaml documents the defaults: filling them in changes nothing."""
    schema = REPO / "config/config.schema.yaml"
    written = yaml.safe_load((REPO / "config/config.yaml").read_text())
    filled = copy.deepcopy(written)
    fill_defaults(filled, schema)
    models_only = {"models": copy.deepcopy(written["models"])}
    fill_defaults(models_only, schema)
    assert models_only == filled
    written["models"]["tiny"]["train"].setdefault("architecture", "gpt2")
    assert filled == written


def test_configfile_without_replace_flag_is_refused(tmp_path):
    copy_default_config(tmp_path)
    completed = run_snakemake(
        tmp_path,
        "--dry-run",
        "--configfile",
        "config/gpt2_124m_twin.yaml",
        "--workflow-profile",
        "none",
        check=False,
    )
    assert completed.returncode != 0
    assert "add --replace-workflow-config" in completed.stdout + completed.stderr


def test_config_option_alone_amends_the_default_config(tmp_path):
    """--replace-workflow-config applies to --configfile: `--config` still amends the default."""
    copy_default_config(tmp_path)
    completed = run_snakemake(
        tmp_path, "--dry-run", "--config", "variants=[fp32]", "android={variant: fp32}"
    )
    # The codelab route's variants change; the LiteRT route keeps its own (litert.variants).
    assert "results/tiny/tflite/int8.tflite" not in completed.stdout
    assert "results/tiny/tflite/fp32.tflite" in completed.stdout
    assert "results/tiny/litert/int8.tflite" in completed.stdout


def test_config_file_name_must_make_a_directory_name(tmp_path):
    copy_default_config(tmp_path)
    shutil.copy(tmp_path / "config/config.yaml", tmp_path / "config/my run.yaml")
    completed = run_snakemake(
        tmp_path, "--dry-run", "--configfile", "config/my run.yaml", check=False
    )
    assert completed.returncode != 0
    assert re.search(
        r"its name 'my run' cannot name results/reports/<name>/; rename the file "
        r"or set `name:` in it",
        completed.stdout + completed.stderr,
    )


def test_preset_name_typo_is_reported_by_the_loader_too():
    from llm2tflite.inputs.sources import PresetUnavailableError, load_causal_lm

    with pytest.raises(
        PresetUnavailableError,
        match=r"unknown KerasHub preset 'gpt2_bsae_en'; "
        r"known presets of the supported families: .*gpt2_base_en",
    ):
        load_causal_lm("gpt2_bsae_en")


def test_preset_under_home_is_expanded_by_check_dag_and_loader(small_export, tmp_path, monkeypatch):
    """`preset: ~/presets/small` is a directory for the check, the DAG and the loader alike."""
    from llm2tflite.inputs.sources import load_causal_lm

    home = tmp_path / "home"
    shutil.copytree(small_export["preset"], home / "presets" / "small")
    monkeypatch.setenv("HOME", str(home))
    causal_lm = load_causal_lm("~/presets/small")
    assert type(causal_lm).__name__ == "GPT2CausalLM"

    workdir = tmp_path / "project"
    config_file = copy_default_config(workdir)
    _edit(config_file, "models:\n", "models:\n  local:\n    preset: ~/presets/small\n")
    completed = run_snakemake(workdir, "--dry-run", "--printshellcmds", "results/local/traced")
    # The preset directory is an input of the trace (its edits rerun it), expanded...
    assert f"input: {home / 'presets' / 'small'}" in completed.stdout
    # ...and the loader gets the path as written, which it expands the same way.
    assert "--preset '~/presets/small'" in completed.stdout
