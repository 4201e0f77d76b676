"""The int4 recipes the LiteRT route offers by name (``litert.contract.QUANTIZATION_RECIPES``).

Each quantizes a small GPT-2 whose weight widths (128 and 256) every block size divides; what the
quantizer wrote is read back from the flatbuffer with the TFLite schema's own bindings, not from
the quantizer's report: blocks of B input values give one fp16 scale per B weights (blocks of 32
four times the scales of blocks of 128, for the same weight), channelwise one scale per output
channel. Every file runs ``decode`` in ai-edge-litert and tracks fp32.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm2tflite.litert import contract

from conftest import build_random_preset, export_litert

HIDDEN, FEED_FORWARD = 128, 256
RECIPE_VARIANTS = contract.INT4_RECIPE_VARIANTS


def test_every_int4_recipe_has_a_variant():
    assert RECIPE_VARIANTS == ("int4_b32", "int4_b64", "int4_b128", "int4_c")
    assert {contract.block_size(v) for v in RECIPE_VARIANTS} == {32, 64, 128, None}
    assert contract.QUANTIZATION_RECIPES["int4"] in {
        contract.QUANTIZATION_RECIPES[v] for v in RECIPE_VARIANTS
    }


def test_every_variant_is_configurable_gated_and_ordered():
    """The schema offers every LiteRT variant wherever one is named, has gates for each, and the
    benchmark tables order them."""
    import yaml

    from llm2tflite.evaluate.bench import VARIANT_ORDER

    from conftest import REPO

    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())["properties"]
    variants = ["fp32", *contract.QUANTIZATION_RECIPES]
    assert schema["litert"]["properties"]["variants"]["items"]["enum"] == variants
    assert schema["litertlm"]["properties"]["variants"]["items"]["enum"] == variants
    assert schema["web"]["properties"]["variant"]["enum"] == variants
    assert set(variants) <= set(schema["android"]["properties"]["variant"]["enum"])
    assert set(variants) <= set(schema["quality_gates"]["properties"])
    assert set(variants) <= set(VARIANT_ORDER)


def test_recipes_are_the_librarys_named_ones():
    """Built as ai_edge_quantizer.recipe builds its named recipes: equal where it has one."""
    from ai_edge_quantizer import recipe

    from llm2tflite.litert import quantize

    named = 0
    for variant, name in contract.QUANTIZATION_RECIPES.items():
        if hasattr(recipe, name):
            assert quantize._recipe(variant) == getattr(recipe, name)(), variant
            named += 1
    assert named == len(contract.QUANTIZATION_RECIPES) - 1  # blocks of 128: no named recipe


@pytest.fixture(scope="module")
def recipe_files(default_corpus_and_vocab, tmp_path_factory):
    from llm2tflite.inputs.sources import load_causal_lm

    out = tmp_path_factory.mktemp("int4_recipes")
    preset = build_random_preset(
        default_corpus_and_vocab / "vocab",
        out / "preset",
        seed=3,
        max_sequence_length=64,
        hidden_dim=HIDDEN,
        intermediate_dim=FEED_FORWARD,
    )
    return export_litert(
        load_causal_lm(str(preset)),
        out / "litert",
        variants=("fp32", "int4", *RECIPE_VARIANTS),
        prefill_lengths=(8,),
    )


def _int4_weights(path) -> dict[str, dict]:
    """The decode signature's int4 tensors: name -> shape and how its scales are stored."""
    from llm2tflite.core import flatbuffer

    schema = flatbuffer.schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    (index,) = [s.subgraphIndex for s in model.signatureDefs if s.signatureKey == b"decode"]
    tensors = model.subgraphs[index].tensors
    weights = {}
    for tensor in tensors:
        if tensor.type != schema.TensorType.INT4:
            continue
        q = tensor.quantization
        entry = {"shape": [int(d) for d in tensor.shape]}
        if q.detailsType == schema.QuantizationDetails.BlockwiseQuantization:
            scales = tensors[q.details.scales]
            assert scales.type == schema.TensorType.FLOAT16
            entry.update(block=q.details.blockSize, scales=[int(d) for d in scales.shape])
        else:
            assert q.detailsType == schema.QuantizationDetails.NONE
            entry.update(block=None, scales=[len(q.scale)], axis=q.quantizedDimension)
        weights[tensor.name.decode()] = entry
    return weights


def test_scales_per_recipe_read_from_the_flatbuffer(recipe_files):
    files = recipe_files["tflite"]
    found = {variant: _int4_weights(files[variant]) for variant in RECIPE_VARIANTS}
    names = set(found["int4_c"])
    # Every matrix of the one block and the embeddings: query, key, value and output
    # projections, both feed-forward kernels, the token table (looked up and tied to the output
    # projection) and the position table.
    assert len(names) == 8
    widths = {entry["shape"][1] for entry in found["int4_c"].values()}
    assert widths == {HIDDEN, FEED_FORWARD}
    for variant, weights in found.items():
        assert set(weights) == names, variant  # the same weights, quantized differently
        block = contract.block_size(variant)
        for name, entry in weights.items():
            rows, width = entry["shape"]
            assert entry["block"] == block, (variant, name)
            if block:
                assert entry["scales"] == [rows, width // block], (variant, name)
            else:
                assert entry["axis"] == 0 and entry["scales"] == [rows], (variant, name)
    for name in names:
        count = {v: int(np.prod(found[v][name]["scales"])) for v in RECIPE_VARIANTS}
        assert count["int4_b32"] == 2 * count["int4_b64"] == 4 * count["int4_b128"], name
        assert count["int4_c"] == found["int4_c"][name]["shape"][0], name
    # `int4` is the file of its chosen recipe.
    (chosen,) = [
        v
        for v in RECIPE_VARIANTS
        if contract.QUANTIZATION_RECIPES[v] == contract.QUANTIZATION_RECIPES["int4"]
    ]
    assert files["int4"].read_bytes() == files[chosen].read_bytes()


def test_every_recipe_runs_and_tracks_fp32(recipe_files):
    """One decode step of each file in ai-edge-litert (XNNPACK): logits correlate with fp32's."""
    from ai_edge_litert.interpreter import Interpreter

    info = recipe_files["info"]
    length = info["cache_length"]
    mask = np.full((1, 1, 1, length), info["mask"]["hidden"], np.float32)
    mask[..., :1] = 0
    inputs = {
        "tokens": np.array([[info["start_token_id"]]], np.int32),
        "input_pos": np.array([0], np.int32),
        "mask": mask,
        **{
            name: np.zeros(shape, np.float32)
            for name, shape in contract.cache_input_shapes(info).items()
        },
    }

    def logits(variant):
        interpreter = Interpreter(model_path=str(recipe_files["tflite"][variant]), num_threads=1)
        return interpreter.get_signature_runner("decode")(**inputs)["logits"].ravel()

    reference = logits("fp32")
    for variant in RECIPE_VARIANTS:
        assert np.corrcoef(reference, logits(variant))[0, 1] > 0.9, variant
