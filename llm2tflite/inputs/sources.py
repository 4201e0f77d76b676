"""Load a KerasHub causal LM from a preset: a KerasHub preset name, a local preset directory or a
local Hugging Face checkpoint directory.

Every model source in the config (``preset:``, ``train:``, ``shape_of:``) ends as a preset that
this module loads, so tracing and the Keras reference see one code path. A Hugging Face
checkpoint (``config.json`` with a ``model_type``, ``*.safetensors``, tokenizer files) is
converted by KerasHub's own converter for its ``model_type``
(``keras_hub/src/utils/transformers/``), as ``CausalLM.from_preset`` does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite.families import registry


class PresetUnavailableError(RuntimeError):
    """A preset could not be loaded (typically: a remote preset and no network)."""


def is_local_preset(preset: str) -> bool:
    return Path(preset).expanduser().is_dir()


LOAD_SEED = 0


def load_causal_lm(preset: str, sampler: str = "greedy"):
    """Return ``keras_hub.models.CausalLM.from_preset(preset)`` compiled with ``sampler`` (a
    Hugging Face checkpoint: ``load_transformers_checkpoint``).

    A remote preset (e.g. ``gpt2_base_en``) goes through KerasHub's real download code; when that
    fails (offline), raise one clear error naming the preset and the ways out instead of a
    stack trace from deep inside the HTTP client.
    """
    # `~/presets/gpt2` is a directory in the config check, so it is one here too.
    preset = os.path.expanduser(preset)
    looks_like_path = os.sep in preset or preset.startswith(".")
    if looks_like_path and not is_local_preset(preset):
        raise PresetUnavailableError(f"preset directory {preset!r} does not exist")
    # A preset name: a typo gets the names we know, not a model-hub download that fails offline
    # with "cannot reach the model hub". A checkpoint: its model_type and files.
    try:
        hf_config = registry.transformers_config(preset) if is_local_preset(preset) else None
        if hf_config is not None or (not is_local_preset(preset) and "://" not in preset):
            family, _ = registry.for_preset(preset)
    except registry.UnsupportedArchitectureError as error:
        raise PresetUnavailableError(str(error)) from None

    import keras
    import keras_hub

    # Layers with dropout own a SeedGenerator whose state is drawn from Python's RNG when the
    # model is built. It plays no part in inference, but it is saved with the traced model; a
    # fixed seed keeps two runs' SavedModels (and everything derived) byte-identical.
    keras.utils.set_random_seed(LOAD_SEED)
    try:
        if hf_config is not None:
            causal_lm = load_transformers_checkpoint(preset, family, hf_config)
        else:
            causal_lm = keras_hub.models.CausalLM.from_preset(preset)
    except Exception as error:  # noqa: BLE001  (any download/parse failure gets the same advice)
        if is_local_preset(preset):
            raise PresetUnavailableError(
                f"could not load the local preset directory {preset!r}: {error}"
            ) from error
        raise PresetUnavailableError(
            f"could not load KerasHub preset {preset!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}). This machine probably cannot reach the model "
            "hub. Download the preset elsewhere and point the config at its local directory "
            f"(models: {{NAME: {{preset: /path/to/{preset}}}}}), or use the offline default "
            "model `tiny` (config/config.yaml) or a `shape_of:` twin."
        ) from error
    use_exact_tokenizer(causal_lm, preset)
    causal_lm.compile(sampler=sampler)
    return causal_lm


def use_exact_tokenizer(causal_lm, preset) -> None:
    """Give ``causal_lm``'s preprocessor its family's exact tokenizer
    (``Architecture.exact_tokenizer``; the same vocabulary, so the same ids where KerasHub's
    tokenizer is right), so that every stage tokenizes as the model's reference tokenizer."""
    preprocessor = causal_lm.preprocessor
    if preprocessor is None:
        return
    family = registry.for_causal_lm(causal_lm)
    exact = family.exact_tokenizer(preprocessor.tokenizer, preset)
    if exact is not preprocessor.tokenizer:
        preprocessor.tokenizer = exact


def load_transformers_checkpoint(preset: str, family, hf_config: dict):
    """What ``keras_hub.models.CausalLM.from_preset(preset)`` does for a Hugging Face checkpoint
    (KerasHub's loader and converter, the family's task class), with one difference: a
    ``config.json`` without ``architectures`` (KerasHub's own exporter leaves it out, and its
    loader reads it: ``KeyError: 'architectures'``) is given the family's Transformers class
    for its ``model_type``, in memory; the checkpoint's files stay as they are."""
    import keras_hub
    from keras_hub.src.utils.preset_utils import get_preset_loader

    loader = get_preset_loader(preset)
    architecture = family.transformers_model_types[hf_config["model_type"]]
    loader.config.setdefault("architectures", [architecture])
    task = getattr(keras_hub.models, family.causal_lm_class)
    converted = loader.check_backbone_class()
    if converted is not task.backbone_cls:
        raise PresetUnavailableError(
            f"KerasHub converts {preset!r} (model_type {hf_config['model_type']!r}) to a "
            f"{converted.__name__}, not the {task.backbone_cls.__name__} of {family.name}"
        )
    return loader.load_task(task, load_weights=True, load_task_weights=True)


def exit_on_unavailable_preset(func):
    """Decorator for stage CLIs: report PresetUnavailableError as one line and exit 2."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PresetUnavailableError as error:
            print(f"llm2tflite: error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper
