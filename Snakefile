# llm2tflite: KerasHub causal LM -> traced generate -> TFLite (Select TF ops + TF Text) -> smoke test.
# Parsing this file must stay instant: no TensorFlow/Keras import here, only file wiring.
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

# The package's light modules (no TensorFlow) check the config; importable from a plain clone.
sys.path.insert(0, workflow.basedir)
from llm2tflite.config_check import ConfigError, check_config


# `--configfile config/gpt2_124m_twin.yaml` replaces the default config instead of being merged
# into it (a merge would build the default model's artifacts too).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



# One line per problem, naming the key and the fix; then Snakemake's own schema validation.
try:
    check_config(config, workflow.source_path("config/config.schema.yaml"), workflow.configfiles)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
validate(config, "config/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/litert.smk"
include: "workflow/rules/smoke.smk"
include: "workflow/rules/fidelity.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/manifest.smk"


# Aggregation only: on a cluster it runs in the submitting Snakemake, not as a job.
localrules:
    all,


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),
        "results/manifest.json",
