"""Convert a traced SavedModel to one TFLite variant (Select TF ops + TF Text kernels).

One fresh ``TFLiteConverter`` per variant (a converter converts once), one process per variant in
the workflow: the conversion's peak memory is then that of one variant, not of the whole run.

Which TensorFlow ops need ``experimental_select_user_tf_ops`` is derived, not guessed: the first
conversion runs with ``allow_custom_ops=False``, so any op that is neither a TFLite builtin nor in
the Flex delegate's allowlist is reported by the converter as a structured error
(``ERROR_NEEDS_CUSTOM_OPS``). Those ops are then converted as user-selected TF ops (run by the Flex
delegate) in a second conversion. When the first conversion succeeds its result is used as is.
"""

from __future__ import annotations

import argparse
import time

import llm2tflite  # noqa: F401
from llm2tflite.core import cli_options, conversion_report, memory, tf_logging
from llm2tflite.core.conversion_report import summary

# Each variant's converter settings; the names are the config schema's enum.
#   int8w (int8 weight-only, or int16 activations x int8 weights) is not offered: the 2.18
#   converter has no weight-only int8 switch (Optimize.DEFAULT without calibration data is the
#   dynamic-range `int8` above), and int16x8 needs every tensor calibrated through a
#   representative dataset, which fails on the tokenizer's string tensors ("Max and min for
#   dynamic tensors should be recorded during calibration: ... StaticRegexReplace").
VARIANTS = ("fp32", "int8", "fp16")
# Options a variant accepts from the config's `quantization:` section, with their defaults.
VARIANT_OPTIONS = {"fp32": {}, "int8": {"per_channel": True}, "fp16": {}}


def _configure(converter, variant: str, options: dict) -> None:
    import tensorflow as tf

    unknown = set(options) - set(VARIANT_OPTIONS[variant])
    if unknown:
        raise ValueError(f"variant {variant!r} has no option(s) {sorted(unknown)}")
    options = {**VARIANT_OPTIONS[variant], **options}
    if variant == "int8":
        # The codelab's step 3: dynamic-range quantization (int8 weights, float activations
        # quantized on the fly by the kernels that support it).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # One scale per output channel (the converter's default) or one per tensor.
        converter._experimental_disable_per_channel = not options["per_channel"]
    elif variant == "fp16":
        # float16 weights (half the size); kernels dequantize them to float32 on the CPU.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]


def _new_converter(saved_model_dir: str, variant: str, options: dict, signature_keys, user_tf_ops):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=list(signature_keys)
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    converter.allow_custom_ops = bool(user_tf_ops)
    if user_tf_ops:
        converter.target_spec.experimental_select_user_tf_ops = sorted(user_tf_ops)
    _configure(converter, variant, options)
    return converter


def _ops_needing_user_selection(conversion_error) -> list[str]:
    from tensorflow.compiler.mlir.lite.metrics import converter_error_data_pb2

    needs_custom = converter_error_data_pb2.ConverterErrorData.ERROR_NEEDS_CUSTOM_OPS
    names = set()
    for error in getattr(conversion_error, "errors", []):
        if error.error_code == needs_custom and error.operator.name:
            # Reported as "tf.OpName" by the MLIR converter.
            names.add(error.operator.name.removeprefix("tf."))
    return sorted(names)


# The Operator table's custom_options field (its vtable offset in the TFLite schema).
_OPERATOR_CUSTOM_OPTIONS_FIELD = 14


def canonical_flex_ops(flatbuffer: bytes) -> bytearray:
    """The same model with every Select TF op's NodeDef serialized deterministically.

    A Flex op carries its TensorFlow NodeDef, serialized by the converter's C++ protobuf, whose
    map fields (the op's attributes) come out in no fixed order: two conversions of the same
    graph differ in those bytes only. Re-serializing each NodeDef with sorted map keys gives the
    same length, so it is patched in place and the rest of the flatbuffer is untouched.
    """
    from flatbuffers import flexbuffers
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = bytearray(flatbuffer)
    model = schema.Model.GetRootAs(buffer, 0)
    flex_codes = {
        index
        for index in range(model.OperatorCodesLength())
        if (model.OperatorCodes(index).CustomCode() or b"").startswith(b"Flex")
    }
    for subgraph_index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(subgraph_index)
        for op_index in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(op_index)
            if op.OpcodeIndex() not in flex_codes:
                continue
            field = op._tab.Offset(_OPERATOR_CUSTOM_OPTIONS_FIELD)
            start, length = op._tab.Vector(field), op._tab.VectorLen(field)
            options = bytes(buffer[start : start + length])
            # Flex custom options: a FlexBuffer vector [op name, serialized NodeDef].
            serialized = bytes(flexbuffers.GetRoot(options).AsVector[1].AsStringBytes)
            canonical = node_def_pb2.NodeDef.FromString(serialized).SerializeToString(
                deterministic=True
            )
            at = options.find(serialized)
            if at < 0 or len(canonical) != len(serialized):
                raise RuntimeError(
                    f"cannot canonicalize the NodeDef of Flex op {op_index} of "
                    f"subgraph {subgraph_index}"
                )
            buffer[start + at : start + at + len(canonical)] = canonical
    return buffer


class WeightsNotFrozenError(RuntimeError):
    """The converted model still reads resource variables."""


# Operators that read or write a resource variable: TFLite's builtins, and the TF ops a Flex
# delegate would run ("Flex" + name).
_VARIABLE_BUILTINS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")
_VARIABLE_TF_OPS = ("VarHandleOp", "ReadVariableOp", "AssignVariableOp", "ResourceGather")


def variable_ops(flatbuffer: bytes) -> list[str]:
    """The operators of the model that use resource variables (its operator codes, not its
    bytes: a frozen weight's tensor may keep a name like ``Identity_10/ReadVariableOp``)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    variable_builtins = {getattr(schema.BuiltinOperator, name): name for name in _VARIABLE_BUILTINS}
    found = set()
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(int(code.DeprecatedBuiltinCode()), int(code.BuiltinCode()))
        custom = (code.CustomCode() or b"").decode("utf-8", errors="replace")
        if builtin in variable_builtins:
            found.add(variable_builtins[builtin])
        elif custom.removeprefix("Flex") in _VARIABLE_TF_OPS:
            found.add(custom)
    return sorted(found)


def _check_weights_frozen(flatbuffer: bytes) -> None:
    # A variable the converter did not freeze stays a variable op (a Flex "FlexVarHandleOp", or
    # the VAR_HANDLE builtin); the interpreter would later fail with "Could not find variable"
    # or read uninitialised memory. Fail the conversion instead.
    found = variable_ops(flatbuffer)
    if found:
        raise WeightsNotFrozenError(
            f"the converted model still contains {', '.join(found)}: a weight was captured as a "
            "resource variable inside a loop body instead of being read once at the top "
            "level of the signature (see llm2tflite/codelab/trace.py)"
        )


def convert_saved_model(
    saved_model_dir: str, variant: str, signature_keys, options: dict | None = None
) -> tuple[bytes, dict]:
    """Return the flatbuffer and a report (derived user ops, timing, peak RSS)."""
    import tensorflow_text  # noqa: F401  (registers the TF Text ops the SavedModel's graph uses)
    from tensorflow.lite.python.convert_phase import ConverterError

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    started = time.perf_counter()
    user_tf_ops: list[str] = []
    try:
        # The converter's own absl log notes ("Ignored output_format.") reach no log setting.
        with tf_logging.native_notes_hidden():
            flatbuffer = _new_converter(
                saved_model_dir, variant, options or {}, signature_keys, []
            ).convert()
    except ConverterError as error:
        user_tf_ops = _ops_needing_user_selection(error)
        if not user_tf_ops:
            raise
        with tf_logging.native_notes_hidden():
            flatbuffer = _new_converter(
                saved_model_dir, variant, options or {}, signature_keys, user_tf_ops
            ).convert()
    _check_weights_frozen(flatbuffer)
    flatbuffer = canonical_flex_ops(flatbuffer)  # two conversions give the same bytes
    report = {
        "variant": variant,
        "options": {**VARIANT_OPTIONS[variant], **(options or {})},
        "select_user_tf_ops": user_tf_ops,
        "size_bytes": len(flatbuffer),
        "convert_seconds": round(time.perf_counter() - started, 2),
        # The peak of this whole process, TF import included.
        "peak_rss_mb": round(memory.peak_rss_mb(), 1),
    }
    return flatbuffer, report


def main(argv=None):
    from llm2tflite.codelab.trace import SIGNATURES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", required=True)
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    cli_options.add_json_option(
        parser,
        "--options-json",
        "options_json",
        "the variant's options from the config's quantization section",
        required=False,
        default={},
    )
    parser.add_argument("--out", required=True, help=".tflite file to write")
    parser.add_argument("--report", required=True, help="conversion report JSON to write")
    args = parser.parse_args(argv)
    flatbuffer, report = convert_saved_model(
        args.saved_model, args.variant, SIGNATURES, args.options_json
    )
    conversion_report.write(args.out, flatbuffer, args.report, report)
    print(f"converted {args.saved_model} -> {args.out} ({args.variant}): {summary(report)}")


if __name__ == "__main__":
    main()
