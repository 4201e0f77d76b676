"""The model families the workflow supports, keyed by their KerasHub causal-LM class.

Generic stages never name a family: they look one up here, by the loaded model
(``for_causal_lm``), by a preset (``for_preset``: a KerasHub preset name or a preset directory)
or by the config (``for_model_source``), and ask it (see ``base.Architecture``). A model of any
other family is refused with one line naming the supported ones, never treated as GPT-2.

Light: importing this package imports no TensorFlow or Keras (the Snakefile uses it).
"""

from __future__ import annotations

import json
from pathlib import Path

from llm2tflite.families import gemma3, gpt2, llama
from llm2tflite.families.base import Architecture

ARCHITECTURES: dict[str, Architecture] = {
    family.causal_lm_class: family
    for family in (gpt2.ARCHITECTURE, llama.ARCHITECTURE, gemma3.ARCHITECTURE)
}
BY_NAME: dict[str, Architecture] = {family.name: family for family in ARCHITECTURES.values()}
# The config's default family for `train:` models.
DEFAULT_TRAIN_ARCHITECTURE = "gpt2"


class UnsupportedArchitectureError(ValueError):
    """A model of a family the workflow has no module for, or an unknown preset name."""


def supported() -> str:
    """'gpt2 (GPT2CausalLM), ...': for messages."""
    return ", ".join(f"{a.name} ({a.causal_lm_class})" for a in ARCHITECTURES.values())


def known_presets() -> dict[str, Architecture]:
    """Every KerasHub preset name whose architecture a family module knows."""
    return {preset: family for family in ARCHITECTURES.values() for preset in family.presets}


def by_name(name: str) -> Architecture:
    if name not in BY_NAME:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {name!r}; supported: {supported()}"
        )
    return BY_NAME[name]


def by_class_name(class_name: str) -> Architecture:
    if class_name not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{class_name} is not a supported model family; supported: {supported()}"
        )
    return ARCHITECTURES[class_name]


def for_causal_lm(causal_lm) -> Architecture:
    """The family of a loaded KerasHub causal LM: its class, or for a user's subclass the first
    KerasHub class it derives from. Only that class counts: KerasHub derives some families from
    others (``Llama3CausalLM`` from ``LlamaCausalLM``, with another tokenizer), and a parent's
    module would handle them wrongly."""
    for cls in type(causal_lm).__mro__:
        if cls.__module__.split(".")[0] == "keras_hub":
            return by_class_name(cls.__name__)
    return by_class_name(type(causal_lm).__name__)


def preset_task_class(preset_dir) -> str | None:
    """The task class a local preset directory saves (``task.json``), without loading it."""
    task_file = Path(preset_dir).expanduser() / "task.json"
    if not task_file.is_file():
        return None
    return json.loads(task_file.read_text(encoding="utf-8")).get("class_name")


def preset_backbone_config(preset_dir) -> dict | None:
    config_file = Path(preset_dir).expanduser() / "config.json"
    if not config_file.is_file():
        return None
    return json.loads(config_file.read_text(encoding="utf-8")).get("config", {})


def for_preset(preset: str) -> tuple[Architecture, dict | None]:
    """The family of a preset and its backbone config (None when only the name is known).

    A directory is read (``task.json``, ``config.json``); a name must be a preset some family
    module knows: a typo gets the list of known names instead of a model-hub download attempt.
    """
    if Path(preset).expanduser().is_dir():
        class_name = preset_task_class(preset)
        if class_name is None:
            raise UnsupportedArchitectureError(
                f"{preset!r} has no task.json: not a KerasHub causal LM preset directory "
                "(save one with causal_lm.save_to_preset(DIR))"
            )
        return by_class_name(class_name), preset_backbone_config(preset)
    presets = known_presets()
    if preset not in presets:
        raise UnsupportedArchitectureError(
            f"unknown KerasHub preset {preset!r}; known presets of the supported families: "
            f"{', '.join(sorted(presets))}"
        )
    family = presets[preset]
    return family, dict(family.presets[preset])


def for_model_source(source: dict) -> Architecture:
    """The family of one ``models:`` entry of the config."""
    if "train" in source:
        return by_name(source["train"].get("architecture", DEFAULT_TRAIN_ARCHITECTURE))
    return for_preset(source.get("shape_of") or source["preset"])[0]
