# Shared helpers of the rules: settings, the environment the stages run in, model sources, file
# names, targets. The resource model is in workflow/rules/resources.smk, the LiteRT route's
# settings and helpers in workflow/rules/litert_helpers.smk (rules and functions live apart).
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from llm2tflite.families import registry
from llm2tflite.core import code_inputs
from llm2tflite.inputs import twin as twin_stage
from llm2tflite.config_check import EVAL_CORPUS_HELDOUT_LINES, quality_gates
from llm2tflite.litert import contract as litert_contract

MODELS = list(config["models"])
# The two routes, by the directory of their files: results/<model>/tflite/ holds the codelab
# route's (llm2tflite/codelab/), results/<model>/litert/ the LiteRT route's (llm2tflite/litert/).
CODELAB_ROUTE = "tflite"
LITERT_ROUTE = "litert"
VARIANTS = list(config["variants"])  # the codelab route's
# The LiteRT route's settings (checked with the rest of the config, llm2tflite/config_check.py);
# `litert: {variants: []}` turns the route off.
LITERT = litert_contract.resolve_settings(config)
LITERT_VARIANTS = LITERT["variants"]
# (route, variant) of every model file a model gets: results/<model>/<route>/<variant>.tflite.
ROUTE_VARIANTS = [(CODELAB_ROUTE, v) for v in VARIANTS] + [
    (LITERT_ROUTE, v) for v in LITERT_VARIANTS
]
# Per variant name; the int4 recipes' variants take int4's gates but those they state.
QUALITY_GATES = quality_gates(config)
GENERATION = config["generation"]
SMOKE_PROMPTS = config["smoke"]["prompts"]
FIDELITY = config["fidelity"]
BENCHMARK = config["benchmark"]
ANDROID_MODEL = config["android"]["model"] or MODELS[0]
ANDROID_VARIANT = config["android"]["variant"]
ANDROID_ROUTE = config["android"]["route"]
# The codelab route hands the app a .tflite, the LiteRT route a LiteRT-LM bundle.
ANDROID_ASSET = "autocomplete.litertlm" if ANDROID_ROUTE == LITERT_ROUTE else "autocomplete.tflite"
# Perplexity text of models without a held-out corpus of their own: generated, fixed seed, a
# fixed number of lines whatever the config (so that two configs share one file); each model
# reads its first `fidelity.perplexity_lines` (the config check keeps that within this).
EVAL_CORPUS_SEED = 1_000_003
EVAL_CORPUS_LINES = EVAL_CORPUS_HELDOUT_LINES
EVAL_CORPUS_TRAIN_LINES = 100  # the corpus stage's minimum; this split is not used
WORKFLOW_DIR = Path(workflow.basedir)
PACKAGE_DIR = WORKFLOW_DIR / "llm2tflite"


def project_path(path):
    """A path of the workflow's own files as the rules see them: relative to the working
    directory, so that a finished project moved or copied elsewhere (mv, cp -a, rsync, another
    cluster mount point) keeps the same inputs and has nothing to rebuild."""
    return os.path.relpath(path)


# The safety filter's word list: the configured file, or the package's default.
BLOCKLIST = os.path.expanduser(
    (config.get("safety") or {}).get("blocklist")
    or project_path(PACKAGE_DIR / "data" / "blocklist.txt")
)
ENV_FILE = "../../envs/llm2tflite.yaml"


def report_path(name):
    """Outputs that cover all the config's models (summary, benchmark table, plots, manifest,
    Android hand-off) live per config, results/reports/<config name>/ (CONFIG_NAME, see the
    Snakefile), so that runs of two configs in one project do not replace each other's."""
    return f"results/reports/{CONFIG_NAME}/{name}"


def report_log(rule_name):
    return f"logs/reports/{CONFIG_NAME}/{rule_name}.log"


# The stages run as `python -m llm2tflite.<stage>`, and must run this workflow's own package
# (the files listed as their code inputs), not another copy that happens to be installed: the
# workflow's directory goes first on PYTHONPATH. Inside conda envs Snakemake unsets PYTHONPATH;
# envs/llm2tflite.yaml installs the package there from LLM2TFLITE_WORKFLOW_DIR. Without
# --sdm conda, the interpreter running Snakemake goes first on PATH, so that an unactivated
# `.venv/bin/snakemake` still runs the stages with the venv's TensorFlow. (Jobs spawned on a
# cluster parse this file again and set the same.)
envvars:
    "PATH",


def prepend_to_search_path(variable, directory):
    """Put ``directory`` first in the environment variable ``variable`` (a search path that
    this workflow sets for its jobs, not one it needs from the user)."""
    os.environ[variable] = os.pathsep.join([str(directory), *filter(None, [os.getenv(variable)])])


prepend_to_search_path("PYTHONPATH", WORKFLOW_DIR)
os.environ.update(LLM2TFLITE_WORKFLOW_DIR=str(WORKFLOW_DIR))
# The LiteRT runtime keeps XNNPACK's packed weights in a cache file (llm2tflite/litert/
# weight_cache.py), by default beside the model: the stages that run models keep theirs out of
# results/, whose files are all declared outputs (a user's setting of the variable wins).
os.environ.setdefault("LLM2TFLITE_WEIGHT_CACHE_DIR", ".snakemake/xnnpack-cache")
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    prepend_to_search_path("PATH", Path(sys.executable).parent)


wildcard_constraints:
    model="|".join(MODELS),
    variant="|".join(dict.fromkeys(VARIANTS + LITERT_VARIANTS)),
    route=f"{CODELAB_ROUTE}|{LITERT_ROUTE}",


def stage_code(*modules):
    """The package files the stage modules run (found from their imports, see
    llm2tflite/core/code_inputs.py), as inputs: editing one reruns the stage."""
    files = {path for module in modules for path in code_inputs.stage_files(module, PACKAGE_DIR)}
    return sorted(project_path(path) for path in files)


def model_source(model):
    return config["models"][model]


def models_matching(source_kind):
    """A wildcard regex for the models of one source kind (one that matches nothing if none)."""
    names = [m for m in MODELS if source_kind in model_source(m)]
    return "|".join(names) if names else "(?!)"


def trained_model(model):
    return "train" in model_source(model)


def twin_tokenizer(model):
    """How a `shape_of:` twin gets its tokenizer (its family's `twin_tokenizer`), else None."""
    if "shape_of" not in model_source(model):
        return None
    return registry.for_model_source(model_source(model)).twin_tokenizer


def learns_tokenizer(model):
    """The models whose tokenizer the workflow learns from its own corpus: `train:` models
    and the twins of families whose real tokenizer cannot be fetched offline."""
    return trained_model(model) or twin_tokenizer(model) == "trained"


def models_learning_tokenizer():
    names = [m for m in MODELS if learns_tokenizer(m)]
    return "|".join(names) if names else "(?!)"


def twins_with_tokenizer(source):
    """A wildcard regex for the `shape_of:` twins whose tokenizer is `source` (published or
    trained)."""
    names = [m for m in MODELS if twin_tokenizer(m) == source]
    return "|".join(names) if names else "(?!)"


def models_with_tokenizer(kind):
    """A wildcard regex for the models with a learned tokenizer of `kind`."""
    names = [
        m
        for m in MODELS
        if learns_tokenizer(m) and registry.for_model_source(model_source(m)).tokenizer_kind == kind
    ]
    return "|".join(names) if names else "(?!)"


def tokenizer_files(model):
    """The vocabulary stage's files of a model that learns its tokenizer, as its family names
    them."""
    family = registry.for_model_source(model_source(model))
    return [f"results/{model}/vocab/{name}" for name in family.tokenizer_files]


def corpus_setting(wildcards):
    """The corpus section of a model that learns its tokenizer: its `train: corpus:`, or the
    twins' fixed corpus (llm2tflite.inputs.twin.TOKENIZER_CORPUS)."""
    if trained_model(wildcards.model):
        return model_source(wildcards.model)["train"]["corpus"]
    return twin_stage.TOKENIZER_CORPUS


def vocab_size_option(wildcards):
    """`--vocab-size N` of a `train:` model; a twin's tokenizer gets as many pieces as the
    corpus supports, at most the preset's vocabulary size (its embedding's rows)."""
    source = model_source(wildcards.model)
    if "train" in source:
        return f"--vocab-size {source['train']['vocabulary']['size']}"
    size = registry.for_preset(source["shape_of"])[1]["vocabulary_size"]
    return f"--vocab-size {size} --at-most"


def byte_level_vocab_options(wildcards):
    """The byte-level BPE vocabulary's size options (`vocab_size_option`) and, for a family with
    special tokens of its own (Qwen's), `--architecture NAME`. GPT-2's layout is the stage's
    default and is not named: its command, and so its vocabularies, stay as they were."""
    family = registry.for_model_source(model_source(wildcards.model))
    options = vocab_size_option(wildcards)
    if family.byte_level_special_tokens:
        options = f"--architecture {family.name} {options}"
    return options


def architecture_name(wildcards):
    return registry.for_model_source(model_source(wildcards.model)).name


def twin_tokenizer_files(wildcards):
    """The tokenizer files a twin is built with: fetched (published) or learned (trained)."""
    if twin_tokenizer(wildcards.model) == "published":
        return [
            f"results/{wildcards.model}/gpt2_tokenizer/{name}"
            for name in ("vocab.json", "merges.txt")
        ]
    return tokenizer_files(wildcards.model)


def preset_of(wildcards):
    """The preset the trace/reference stages load: a built directory (`train:`, `shape_of:`) or
    the configured one (`preset:`)."""
    source = model_source(wildcards.model)
    if "preset" in source:
        return source["preset"]
    return f"results/{wildcards.model}/preset"


def shape_of(wildcards):
    return model_source(wildcards.model)["shape_of"]


def preset_inputs(wildcards):
    """Files the preset stages depend on: the built preset, or the files of a configured local
    directory that loading it reads (a Hugging Face checkpoint's config, weights and tokenizer;
    a KerasHub preset's files): an edit of one reruns the model's jobs that load it."""
    source = model_source(wildcards.model)
    if "preset" in source:
        directory = os.path.expanduser(source["preset"])
        return registry.local_preset_files(directory) if Path(directory).is_dir() else []
    return [f"results/{wildcards.model}/preset"]


def train_setting(section):
    """A `train:` section of the model's config, as params: only that section invalidates."""
    return lambda wildcards: model_source(wildcards.model)["train"][section]


def as_json(value):
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def per_variant_files(stage, ext="json", models=None):
    """results/<model>/<route>/<stage>/<variant>.<ext> of every model, route and variant."""
    return [
        f"results/{model}/{route}/{stage}/{variant}.{ext}"
        for model in (models or MODELS)
        for route, variant in ROUTE_VARIANTS
    ]


def benchmark_jsons():
    """Each model's benchmark: its TF baseline and every variant of every route, interleaved."""
    return expand("results/{model}/bench.json", model=MODELS)


def heldout_text(wildcards):
    """Held-out text for perplexity: the model's own corpus split, or the shared eval text."""
    if trained_model(wildcards.model):
        return f"results/{wildcards.model}/corpus/heldout.txt"
    return "results/eval_corpus/heldout.txt"


def all_targets():
    """Every artifact of every configured model: what `snakemake` builds by default."""
    targets = []
    for model in MODELS:
        if trained_model(model):
            targets.append(f"results/{model}/train_metrics.json")
        targets += expand("results/{model}/tflite/{variant}.tflite", model=model, variant=VARIANTS)
        targets += per_variant_files("smoke", models=[model])
        targets += per_variant_files("fidelity", models=[model])
        targets += per_variant_files("gate", models=[model])
        targets += per_variant_files("ops", "md", models=[model])
        targets += litert_targets(model)  # workflow/rules/litert_helpers.smk
        targets += litertlm_targets(model)
    targets += [
        report_path("benchmarks.csv"),
        report_path("summary.md"),
        report_path(f"android/app/src/main/assets/{ANDROID_ASSET}"),
    ]
    targets += web_targets()  # workflow/rules/web_common.smk
    return targets


def manifest_inputs():
    """Every artifact, intermediate ones included (not logs or timings, which vary by run)."""
    artifacts = list(all_targets())
    for model in MODELS:
        if learns_tokenizer(model):
            artifacts += [
                f"results/{model}/corpus/train.txt",
                f"results/{model}/corpus/heldout.txt",
                *tokenizer_files(model),
            ]
        if trained_model(model):
            artifacts.append(f"results/{model}/preset")
        artifacts += [
            f"results/{model}/traced",
            f"results/{model}/reference/smoke.json",
            f"results/{model}/reference/fidelity.json",
        ]
        artifacts += expand(
            "results/{model}/tflite/{variant}.conversion.json", model=model, variant=VARIANTS
        )
    return artifacts


# ---- Per-variant checks (route wildcard), quality gates, the benchmark ---------------------------
def requires_keras_match(wildcards):
    """A variant whose quality gate demands an exact match must reproduce Keras in the smoke
    test too (fp32 by default)."""
    gates = QUALITY_GATES.get(wildcards.variant) or {}
    return (gates.get("min_exact_match_rate") or 0) >= 1


def bench_models(wildcards):
    """Every variant of every route of the model (the TF baseline apart), by route_variant."""
    return {
        f"{route}_{variant}": f"results/{wildcards.model}/{route}/{variant}.tflite"
        for route, variant in ROUTE_VARIANTS
    }


def bench_entries(wildcards):
    """The --entry ROUTE/VARIANT=PATH options of the benchmark command."""
    paths = bench_models(wildcards)
    entries = [
        f"{route}/{variant}={paths[f'{route}_{variant}']}" for route, variant in ROUTE_VARIANTS
    ]
    return " ".join(f"--entry {shlex.quote(entry)}" for entry in entries)


def quantization_options(wildcards):
    """The variant's own converter options: editing another variant's leaves this one built."""
    return as_json((config.get("quantization") or {}).get(wildcards.variant, {}))


# ---- Android hand-off of either route (rule android, workflow/rules/report.smk) ----------------
def android_inputs(wildcards):
    """The files llm2tflite.report.android reads for the configured route; only a variant that
    passed its quality gates is handed off."""
    model, variant, route = ANDROID_MODEL, ANDROID_VARIANT, ANDROID_ROUTE
    checks = {
        "ops": f"results/{model}/{route}/ops/{variant}.json",
        "gate": f"results/{model}/{route}/gate/{variant}.json",
    }
    if route == LITERT_ROUTE:
        litert = f"results/{model}/litert"
        return {
            "model": f"{litert}/{variant}.litertlm",
            "record": f"{litert}/{variant}.litertlm.json",
            "tflite": f"{litert}/{variant}.tflite",
            "info": f"{litert}/litert_export.json",
            "tokenizer": litert_tokenizer_file(model),  # workflow/rules/litert_helpers.smk
            **checks,
        }
    return {
        "model": f"results/{model}/tflite/{variant}.tflite",
        "saved_model": f"results/{model}/traced",
        **checks,
    }


def android_route_arguments(wildcards, input):
    if ANDROID_ROUTE == LITERT_ROUTE:
        return (
            f"--route litert --model {input.model} --bundle-record {input.record}"
            f" --tflite {input.tflite} --export-info {input.info} --ops {input.ops}"
        )
    return (
        f"--model {input.model} --ops {input.ops}"
        f" --export-info {input.saved_model}/llm2tflite_export.json"
    )
