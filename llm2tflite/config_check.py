"""Check the workflow config when the DAG is parsed: one line per problem, naming key and fix.

Snakemake's own ``validate()`` reports a JSON-schema error as a long dump; users editing
``config/config.yaml`` need ``variants[1]: 'int3' is not a variant; use one of: fp32, int8``.
Every check of the config lives here, the LiteRT route's included (its arithmetic in
``llm2tflite.litert.contract``), and the Snakefile raises them once. The defaults come from the
schema's ``default:`` values alone. This module is imported by the Snakefile, so it must stay
light: no TensorFlow, no Keras.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from llm2tflite.families import registry
from llm2tflite.litert import contract as litert_contract

MODEL_SOURCES = ("preset", "train", "shape_of")
DEFAULT_CONFIG_FILE = "config/config.yaml"
# A config's name becomes a directory: results/reports/<name>/.
CONFIG_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
# Held-out lines of the generated evaluation text (models without a corpus of their own).
EVAL_CORPUS_HELDOUT_LINES = 1000


class ConfigError(ValueError):
    """The config is invalid; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid config:\n" + "\n".join(f"  {e}" for e in errors))


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (plain YAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                [
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                    f"{seen[key] + 1}) in {key_node.start_mark.name}: give every model/key a "
                    "unique name"
                ]
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_DuplicateKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def check_no_duplicate_keys(path: str | os.PathLike) -> None:
    with open(path, encoding="utf-8") as f:
        yaml.load(f, Loader=_DuplicateKeyLoader)  # noqa: S506  (a SafeLoader subclass)


def _key_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_RELATIONS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
# jsonschema validator -> what the line says after "<key>: " (the error's own message otherwise).
_MESSAGES = {
    "required": lambda e: f"{e.message}; add it (see config/config.yaml for an example)",
    "enum": lambda e: (
        f"{e.instance!r} is not allowed; use one of: {', '.join(map(str, e.validator_value))}"
    ),
    "type": lambda e: (
        f"must be of type {e.validator_value}, got {type(e.instance).__name__} {e.instance!r}"
    ),
    **dict.fromkeys(
        _RELATIONS,
        lambda e: f"must be {_RELATIONS[e.validator]} {e.validator_value}, got {e.instance!r}",
    ),
    "uniqueItems": lambda e: f"contains duplicates {e.instance!r}; list each item once",
    "minItems": lambda e: f"must list at least {e.validator_value} item(s)",
    "minLength": lambda e: "must not be empty",
}


def _describe(error) -> str:
    """One line for one jsonschema error: where, what, and how to fix it."""
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        value = error.instance
        unknown = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        return (
            f"{where}: unknown key {', '.join(map(repr, unknown))}; "
            f"allowed keys: {', '.join(allowed)}"
        )
    if error.validator in ("minProperties", "maxProperties") and len(error.absolute_path) == 2:
        return (
            f"{where}: give exactly one model source ({', '.join(MODEL_SOURCES)}), "
            f"got {sorted(error.instance) or 'none'}"
        )
    message = _MESSAGES.get(error.validator, lambda e: e.message)
    return f"{where}: {message(error)}"


def _backbone_config(source: dict) -> tuple[registry.Architecture, dict]:
    """The model's family and what we know of its backbone config before anything is built."""
    family = registry.for_model_source(source)
    if "train" in source:
        return family, family.train_model_config(source["train"].get("model"))
    return family, registry.for_preset(source.get("shape_of") or source["preset"])[1] or {}


def _family_errors(name: str, source: dict) -> list[str]:
    """The model's family must be supported; a `train: model:` section must be the family's."""
    import jsonschema

    where = f"models.{name}"
    try:
        family = registry.for_model_source(source)
    except registry.UnsupportedArchitectureError as error:
        key = next(k for k in MODEL_SOURCES if k in source)
        key = f"{key}.architecture" if key == "train" else key
        return [f"{where}.{key}: {error}"]
    if "train" not in source:
        return []
    model = source["train"].get("model") or {}
    validator = jsonschema.Draft202012Validator(family.train_model_schema)
    errors = [
        _describe(e).replace("(top level)", f"{where}.train.model", 1)
        if not e.absolute_path
        else f"{where}.train.model.{_describe(e)}"
        for e in validator.iter_errors(model)
    ]
    return errors or family.semantic_errors(model, f"{where}.train.model")


def _looks_like_path(preset: str) -> bool:
    return os.sep in preset or preset.startswith((".", "~"))


def _heldout_lines(source: dict) -> tuple[int, str]:
    """Lines of the held-out text a model's perplexity is computed on, and where they come from."""
    if "train" in source:
        return source["train"]["corpus"]["heldout_lines"], "its corpus.heldout_lines"
    return EVAL_CORPUS_HELDOUT_LINES, "the generated evaluation text"


def _model_errors(name: str, source: dict, config: dict) -> list[str]:
    """Checks of one model against the generation settings."""
    if "preset" in source and _looks_like_path(source["preset"]):
        if not Path(source["preset"]).expanduser().is_dir():
            return [
                f"models.{name}.preset: directory {source['preset']!r} does not exist; "
                "fix the path, or give a KerasHub preset name such as gpt2_base_en"
            ]
    family_errors = _family_errors(name, source)
    if family_errors:
        return family_errors
    errors = []
    max_length = config["generation"]["max_length"]
    family, backbone = _backbone_config(source)
    model_max = family.max_sequence_length(backbone)
    if model_max is not None and max_length > model_max:
        errors.append(
            f"generation.max_length: {max_length} exceeds model {name!r}'s maximum sequence "
            f"length {model_max}; set generation.max_length <= {model_max}"
        )
    if "train" in source:
        fit = source["train"]["fit"]
        # Training windows hold the line plus the next-token target: one token more.
        if model_max is not None and fit["sequence_length"] >= model_max:
            errors.append(
                f"models.{name}.train.fit.sequence_length: {fit['sequence_length']} must be "
                f"below models.{name}.train.model.max_sequence_length {model_max} (a training "
                f"window holds one token more); set it <= {model_max - 1}"
            )
    cache_length = config["litert"]["cache_length"]  # null: max_length, checked above
    if config["litert"]["variants"] and model_max is not None and cache_length is not None:
        if cache_length > model_max:
            errors.append(
                f"litert.cache_length: {cache_length} exceeds model {name!r}'s {model_max} "
                f"positions; set litert.cache_length <= {model_max}"
            )
    errors += _block_size_errors(name, family.weight_input_widths(backbone), config)
    lines, origin = _heldout_lines(source)
    perplexity_lines = config["fidelity"]["perplexity_lines"]
    if perplexity_lines > lines:
        errors.append(
            f"fidelity.perplexity_lines: {perplexity_lines} exceeds the {lines} held-out lines "
            f"of model {name!r} ({origin}); set fidelity.perplexity_lines <= {lines}"
        )
    return errors


def _block_size_errors(name: str, widths: dict[str, int], config: dict) -> list[str]:
    """A blockwise int4 recipe's block must divide the input width of every weight matrix of
    the model (ai-edge-quantizer refuses the model otherwise)."""

    def misfits(variant):
        block = litert_contract.block_size(variant)
        return {key: width for key, width in widths.items() if block and width % block}

    errors = []
    for variant in config["litert"]["variants"]:
        if misfits(variant):
            fitting = [v for v in litert_contract.QUANTIZATION_RECIPES if not misfits(v)]
            errors.append(
                f"litert.variants: {variant} quantizes weights in blocks of "
                f"{litert_contract.block_size(variant)} input values, which do not divide model "
                f"{name!r}'s "
                + ", ".join(f"{key} {width}" for key, width in misfits(variant).items())
                + f"; use one of {', '.join(fitting)}"
            )
    return errors


def quality_gates(config: dict) -> dict:
    """The quality gates per variant name, as the rules apply them: `quality_gates`, with the
    LiteRT variants named after an int4 recipe (int4_b32, ...) taking int4's gates but those they
    state themselves."""
    gates = {variant: dict(values or {}) for variant, values in config["quality_gates"].items()}
    for variant in config["litert"]["variants"]:
        if variant in litert_contract.INT4_RECIPE_VARIANTS:
            gates[variant] = {**gates.get("int4", {}), **gates.get(variant, {})}
    return gates


def litertlm_variants(config: dict) -> list[str]:
    """The LiteRT variants that get a LiteRT-LM bundle: `litertlm.variants`, null for all."""
    bundled = config["litertlm"]["variants"]
    return list(config["litert"]["variants"] if bundled is None else bundled)


def _litert_errors(config: dict) -> list[str]:
    """The `litert:` lengths, and bundles only of variants the LiteRT route builds."""
    errors = []
    try:
        litert_contract.resolve_settings(config)
    except litert_contract.LiteRTSettingsError as error:
        errors.append(str(error))
    litert_variants = config["litert"]["variants"]
    unknown = sorted(set(litertlm_variants(config)) - set(litert_variants))
    if unknown:
        errors.append(
            f"litertlm.variants: {unknown} are not LiteRT variants (litert.variants: "
            f"{litert_variants}); bundle only variants the LiteRT route builds"
        )
    return errors


def web_models(config: dict) -> list[str]:
    """The models with a demo page: `web.models`, null for every model when the LiteRT route is
    on (a page runs a LiteRT-route file), none when it is off."""
    models = config["web"]["models"]
    if models is None:
        return list(config["models"]) if config["litert"]["variants"] else []
    return list(models)


def _web_errors(config: dict) -> list[str]:
    """The pages' models are configured and their variant built by the LiteRT route."""
    errors = []
    models = web_models(config)
    unknown = [m for m in models if m not in config["models"]]
    if unknown:
        errors.append(
            f"web.models: {unknown} are not configured models; use some of: "
            f"{', '.join(config['models'])} (or null for every model, [] for no page)"
        )
    variant, litert_variants = config["web"]["variant"], config["litert"]["variants"]
    if models and variant not in litert_variants:
        errors.append(
            f"web.variant: {variant} is not a variant of the litert route (litert.variants: "
            f"{litert_variants}); pick one of them, or set web.models: [] for no page"
        )
    return errors


def _android_errors(config: dict) -> list[str]:
    """The hand-off's model is configured and its variant built by its route (a bundle, for the
    LiteRT route)."""
    errors = []
    android = config["android"]
    if android["model"] is not None and android["model"] not in config["models"]:
        errors.append(
            f"android.model: {android['model']!r} is not a configured model; use one of: "
            f"{', '.join(config['models'])} (or null for the first)"
        )
    variant = android["variant"]
    if android["route"] == "litert":
        litert_variants = config["litert"]["variants"]
        if variant not in litert_variants:
            errors.append(
                f"android.variant: {variant} is not a variant of the litert route "
                f"(litert.variants: {litert_variants}); pick one of them or change android.route"
            )
        elif variant not in litertlm_variants(config):
            errors.append(
                f"android.variant: {variant} has no LiteRT-LM bundle (litertlm.variants: "
                f"{litertlm_variants(config)}); add it there"
            )
    elif variant not in config["variants"]:
        errors.append(
            f"android.variant: {variant!r} is not converted (variants: "
            f"{', '.join(config['variants'])}); add it to variants or set android.variant to one "
            "of them"
        )
    return errors


def semantic_errors(config: dict) -> list[str]:
    """Checks a schema cannot express, on a config with the schema's defaults filled in."""
    errors = []
    generation = config["generation"]
    # The traced model keeps min(sequence_length, max_length - 1) prompt tokens, start included.
    if generation["sequence_length"] < 2:
        errors.append(
            f"generation.sequence_length: {generation['sequence_length']} holds only the start "
            "token, no prompt token; set it >= 2"
        )
    if generation["max_length"] < 3:
        errors.append(
            f"generation.max_length: {generation['max_length']} leaves room for the start token "
            "and one new token but no prompt token; set it >= 3"
        )
    for name, source in config["models"].items():
        errors += _model_errors(name, source, config)
    errors += _litert_errors(config)
    errors += _android_errors(config)
    errors += _web_errors(config)
    blocklist = (config.get("safety") or {}).get("blocklist")
    if blocklist and not Path(blocklist).expanduser().is_file():
        errors.append(
            f"safety.blocklist: file {blocklist!r} does not exist; fix the path, or set null for "
            "the package's default list"
        )
    return errors


def schema_errors(config: dict, schema: dict) -> list[str]:
    """One line per schema violation of the config as written (keys with a default may be left
    out: the schema does not require them)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    # A one-of-the-sources error also fails each source's own subschema: report the root cause.
    return list(dict.fromkeys(_describe(e) for e in errors))


def load_schema(schema_path: str | os.PathLike) -> dict:
    return yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))


def check_schema(config: dict, schema_path: str | os.PathLike, config_files=()) -> None:
    """Raise ConfigError listing every schema problem of the config as written, one line each."""
    for path in config_files:
        check_no_duplicate_keys(path)
    messages = schema_errors(config, load_schema(schema_path))
    if messages:
        raise ConfigError(messages)


def check_semantics(config: dict) -> None:
    """Raise ConfigError listing every cross-key problem; the config has its defaults filled in
    (Snakemake's ``validate(config, schema)`` does that)."""
    messages = semantic_errors(config)
    if messages:
        raise ConfigError(messages)


def fill_defaults(config: dict, schema_path: str | os.PathLike) -> None:
    """Fill in the schema's ``default:`` values, as the Snakefile's ``validate()`` does."""
    from snakemake.utils import validate

    validate(config, str(schema_path), set_default=True)


def check_config(config: dict, schema_path: str | os.PathLike, config_files=()) -> None:
    """Everything the Snakefile checks, in its order: schema, defaults, cross-key checks.

    Fills the schema's defaults into ``config``; raises ConfigError, one line per problem.
    """
    check_schema(config, schema_path, config_files)
    fill_defaults(config, schema_path)
    check_semantics(config)


def config_name(config: dict, config_files, workflow_dir: str | os.PathLike) -> str:
    """The name of a config's shared outputs (results/reports/<name>/): its ``name:`` key, else
    the stem of the last --configfile, "default" for config/config.yaml (or no --configfile)."""
    if config.get("name"):
        return config["name"]
    if not config_files:
        return "default"
    last = Path(config_files[-1]).resolve()
    defaults = {
        (Path(workflow_dir) / DEFAULT_CONFIG_FILE).resolve(),
        Path(DEFAULT_CONFIG_FILE).resolve(),
    }
    if last in defaults:
        return "default"
    if not re.fullmatch(CONFIG_NAME_PATTERN, last.stem):
        raise ConfigError(
            [
                f"--configfile {str(config_files[-1])!r}: its name {last.stem!r} cannot name "
                f"results/reports/<name>/; rename the file or set `name:` in it "
                f"(letters, digits, _ . -)"
            ]
        )
    return last.stem
