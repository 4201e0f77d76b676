"""llm2tflite.report.android: the model copy and the hand-off JSON, on the small model."""

from __future__ import annotations

import hashlib
import json

import pytest

from llm2tflite.core import atomic
from llm2tflite.evaluate import audit
from llm2tflite.report import android

from conftest import SMALL_MAX_LENGTH, cli_options

PROMPT = "Estoy disfrutando de"


def _hand_off(small_export, ops_json, out_model, out_json):
    """The android rule's command on the small model's fp32 file."""
    android.main(
        cli_options(
            model=small_export["tflite"],
            ops=ops_json,
            export_info=small_export["dir"] / "traced" / "llm2tflite_export.json",
            model_name="small",
            variant="fp32",
            out_model=out_model,
            out_json=out_json,
        )
    )


@pytest.fixture(scope="module")
def handoff(small_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("android")
    ops_json = out / "ops" / "fp32.json"
    atomic.write_json(ops_json, audit.audit_model(small_export["tflite"], "fp32", "small"))
    assets = out / "android" / "app" / "src" / "main" / "assets"
    _hand_off(small_export, ops_json, assets / "autocomplete.tflite", assets / "autocomplete.json")
    return {
        "ops_json": ops_json,
        "model": assets / "autocomplete.tflite",
        "json": json.loads((assets / "autocomplete.json").read_text()),
    }


def test_model_copied_with_its_sha256(handoff, small_export):
    data = handoff["model"].read_bytes()
    assert data == small_export["tflite"].read_bytes()
    assert handoff["json"]["model"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert handoff["json"]["model"]["size_bytes"] == len(data)
    assert handoff["json"]["model"]["path_in_project"] == "app/src/main/assets/autocomplete.tflite"
    assert not [p for p in handoff["model"].parent.iterdir() if ".tmp-" in p.name]


def test_signatures_read_from_the_tflite(handoff, small_export):
    signatures = handoff["json"]["signatures"]
    assert set(signatures) == set(small_export["info"]["signatures"])
    (prompt,) = signatures["serving_default"]["inputs"]
    assert (prompt["name"], prompt["dtype"], prompt["shape"]) == ("prompt", "string", [1])
    outputs = {o["name"]: o for o in signatures["serving_default"]["outputs"]}
    assert sorted(outputs) == ["generated_text", "prompt_tokens", "token_ids"]
    generated = outputs["generated_text"]
    assert generated["dtype"] == "string" and generated["declared"] == "string[1]"
    # The generated ids, so an app counts tokens without a tokenizer of its own.
    assert (outputs["token_ids"]["dtype"], outputs["prompt_tokens"]["dtype"]) == ("int32", "int32")
    # The prompt's ids, and whether the first of them is a real start token (1) or a
    # placeholder for a model without one (0: Qwen).
    tokenize = {o["name"]: o["dtype"] for o in signatures["tokenize"]["outputs"]}
    assert tokenize == {"token_ids": "int32", "start_tokens": "int32"}


def test_generation_and_ops_fields(handoff, small_export):
    from llm2tflite.codelab.runtime import TFLiteModel

    info, ops = handoff["json"], json.loads(handoff["ops_json"].read_text())
    assert (info["model_name"], info["variant"]) == ("small", "fp32")
    assert info["max_length"] == small_export["info"]["max_length"] == SMALL_MAX_LENGTH
    assert info["prompt_token_limit"] == small_export["info"]["prompt_token_limit"]
    assert info["try_prompt"] == PROMPT
    assert info["expected_output"] == TFLiteModel(small_export["tflite"]).generate(PROMPT).text
    assert info["flex_delegate"]["needed"] is True
    assert info["flex_delegate"]["tf_ops"] == ops["flex_ops"] != []
    assert "RegexSplitWithOffsets" in info["flex_delegate"]["tf_ops_outside_core_tf"]
    assert info["custom_ops"] == ops["custom_ops"]
    notes = " ".join(info["android"]["notes"])
    assert "runSignature" in notes and "autocomplete.tflite" in notes


def test_refuses_an_audit_of_another_file(handoff, small_export, tmp_path):
    ops = json.loads(handoff["ops_json"].read_text())
    ops["sha256"] = "0" * 64
    (tmp_path / "ops.json").write_text(json.dumps(ops))
    with pytest.raises(ValueError, match="another file"):
        _hand_off(small_export, tmp_path / "ops.json", tmp_path / "a.tflite", tmp_path / "a.json")
    assert not (tmp_path / "a.tflite").exists() and not (tmp_path / "a.json").exists()
