# Settings and helpers of the LiteRT route's rules (workflow/rules/litert.smk: export, conversion,
# quantization, runtime tokenizer; workflow/rules/litertlm.smk: the LiteRT-LM bundles). The
# config check (llm2tflite/config_check.py) has already refused settings that cannot work.
from llm2tflite.config_check import litertlm_variants
from llm2tflite.litert import contract as litert_contract
from llm2tflite.litertlm.env import (
    REQUIREMENTS_FILE as LITERT_LM_REQUIREMENTS,
    VENV_MARKER as LITERT_LM_VENV_MARKER,
)

LITERT_RECIPES = litert_contract.QUANTIZATION_RECIPES
LITERTLM = config["litertlm"]
# Variants with a bundle: the configured ones (each a LiteRT variant), default all.
LITERTLM_VARIANTS = litertlm_variants(config)
# The venv sits in the working directory (on a cluster: the filesystem the jobs share), built
# by a local rule (PyPI is often unreachable from compute nodes).
LITERT_LM_VENV = LITERTLM["venv"]
LITERT_LM_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
# Relative, as every code input: a moved project keeps the same params (nothing to rebuild).
REPOSITORY_ROOT = project_path(workflow.basedir)


def litert_targets(model):
    """The route's files of one model: the runtime's export info and every configured variant."""
    if not LITERT_VARIANTS:
        return []
    return [f"results/{model}/litert/litert_export.json"] + expand(
        "results/{model}/litert/{variant}.tflite", model=model, variant=LITERT_VARIANTS
    )


def litert_tokenizer_file(model):
    """results/{model}/litert/tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece)."""
    family = registry.for_model_source(model_source(model))
    return (
        f"results/{model}/litert/{litert_contract.RUNTIME_TOKENIZER_FILES[family.tokenizer_kind]}"
    )


def litertlm_targets(model):
    """The runtime tokenizer of a model with a LiteRT route, and its bundles."""
    if not LITERT_VARIANTS:
        return []
    return [litert_tokenizer_file(model)] + expand(
        "results/{model}/litert/{variant}.{suffix}",
        model=model,
        variant=LITERTLM_VARIANTS,
        suffix=["litertlm", "litertlm.json"],
    )


def litert_runtime_files(wildcards):
    """What LiteRTModel reads beside a LiteRT-route .tflite (export info, tokenizer file), as
    inputs of the jobs that run one: smoke and fidelity ({route} wildcard), bench (all routes)."""
    route = getattr(wildcards, "route", LITERT_ROUTE)
    if route != LITERT_ROUTE or not LITERT_VARIANTS:
        return []
    return [
        f"results/{wildcards.model}/litert/litert_export.json",
        litert_tokenizer_file(wildcards.model),
    ]


def litert_lm_env_inputs(wildcards):
    """The venv's marker, unless --sdm conda provides envs/litert-lm.yaml."""
    return [] if LITERT_LM_CONDA else [f"{LITERT_LM_VENV}/{LITERT_LM_VENV_MARKER}"]


def litert_lm_python():
    return "python" if LITERT_LM_CONDA else f"{LITERT_LM_VENV}/bin/python"
