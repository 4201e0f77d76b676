# Settings and helpers of the LiteRT route's rules (workflow/rules/litert.smk: export, conversion,
# quantization; workflow/rules/litertlm.smk: the runtime tokenizer and the LiteRT-LM bundles), and
# the inputs of the Android hand-off of either route (rule android).
from llm2tflite.litert.export import LiteRTSettingsError, model_errors, resolve_settings
from llm2tflite.litert.quantize import RECIPES as LITERT_RECIPES

try:
    LITERT = resolve_settings(config)
except LiteRTSettingsError as error:
    raise WorkflowError(f"invalid config:\n  {error}") from None
if LITERT["variants"] and model_errors(config, LITERT):
    raise WorkflowError(
        "invalid config:\n" + "\n".join(f"  {line}" for line in model_errors(config, LITERT))
    )
LITERT_VARIANTS = LITERT["variants"]


def litert_targets(model):
    """The route's files of one model: the runtime's export info and every configured variant."""
    if not LITERT_VARIANTS:
        return []
    return [f"results/{model}/litert/litert_export.json"] + expand(
        "results/{model}/litert/{variant}.tflite", model=model, variant=LITERT_VARIANTS
    )


from llm2tflite.litertlm.bundle import DEFAULT_ACTIVATION_TYPE
from llm2tflite.litertlm.env import (
    DEFAULT_VENV_DIR,
    REQUIREMENTS_FILE as LITERT_LM_REQUIREMENTS,
    VENV_MARKER as LITERT_LM_VENV_MARKER,
)
from llm2tflite.litert.runtime_tokenizer import runtime_file as litert_tokenizer_file_of_kind

LITERTLM = config.get("litertlm") or {}
# Variants with a bundle: the configured ones (each must be a LiteRT variant), default all.
LITERTLM_VARIANTS = list(
    LITERT_VARIANTS if LITERTLM.get("variants") is None else LITERTLM["variants"]
)
_unknown_bundles = sorted(set(LITERTLM_VARIANTS) - set(LITERT_VARIANTS))
if _unknown_bundles:
    raise WorkflowError(
        f"litertlm.variants: {_unknown_bundles} are not LiteRT variants (litert.variants: "
        f"{LITERT_VARIANTS}); bundle only variants the LiteRT route builds"
    )
LITERTLM_SAMPLER = LITERTLM.get("sampler") or {"temperature": 0}
LITERTLM_ACTIVATION_TYPE = LITERTLM.get("activation_type") or DEFAULT_ACTIVATION_TYPE
# The venv sits in the working directory (on a cluster: the filesystem the jobs share), built
# by a local rule (PyPI is often unreachable from compute nodes).
LITERT_LM_VENV = LITERTLM.get("venv") or DEFAULT_VENV_DIR
LITERT_LM_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
# Relative, as every code input: a moved project keeps the same params (nothing to rebuild).
REPOSITORY_ROOT = project_path(workflow.basedir)


def litert_tokenizer_file(model):
    """results/{model}/litert/tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece)."""
    family = registry.for_model_source(model_source(model))
    return f"results/{model}/litert/{litert_tokenizer_file_of_kind(family.tokenizer_kind)}"


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
    route = getattr(wildcards, "route", "litert")
    if route != "litert" or not LITERT_VARIANTS:
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


# ---- Android hand-off of either route (rule android, workflow/rules/report.smk) -------
_android_variants = LITERT_VARIANTS if ANDROID_ROUTE == "litert" else VARIANTS
if ANDROID_VARIANT not in _android_variants:
    raise WorkflowError(
        f"android.variant: {ANDROID_VARIANT} is not a variant of the {ANDROID_ROUTE} route "
        f"({'litert.variants' if ANDROID_ROUTE == 'litert' else 'variants'}: "
        f"{_android_variants}); pick one of them or change android.route"
    )
if ANDROID_ROUTE == "litert" and ANDROID_VARIANT not in LITERTLM_VARIANTS:
    raise WorkflowError(
        f"android.variant: {ANDROID_VARIANT} has no LiteRT-LM bundle (litertlm.variants: "
        f"{LITERTLM_VARIANTS}); add it there"
    )


def android_inputs(wildcards):
    """The files llm2tflite.report.android reads for the configured route; only a variant that passed
    its quality gates is handed off."""
    model, variant, route = ANDROID_MODEL, ANDROID_VARIANT, ANDROID_ROUTE
    checks = {
        "ops": f"results/{model}/{route}/ops/{variant}.json",
        "gate": f"results/{model}/{route}/gate/{variant}.json",
    }
    if route == "litert":
        litert = f"results/{model}/litert"
        return {
            "model": f"{litert}/{variant}.litertlm",
            "record": f"{litert}/{variant}.litertlm.json",
            "tflite": f"{litert}/{variant}.tflite",
            "info": f"{litert}/litert_export.json",
            "tokenizer": litert_tokenizer_file(model),
            **checks,
        }
    return {
        "model": f"results/{model}/tflite/{variant}.tflite",
        "saved_model": f"results/{model}/traced",
        **checks,
    }


def android_route_arguments(wildcards, input):
    if ANDROID_ROUTE == "litert":
        return (
            f"--route litert --model {input.model} --bundle-record {input.record}"
            f" --tflite {input.tflite} --export-info {input.info} --ops {input.ops}"
        )
    return (
        f"--model {input.model} --ops {input.ops}"
        f" --export-info {input.saved_model}/llm2tflite_export.json"
    )
