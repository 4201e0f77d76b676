"""llm2tflite.evaluate.audit: op classification on a model with a known answer, the user-op
checks."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import re

import pytest

from llm2tflite.evaluate import audit

from conftest import run_module


@pytest.fixture(scope="module")
def crafted_tflite(tmp_path_factory):
    """Two signatures; every op known: builtins, Flex (Select TF) ops and one custom op.

    ``main``:   StringLength (Flex), CAST, SUM, MyFusedScale (custom: a ``tfl_fusable_op``
                function), ADD, UpperBound (Flex, user-selected as in the codelab).
    ``second``: StringLength (Flex), ADD.
    """
    import tensorflow as tf

    @tf.function(
        experimental_implements=(
            'name: "MyFusedScale" attr {key: "tfl_fusable_op" value { b: true } }'
        )
    )
    def fused_scale(x):
        return x * 3.0

    class Crafted(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([2], tf.string, name="text"),
                tf.TensorSpec([1, 3], tf.float32, name="x"),
            ]
        )
        def main(self, text, x):
            lengths = tf.cast(tf.strings.length(text), tf.float32)
            bounds = tf.raw_ops.UpperBound(
                sorted_inputs=tf.constant([[1.0, 2.0, 3.0]]), values=x, out_type=tf.int32
            )
            return {"y": fused_scale(x) + tf.reduce_sum(lengths), "bounds": bounds}

        @tf.function(input_signature=[tf.TensorSpec([2], tf.string, name="text")])
        def second(self, text):
            return {"n": tf.strings.length(text) + 1}

    module = Crafted()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.main.get_concrete_function(), module.second.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    converter.allow_custom_ops = True
    converter.target_spec.experimental_select_user_tf_ops = ["UpperBound"]
    path = tmp_path_factory.mktemp("crafted") / "crafted.tflite"
    path.write_bytes(converter.convert())
    return path


def _counts(report) -> dict:
    return {(o["class"], o["op"]): o["count"] for o in report["ops"]}


def test_classification_known_answer(crafted_tflite):
    report = audit.audit_flatbuffer(crafted_tflite.read_bytes())
    assert _counts(report) == {
        ("builtin", "ADD"): 2,
        ("builtin", "CAST"): 1,
        ("builtin", "SUM"): 1,
        ("select_tf", "StringLength"): 2,
        ("select_tf", "UpperBound"): 1,
        ("custom", "MyFusedScale"): 1,
    }
    assert report["class_counts"] == {"builtin": 4, "select_tf": 3, "custom": 1}
    assert report["class_unique"] == {"builtin": 3, "select_tf": 2, "custom": 1}
    assert report["num_operators"] == 8
    assert report["num_subgraphs"] == 2
    assert sorted(report["signatures"]) == ["main", "second"]
    assert report["flex_ops"] == ["StringLength", "UpperBound"]
    assert report["custom_ops"] == ["MyFusedScale"]
    flex = {o["op"]: o["custom_code"] for o in report["ops"] if o["class"] == "select_tf"}
    assert flex == {"StringLength": "FlexStringLength", "UpperBound": "FlexUpperBound"}


def test_classify_operator_code():
    from tensorflow.lite.python import schema_py_generated as schema

    names = audit._builtin_names()
    custom = schema.BuiltinOperator.CUSTOM
    assert audit.classify_operator_code(custom, "FlexUnsortedSegmentJoin", names) == (
        "select_tf",
        "UnsortedSegmentJoin",
    )
    tf_text_kernel = "TFText>WhitespaceTokenizeWithOffsetsV2"
    assert audit.classify_operator_code(custom, tf_text_kernel, names) == ("custom", tf_text_kernel)
    assert audit.classify_operator_code(schema.BuiltinOperator.FULLY_CONNECTED, None, names) == (
        "builtin",
        "FULLY_CONNECTED",
    )
    # Codes above 127 exist only in builtin_code (deprecated_builtin_code is an int8).
    assert audit.classify_operator_code(schema.BuiltinOperator.GELU, None, names) == (
        "builtin",
        "GELU",
    )


def test_user_op_checks(crafted_tflite, tmp_path):
    report_path = tmp_path / "V.conversion.json"
    report_path.write_text(json.dumps({"select_user_tf_ops": ["UpperBound", "Bucketize"]}))
    audit.main(
        [
            "--model",
            str(crafted_tflite),
            "--variant",
            "fp32",
            "--model-name",
            "crafted",
            "--conversion-report",
            str(report_path),
            "--out-json",
            str(tmp_path / "ops.json"),
            "--out-md",
            str(tmp_path / "ops.md"),
        ]
    )
    report = json.loads((tmp_path / "ops.json").read_text())
    codelab = report["user_op_checks"]["codelab"]
    assert codelab["listed"] == ["UnsortedSegmentJoin", "UpperBound"]
    assert codelab["used_as_flex"] == ["UpperBound"]
    assert codelab["not_used"] == ["UnsortedSegmentJoin"]
    assert codelab["flex_ops_beyond_list"] == ["StringLength"]
    derived = report["user_op_checks"]["conversion_report"]
    assert derived["used_as_flex"] == ["UpperBound"]
    assert derived["not_used"] == ["Bucketize"]
    assert derived["flex_ops_beyond_list"] == ["StringLength"]
    assert report["model_name"] == "crafted" and report["variant"] == "fp32"
    assert report["size_bytes"] == crafted_tflite.stat().st_size
    assert report["flex_op_libraries"] == {"StringLength": "tensorflow", "UpperBound": "tensorflow"}
    assert report["flex_ops_outside_core_tf"] == []

    markdown = (tmp_path / "ops.md").read_text()
    assert markdown.startswith("# Op audit: crafted / fp32")
    assert "| select_tf | 3 " in markdown.replace("  ", " ").replace("  ", " ")
    for name in ("StringLength", "UpperBound", "MyFusedScale", "UnsortedSegmentJoin"):
        assert name in markdown


def test_without_conversion_report(crafted_tflite):
    report = audit.audit_model(crafted_tflite, "int8")
    assert report["user_op_checks"]["conversion_report"] is None
    assert "conversion_report" in report["user_op_checks"]
    assert "select_user_tf_ops of" not in audit.render_markdown(report)


def test_check_user_ops_is_set_arithmetic():
    check = audit.check_user_ops(["B", "A", "B"], ["C", "A"], "x")
    assert check == {
        "source": "x",
        "listed": ["B", "A"],
        "used_as_flex": ["A"],
        "not_used": ["B"],
        "flex_ops_beyond_list": ["C"],
    }


def test_real_model_matches_tflite_analyzer(small_export):
    """Counts per op equal those of TFLite's own model analyzer (an independent parser)."""
    import tensorflow as tf

    report = audit.audit_model(small_export["tflite"], "fp32")
    assert report["route"] == "tflite"
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        tf.lite.experimental.Analyzer.analyze(model_path=str(small_export["tflite"]))
    analyzer = collections.Counter(re.findall(r"^\s+Op#\d+ ([^(\s]+)\(", listing.getvalue(), re.M))
    ours = collections.Counter()
    for o in report["ops"]:
        ours[o["custom_code"] if o["class"] != "builtin" else o["op"]] += o["count"]
    assert ours == analyzer
    assert report["num_subgraphs"] == len(re.findall(r"^Subgraph#\d+ ", listing.getvalue(), re.M))
    assert sorted(report["signatures"]) == sorted(small_export["info"]["signatures"])
    # The byte-level BPE tokenizer runs in Flex ops; its regex split is a TF Text op.
    assert report["class_counts"]["select_tf"] > 0
    assert "RegexSplitWithOffsets" in report["flex_ops"]
    assert report["flex_op_libraries"]["RegexSplitWithOffsets"] == "tensorflow_text"
    assert "RegexSplitWithOffsets" in report["flex_ops_outside_core_tf"]
    assert "WHILE" in {o["op"] for o in report["ops"] if o["class"] == "builtin"}


def _prefill_decode_tflite(path, with_flex: bool):
    """A file with the LiteRT route's signatures (prefill_2, decode); a Flex op if asked."""
    import tensorflow as tf

    class PrefillDecode(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32, name="tokens")])
        def prefill(self, tokens):
            return {"logits": tokens * 2.0}

        @tf.function(
            input_signature=[
                tf.TensorSpec([1, 1], tf.float32, name="tokens"),
                tf.TensorSpec([1], tf.string, name="text"),
            ]
        )
        def decode(self, tokens, text):
            extra = tf.cast(tf.strings.length(text), tf.float32) if with_flex else 0.0
            return {"logits": tokens + extra}

    module = PrefillDecode()
    saved = path.with_suffix(".saved")
    tf.saved_model.save(
        module,
        str(saved),
        signatures={
            "prefill_2": module.prefill.get_concrete_function(),
            "decode": module.decode.get_concrete_function(),
        },
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved), signature_keys=["prefill_2", "decode"]
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    path.write_bytes(converter.convert())
    return path


def test_litert_route_must_be_builtins_only(tmp_path):
    def run(model):
        return run_module(
            "llm2tflite.evaluate.audit",
            model=model,
            variant="int8",
            out_json=tmp_path / f"{model.stem}.json",
            out_md=tmp_path / f"{model.stem}.md",
        )

    clean = _prefill_decode_tflite(tmp_path / "clean.tflite", with_flex=False)
    completed = run(clean)
    assert completed.returncode == 0, completed.stderr
    report = json.loads((tmp_path / "clean.json").read_text())
    assert report["route"] == "litert" and report["flex_ops"] == [] == report["custom_ops"]
    flex = _prefill_decode_tflite(tmp_path / "flex.tflite", with_flex=True)
    completed = run(flex)
    assert completed.returncode == 1 and not (tmp_path / "flex.json").exists()
    (line,) = [x for x in completed.stderr.splitlines() if "op audit FAILED" in x]
    assert line == (
        f"op audit FAILED: {flex} is a LiteRT-route model but has 1 Select TF (Flex) "
        "op types (StringLength); it must contain TFLite builtin ops only"
    )
    # The codelab route needs its Flex ops: no such check.
    assert (
        audit.builtins_only_failures(
            {"route": "tflite", "flex_ops": ["StringLength"], "custom_ops": []}
        )
        == []
    )
