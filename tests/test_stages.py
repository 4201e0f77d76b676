"""Each stage module on a tiny model built in the test: trace, convert, runtime, smoke, sources."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

PROMPTS = ["Estoy disfrutando de", "I am enjoying the", "¿Dónde está la estación?"]


@pytest.fixture(scope="module")
def tflite_model(small_export):
    from llm2tflite.runtime import TFLiteModel

    return TFLiteModel(small_export["tflite"])


@pytest.fixture(scope="module")
def keras_outputs(small_export):
    causal_lm = small_export["causal_lm"]
    return {p: causal_lm.generate(p, max_length=small_export["info"]["max_length"]) for p in PROMPTS}


def test_saved_model_signatures(small_export):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(small_export["dir"] / "traced"))
    generate = loaded.signatures["serving_default"]
    (prompt_spec,) = generate.structured_input_signature[1].values()
    assert prompt_spec.shape.as_list() == [1] and prompt_spec.dtype == tf.string
    output = generate(prompt=tf.constant(["Estoy disfrutando de"]))["generated_text"]
    assert output.shape == (1,)


def test_traced_generation_equals_keras(small_export, keras_outputs):
    import tensorflow as tf

    generate = tf.saved_model.load(str(small_export["dir"] / "traced")).signatures[
        "serving_default"]
    for prompt, expected in keras_outputs.items():
        raw = generate(prompt=tf.constant([prompt]))["generated_text"].numpy()[0]
        # A random model can stop inside a multi-byte character; Keras decodes with replacement.
        got = raw.decode("utf-8", errors="replace")
        assert got == expected


def test_tflite_fp32_equals_keras(tflite_model, keras_outputs):
    for prompt, expected in keras_outputs.items():
        assert tflite_model.generate(prompt) == expected
        assert expected.startswith(prompt) and len(expected) > len(prompt)


def test_max_length_bounds_the_output(tflite_model, small_export):
    max_length = small_export["info"]["max_length"]
    output = tflite_model.generate("Estoy disfrutando de")
    # max_length counts the start token, which the decoded text does not contain.
    assert len(tflite_model.token_ids(output)) <= max_length - 1
    assert "<|endoftext|>" not in output


def test_long_prompt_is_truncated_not_crashed(tflite_model, small_export):
    limit = small_export["info"]["prompt_token_limit"]
    prompt = "Estoy disfrutando de la música en la playa con mis amigos " * 10
    output = tflite_model.generate(prompt)
    kept = tflite_model.token_ids(prompt)[: limit - 1]
    output_ids = tflite_model.token_ids(output)
    assert output_ids[: len(kept)] == kept
    assert len(output_ids) > len(kept)


def test_conversion_report(small_export):
    report = small_export["conversion"]
    assert report["variant"] == "fp32"
    assert report["size_bytes"] == small_export["tflite"].stat().st_size
    assert isinstance(report["select_user_tf_ops"], list)
    assert report["peak_rss_mb"] > 100


def test_int8_variant_is_smaller_and_runs(small_export, tmp_path):
    from llm2tflite.runtime import TFLiteModel

    subprocess.run(
        [sys.executable, "-m", "llm2tflite.convert", "--saved-model",
         str(small_export["dir"] / "traced"), "--variant", "int8",
         "--out", str(tmp_path / "int8.tflite"), "--report", str(tmp_path / "int8.json")],
        check=True,
    )
    assert (tmp_path / "int8.tflite").stat().st_size < small_export["tflite"].stat().st_size
    output = TFLiteModel(tmp_path / "int8.tflite").generate("Estoy disfrutando de")
    assert output.startswith("Estoy disfrutando de")
    assert json.loads((tmp_path / "int8.json").read_text())["variant"] == "int8"


def test_unknown_variant_is_rejected(small_export):
    from llm2tflite.convert import convert_saved_model

    with pytest.raises(ValueError, match="unknown variant"):
        convert_saved_model(str(small_export["dir"] / "traced"), "int3", ["serving_default"])


def test_user_tf_ops_are_derived_from_converter_errors():
    from tensorflow.compiler.mlir.lite.metrics import converter_error_data_pb2

    from llm2tflite.convert import _ops_needing_user_selection

    data = converter_error_data_pb2.ConverterErrorData
    errors = []
    for code, name in [(data.ERROR_NEEDS_CUSTOM_OPS, "tf.UpperBound"),
                       (data.ERROR_NEEDS_FLEX_OPS, "tf.MatMul"),
                       (data.ERROR_NEEDS_CUSTOM_OPS, "tf.UnsortedSegmentJoin"),
                       (data.ERROR_NEEDS_CUSTOM_OPS, "tf.UpperBound")]:
        error = data(error_code=code)
        error.operator.name = name
        errors.append(error)

    class FakeConverterError(Exception):
        pass

    fake = FakeConverterError()
    fake.errors = errors
    assert _ops_needing_user_selection(fake) == ["UnsortedSegmentJoin", "UpperBound"]


def test_smoke_passes_and_records(small_export, keras_outputs, tmp_path):
    from llm2tflite.smoke import smoke_test

    reference = {"generations": [{"prompt": p, "output": o} for p, o in keras_outputs.items()]}
    report = smoke_test(str(small_export["tflite"]), "fp32", list(keras_outputs), reference)
    assert report["passed"], report["failures"]
    for record in report["results"]:
        assert record["equals_keras"] is True
        assert record["new_tokens"] >= 1 and record["latency_s"] > 0


def test_smoke_fails_on_keras_mismatch(small_export, tmp_path):
    reference = tmp_path / "keras.json"
    reference.write_text(json.dumps({"generations": [
        {"prompt": "Estoy disfrutando de", "output": "Estoy disfrutando de otra cosa"}]}))
    out = tmp_path / "smoke.json"
    completed = subprocess.run(
        [sys.executable, "-m", "llm2tflite.smoke", "--model", str(small_export["tflite"]),
         "--variant", "fp32", "--keras-reference", str(reference),
         "--prompts-json", '["Estoy disfrutando de"]', "--out", str(out)],
        capture_output=True, text=True,
    )
    assert completed.returncode == 1
    assert "differs from Keras" in completed.stderr
    assert not out.exists()


def test_smoke_quantized_variant_need_not_equal_keras(small_export):
    from llm2tflite.smoke import smoke_test

    reference = {"generations": [{"prompt": "Estoy disfrutando de", "output": "something else"}]}
    report = smoke_test(str(small_export["tflite"]), "int8", ["Estoy disfrutando de"], reference)
    assert report["passed"] and report["results"][0]["equals_keras"] is False


def test_remote_preset_offline_fails_with_clear_message(monkeypatch):
    from llm2tflite.sources import PresetUnavailableError, load_causal_lm

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(PresetUnavailableError) as raised:
        load_causal_lm("gpt2_base_en")
    message = str(raised.value)
    assert "gpt2_base_en" in message and "local directory" in message and "tiny" in message


def test_missing_preset_directory_cli_exits_cleanly(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "llm2tflite.trace", "--preset", str(tmp_path / "nope"),
         "--max-length", "10", "--sequence-length", "8", "--out", str(tmp_path / "traced")],
        capture_output=True, text=True,
    )
    assert completed.returncode == 2
    assert "does not exist" in completed.stderr and "Traceback" not in completed.stderr


def test_prompt_batch_is_rank_one():
    from llm2tflite.runtime import _as_prompt_batch

    batch = _as_prompt_batch("hola")
    assert batch.shape == (1,) and batch.dtype == np.object_ and batch[0] == b"hola"
