"""Build the offline twin of a KerasHub GPT-2 preset: its architecture, seeded random weights.

Model source ``shape_of: <preset>``: the real preset's weights need the model hub, but its shape
does not. The twin has exactly the preset's backbone architecture (so tracing, conversion, file
size, memory and latency are those of the real model), seeded random weights (GPT-2's own
initializers: normal(0, 0.02) kernels and embeddings), and GPT-2's real tokenizer files (vocab.json
+ merges.txt, 50257 tokens, from ``python -m llm2tflite.gpt2_assets --out-dir DIR``). It is saved
as a KerasHub preset directory, so every later stage loads it like any other preset. The generated
text is gibberish; everything else is real scale.

    python -m llm2tflite.twin --shape-of gpt2_base_en --tokenizer-dir DIR --seed 0 --out-preset DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite import atomic

# GPT2Backbone arguments of KerasHub's GPT-2 presets (the published GPT-2 hyperparameters; the
# parameter counts are those of keras_hub/src/models/gpt2/gpt2_presets.py, checked by
# ``expected_parameter_count``). The preprocessor's sequence_length is KerasHub's default (1024).
GPT2_SHAPES = {
    "gpt2_base_en": dict(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
                         intermediate_dim=3072, max_sequence_length=1024, dropout=0.1),
    "gpt2_medium_en": dict(vocabulary_size=50257, num_layers=24, num_heads=16, hidden_dim=1024,
                           intermediate_dim=4096, max_sequence_length=1024, dropout=0.1),
    "gpt2_large_en": dict(vocabulary_size=50257, num_layers=36, num_heads=20, hidden_dim=1280,
                          intermediate_dim=5120, max_sequence_length=1024, dropout=0.1),
    "gpt2_extra_large_en": dict(vocabulary_size=50257, num_layers=48, num_heads=25,
                                hidden_dim=1600, intermediate_dim=6400,
                                max_sequence_length=1024, dropout=0.1),
}
GPT2_SHAPES["gpt2_base_en_cnn_dailymail"] = dict(GPT2_SHAPES["gpt2_base_en"])
# The values accepted by the config schema's `shape_of:` enum.
SHAPE_NAMES = tuple(GPT2_SHAPES)
PREPROCESSOR_SEQUENCE_LENGTH = 1024
TWIN_INFO_FILE = "llm2tflite_twin.json"


def expected_parameter_count(shape: dict) -> int:
    """GPT2Backbone's parameter count for ``shape`` (token + position embeddings, blocks, final LN)."""
    d, f = shape["hidden_dim"], shape["intermediate_dim"]
    attention = 4 * d * d + 4 * d  # query/key/value/output kernels and biases
    feedforward = 2 * d * f + f + d
    layer_norms = 2 * 2 * d
    per_layer = attention + feedforward + layer_norms
    embeddings = (shape["vocabulary_size"] + shape["max_sequence_length"]) * d
    return embeddings + shape["num_layers"] * per_layer + 2 * d


def _tokenizer_files(tokenizer_dir: Path) -> tuple[Path, Path]:
    vocab, merges = tokenizer_dir / "vocab.json", tokenizer_dir / "merges.txt"
    missing = [str(p) for p in (vocab, merges) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"GPT-2 tokenizer files missing: {', '.join(missing)} "
            "(fetch them with `python -m llm2tflite.gpt2_assets --out-dir DIR`)"
        )
    return vocab, merges


def build_twin(shape_of: str, tokenizer_dir, seed: int = 0):
    """Return a ``GPT2CausalLM`` with ``shape_of``'s architecture and seeded random weights."""
    import keras
    import keras_hub

    if shape_of not in GPT2_SHAPES:
        raise ValueError(f"unknown shape_of {shape_of!r}; known: {', '.join(SHAPE_NAMES)}")
    shape = GPT2_SHAPES[shape_of]
    vocab, merges = _tokenizer_files(Path(tokenizer_dir))
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=str(vocab), merges=str(merges))
    if tokenizer.vocabulary_size() != shape["vocabulary_size"]:
        raise ValueError(
            f"the tokenizer in {tokenizer_dir} has {tokenizer.vocabulary_size()} tokens; "
            f"{shape_of} needs {shape['vocabulary_size']} (GPT-2's own vocab.json + merges.txt)"
        )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=PREPROCESSOR_SEQUENCE_LENGTH
    )
    # Every initializer draws from the global seed: same seed, same weights, bit for bit.
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(**shape)
    count = backbone.count_params()
    if count != expected_parameter_count(shape):
        raise AssertionError(f"{shape_of}: {count} parameters, expected "
                             f"{expected_parameter_count(shape)}")
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def save_twin(shape_of: str, tokenizer_dir, seed: int, out_preset) -> dict:
    """Build the twin and write it as a KerasHub preset directory, atomically; return its info."""
    started = time.perf_counter()
    causal_lm = build_twin(shape_of, tokenizer_dir, seed)
    info = {
        "shape_of": shape_of,
        "seed": seed,
        "backbone": GPT2_SHAPES[shape_of],
        "num_parameters": int(causal_lm.count_params()),
        "weights": "seeded random (GPT-2 initializers); tokenizer: GPT-2's real BPE files",
    }
    with atomic.atomic_path(out_preset, is_dir=True) as tmp:
        causal_lm.save_to_preset(str(tmp))
        info["build_seconds"] = round(time.perf_counter() - started, 2)
        (Path(tmp) / TWIN_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape-of", required=True, choices=SHAPE_NAMES,
                        help="KerasHub preset whose architecture the twin copies")
    parser.add_argument("--tokenizer-dir", required=True,
                        help="directory with GPT-2's vocab.json and merges.txt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-preset", required=True, help="preset directory to write")
    args = parser.parse_args(argv)
    try:
        info = save_twin(args.shape_of, args.tokenizer_dir, args.seed, args.out_preset)
    except FileNotFoundError as error:
        print(f"llm2tflite: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"twin of {args.shape_of} ({info['num_parameters']:,} parameters, seed {args.seed}) "
          f"-> {args.out_preset} in {info['build_seconds']} s")


if __name__ == "__main__":
    main()
