"""The model families the workflow supports, keyed by their KerasHub causal-LM class.

Generic stages never name a family: they look one up here, by the loaded model
(``for_causal_lm``), by a preset (``for_preset``: a KerasHub preset name, a KerasHub preset
directory or a Hugging Face checkpoint directory) or by the config (``for_model_source``), and
ask it (see ``base.Architecture``). A model of any other family is refused with one line naming
the supported ones, never treated as GPT-2.

Light: importing this package imports no TensorFlow or Keras (the Snakefile uses it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llm2tflite.families import gemma3, gpt2, llama, llama3, qwen
from llm2tflite.families.base import Architecture

ARCHITECTURES: dict[str, Architecture] = {
    family.causal_lm_class: family
    for family in (
        gpt2.ARCHITECTURE,
        llama.ARCHITECTURE,
        gemma3.ARCHITECTURE,
        llama3.ARCHITECTURE,
        qwen.ARCHITECTURE,
        qwen.QWEN3_ARCHITECTURE,
    )
}
BY_NAME: dict[str, Architecture] = {family.name: family for family in ARCHITECTURES.values()}
# The config's default family for `train:` models.
DEFAULT_TRAIN_ARCHITECTURE = "gpt2"
# A sharded Hugging Face checkpoint's map of tensor names to safetensors files.
TRANSFORMERS_WEIGHTS_INDEX = "model.safetensors.index.json"


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
    module would handle them wrongly (``llama3`` is its own family)."""
    for cls in type(causal_lm).__mro__:
        if cls.__module__.split(".")[0] == "keras_hub":
            return by_class_name(cls.__name__)
    return by_class_name(type(causal_lm).__name__)


def transformers_families() -> dict[str, Architecture]:
    """Hugging Face ``model_type`` -> the family KerasHub's converter loads it as."""
    return {
        model_type: family
        for family in ARCHITECTURES.values()
        for model_type in family.transformers_model_types
    }


def supported_model_types() -> str:
    """'gpt2 (gpt2), ...': the checkpoints' model_type values, for messages."""
    return ", ".join(f"{t} ({family.name})" for t, family in transformers_families().items())


def _json_file(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UnsupportedArchitectureError(f"{str(path)!r} is not valid JSON: {error}") from None


def transformers_config(preset_dir) -> dict | None:
    """A Hugging Face checkpoint directory's ``config.json`` (None for anything else): one with
    ``model_type``, as KerasHub's loader tells the formats apart (a KerasHub preset's
    ``config.json`` has ``registered_name``)."""
    config = _json_file(Path(preset_dir).expanduser() / "config.json")
    if config is None or "registered_name" in config or "model_type" not in config:
        return None
    return config


def checkpoint_weight_files(preset_dir) -> list[str]:
    """A checkpoint's safetensors files (and their index, for a sharded one), by name."""
    directory = Path(preset_dir).expanduser()
    index = _json_file(directory / TRANSFORMERS_WEIGHTS_INDEX)
    if index is not None:
        shards = sorted(set(index.get("weight_map", {}).values()))
        return [TRANSFORMERS_WEIGHTS_INDEX, *shards]
    return sorted(p.name for p in directory.glob("*.safetensors") if p.is_file())


def checkpoint_tokenizer_files(preset_dir, family: Architecture) -> list[str] | None:
    """The tokenizer files KerasHub reads from a checkpoint of ``family`` (None: none there)."""
    directory = Path(preset_dir).expanduser()
    for files in family.transformers_tokenizer_files:
        if all((directory / name).is_file() for name in files):
            return list(files)
    return None


def for_transformers_checkpoint(preset_dir, hf_config: dict) -> tuple[Architecture, dict]:
    """The family of a Hugging Face checkpoint directory and its backbone config; a checkpoint
    KerasHub or the family cannot load is refused in one line."""
    where = f"Hugging Face checkpoint {str(preset_dir)!r}"
    model_type = hf_config["model_type"]
    families = transformers_families()
    if model_type not in families:
        raise UnsupportedArchitectureError(
            f"{where}: model_type {model_type!r} is not supported; supported model_types: "
            f"{supported_model_types()}"
        )
    family = families[model_type]
    directory = Path(preset_dir).expanduser()
    weights = checkpoint_weight_files(directory)
    missing = [name for name in weights if not (directory / name).is_file()]
    if not weights or missing:
        raise UnsupportedArchitectureError(
            f"{where} ({model_type}): no *.safetensors weights"
            + (f" ({', '.join(missing)} missing)" if missing else "")
            + "; KerasHub reads safetensors only"
        )
    if checkpoint_tokenizer_files(directory, family) is None:
        alternatives = " or ".join(" + ".join(f) for f in family.transformers_tokenizer_files)
        raise UnsupportedArchitectureError(
            f"{where} ({model_type}): no tokenizer files ({alternatives})"
        )
    try:
        family.check_transformers_tokenizer(directory)
        return family, family.transformers_backbone_config(hf_config)
    except KeyError as error:
        raise UnsupportedArchitectureError(
            f"{where} ({model_type}): config.json has no {error}"
        ) from None
    except ValueError as error:
        raise UnsupportedArchitectureError(f"{where} ({model_type}): {error}") from None


def local_preset_files(preset_dir) -> list[str]:
    """The files loading a local preset directory reads (the inputs of the rules that load it,
    so that editing one reruns them), below the directory as given (``~`` expanded): a Hugging
    Face checkpoint's ``config.json``, safetensors weights and tokenizer files; every file of a
    KerasHub preset directory (all that ``save_to_preset`` writes), hidden ones left out."""
    base = os.path.expanduser(str(preset_dir))
    hf_config = transformers_config(base)
    if hf_config is not None:
        family = transformers_families().get(hf_config["model_type"])
        tokenizer = (checkpoint_tokenizer_files(base, family) if family else None) or []
        names = {"config.json", *checkpoint_weight_files(base), *tokenizer}
        # Its chat template (llm2tflite.core.chat.from_tokenizer_config) and special tokens.
        if os.path.isfile(os.path.join(base, "tokenizer_config.json")):
            names.add("tokenizer_config.json")
    else:
        names = [
            str(relative)
            for relative in (path.relative_to(base) for path in Path(base).rglob("*"))
            if (Path(base) / relative).is_file()
            and not any(part.startswith(".") for part in relative.parts)
        ]
    return sorted(os.path.join(base, name) for name in names)


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

    A directory is read: a KerasHub preset's ``task.json`` and ``config.json``, or a Hugging
    Face checkpoint's ``config.json`` (its ``model_type``, translated by the family); a name
    must be a preset some family module knows: a typo gets the list of known names instead of a
    model-hub download attempt.
    """
    if Path(preset).expanduser().is_dir():
        hf_config = transformers_config(preset)
        if hf_config is not None:
            return for_transformers_checkpoint(preset, hf_config)
        class_name = preset_task_class(preset)
        if class_name is None:
            raise UnsupportedArchitectureError(
                f"{preset!r} has no task.json: not a KerasHub causal LM preset directory "
                "(save one with causal_lm.save_to_preset(DIR)), and no config.json with a "
                "model_type: not a Hugging Face checkpoint"
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
