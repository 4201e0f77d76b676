# llm2tflite: KerasHub causal LM -> TFLite down two routes (the codelab route: traced generate,
# Select TF ops + TF Text; the LiteRT route: prefill/decode over an external KV cache) -> checks.
# Parsing this file must stay instant: no TensorFlow/Keras import here, only file wiring.
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

# The package's light modules (no TensorFlow) check the config; importable from a plain clone.
sys.path.insert(0, workflow.basedir)
from llm2tflite.config_check import ConfigError, check_schema, check_semantics, config_name

SCHEMA = "config/config.schema.yaml"

# A --configfile replaces config/config.yaml instead of being merged into it (a merge would build
# the default model too): Snakemake's --replace-workflow-config, which profiles/default and
# profiles/slurm set. It is meant for --configfile only: `--config key=value` alone still
# amends config/config.yaml. Snakemake passes --configfile but not the flag (nor the profiles)
# to the jobs it spawns on a cluster; the submitting process refuses to run a --configfile
# without the flag, so a spawned job that got --configfile replaces too.
if workflow.overwrite_configfiles:
    if not (workflow.config_settings.replace_workflow_config or not workflow.is_main_process):
        raise WorkflowError(
            "--configfile would be merged into config/config.yaml (two configs' models in one "
            "run); add --replace-workflow-config (profiles/default sets it; did you pass "
            "--workflow-profile none?)"
        )
workflow.config_settings.replace_workflow_config = bool(workflow.overwrite_configfiles)


configfile: "config/config.yaml"


# Every config check, raised here once, one line per problem naming the key and the fix: the
# schema on the config as written, then Snakemake's own validation, which also fills in the
# schema's `default:` values (the only defaults), then the checks across keys on the complete
# config, the LiteRT route's included.
try:
    check_schema(config, workflow.source_path(SCHEMA), workflow.configfiles)
    validate(config, SCHEMA)
    check_semantics(config)
    CONFIG_NAME = config_name(config, workflow.overwrite_configfiles, workflow.basedir)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/litert_helpers.smk"
include: "workflow/rules/web_common.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/codelab.smk"
include: "workflow/rules/litert.smk"
include: "workflow/rules/litertlm.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/web.smk"


# Aggregation only: on a cluster it runs in the submitting Snakemake, not as a job.
localrules:
    all,


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),
        report_path("manifest.json"),
