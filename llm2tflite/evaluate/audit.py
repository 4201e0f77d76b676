"""Audit the operators of a converted .tflite file: builtin, Select TF (Flex) and custom ops.

The flatbuffer is parsed with the TFLite schema's Python bindings (``schema_py_generated``,
ai-edge-litert's copy: no TensorFlow import); nothing is run. Every operator of every subgraph is
classified:

- ``builtin``: a TFLite builtin operator, named by its ``BuiltinOperator`` enum name
  (``FULLY_CONNECTED``, ``WHILE``, ...). The operator code is
  ``max(deprecated_builtin_code, builtin_code)``, as the TFLite runtime reads it.
- ``select_tf``: a TensorFlow op run by the Flex delegate: custom code ``Flex<TFOpName>``; the op
  is named by the TF op name (``UnsortedSegmentJoin``).
- ``custom``: any other custom code (TF Text kernels registered by ``tensorflow_text``'s
  ``SELECT_TFTEXT_OPS``, fused ``tfl_fusable_op`` functions, ...): the app must register a kernel.

The report answers what an Android build needs: the sorted TF op names of the Flex ops (the list a
selective build of the Flex delegate must include) and the custom ops to register. It also checks
the codelab's hand-written ``experimental_select_user_tf_ops = ["UnsortedSegmentJoin",
"UpperBound"]`` against the model (which of them the model really runs as Flex ops, which it does
not, and which Flex ops it needs beyond them) and, given ``--conversion-report``, the same for the
list ``llm2tflite.codelab.convert`` derived (its ``select_user_tf_ops``).

JSON written by ``--out-json`` (keys in this order)::

    model_name, route ("tflite" | "litert" | null, from the signatures: llm2tflite.model_files),
    variant, model_path, size_bytes, sha256, tflite_schema_version,
    num_subgraphs, subgraphs: [{index, name, num_operators}], signatures: [names],
    num_operators, class_counts: {builtin, select_tf, custom}  (operator instances),
    class_unique: {builtin, select_tf, custom}                 (distinct op types),
    ops: [{op, class, custom_code, count}]   (sorted by class, then count desc, then op),
    flex_ops: [TF op names]                  (sorted, unique: the selective-build list),
    custom_ops: [custom codes]               (sorted, unique: kernels to register),
    flex_op_libraries: {TF op: "tensorflow" | "tensorflow_text" | "unknown"},
    flex_ops_outside_core_tf: [TF ops]       (not in the stock Flex delegate: e.g. TF Text's),
    user_op_checks: {codelab: CHECK, conversion_report: CHECK | null}
    CHECK = {source, listed, used_as_flex, not_used, flex_ops_beyond_list}

``--out-md`` is the same content as tables for people (and Snakemake's HTML report).

A LiteRT-route model (``prefill_*`` + ``decode`` signatures) must contain builtin ops only: the
audit fails (exit 1, one line, no output) if it has any Flex or custom op.

CLI::

    python -m llm2tflite.evaluate.audit --model M.tflite --variant V [--model-name NAME]
        [--conversion-report tflite/V.conversion.json] --out-json ops/V.json --out-md ops/V.md
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
from pathlib import Path

import llm2tflite  # noqa: F401
from llm2tflite.core import atomic, flatbuffer

# The codelab's hand-written list (its steps 2 and 3).
CODELAB_SELECT_USER_TF_OPS = ("UnsortedSegmentJoin", "UpperBound")
FLEX_PREFIX = "Flex"
CLASSES = ("builtin", "select_tf", "custom")


def _builtin_names() -> dict[int, str]:
    schema = flatbuffer.schema()
    names: dict[int, str] = {}
    for name, value in vars(schema.BuiltinOperator).items():
        if not name.startswith("_") and isinstance(value, int):
            names.setdefault(value, name)
    return names


def _root_model(buffer: bytes):
    schema = flatbuffer.schema()
    get_root = getattr(schema.Model, "GetRootAs", None) or schema.Model.GetRootAsModel
    return get_root(buffer, 0)


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def classify_operator_code(builtin_code: int, custom_code: str | None, names: dict[int, str]):
    """Return ``(class, op name)`` of one operator code."""
    if builtin_code == flatbuffer.schema().BuiltinOperator.CUSTOM:
        custom_code = custom_code or ""
        if custom_code.startswith(FLEX_PREFIX):
            return "select_tf", custom_code[len(FLEX_PREFIX) :]
        return "custom", custom_code
    return "builtin", names.get(builtin_code, f"BUILTIN_{builtin_code}")


def flex_op_libraries(tf_ops) -> dict[str, str]:
    """Which library defines each TF op: ``tensorflow`` (core), ``tensorflow_text`` or ``unknown``.

    The stock Flex delegate (``tensorflow-lite-select-tf-ops``) has kernels for core TF ops only;
    an op defined by TF Text (``RegexSplitWithOffsets``, used by byte-level BPE tokenizers) needs
    a Flex delegate built with TF Text's kernels linked in, as the codelab's Android app does.
    """
    if not tf_ops:
        return {}
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry

    libraries = {}
    for op in tf_ops:
        if hasattr(tf.raw_ops, op):
            libraries[op] = "tensorflow"
            continue
        try:
            import tensorflow_text  # noqa: F401  (registers TF Text's op definitions)
        except ImportError:
            pass
        libraries[op] = "tensorflow_text" if op_def_registry.get(op) is not None else "unknown"
    return libraries


def check_user_ops(listed, flex_ops, source: str) -> dict:
    """Compare a list of ``experimental_select_user_tf_ops`` with the Flex ops the model runs."""
    listed = list(dict.fromkeys(listed))
    flex = set(flex_ops)
    return {
        "source": source,
        "listed": listed,
        "used_as_flex": sorted(op for op in listed if op in flex),
        "not_used": sorted(op for op in listed if op not in flex),
        "flex_ops_beyond_list": sorted(flex - set(listed)),
    }


def audit_flatbuffer(buffer: bytes) -> dict:
    """Classify and count the operators of a .tflite flatbuffer (all subgraphs)."""
    model = _root_model(buffer)
    names = _builtin_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(int(code.DeprecatedBuiltinCode()), int(code.BuiltinCode()))
        custom_code = _text(code.CustomCode())
        op_class, op_name = classify_operator_code(builtin, custom_code, names)
        codes.append((op_class, op_name, custom_code))

    counts: collections.Counter = collections.Counter()
    subgraphs = []
    for index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(index)
        for j in range(subgraph.OperatorsLength()):
            counts[codes[subgraph.Operators(j).OpcodeIndex()]] += 1
        subgraphs.append(
            {
                "index": index,
                "name": _text(subgraph.Name()),
                "num_operators": subgraph.OperatorsLength(),
            }
        )

    signatures = [
        _text(model.SignatureDefs(i).SignatureKey()) for i in range(model.SignatureDefsLength())
    ]
    order = {c: i for i, c in enumerate(CLASSES)}
    ops = [
        {"op": name, "class": op_class, "custom_code": custom_code, "count": count}
        for (op_class, name, custom_code), count in counts.items()
    ]
    ops.sort(key=lambda o: (order[o["class"]], -o["count"], o["op"]))
    class_counts = {c: sum(o["count"] for o in ops if o["class"] == c) for c in CLASSES}
    class_unique = {c: len({o["op"] for o in ops if o["class"] == c}) for c in CLASSES}
    return {
        "tflite_schema_version": int(model.Version()),
        "num_subgraphs": len(subgraphs),
        "subgraphs": subgraphs,
        "signatures": signatures,
        "num_operators": sum(class_counts.values()),
        "class_counts": class_counts,
        "class_unique": class_unique,
        "ops": ops,
        "flex_ops": sorted({o["op"] for o in ops if o["class"] == "select_tf"}),
        "custom_ops": sorted({o["op"] for o in ops if o["class"] == "custom"}),
    }


def _add_flex_libraries(audit: dict) -> dict:
    libraries = flex_op_libraries(audit["flex_ops"])
    return {
        **audit,
        "flex_op_libraries": libraries,
        "flex_ops_outside_core_tf": sorted(
            op for op, lib in libraries.items() if lib != "tensorflow"
        ),
    }


def audit_model(
    model_path,
    variant: str,
    model_name: str | None = None,
    conversion_report: dict | None = None,
    conversion_report_path: str | None = None,
) -> dict:
    data = Path(model_path).read_bytes()
    audit = _add_flex_libraries(audit_flatbuffer(data))
    checks = {
        "codelab": check_user_ops(
            CODELAB_SELECT_USER_TF_OPS, audit["flex_ops"], "codelab experimental_select_user_tf_ops"
        ),
        "conversion_report": None,
    }
    if conversion_report is not None:
        checks["conversion_report"] = check_user_ops(
            conversion_report.get("select_user_tf_ops") or [],
            audit["flex_ops"],
            f"select_user_tf_ops of {conversion_report_path or 'the conversion report'}",
        )
    from llm2tflite.model_files import route_from_signatures

    return {
        "model_name": model_name,
        "route": route_from_signatures(audit["signatures"]),
        "variant": variant,
        "model_path": str(model_path),
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **audit,
        "user_op_checks": checks,
    }


def markdown_table(header, rows) -> list[str]:
    """A Markdown pipe table (pandas + tabulate), padded so it also reads well as plain text."""
    import pandas as pd

    cells = [[str(v).replace("|", "\\|") for v in row] for row in rows]
    table = pd.DataFrame(cells, columns=list(header))
    return table.to_markdown(index=False, disable_numparse=True).splitlines()


def builtins_only_failures(report: dict) -> list[str]:
    """Why a LiteRT-route model is not builtins-only (empty if it is, or for other routes).

    The LiteRT route exists to run on any LiteRT runtime: a Flex or custom op left in its file
    would need the Flex delegate or a kernel registration it does not have.
    """
    if report.get("route") != "litert":
        return []
    failures = []
    if report["flex_ops"]:
        failures.append(
            f"{len(report['flex_ops'])} Select TF (Flex) op types ({', '.join(report['flex_ops'])})"
        )
    if report["custom_ops"]:
        failures.append(
            f"{len(report['custom_ops'])} custom op types ({', '.join(report['custom_ops'])})"
        )
    return failures


def _names(ops) -> str:
    return ", ".join(f"`{op}`" for op in ops) if ops else "none"


def render_markdown(report: dict) -> str:
    title = " / ".join(
        x for x in (report.get("model_name"), report.get("route"), report["variant"]) if x
    )
    counts, unique = report["class_counts"], report["class_unique"]
    lines = [
        f"# Op audit: {title}",
        "",
        f"Model `{report['model_path']}`: {report['size_bytes'] / 1e6:.2f} MB, "
        f"sha256 `{report['sha256'][:16]}…`, {report['num_subgraphs']} subgraphs, "
        f"signatures {_names(report['signatures'])}.",
        "",
        *markdown_table(
            ["class", "operators", "distinct ops"],
            [[c, counts[c], unique[c]] for c in CLASSES]
            + [["total", report["num_operators"], sum(unique.values())]],
        ),
        "",
        "## Android",
        "",
        f"Flex delegate (Select TF ops) needed: {len(report['flex_ops'])} TF ops "
        f"(selective build list): {_names(report['flex_ops'])}.",
        "",
        "Flex ops whose kernels are not in core TensorFlow (the stock "
        "`tensorflow-lite-select-tf-ops` lacks them; link their library into the Flex delegate): "
        + (
            ", ".join(
                f"`{op}` ({report['flex_op_libraries'][op]})"
                for op in report["flex_ops_outside_core_tf"]
            )
            or "none"
        )
        + ".",
        "",
        f"Custom ops to register: {_names(report['custom_ops'])}.",
        "",
        "## experimental_select_user_tf_ops",
        "",
    ]
    rows = []
    for check in report["user_op_checks"].values():
        if check is None:
            continue
        rows.append(
            [
                check["source"],
                _names(check["listed"]),
                _names(check["used_as_flex"]),
                _names(check["not_used"]),
                len(check["flex_ops_beyond_list"]),
            ]
        )
    lines += markdown_table(
        ["list", "listed", "used as Flex", "not used", "other Flex ops needed"], rows
    )
    lines += ["", "## Operators", ""]
    lines += markdown_table(
        ["op", "class", "count"], [[o["op"], o["class"], o["count"]] for o in report["ops"]]
    )
    lines += ["", "## Subgraphs", ""]
    lines += markdown_table(
        ["index", "name", "operators"],
        [[s["index"], s["name"], s["num_operators"]] for s in report["subgraphs"]],
    )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=".tflite file")
    parser.add_argument("--variant", required=True)
    parser.add_argument(
        "--model-name", default=None, help="the workflow's model name (default: none recorded)"
    )
    parser.add_argument(
        "--conversion-report",
        default=None,
        help="the conversion report JSON (its select_user_tf_ops is checked)",
    )
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-md", required=True)
    args = parser.parse_args(argv)
    conversion_report = None
    if args.conversion_report:
        with open(args.conversion_report, encoding="utf-8") as f:
            conversion_report = json.load(f)
    report = audit_model(
        args.model, args.variant, args.model_name, conversion_report, args.conversion_report
    )
    failures = builtins_only_failures(report)
    if failures:
        print(
            f"op audit FAILED: {args.model} is a LiteRT-route model but has "
            + " and ".join(failures)
            + "; it must contain TFLite builtin ops only",
            file=sys.stderr,
        )
        sys.exit(1)
    atomic.write_json(args.out_json, report)
    atomic.write_text(args.out_md, render_markdown(report))
    counts = report["class_counts"]
    print(
        f"audited {args.model}: {report['num_operators']} operators in "
        f"{report['num_subgraphs']} subgraphs ({counts['builtin']} builtin, "
        f"{counts['select_tf']} Flex, {counts['custom']} custom); "
        f"{len(report['flex_ops'])} TF ops for the Flex delegate"
    )


if __name__ == "__main__":
    main()
