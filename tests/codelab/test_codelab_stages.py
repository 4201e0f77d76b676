"""Each stage module on a tiny model built in the test: trace, convert, runtime, smoke, sources."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_module

PROMPTS = ["Estoy disfrutando de", "I am enjoying the", "¿Dónde está la estación?"]


@pytest.fixture(scope="module")
def tflite_model(small_export):
    from llm2tflite.codelab.runtime import TFLiteModel

    return TFLiteModel(small_export["tflite"])


@pytest.fixture(scope="module")
def keras_generations(small_export):
    from llm2tflite.inputs.reference import keras_generate

    causal_lm = small_export["causal_lm"]
    return {p: keras_generate(causal_lm, p, small_export["info"]["max_length"]) for p in PROMPTS}


@pytest.fixture(scope="module")
def keras_outputs(keras_generations):
    return {prompt: generation.text for prompt, generation in keras_generations.items()}


def test_saved_model_signatures(small_export):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(small_export["dir"] / "traced"))
    generate = loaded.signatures["serving_default"]
    (prompt_spec,) = generate.structured_input_signature[1].values()
    assert prompt_spec.shape.as_list() == [1] and prompt_spec.dtype == tf.string
    outputs = generate(prompt=tf.constant(["Estoy disfrutando de"]))
    assert outputs["generated_text"].shape == (1,)
    assert outputs["token_ids"].dtype == tf.int32 and outputs["token_ids"].shape[0] == 1
    assert outputs["prompt_tokens"].dtype == tf.int32 and outputs["prompt_tokens"].shape == (1,)


def test_traced_generation_equals_keras(small_export, keras_outputs):
    import tensorflow as tf

    generate = tf.saved_model.load(str(small_export["dir"] / "traced")).signatures[
        "serving_default"
    ]
    for prompt, expected in keras_outputs.items():
        raw = generate(prompt=tf.constant([prompt]))["generated_text"].numpy()[0]
        # A random model can stop inside a multi-byte character; Keras decodes with replacement.
        got = raw.decode("utf-8", errors="replace")
        assert got == expected


def test_tflite_fp32_equals_keras(tflite_model, keras_generations):
    for prompt, expected in keras_generations.items():
        generation = tflite_model.generate(prompt)
        # Text, ids, prompt length and the count of new tokens: all equal to Keras's own.
        assert generation == expected
        assert generation.new_tokens == expected.new_tokens >= 1
        assert expected.text.startswith(prompt) and len(expected.text) > len(prompt)


def test_generated_ids_are_the_text(tflite_model, keras_generations):
    """The ids serving_default returns detokenize to its text (start token excluded)."""
    for prompt in keras_generations:
        generation = tflite_model.generate(prompt)
        assert tflite_model.text(generation.token_ids[1:]) == generation.text
        assert generation.token_ids[: generation.prompt_tokens] == tflite_model.token_ids(
            prompt, with_start=True
        )


def test_max_length_argument_cuts_the_generated_ids(tflite_model):
    full = tflite_model.generate("Estoy disfrutando de")
    cut = tflite_model.generate("Estoy disfrutando de", max_length=full.prompt_tokens + 3)
    assert cut.token_ids == full.token_ids[: full.prompt_tokens + 3] and cut.new_tokens == 3
    assert full.text.startswith(cut.text) and cut.text == tflite_model.text(cut.token_ids[1:])
    pieces = []
    tflite_model.generate("Estoy disfrutando de", on_text=pieces.append)
    assert "".join(pieces) == full.text
    with pytest.raises(ValueError, match="fixed when it is traced"):
        tflite_model.generate("Estoy disfrutando de", sampler="top_k")


def test_max_length_bounds_the_output(tflite_model, small_export):
    max_length = small_export["info"]["max_length"]
    generation = tflite_model.generate("Estoy disfrutando de")
    # max_length counts the start token, which the decoded text does not contain.
    assert len(generation.token_ids) <= max_length
    assert "<|endoftext|>" not in generation.text


def test_long_prompt_is_truncated_not_crashed(tflite_model, small_export):
    limit = small_export["info"]["prompt_token_limit"]
    prompt = "Estoy disfrutando de la música en la playa con mis amigos " * 10
    generation = tflite_model.generate(prompt)
    kept = tflite_model.token_ids(prompt, with_start=True)[:limit]
    assert generation.prompt_tokens == limit
    assert generation.token_ids[:limit] == kept
    assert generation.new_tokens >= 1


def test_conversion_report(small_export):
    report = small_export["conversion"]
    assert report["variant"] == "fp32"
    assert report["size_bytes"] == small_export["tflite"].stat().st_size
    assert isinstance(report["select_user_tf_ops"], list)
    assert report["peak_rss_mb"] > 100


def test_int8_variant_is_smaller_and_runs(small_export, tmp_path):
    from llm2tflite.codelab.runtime import TFLiteModel

    subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.codelab.convert",
            "--saved-model",
            str(small_export["dir"] / "traced"),
            "--variant",
            "int8",
            "--out",
            str(tmp_path / "int8.tflite"),
            "--report",
            str(tmp_path / "int8.json"),
        ],
        check=True,
    )
    assert (tmp_path / "int8.tflite").stat().st_size < small_export["tflite"].stat().st_size
    generation = TFLiteModel(tmp_path / "int8.tflite").generate("Estoy disfrutando de")
    assert generation.text.startswith("Estoy disfrutando de") and generation.new_tokens >= 1
    assert json.loads((tmp_path / "int8.json").read_text())["variant"] == "int8"


def test_unknown_variant_is_rejected(small_export):
    from llm2tflite.codelab.convert import convert_saved_model

    with pytest.raises(ValueError, match="unknown variant"):
        convert_saved_model(str(small_export["dir"] / "traced"), "int3", ["serving_default"])


def test_user_tf_ops_are_derived_from_converter_errors():
    from tensorflow.compiler.mlir.lite.metrics import converter_error_data_pb2

    from llm2tflite.codelab.convert import _ops_needing_user_selection

    data = converter_error_data_pb2.ConverterErrorData
    errors = []
    for code, name in [
        (data.ERROR_NEEDS_CUSTOM_OPS, "tf.UpperBound"),
        (data.ERROR_NEEDS_FLEX_OPS, "tf.MatMul"),
        (data.ERROR_NEEDS_CUSTOM_OPS, "tf.UnsortedSegmentJoin"),
        (data.ERROR_NEEDS_CUSTOM_OPS, "tf.UpperBound"),
    ]:
        error = data(error_code=code)
        error.operator.name = name
        errors.append(error)

    class FakeConverterError(Exception):
        pass

    fake = FakeConverterError()
    fake.errors = errors
    assert _ops_needing_user_selection(fake) == ["UnsortedSegmentJoin", "UpperBound"]


def test_smoke_passes_and_records(small_export, keras_generations, tmp_path):
    from llm2tflite.evaluate.smoke import smoke_test

    reference = {
        "generations": [
            {"prompt": p, "output": g.text, "token_ids": g.token_ids, "new_tokens": g.new_tokens}
            for p, g in keras_generations.items()
        ]
    }
    report = smoke_test(
        str(small_export["tflite"]),
        "fp32",
        list(keras_generations),
        reference,
        require_keras_match=True,
    )
    assert report["passed"], report["failures"]
    assert report["route"] == "tflite"
    for record in report["results"]:
        assert record["equals_keras"] is True
        assert record["new_tokens"] == keras_generations[record["prompt"]].new_tokens >= 1
        assert record["latency_s"] > 0
    # Same text, different ids (e.g. another tokenization of it): not equal to Keras.
    reference["generations"][0]["token_ids"] = reference["generations"][0]["token_ids"][:-1]
    report = smoke_test(
        str(small_export["tflite"]),
        "fp32",
        list(keras_generations)[:1],
        reference,
        require_keras_match=True,
    )
    assert not report["passed"] and "differs from Keras" in report["failures"][0]


def test_smoke_fails_on_keras_mismatch(small_export, tmp_path):
    reference = tmp_path / "keras.json"
    reference.write_text(
        json.dumps(
            {
                "generations": [
                    {"prompt": "Estoy disfrutando de", "output": "Estoy disfrutando de otra cosa"}
                ]
            }
        )
    )
    out = tmp_path / "smoke.json"
    completed = run_module(
        "llm2tflite.evaluate.smoke",
        "--model",
        str(small_export["tflite"]),
        "--variant",
        "fp32",
        "--keras-reference",
        str(reference),
        "--prompts-json",
        '["Estoy disfrutando de"]',
        "--require-keras-match",
        "--out",
        str(out),
    )
    assert completed.returncode == 1
    (line,) = [line for line in completed.stderr.splitlines() if "FAILED" in line]
    assert line.startswith("smoke test FAILED for ") and "differs from Keras" in line
    assert not out.exists()


def test_smoke_quantized_variant_need_not_equal_keras(small_export):
    from llm2tflite.evaluate.smoke import smoke_test

    reference = {"generations": [{"prompt": "Estoy disfrutando de", "output": "something else"}]}
    report = smoke_test(str(small_export["tflite"]), "int8", ["Estoy disfrutando de"], reference)
    assert report["passed"] and report["results"][0]["equals_keras"] is False


@pytest.fixture(scope="module")
def prefill_decode_file(tmp_path_factory):
    """A builtins-only file with a LiteRT route's signature names (prefill_4, decode)."""
    import tensorflow as tf

    class PrefillDecode(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.int32, name="tokens")])
        def prefill(self, tokens):
            return {"logits": tf.cast(tokens, tf.float32) * 2.0}

        @tf.function(input_signature=[tf.TensorSpec([1, 1], tf.int32, name="tokens")])
        def decode(self, tokens):
            return {"logits": tf.cast(tokens, tf.float32) + 1.0}

    module = PrefillDecode()
    directory = tmp_path_factory.mktemp("prefill_decode")
    tf.saved_model.save(
        module,
        str(directory / "saved"),
        signatures={
            "prefill_4": module.prefill.get_concrete_function(),
            "decode": module.decode.get_concrete_function(),
        },
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(directory / "saved"), signature_keys=["prefill_4", "decode"]
    )
    path = directory / "model.tflite"
    path.write_bytes(converter.convert())
    return path


def test_open_model_tells_the_routes_apart(
    small_export, tflite_model, prefill_decode_file, monkeypatch
):
    from llm2tflite import model_files as runtime

    assert runtime.route_of(small_export["tflite"]) == "tflite"
    assert runtime.route_of(small_export["dir"] / "traced") == "tensorflow"
    assert runtime.route_of(prefill_decode_file) == "litert"
    assert sorted(runtime.tflite_signatures(prefill_decode_file)) == ["decode", "prefill_4"]
    codelab = runtime.open_model(small_export["tflite"], threads=1)
    assert codelab.route == "tflite" and codelab.load_seconds > 0
    baseline = runtime.open_model(small_export["dir"] / "traced")
    assert baseline.route == "tensorflow"
    assert baseline.generate("Estoy disfrutando de") == codelab.generate("Estoy disfrutando de")

    # The LiteRT route's runtime is imported only for a LiteRT file; without it: one clear line.
    monkeypatch.setitem(sys.modules, "llm2tflite.litert.runtime", None)
    with pytest.raises(
        runtime.ModelOpenError, match="LiteRT prefill/decode model.*no LiteRT runtime"
    ):
        runtime.open_model(prefill_decode_file)

    class FakeLiteRTModel:
        route = "litert"

        def __init__(self, path, threads=None):
            self.path, self.threads = path, threads

    fake_module = type(sys)("llm2tflite.litert.runtime")
    fake_module.LiteRTModel = FakeLiteRTModel
    monkeypatch.setitem(sys.modules, "llm2tflite.litert.runtime", fake_module)
    opened = runtime.open_model(prefill_decode_file, threads=2)
    assert isinstance(opened, FakeLiteRTModel)
    assert (opened.path, opened.threads) == (str(prefill_decode_file), 2)


def test_open_model_refuses_what_it_cannot_run(tmp_path, prefill_decode_file):
    import tensorflow as tf

    from llm2tflite import model_files as runtime

    with pytest.raises(runtime.ModelOpenError, match="does not exist"):
        runtime.open_model(tmp_path / "missing.tflite")
    (tmp_path / "text.tflite").write_text("hello")
    with pytest.raises(runtime.ModelOpenError, match="not a TFLite flatbuffer"):
        runtime.open_model(tmp_path / "text.tflite")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(runtime.ModelOpenError, match="without saved_model.pb"):
        runtime.open_model(tmp_path / "empty_dir")

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
    def double(x):
        return x * 2.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()])
    (tmp_path / "other.tflite").write_bytes(converter.convert())
    with pytest.raises(runtime.ModelOpenError, match="not a model of this workflow"):
        runtime.open_model(tmp_path / "other.tflite")


def test_remote_preset_offline_fails_with_clear_message(monkeypatch):
    from llm2tflite.inputs.sources import PresetUnavailableError, load_causal_lm

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(PresetUnavailableError) as raised:
        load_causal_lm("gpt2_base_en")
    message = str(raised.value)
    assert "gpt2_base_en" in message and "local directory" in message and "tiny" in message


def test_missing_preset_directory_cli_exits_cleanly(tmp_path):
    completed = run_module(
        "llm2tflite.codelab.trace",
        "--preset",
        str(tmp_path / "nope"),
        "--max-length",
        "10",
        "--sequence-length",
        "8",
        "--out",
        str(tmp_path / "traced"),
    )
    assert completed.returncode == 2
    assert "does not exist" in completed.stderr and "Traceback" not in completed.stderr


def test_prompt_batch_is_rank_one():
    from llm2tflite.codelab.runtime import _as_prompt_batch

    batch = _as_prompt_batch("hola")
    assert batch.shape == (1,) and batch.dtype == np.object_ and batch[0] == b"hola"
