"""The LiteRT route's contract in names and numbers, light enough for the DAG's parse.

The signatures, tensor names and runtime duties are documented in docs/litert-contract.md
(``llm2tflite.litert.export`` traces them); this module holds what the workflow, the runtime and
the bundler read without TensorFlow: tensor and signature names, the ``litert:`` settings with
their checks, the quantized variants, and LiteRT-LM's ``max_num_tokens`` arithmetic. Standard
library only (and the family interface's mask constant, itself plain Python).
"""

from __future__ import annotations

# LiteRT-LM's fill value for hidden positions of a float32 mask, defined beside the family
# interface, whose forward passes read it (a re-export).
from llm2tflite.families.base import MASK_HIDDEN as MASK_HIDDEN

INFO_FILE = "litert_export.json"
# Version of the contract (llm2tflite.litert.export); bump it when a runtime would misread a new
# export. 2: each cache in the layout its attention matmul reads (``kv_cache_shapes``).
CONTRACT_VERSION = 2
PREFILL_PREFIX = "prefill_"
DECODE_SIGNATURE = "decode"
TOKENS, INPUT_POS, MASK, LOGITS = "tokens", "input_pos", "mask", "logits"

# One layer's caches, S = cache_length: keys with the positions last, values with the positions
# before head_dim. Each is then the right-hand side of its attention matmul as it is stored
# (queries @ K -> scores [1, kv_heads, T, S]; probabilities @ V), so no call transposes a cache;
# with [1, S, kv_heads, head_dim] for both (litert-torch's default, contract version 1) every
# layer transposed both caches at every call, and a decode step took 1.14-1.17x as long (int8
# and int4, the 124M GPT-2 twin; docs/benchmarks.md). LiteRT-LM treats the layout as opaque.
KV_CACHE_LAYOUT = {
    "k": "[1, kv_heads, head_dim, cache_length]",
    "v": "[1, kv_heads, cache_length, head_dim]",
}


def kv_cache_shapes(cache_length: int, kv_heads: int, head_dim: int) -> tuple[list, list]:
    """One layer's K and V cache shapes (``KV_CACHE_LAYOUT``)."""
    return [1, kv_heads, head_dim, cache_length], [1, kv_heads, cache_length, head_dim]


def cache_input_shapes(info: dict) -> dict[str, list[int]]:
    """Every cache tensor's shape, by name, as the export info's ``decode`` signature lists it
    (any contract version: the shapes are read, not assumed)."""
    inputs = info["signatures"][info["decode_signature"]]["inputs"]
    return {name: list(shape) for name, (_, shape) in inputs.items() if name.startswith("kv_cache_")}

# The tokenizer file beside the model, of each tokenizer kind (``Architecture.tokenizer_kind``),
# written by llm2tflite.litert.runtime_tokenizer.
TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODEL = "tokenizer.model"
RUNTIME_TOKENIZER_FILES = {"byte_level_bpe": TOKENIZER_JSON, "sentencepiece": SENTENCEPIECE_MODEL}

# ai-edge-quantizer's dynamic-range recipes the route offers, by the library's own names
# (ai_edge_quantizer.recipe: int weights, float32 activations quantized on the fly by the kernels;
# wi<bits>, then c: one scale per output channel, or b<M>: one per block of M input values):
# recipe name -> (weight bits, granularity). llm2tflite.litert.quantize builds each as the
# library builds its named ones, RecipeManager.add_dynamic_config(".*", every supported op, bits,
# granularity); blocks of 128 have no named recipe in ai-edge-quantizer 0.10.0, only the
# granularity.
DYNAMIC_RECIPES = {
    "dynamic_wi8_afp32": (8, "CHANNELWISE"),
    "dynamic_wi4b32_afp32": (4, "BLOCKWISE_32"),
    "dynamic_wi4b64_afp32": (4, "BLOCKWISE_64"),
    "dynamic_wi4b128_afp32": (4, "BLOCKWISE_128"),
    "dynamic_wi4c_afp32": (4, "CHANNELWISE"),
}
# The int4 recipe a variant name without a suffix means, chosen by measurement
# (docs/benchmarks.md#int4-recipes).
INT4_DEFAULT_RECIPE = "dynamic_wi4b32_afp32"
# Quantized variant -> its recipe (llm2tflite.litert.quantize); fp32 is the converter's own
# output. `int4` is the chosen int4 recipe; `int4_<granularity>` names each int4 recipe.
QUANTIZATION_RECIPES = {
    "int8": "dynamic_wi8_afp32",
    "int4": INT4_DEFAULT_RECIPE,
    "int4_b32": "dynamic_wi4b32_afp32",
    "int4_b64": "dynamic_wi4b64_afp32",
    "int4_b128": "dynamic_wi4b128_afp32",
    "int4_c": "dynamic_wi4c_afp32",
}
# The variants named after their int4 recipe; they take int4's quality gates unless the config
# states their own (llm2tflite.config_check.quality_gates).
INT4_RECIPE_VARIANTS = tuple(v for v in QUANTIZATION_RECIPES if v.startswith("int4_"))


def block_size(variant: str) -> int | None:
    """Input values per scale of a variant's blockwise recipe; None per channel or unquantized.

    The block must divide the input width of every weight matrix: the quantizer refuses the
    model otherwise (llm2tflite.config_check checks it when the DAG is parsed).
    """
    recipe = QUANTIZATION_RECIPES.get(variant)
    granularity = DYNAMIC_RECIPES[recipe][1] if recipe else ""
    prefix = "BLOCKWISE_"
    return int(granularity[len(prefix) :]) if granularity.startswith(prefix) else None


# Prefill lengths when `litert.prefill_lengths` is null (config/config.schema.yaml holds the
# section's other defaults): a short one for short prompts (a prefill invoke costs about a decode
# step plus the per-token compute of all T rows, padding included) and a longer one for long
# prompts; llm2tflite.litert.export's docstring has the measurements.
DEFAULT_PREFILL_LENGTHS = (8, 32)


def prefill_signature(length: int) -> str:
    return f"{PREFILL_PREFIX}{length}"


def cache_names(layer: int) -> tuple[str, str]:
    return f"kv_cache_k_{layer}", f"kv_cache_v_{layer}"


class LiteRTSettingsError(ValueError):
    """The `litert:` settings cannot give a working model (one line, names the key)."""


def resolve_settings(config: dict) -> dict:
    """The `litert:` settings of a config whose schema defaults are filled in, with the two
    defaults the schema cannot state resolved.

    ``cache_length`` null is ``generation.max_length`` (the codelab route's context);
    ``prefill_lengths`` null is ``DEFAULT_PREFILL_LENGTHS`` without the lengths longer than the
    cache, never a configured list shortened (that is an error, see ``check_lengths``).
    """
    section = config["litert"]
    cache_length = section["cache_length"] or config["generation"]["max_length"]
    lengths = section["prefill_lengths"]
    if lengths is None:
        lengths = [t for t in DEFAULT_PREFILL_LENGTHS if t <= cache_length] or [cache_length]
    settings = {
        "variants": list(section["variants"]),
        "cache_length": int(cache_length),
        "prefill_lengths": sorted({int(t) for t in lengths}),
        "prefill_logits": bool(section["prefill_logits"]),
        "chat_templates": dict(section.get("chat_templates") or {}),
    }
    check_lengths(settings["cache_length"], settings["prefill_lengths"])
    return settings


def check_lengths(cache_length: int, prefill_lengths, max_positions: int | None = None) -> None:
    """Every prefill chunk must fit the cache; the cache must fit the model's positions."""
    if cache_length < 2:
        raise LiteRTSettingsError(
            f"litert.cache_length: {cache_length} < 2 (the start token and one new token)"
        )
    if not prefill_lengths:
        raise LiteRTSettingsError("litert.prefill_lengths: give at least one length")
    too_long = [t for t in prefill_lengths if t > cache_length or t < 1]
    if too_long:
        raise LiteRTSettingsError(
            f"litert.prefill_lengths: {too_long} do not fit a cache of {cache_length} positions "
            "(DYNAMIC_UPDATE_SLICE would clamp the chunk over earlier rows); use lengths "
            f"1..{cache_length} or raise litert.cache_length"
        )
    if max_positions is not None and cache_length > max_positions:
        raise LiteRTSettingsError(
            f"litert.cache_length: {cache_length} exceeds the model's {max_positions} positions; "
            f"set litert.cache_length (or generation.max_length) <= {max_positions}"
        )


def litert_lm_prefill_chunks(count: int, prefill_lengths) -> list[tuple[int, int]]:
    """How LiteRT-LM splits ``count`` prompt ids over the prefill signatures.

    ``[(signature length T, ids in the chunk)]``, as LiteRT-LM's executor does
    (``GetOptimizedPrefillWorkGroups``, runtime/executor/): the longest T while at least T ids
    remain, then the shortest T that holds the rest, padded.
    """
    lengths = sorted(prefill_lengths, reverse=True)
    chunks = []
    while count >= lengths[0]:
        chunks.append((lengths[0], lengths[0]))
        count -= lengths[0]
    if count > 0:
        chunks.append((min(t for t in lengths if t >= count), count))
    return chunks


def litert_lm_max_num_tokens(cache_length: int, prefill_lengths) -> int:
    """The largest ``max_num_tokens`` for LiteRT-LM with which no prefill chunk is clamped.

    LiteRT-LM checks only that the prompt is shorter than ``max_num_tokens``, then prefills in
    padded chunks (``litert_lm_prefill_chunks``): the first chunk writes its ids but the last
    one (kept for the next call) from position 0, each later chunk the kept id and all but its
    own last. A chunk of length T started at p needs p + T <= S; near a full cache the padded
    tail can overrun S and DYNAMIC_UPDATE_SLICE then moves it back over earlier rows. Every
    prompt of fewer ids than the returned value fits (decode positions stay below it too).
    """

    def fits(count):
        start, written = 0, 0
        for index, (length, ids) in enumerate(litert_lm_prefill_chunks(count, prefill_lengths)):
            if start + length > cache_length:
                return False
            written += ids - 1 if index == 0 else ids
            start = written
        return True

    limit = 1
    while limit < cache_length and fits(limit):
        limit += 1
    return limit
