"""Bad configs fail when the DAG is parsed, with one line naming the key and the fix."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from llm2tflite.config_check import check_config, fill_defaults, quality_gates

from conftest import REPO, copy_default_config, run_snakemake

TRAIN_MODEL = "models:\n  tiny:\n"


def _edit(config_file, old, new):
    text = config_file.read_text()
    assert old in text, old
    config_file.write_text(text.replace(old, new, 1))


# Each case: edits of the default config and the line the parse must fail with (a regex).
CASES = {
    case["case"]: ([tuple(edit) for edit in case["edits"]], case["error"])
    for case in yaml.safe_load((Path(__file__).parent / "config_errors.yaml").read_text())
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


def test_int4_recipe_variants_take_int4_gates():
    """A variant named after an int4 recipe gets int4's gates (as configured); a section of its
    own replaces only the gates it states (null switches one off)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["litert"]["variants"] = ["fp32", "int8", "int4", "int4_b32", "int4_c"]
    config["quality_gates"]["int4"]["max_kl_p99"] = 0.2
    config["quality_gates"]["int4_c"] = {"max_kl_mean": 0.05, "min_top1_agreement": None}
    check_config(config, REPO / "config/config.schema.yaml")
    gates = quality_gates(config)
    assert gates["int4_b32"] == gates["int4"] and gates["int4"]["max_kl_p99"] == 0.2
    assert gates["int4_c"] == {**gates["int4"], "max_kl_mean": 0.05, "min_top1_agreement": None}
    assert "int4_b64" not in gates  # not built
    for variant in ("fp32", "fp16", "int8", "int4"):
        assert gates[variant] == config["quality_gates"][variant]


@pytest.mark.parametrize(
    "config_file",
    sorted(
        path.name
        for path in (REPO / "config").glob("*.yaml")
        if path.name not in ("config.yaml", "config.schema.yaml")
    ),
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
    # The preset directory's files are inputs of the trace (their edits rerun it), expanded...
    (inputs,) = [
        line for line in completed.stdout.splitlines() if line.strip().startswith("input:")
    ]
    for name in ("config.json", "task.json", "model.weights.h5", "assets/tokenizer/merges.txt"):
        assert str(home / "presets" / "small" / name) in inputs, inputs
    # ...and the loader gets the path as written, which it expands the same way.
    assert "--preset '~/presets/small'" in completed.stdout
