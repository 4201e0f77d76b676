# The LiteRT route's runtime files and LiteRT-LM bundles (after workflow/rules/litert.smk):
# - the tokenizer outside the graph, next to the LiteRT model (results/{model}/litert/
#   tokenizer.json or tokenizer.model, by the family's tokenizer kind): llm2tflite/tokenizer_files.py
# - results/{model}/litert/{variant}.litertlm (+ .litertlm.json: metadata, sha256, LiteRT-LM's
#   greedy continuation of the check prompt), packed in an environment of its own
#   (requirements-litert-lm.txt: litert-lm needs protobuf >= 6.31, TensorFlow 2.18.1 < 6):
#   a venv this file's litert_lm_env rule creates, or envs/litert-lm.yaml under --sdm conda.
from llm2tflite.litertlm import (
    DEFAULT_ACTIVATION_TYPE,
    DEFAULT_VENV_DIR,
    ENV_FILE as LITERT_LM_ENV_FILE,
    REQUIREMENTS_FILE as LITERT_LM_REQUIREMENTS,
    VENV_MARKER as LITERT_LM_VENV_MARKER,
)
from llm2tflite.tokenizer_files import runtime_file as litert_tokenizer_file_of_kind

LITERTLM = config.get("litertlm") or {}
# Variants with a bundle: the configured ones (each must be a LiteRT variant), default all.
LITERTLM_VARIANTS = [
    v for v in (LITERTLM.get("variants") if LITERTLM.get("variants") is not None
                else LITERT_VARIANTS)
]
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
REPOSITORY_ROOT = str(Path(workflow.basedir))


def litert_tokenizer_file(model):
    """results/{model}/litert/tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece)."""
    family = architectures.for_model_source(model_source(model))
    return f"results/{model}/litert/{litert_tokenizer_file_of_kind(family.tokenizer_kind)}"


def litertlm_targets(model):
    """The runtime tokenizer of a model with a LiteRT route, and its bundles."""
    if not LITERT_VARIANTS:
        return []
    return [litert_tokenizer_file(model)] + expand(
        "results/{model}/litert/{variant}.litertlm.json", model=model, variant=LITERTLM_VARIANTS
    )


def litert_lm_env_inputs(wildcards):
    """The venv's marker, unless --sdm conda provides envs/litert-lm.yaml."""
    return [] if LITERT_LM_CONDA else [f"{LITERT_LM_VENV}/{LITERT_LM_VENV_MARKER}"]


def litert_lm_python():
    return "python" if LITERT_LM_CONDA else f"{LITERT_LM_VENV}/bin/python"


localrules:
    litert_lm_env,


rule litert_tokenizer:
    wildcard_constraints:
        tokenizer_file="tokenizer\\.json|tokenizer\\.model",
    output:
        "results/{model}/litert/{tokenizer_file}",
    input:
        preset=preset_inputs,
        code=stage_code("sources", "tokenizer_files"),
    params:
        preset=preset_of,
    log:
        "logs/{model}/litert_tokenizer_{tokenizer_file}.log",
    conda:
        ENV_FILE
    shell:
        "python -m llm2tflite.tokenizer_files --preset {params.preset:q}"
        " --out-dir results/{wildcards.model}/litert > {log} 2>&1"


rule litert_lm_env:
    output:
        f"{LITERT_LM_VENV}/{LITERT_LM_VENV_MARKER}",
    input:
        requirements=str(Path(workflow.basedir) / LITERT_LM_REQUIREMENTS),
    params:
        venv=LITERT_LM_VENV,
    log:
        "logs/litert_lm_env.log",
    shell:
        "python -m llm2tflite.litertlm venv --requirements {input.requirements:q}"
        " --dir {params.venv:q} > {log} 2>&1"


rule litertlm_bundle:
    output:
        bundle="results/{model}/litert/{variant}.litertlm",
        record="results/{model}/litert/{variant}.litertlm.json",
    input:
        tflite="results/{model}/litert/{variant}.tflite",
        info="results/{model}/litert/litert_export.json",
        tokenizer=lambda wildcards: litert_tokenizer_file(wildcards.model),
        env=litert_lm_env_inputs,
        code=stage_code("litertlm"),
    params:
        python=litert_lm_python(),
        root=REPOSITORY_ROOT,
        sampler=as_json(LITERTLM_SAMPLER),
        activation_type=LITERTLM_ACTIVATION_TYPE,
        check_prompt=BENCHMARK["prompt"],
    threads: 2
    resources:
        mem_mb=mem_mb("tflite"),
        runtime=runtime_minutes("bench"),
        cpus_per_task=2,
    log:
        "logs/{model}/litertlm_{variant}.log",
    conda:
        "../../" + LITERT_LM_ENV_FILE
    shell:
        "PYTHONPATH={params.root:q} {params.python} -m llm2tflite.litertlm build"
        " --model {input.tflite} --info {input.info} --tokenizer {input.tokenizer}"
        " --out {output.bundle} --record {output.record} --sampler-json {params.sampler:q}"
        " --activation-type {params.activation_type} --check-prompt {params.check_prompt:q}"
        " > {log} 2>&1"


# ---- Android hand-off of either route (rule android_assets, workflow/rules/report.smk) -------
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
    """The files llm2tflite.android reads for the configured route."""
    model, variant = ANDROID_MODEL, ANDROID_VARIANT
    if ANDROID_ROUTE == "litert":
        litert = f"results/{model}/litert"
        return {
            "model": f"{litert}/{variant}.litertlm",
            "record": f"{litert}/{variant}.litertlm.json",
            "tflite": f"{litert}/{variant}.tflite",
            "info": f"{litert}/litert_export.json",
            "tokenizer": litert_tokenizer_file(model),
        }
    return {
        "model": f"results/{model}/tflite/{variant}.tflite",
        "ops": f"results/{model}/ops/{variant}.json",
        "saved_model": f"results/{model}/traced",
    }


def android_route_arguments(wildcards, input):
    if ANDROID_ROUTE == "litert":
        return (f"--route litert --model {input.model} --bundle-record {input.record}"
                f" --tflite {input.tflite} --export-info {input.info}")
    return (f"--model {input.model} --ops {input.ops}"
            f" --export-info {input.saved_model}/llm2tflite_export.json")
