"""Build the offline twin of a KerasHub preset: its exact architecture, seeded random weights.

Model source ``shape_of: <preset>``: the real preset's weights need the model hub, but its shape
does not. The twin has exactly the preset's backbone architecture (so tracing, conversion, file
size, memory and latency are those of the real model; the family module in
``llm2tflite/families/`` knows the shapes and the parameter count KerasHub publishes, which
the twin must reproduce), seeded random weights (the family's own initializers) and a tokenizer
of the family's kind from the tokenizer directory (``Architecture.twin_tokenizer``: GPT-2 its real
vocab.json + merges.txt, from ``python -m llm2tflite.families.gpt2_assets --out-dir DIR``;
SentencePiece families, Llama 3 and Qwen a model the vocabulary stage trains on the workflow's
corpus with the family's special pieces (byte-level BPE: with the family's split pattern), as
many pieces as the corpus supports). It is saved as a KerasHub preset directory, so every later
stage loads it like any other preset. The generated text is gibberish; everything else is real
scale.

A tokenizer smaller than the preset's vocabulary (a trained one: a few thousand pieces against
Gemma 3's 262,144) leaves the embedding and output layers at the real size, since they are what
costs memory and time, but scales the rows of the ids the tokenizer lacks down by
``UNUSED_ROW_SCALE``: their logits are a thousandth of the real rows' (which are random, so
their largest is positive and ~1,000 times larger than any of those), so greedy decoding does
not produce an id the tokenizer cannot turn back into text (sampling at a temperature could:
the twin's text is meaningless anyway). Not zeroed: blockwise int4 quantization gives an
all-zero block a zero scale, which XNNPACK refuses to load.

Equal weight tensors are decorrelated: some KerasHub layers hand one seeded initializer instance
to several sublayers (Gemma 3's attention: key == value and query == output kernels; Llama's:
query == key == value == output, embeddings == reverse embeddings), so their random tensors come
out identical, and the converters store identical constants once: the twin's files would be
smaller than the real model's (Gemma 3 270M: 11.8 MB of fp32 keys). Each repeat gets its values
permuted (seeded): the initializer's own distribution, values no longer shared.

    python -m llm2tflite.inputs.twin --shape-of gpt2_base_en --tokenizer-dir DIR --seed 0 \
        --out-preset DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import llm2tflite  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from llm2tflite.core import atomic
from llm2tflite.families import registry

# The preprocessor's packing length of a twin (KerasHub's default for its presets).
PREPROCESSOR_SEQUENCE_LENGTH = 1024
# The corpus a twin's tokenizer is learned from, when its family learns one (the default
# models' corpus settings). Its vocabulary saturates (SentencePiece pieces with Gemma 3's layout,
# measured: 5,000 lines 4,069; 20,000 lines 4,205; 50,000 lines 4,235; 200,000 lines 4,226):
# more lines buy next to no pieces.
TOKENIZER_CORPUS = {"seed": 0, "train_lines": 20000, "heldout_lines": 1500}
# Embedding rows of ids the twin's tokenizer lacks are scaled by this (see the module docstring).
UNUSED_ROW_SCALE = 1e-3
TWIN_INFO_FILE = "llm2tflite_twin.json"


def shape_names() -> tuple[str, ...]:
    """The presets a twin can copy: those whose architecture a family module knows."""
    return tuple(sorted(registry.known_presets()))


def build_twin(shape_of: str, tokenizer_dir, seed: int = 0):
    """Return a causal LM with ``shape_of``'s architecture and seeded random weights."""
    import keras

    family, backbone_config = registry.for_preset(shape_of)
    tokenizer_dir = Path(tokenizer_dir)
    missing = [
        str(tokenizer_dir / name)
        for name in family.tokenizer_files
        if not (tokenizer_dir / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{family.name} tokenizer files missing: {', '.join(missing)}")
    # Every initializer draws from the global seed: same seed, same weights, bit for bit.
    # Seeded before the tokenizer exists: TF's set_seed clears the eager kernel cache, which
    # deletes the kernel-owned resource of a TF Text SentencePiece tokenizer made before it.
    keras.utils.set_random_seed(seed)
    tokenizer = family.load_tokenizer(tokenizer_dir)
    if tokenizer.vocabulary_size() > backbone_config["vocabulary_size"]:
        raise ValueError(
            f"the tokenizer in {tokenizer_dir} has {tokenizer.vocabulary_size()} tokens; "
            f"{shape_of}'s embedding has {backbone_config['vocabulary_size']} rows"
        )
    causal_lm = family.build_causal_lm(backbone_config, tokenizer, PREPROCESSOR_SEQUENCE_LENGTH)
    decorrelate_equal_weights(causal_lm, seed)
    quiet_unused_embedding_rows(causal_lm, int(tokenizer.vocabulary_size()))
    count = causal_lm.backbone.count_params()
    published = family.preset_parameters.get(shape_of)
    if count != family.parameter_count(backbone_config) or count != published:
        raise AssertionError(
            f"{shape_of}: {count} parameters; the family module computes "
            f"{family.parameter_count(backbone_config)}, KerasHub publishes "
            f"{published}"
        )
    return causal_lm


def decorrelate_equal_weights(causal_lm, seed: int) -> int:
    """Permute the values of every weight tensor equal to an earlier one (seeded); return how
    many were permuted. Constant tensors (zero biases, unit scales) are left alone: a real
    model's may well be equal too, and they are small."""
    import hashlib

    import numpy as np

    seen, permuted = set(), 0
    for index, variable in enumerate(causal_lm.weights):
        values = variable.numpy()
        if values.size < 2 or values.min() == values.max():
            continue
        digest = hashlib.sha256(values.tobytes()).digest()
        if digest in seen:
            rng = np.random.default_rng([seed, index])
            variable.assign(rng.permutation(values.reshape(-1)).reshape(values.shape))
            permuted += 1
        else:
            seen.add(digest)
    return permuted


def quiet_unused_embedding_rows(causal_lm, used: int, scale: float = UNUSED_ROW_SCALE) -> int:
    """Scale the token-embedding rows (and output-projection columns) of ids >= ``used``.

    Returns how many ids were scaled. A KerasHub ``ReversibleEmbedding`` keeps the input table
    as ``embeddings`` [vocabulary, hidden] and, when untied, the output projection as
    ``reverse_embeddings`` [hidden, vocabulary].
    """
    embedding = causal_lm.backbone.token_embedding
    table = embedding.embeddings.numpy()
    unused = table.shape[0] - used
    if unused <= 0:
        return 0
    table[used:] *= scale
    embedding.embeddings.assign(table)
    reverse = getattr(embedding, "reverse_embeddings", None)
    if reverse is not None and not getattr(embedding, "tie_weights", True):
        projection = reverse.numpy()
        projection[:, used:] *= scale
        reverse.assign(projection)
    return unused


def keep_backbone_arguments(preset_dir: Path, backbone_config) -> list[str]:
    """Write into a saved preset the backbone arguments its ``get_config`` leaves out
    (LlamaBackbone 0.31: ``tie_word_embeddings``, so a tied twin would reload untied and fail to
    load its own weights): in ``config.json`` (the backbone) and ``task.json`` (the backbone
    inside the task, which ``CausalLM.from_preset`` builds); return their names."""
    missing = []
    for name, backbone in (("config.json", ()), ("task.json", ("config", "backbone"))):
        config_file = preset_dir / name
        saved = json.loads(config_file.read_text(encoding="utf-8"))
        arguments = saved
        for key in (*backbone, "config"):
            arguments = arguments[key]
        absent = sorted(set(backbone_config) - set(arguments))
        if absent:
            arguments.update({key: backbone_config[key] for key in absent})
            config_file.write_text(json.dumps(saved, indent=4) + "\n", encoding="utf-8")
            missing = sorted(set(missing) | set(absent))
    return missing


def save_twin(shape_of: str, tokenizer_dir, seed: int, out_preset) -> dict:
    """Build the twin and write it as a KerasHub preset directory, atomically; return its info."""
    started = time.perf_counter()
    causal_lm = build_twin(shape_of, tokenizer_dir, seed)
    info = {
        "shape_of": shape_of,
        "seed": seed,
        "architecture": registry.for_causal_lm(causal_lm).name,
        "backbone": registry.for_preset(shape_of)[1],
        "num_parameters": int(causal_lm.count_params()),
        "tokenizer_vocabulary_size": int(causal_lm.preprocessor.tokenizer.vocabulary_size()),
        "weights": "seeded random (the family's own initializers; equal tensors permuted); "
        f"embedding rows of ids beyond the tokenizer scaled by {UNUSED_ROW_SCALE}",
    }
    with atomic.atomic_path(out_preset, is_dir=True) as tmp:
        causal_lm.save_to_preset(str(tmp))
        keep_backbone_arguments(Path(tmp), registry.for_preset(shape_of)[1])
        info["build_seconds"] = round(time.perf_counter() - started, 2)
        (Path(tmp) / TWIN_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape-of",
        required=True,
        choices=shape_names(),
        help="KerasHub preset whose architecture the twin copies",
    )
    parser.add_argument(
        "--tokenizer-dir",
        required=True,
        help="the family's tokenizer files (GPT-2: vocab.json + merges.txt; "
        "SentencePiece families: tokenizer.model)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-preset", required=True, help="preset directory to write")
    args = parser.parse_args(argv)
    try:
        info = save_twin(args.shape_of, args.tokenizer_dir, args.seed, args.out_preset)
    except (FileNotFoundError, ValueError) as error:
        print(f"llm2tflite: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(
        f"twin of {args.shape_of} ({info['num_parameters']:,} parameters, seed {args.seed}) "
        f"-> {args.out_preset} in {info['build_seconds']} s"
    )


if __name__ == "__main__":
    main()
