"""Check the workflow config when the DAG is parsed: one line per problem, naming key and fix.

Snakemake's own ``validate()`` reports a JSON-schema error as a long dump; users editing
``config/config.yaml`` need ``variants[1]: 'int3' is not a variant; use one of: fp32, int8``.
This module is imported by the Snakefile, so it must stay light: no TensorFlow, no Keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from llm2tflite import architectures

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


def _backbone_config(source: dict) -> tuple[architectures.Architecture, dict]:
    """The model's family and what we know of its backbone config before anything is built."""
    family = architectures.for_model_source(source)
    if "train" in source:
        return family, family.train_model_config(source["train"].get("model"))
    return family, architectures.for_preset(source.get("shape_of") or source["preset"])[1] or {}


def _family_errors(name: str, source: dict) -> list[str]:
    """The model's family must be supported; a `train: model:` section must be the family's."""
    import jsonschema

    where = f"models.{name}"
    try:
        family = architectures.for_model_source(source)
    except architectures.UnsupportedArchitectureError as error:
        key = next(k for k in MODEL_SOURCES if k in source)
        key = f"{key}.architecture" if key == "train" else key
        return [f"{where}.{key}: {error}"]
    if "train" not in source:
        return []
    model = source["train"].get("model") or {}
    validator = jsonschema.Draft202012Validator(family.train_model_schema)
    errors = [_describe(e).replace("(top level)", f"{where}.train.model", 1)
              if not e.absolute_path else f"{where}.train.model.{_describe(e)}"
              for e in validator.iter_errors(model)]
    return errors or family.semantic_errors(model, f"{where}.train.model")


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
        family_errors = _family_errors(name, source)
        if family_errors:
            errors += family_errors
            continue
        family, backbone = _backbone_config(source)
        model_max = family.max_sequence_length(backbone)
        if model_max is not None and max_length > model_max:
            errors.append(
                f"generation.max_length: {max_length} exceeds model {name!r}'s maximum sequence "
                f"length {model_max}; set generation.max_length <= {model_max}"
            )
        if "train" in source:
            fit = source["train"]["fit"]
            if model_max is not None and fit["sequence_length"] > model_max:
                errors.append(
                    f"models.{name}.train.fit.sequence_length: {fit['sequence_length']} exceeds "
                    f"models.{name}.train.model.max_sequence_length {model_max}; lower it"
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
