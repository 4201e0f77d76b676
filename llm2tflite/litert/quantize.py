"""Quantize the LiteRT route's fp32 ``.tflite`` with ai-edge-quantizer (every signature at once).

Variants (the config's ``litert: variants``):

- ``int8``: ``dynamic_wi8_afp32``: int8 weights, one scale per output channel; activations
  stay float32 between ops and are quantized on the fly by the kernels (XNNPACK's dynamically
  quantized FULLY_CONNECTED), so the weights stay int8 in memory and are read as int8.
- ``int4``: ``dynamic_wi4b32_afp32``: int4 weights, one fp16 scale per block of 32 input values;
  the other int4 recipes by name: ``int4_b32`` (the same), ``int4_b64``, ``int4_b128`` (blocks of
  64, 128: each must divide every weight's input width) and ``int4_c`` (``dynamic_wi4c_afp32``,
  one scale per output channel). Blocks of 32 were chosen by measurement (docs/benchmarks.md,
  "int4 recipes"): the lowest mean KL against Keras on ``tiny``, ``tiny_llama`` and the 124M twin
  (twin: 4.5e-3 nats; blocks of 64 6.3e-3, 128 7.7e-3, channelwise 8.9e-3), for a file at most
  9 % larger (70.2 MB; 66.3, 64.4, 67.1 MB) and decode invokes within about 20 % (channelwise
  0.81 of its time, blocks of 64 and 128 0.97 and 0.93; 2 threads, interleaved).

Every recipe is built as ai_edge_quantizer.recipe builds its named ones
(``llm2tflite.litert.contract.DYNAMIC_RECIPES``): blocks of 128 have no named recipe there.

Weight-only recipes are not offered: they earn no place. On the 124M twin (2 threads, XNNPACK,
interleaved in one process) ``weight_only_wi8_afp32`` (129 MB, like int8) decoded 3.4x slower
than ``int8`` (fp32: 3.9x) with 2.5 GB RSS (int8: 0.47 GB), since the CPU runtime dequantizes
its weights to float32 at load; ``weight_only_wi4_afp32`` (67 MB, like int4) decoded 4.4x slower
than int8 (7x int4's time).

The embedding tables reach the quantizer as EMBEDDING_LOOKUPs (``llm2tflite.litert.convert``),
so a table tied to the output projection is stored once, quantized; the report lists the
largest float constants left so a regression shows. The fp32 file's embedded runtime files
(export info, tokenizer: ``llm2tflite.litert.embedded``) are put into the quantized file too.
"""

from __future__ import annotations

import argparse
import time

import llm2tflite  # noqa: F401
from llm2tflite.core import conversion_report, flatbuffer, memory
from llm2tflite.core.conversion_report import summary
from llm2tflite.litert import convert as litert_convert
from llm2tflite.litert import embedded
from llm2tflite.litert.contract import DYNAMIC_RECIPES
from llm2tflite.litert.contract import QUANTIZATION_RECIPES as RECIPES

VARIANTS = ("fp32", *RECIPES)


def _recipe(variant: str):
    """The variant's recipe, built as ai_edge_quantizer.recipe builds its named ones."""
    from ai_edge_quantizer import qtyping, recipe_manager

    bits, granularity = DYNAMIC_RECIPES[RECIPES[variant]]
    manager = recipe_manager.RecipeManager()
    manager.add_dynamic_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        num_bits=bits,
        granularity=qtyping.QuantGranularity(granularity),
    )
    return manager.get_quantization_recipe()


def constants_by_type(model) -> dict[str, dict[str, int]]:
    """{tensor type: {"tensors": n, "bytes": b}} over the model's distinct constant buffers."""
    schema = flatbuffer.schema()
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    seen, summary = set(), {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.buffer in seen or not litert_convert._is_constant(model, tensor):
                continue
            seen.add(tensor.buffer)
            entry = summary.setdefault(type_names[tensor.type], {"tensors": 0, "bytes": 0})
            entry["tensors"] += 1
            entry["bytes"] += len(model.buffers[tensor.buffer].data)
    return dict(sorted(summary.items()))


def largest_float_constants(model, count: int = 5) -> list[dict]:
    """The biggest float32 constant buffers (name, shape, bytes), largest first."""
    schema = flatbuffer.schema()
    found = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.type == schema.TensorType.FLOAT32 and litert_convert._is_constant(
                model, tensor
            ):
                found.setdefault(
                    tensor.buffer,
                    {
                        "name": litert_convert._tensor_name(tensor),
                        "shape": list(tensor.shape),
                        "bytes": len(model.buffers[tensor.buffer].data),
                    },
                )
    return sorted(found.values(), key=lambda entry: -entry["bytes"])[:count]


def quantize(fp32_path, variant: str) -> tuple[bytes, dict]:
    """The quantized flatbuffer of ``variant`` and its report."""
    from ai_edge_quantizer import quantizer

    if variant not in RECIPES:
        raise ValueError(f"unknown quantized variant {variant!r}; known: {', '.join(RECIPES)}")
    started = time.perf_counter()
    qt = quantizer.Quantizer(str(fp32_path))
    qt.load_quantization_recipe(_recipe(variant))
    flatbuffer = bytes(
        qt.quantize(enable_progress_bar=False, enable_progress_report=False).quantized_model
    )
    seconds = time.perf_counter() - started
    del qt
    model = litert_convert.read_model(flatbuffer)
    litert_convert.check_builtins_only(model)
    # Written by this stage, whatever the quantizer keeps of the fp32 file's metadata.
    embedded_entries = embedded.read_entries(fp32_path)
    if embedded_entries:
        embedded.embed(model, embedded_entries)
        flatbuffer = litert_convert.write_model(model)
    report = {
        "variant": variant,
        "recipe": RECIPES[variant],
        "size_bytes": len(flatbuffer),
        "convert_seconds": round(seconds, 2),
        "peak_rss_mb": round(memory.peak_rss_mb(), 1),
        "constants": constants_by_type(model),
        "largest_float_constants": largest_float_constants(model),
        "tensor_names_unique": litert_convert.tensor_names_unique(model),
        "op_counts": litert_convert.op_counts(model),
        "embedded_bytes": {name: len(data) for name, data in embedded_entries.items()},
    }
    return flatbuffer, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", required=True, help="the route's fp32 .tflite")
    parser.add_argument("--variant", required=True, choices=sorted(RECIPES))
    parser.add_argument("--out", required=True, help=".tflite file to write")
    parser.add_argument("--report", required=True, help="conversion report JSON to write")
    args = parser.parse_args(argv)
    flatbuffer, report = litert_convert.exit_on_builtins_only_error(
        quantize, args.fp32, args.variant
    )
    conversion_report.write(args.out, flatbuffer, args.report, report)
    recipe = f"{args.variant}, {report['recipe']}"
    print(f"quantized {args.fp32} -> {args.out} ({recipe}): {summary(report)}")


if __name__ == "__main__":
    main()
