"""LiteRT files above 2 GB: weights stored after the flatbuffer (``litert.convert.write_model``).

flatbuffers' builder stops at 2 GiB, so before this an fp32 file of a model above ~500M
parameters (Qwen3-0.6B) could not be written. The checks are independent of our writer: LiteRT's
interpreter and CompiledModel, TensorFlow's interpreter, ai-edge-quantizer and
``flatbuffer_utils``' reader all read the file, and give what the same weights inline give.
"""

from __future__ import annotations

import numpy as np
import pytest

ROWS, WIDTH, CLASSES = 16, 8, 5
METADATA = {"llm2tflite.note": b"stays inside the flatbuffer"}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A one-signature model (an embedding lookup and a projection), converted and read back."""
    import tensorflow as tf

    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import embedded

    rng = np.random.default_rng(0)
    table = rng.standard_normal((ROWS, WIDTH)).astype(np.float32)
    projection = rng.standard_normal((WIDTH, CLASSES)).astype(np.float32)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(table)
            self.projection = tf.Variable(projection)

        @tf.function(input_signature=[tf.TensorSpec([3], tf.int32, name="tokens")])
        def lookup(self, tokens):
            rows = tf.gather(tf.identity(self.table), tokens)
            return {"rows": rows * 2.0, "scores": tf.matmul(rows, tf.identity(self.projection))}

    out = tmp_path_factory.mktemp("large_files")
    module = Module()
    tf.saved_model.save(
        module, str(out / "sm"), signatures={"lookup": module.lookup.get_concrete_function()}
    )
    model = litert_convert.read_model(litert_convert.convert_builtins_only(out / "sm", ["lookup"]))
    litert_convert.rewrite_embedding_lookups(model)
    embedded.embed(model, METADATA)
    return {"dir": out, "model": model, "table": table, "projection": projection}


def _interpreter_outputs(path, tokens) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_signature_runner("lookup")(tokens=tokens)


def _compiled_model_outputs(path, tokens) -> dict[str, np.ndarray]:
    from ai_edge_litert.compiled_model import CompiledModel

    compiled = CompiledModel.from_file(str(path))
    inputs = {"tokens": compiled.create_input_buffer_by_name("lookup", "tokens")}
    inputs["tokens"].write(tokens)
    outputs = {
        name: compiled.create_output_buffer_by_name("lookup", name) for name in ("rows", "scores")
    }
    compiled.run_by_name("lookup", inputs, outputs)
    return {
        "rows": outputs["rows"].read(3 * WIDTH, np.float32).reshape(3, WIDTH),
        "scores": outputs["scores"].read(3 * CLASSES, np.float32).reshape(3, CLASSES),
    }


def _outside_buffers(data) -> dict[int, tuple[int, int]]:
    """Buffer index -> (offset, size) of the buffers stored after the flatbuffer, read lazily."""
    from llm2tflite.core import flatbuffer

    model = flatbuffer.root_model(data)
    found = {}
    for index in range(model.BuffersLength()):
        buffer = model.Buffers(index)
        if buffer.Offset() > 1:
            assert buffer.DataLength() == 0
            found[index] = (buffer.Offset(), buffer.Size())
    return found


def test_weights_after_the_flatbuffer_read_as_inline_weights(small_model, tmp_path):
    import tensorflow as tf
    from ai_edge_litert.tools import flatbuffer_utils

    from llm2tflite.core import flatbuffer
    from llm2tflite.litert import convert as litert_convert

    model = small_model["model"]
    inline = bytes(litert_convert.write_model(model))
    outside = bytes(litert_convert.write_model(model, buffers_outside=True))
    assert bytes(litert_convert.write_model(model)) == inline  # the ModelT is left as it was
    assert _outside_buffers(inline) == {}
    moved = _outside_buffers(outside)
    weights = {i: b.data.tobytes() for i, b in enumerate(model.buffers) if b.data is not None}
    metadata_buffers = {entry.buffer for entry in model.metadata}
    assert set(moved) == set(weights) - metadata_buffers
    assert len(moved) >= 2  # the table and the projection
    for index, (offset, size) in moved.items():
        assert offset % 16 == 0 and outside[offset : offset + size] == weights[index]
    assert len(outside) > len(inline)
    (tmp_path / "inline.tflite").write_bytes(inline)
    (tmp_path / "outside.tflite").write_bytes(outside)

    # The library's own reader resolves the offsets to the same bytes.
    read_back = flatbuffer_utils.read_model_from_bytearray(bytearray(outside))
    assert {
        i: bytes(b.data) for i, b in enumerate(read_back.buffers) if b.data is not None
    } == weights
    assert flatbuffer.read_metadata(tmp_path / "outside.tflite", "llm2tflite.") == METADATA
    flatbuffer.verify(tmp_path / "outside.tflite")

    tokens = np.array([3, 0, ROWS - 1], np.int32)
    rows = small_model["table"][tokens]
    expected = {"rows": rows * 2, "scores": rows @ small_model["projection"]}
    tf_interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "outside.tflite"))
    for outputs in (
        _interpreter_outputs(tmp_path / "outside.tflite", tokens),
        _compiled_model_outputs(tmp_path / "outside.tflite", tokens),
        tf_interpreter.get_signature_runner("lookup")(tokens=tokens),
    ):
        for name, value in expected.items():
            np.testing.assert_allclose(outputs[name], value, rtol=1e-5)
    assert _interpreter_outputs(tmp_path / "inline.tflite", tokens)["scores"].tobytes() == (
        _interpreter_outputs(tmp_path / "outside.tflite", tokens)["scores"].tobytes()
    )


def test_quantizer_reads_weights_after_the_flatbuffer(small_model, tmp_path):
    """ai-edge-quantizer quantizes the file the same, whichever way its weights are stored."""
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import quantize

    model = small_model["model"]
    (tmp_path / "inline.tflite").write_bytes(litert_convert.write_model(model))
    (tmp_path / "outside.tflite").write_bytes(
        litert_convert.write_model(model, buffers_outside=True)
    )
    from_inline, _ = quantize.quantize(tmp_path / "inline.tflite", "int8")
    from_outside, _ = quantize.quantize(tmp_path / "outside.tflite", "int8")
    assert bytes(from_inline) == bytes(from_outside)


@pytest.mark.parametrize("damage", ["offset past the end", "truncated"])
def test_damaged_outside_buffer_is_refused(small_model, tmp_path, damage):
    from ai_edge_litert.tools import flatbuffer_utils

    from llm2tflite.core import flatbuffer
    from llm2tflite.litert import convert as litert_convert

    data = litert_convert.write_model(small_model["model"], buffers_outside=True)
    moved = _outside_buffers(data)
    last = max(moved, key=lambda index: moved[index][0])
    if damage == "truncated":
        data = data[: moved[last][0] + moved[last][1] - 4]
    else:
        packed = flatbuffer.root_model(data).Buffers(last)
        flatbuffer_utils.update_packed_buffer(packed, offset=len(data) + 16)
    path = tmp_path / "damaged.tflite"
    path.write_bytes(data)
    with pytest.raises(flatbuffer.DamagedFlatbufferError) as error:
        flatbuffer.verify(path)
    assert "\n" not in str(error.value)


def test_model_above_2_gib_is_written_and_runs(small_model, tmp_path):
    """The lookup table grown past 2 GiB: written without being asked (the size decides), run
    by LiteRT's interpreter, its last row read from beyond the 2 GiB mark."""
    from llm2tflite.core import flatbuffer
    from llm2tflite.litert import convert as litert_convert

    model = small_model["model"]
    subgraph = model.subgraphs[0]
    (table_tensor,) = [t for t in subgraph.tensors if list(t.shape) == [ROWS, WIDTH]]
    rows = 2**31 // (WIDTH * 4) + 1024
    big = np.zeros((rows, WIDTH), np.float32)  # zero pages: no memory until written
    big[:ROWS] = small_model["table"]
    big[-1] = np.arange(WIDTH, dtype=np.float32) + 0.5
    original = (model.buffers[table_tensor.buffer].data, table_tensor.shape)
    model.buffers[table_tensor.buffer].data = big.reshape(-1).view(np.uint8)
    table_tensor.shape = np.array([rows, WIDTH], np.int32)
    try:
        data = litert_convert.write_model(model)
    finally:
        model.buffers[table_tensor.buffer].data, table_tensor.shape = original
    del big
    assert len(data) > 2**31
    assert max(offset for offset, _ in _outside_buffers(data).values()) > 2**31
    path = tmp_path / "large.tflite"
    path.write_bytes(data)
    del data
    flatbuffer.verify(path)
    tokens = np.array([rows - 1, 1, 0], np.int32)
    outputs = _interpreter_outputs(path, tokens)
    np.testing.assert_array_equal(outputs["rows"][0], (np.arange(WIDTH) + 0.5) * 2)
    np.testing.assert_allclose(outputs["rows"][1:], small_model["table"][[1, 0]] * 2, rtol=1e-6)
