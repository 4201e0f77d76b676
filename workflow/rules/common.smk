# Shared helpers of the rules: model sources, file names, the Python that runs the stages.
import json
import os
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

MODELS = list(config["models"])
VARIANTS = list(config["variants"])
GENERATION = config["generation"]
SMOKE_PROMPTS = config["smoke"]["prompts"]
PACKAGE_DIR = Path(workflow.basedir) / "llm2tflite"
# The safety filter's word list: the configured file, or the package's default.
BLOCKLIST = (config.get("safety") or {}).get("blocklist") or str(
    PACKAGE_DIR / "data" / "blocklist.txt"
)
ENV_FILE = "../../envs/llm2tflite.yaml"

# The stages run as `python -m llm2tflite.<stage>`. With --sdm conda that is the env's python;
# otherwise put the interpreter running Snakemake first on PATH, so that an unactivated
# `.venv/bin/snakemake` still runs the stages with the venv's TensorFlow.
envvars:
    "PATH",


if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    os.environ["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )


wildcard_constraints:
    model="|".join(MODELS),
    variant="|".join(VARIANTS),


def stage_code(*modules):
    """The package files a stage runs, as inputs: editing one reruns the stage."""
    return [
        str(PACKAGE_DIR / f"{module}.py")
        for module in ("__init__", "atomic", *modules)
    ]


def model_source(model):
    return config["models"][model]


def trained_model(model):
    return "train" in model_source(model)


def preset_of(wildcards):
    """The preset the trace/reference stages load: a built directory or the configured one."""
    source = model_source(wildcards.model)
    if "preset" in source:
        return source["preset"]
    return f"results/{wildcards.model}/preset"


def preset_inputs(wildcards):
    """Files the preset stages depend on: the built preset, or a configured local directory."""
    source = model_source(wildcards.model)
    if "preset" in source:
        return [source["preset"]] if Path(source["preset"]).is_dir() else []
    return [f"results/{wildcards.model}/preset"]


def train_setting(section):
    """A `train:` section of the model's config, as params: only that section invalidates."""
    return lambda wildcards: model_source(wildcards.model)["train"][section]


def as_json(value):
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def all_targets():
    targets = []
    for model in MODELS:
        if trained_model(model):
            targets.append(f"results/{model}/train_metrics.json")
        targets += expand("results/{model}/tflite/{variant}.tflite", model=model, variant=VARIANTS)
        targets += expand("results/{model}/smoke/{variant}.json", model=model, variant=VARIANTS)
    return targets
