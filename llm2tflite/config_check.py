"""Check the workflow config when the DAG is parsed: one line per problem, naming key and fix.

Snakemake's own ``validate()`` reports a JSON-schema error as a long dump; users editing
``config/config.yaml`` need ``variants[1]: 'int3' is not a variant; use one of: fp32, int8``.
This module is imported by the Snakefile, so it must stay light: no TensorFlow, no Keras.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from llm2tflite.twin import GPT2_SHAPES

# Longest sequence of KerasHub presets we know without downloading them (position embeddings).
KNOWN_PRESET_MAX_LENGTH = {name: shape["max_sequence_length"] for name, shape in GPT2_SHAPES.items()}
MODEL_SOURCES = ("preset", "train", "shape_of")


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
            raise ConfigError([
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                f"{seen[key] + 1}) in {key_node.start_mark.name}: give every model/key a "
                "unique name"
            ])
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


def _describe(error) -> str:
    """One line for one jsonschema error: where, what, and how to fix it."""
    where = _key_path(error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        return (f"{where}: unknown key {', '.join(map(repr, unknown))}; "
                f"allowed keys: {', '.join(allowed)}")
    if kind == "required":
        return f"{where}: {error.message}; add it (see config/config.yaml for an example)"
    if kind == "enum":
        return f"{where}: {value!r} is not allowed; use one of: {', '.join(map(str, expected))}"
    if kind == "type":
        return f"{where}: must be of type {expected}, got {type(value).__name__} {value!r}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
                    "exclusiveMaximum": "<"}[kind]
        return f"{where}: must be {relation} {expected}, got {value!r}"
    if kind in ("minProperties", "maxProperties") and len(error.absolute_path) == 2:
        return (f"{where}: give exactly one model source ({', '.join(MODEL_SOURCES)}), "
                f"got {sorted(value) or 'none'}")
    if kind == "uniqueItems":
        return f"{where}: contains duplicates {value!r}; list each item once"
    if kind == "minItems":
        return f"{where}: must list at least {expected} item(s)"
    if kind == "minLength":
        return f"{where}: must not be empty"
    if kind == "pattern" or kind == "propertyNames":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def _model_max_length(name: str, source: dict) -> int | None:
    if "train" in source:
        return source["train"]["model"]["max_sequence_length"]
    if "shape_of" in source:
        return KNOWN_PRESET_MAX_LENGTH.get(source["shape_of"])
    preset = source["preset"]
    config_file = Path(preset) / "config.json"
    if config_file.is_file():
        backbone = json.loads(config_file.read_text()).get("config", {})
        return backbone.get("max_sequence_length")
    return KNOWN_PRESET_MAX_LENGTH.get(preset)


def _looks_like_path(preset: str) -> bool:
    return os.sep in preset or preset.startswith((".", "~"))


def semantic_errors(config: dict) -> list[str]:
    """Checks a schema cannot express: lengths against each model, preset paths."""
    errors = []
    max_length = config["generation"]["max_length"]
    for name, source in config["models"].items():
        if "preset" in source and _looks_like_path(source["preset"]):
            if not Path(source["preset"]).expanduser().is_dir():
                errors.append(
                    f"models.{name}.preset: directory {source['preset']!r} does not exist; "
                    "fix the path, or give a KerasHub preset name such as gpt2_base_en"
                )
                continue
        model_max = _model_max_length(name, source)
        if model_max is not None and max_length > model_max:
            errors.append(
                f"generation.max_length: {max_length} exceeds model {name!r}'s maximum sequence "
                f"length {model_max}; set generation.max_length <= {model_max}"
            )
        if "train" in source:
            fit = source["train"]["fit"]
            if fit["sequence_length"] > model_max:
                errors.append(
                    f"models.{name}.train.fit.sequence_length: {fit['sequence_length']} exceeds "
                    f"models.{name}.train.model.max_sequence_length {model_max}; lower it"
                )
            model = source["train"]["model"]
            if model["hidden_dim"] % model["num_heads"]:
                errors.append(
                    f"models.{name}.train.model.hidden_dim: {model['hidden_dim']} is not a "
                    f"multiple of num_heads {model['num_heads']}; change one of them"
                )
    return errors


def check_config(config: dict, schema_path: str | os.PathLike,
                 config_files=()) -> None:
    """Raise ConfigError listing every problem, one line each."""
    import jsonschema

    for path in config_files:
        check_no_duplicate_keys(path)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    # A one-of-the-sources error also fails each source's own subschema: report the root cause.
    messages = list(dict.fromkeys(_describe(e) for e in errors))
    if not messages:
        messages = semantic_errors(config)
    if messages:
        raise ConfigError(messages)
