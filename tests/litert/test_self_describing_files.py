"""A LiteRT-route .tflite carries its export info and tokenizer as TFLite metadata
(llm2tflite/litert/embedded.py): copied alone it runs as in place; written byte-identically; read
by another reader than ours; never silently preferred to files beside it that differ."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from test_broken_model_files import cli_error_line, open_model_error, without_embedded_files

from llm2tflite.litert.contract import INFO_FILE

PROMPT = "Estoy disfrutando de"
MODELS = {
    "gpt2": ("small_litert", "tokenizer.json", ("fp32", "int8")),
    "llama": ("small_llama_litert", "tokenizer.model", ("fp32", "int8", "int4")),
}


@pytest.fixture(params=sorted(MODELS))
def litert_model(request):
    fixture, tokenizer, variants = MODELS[request.param]
    return {"tokenizer_name": tokenizer, "variants": variants, **request.getfixturevalue(fixture)}


def _greedy_ids(path, max_length=30):
    from llm2tflite.model_files import open_model

    return open_model(path, threads=1).generate(PROMPT, max_length=max_length).token_ids


def test_a_file_copied_alone_generates_as_in_place(litert_model, tmp_path):
    """Alone, the file's own info and tokenizer give the greedy ids of the same file in place;
    and of a copy stripped of them beside the sidecar files (as files were built before: the
    sidecars' figure alone)."""
    from test_cli_and_safety import run_cli

    for variant in sorted({"int8", litert_model["variants"][-1]}):
        source = litert_model["tflite"][variant]
        alone = tmp_path / variant / "alone" / source.name
        alone.parent.mkdir(parents=True)
        shutil.copyfile(source, alone)
        stripped = tmp_path / variant / "sidecars" / source.name
        stripped.parent.mkdir(parents=True)
        for name in (INFO_FILE, litert_model["tokenizer_name"]):
            shutil.copyfile(litert_model["dir"] / name, stripped.parent / name)
        without_embedded_files(source, stripped)
        expected = _greedy_ids(source)
        assert len(expected) > 10
        assert _greedy_ids(alone) == expected == _greedy_ids(stripped), variant
        _, lone_text, stderr = run_cli(str(alone), PROMPT, check_code=0)
        _, in_place_text, _ = run_cli(str(source), PROMPT, check_code=0)
        assert lone_text == in_place_text and stderr == ""
        assert sorted(p.name for p in alone.parent.iterdir() if p.is_file()) == [source.name]


def test_metadata_read_by_tensorflows_schema(litert_model):
    """TensorFlow's copy of the schema bindings (ours read through ai-edge-litert's) finds the
    entries in Model.metadata, each pointing at a buffer holding the sidecar file's bytes."""
    from tensorflow.lite.python import schema_py_generated as tf_schema

    for variant in litert_model["variants"]:
        data = litert_model["tflite"][variant].read_bytes()
        model = tf_schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        entries = {m.name.decode(): bytes(model.buffers[m.buffer].data) for m in model.metadata}
        assert "min_runtime_version" in entries, variant  # the converter's own, kept
        assert (
            entries["llm2tflite.litert_export.json"]
            == (litert_model["dir"] / INFO_FILE).read_bytes()
        )
        tokenizer = litert_model["tokenizer_name"]
        assert entries[f"llm2tflite.{tokenizer}"] == (litert_model["dir"] / tokenizer).read_bytes()
        assert sorted(n for n in entries if n.startswith("llm2tflite.")) == sorted(
            ["llm2tflite.litert_export.json", f"llm2tflite.{tokenizer}"]
        )


def test_converted_and_quantized_files_are_byte_identical_across_runs(small_litert, tmp_path):
    from llm2tflite.core import atomic
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export
    from llm2tflite.litert import quantize as litert_quantize

    saved_model = small_litert["dir"] / "saved_model"
    keys = litert_export.signature_keys(small_litert["info"])
    first, report = litert_convert.convert(saved_model, keys, small_litert["tokenizer"])
    again, _ = litert_convert.convert(saved_model, keys, small_litert["tokenizer"])
    assert first == again == small_litert["tflite"]["fp32"].read_bytes()
    size = small_litert["tokenizer"].stat().st_size
    assert report["embedded_bytes"]["llm2tflite.tokenizer.json"] == size
    atomic.write_bytes(tmp_path / "fp32.tflite", first)
    quantized, report = litert_quantize.quantize(tmp_path / "fp32.tflite", "int8")
    assert quantized == small_litert["tflite"]["int8"].read_bytes()
    assert report["embedded_bytes"]["llm2tflite.tokenizer.json"] == size
    # Without a tokenizer nothing is embedded, and the quantized file carries nothing either.
    bare, report = litert_convert.convert(saved_model, keys)
    assert len(first) - len(bare) >= size and report["embedded_bytes"] == {}
    atomic.write_bytes(tmp_path / "bare.tflite", bare)
    from llm2tflite.litert import embedded

    assert embedded.read_entries(tmp_path / "bare.tflite") == {}


def _with_entry(source, target, name, data):
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import embedded

    model = litert_convert.read_model(source.read_bytes())
    embedded.embed(model, {name: data})
    target.write_bytes(litert_convert.write_model(model))
    return target


def test_a_sidecar_that_differs_is_named_in_one_line(small_litert, tmp_path, capfd):
    from test_broken_model_files import litert_copy

    path = litert_copy(small_litert, tmp_path)
    info = json.loads((tmp_path / INFO_FILE).read_text())
    info["stop_token_ids"] = [*info["stop_token_ids"], 5]
    (tmp_path / INFO_FILE).write_text(json.dumps(info, indent=2))
    expected = (
        f"{tmp_path / INFO_FILE} differs from the export info inside {path} (stop_token_ids: "
        f"{json.dumps(info['stop_token_ids'])} beside it, "
        f"{json.dumps(info['stop_token_ids'][:-1])} inside): one of them is from another "
        "build; remove it or rebuild"
    )
    assert cli_error_line(capfd, path) == f"llm2tflite: error: {expected}"
    assert open_model_error(path) == expected
    (tmp_path / INFO_FILE).unlink()  # the file's own then
    assert len(_greedy_ids(path)) > 10

    tokenizer = tmp_path / "tokenizer.json"
    size = tokenizer.stat().st_size
    tokenizer.write_bytes(tokenizer.read_bytes().replace(b'"hola"', b'"holo"', 1) + b" ")
    expected = (
        f"{tokenizer} differs from the tokenizer inside {path} ({size + 1} bytes beside it, "
        f"{size} inside): one of them is from another build; remove it or rebuild"
    )
    assert cli_error_line(capfd, path) == f"llm2tflite: error: {expected}"
    assert open_model_error(path) == expected


def test_damaged_or_mismatched_embedded_info_gives_one_line(small_litert, tmp_path, capfd):
    from llm2tflite.litert.embedded import INFO_ENTRY

    source = small_litert["tflite"]["int8"]
    # Damaged: bytes of the embedded JSON altered (the flatbuffer verifier does not read
    # buffer contents), the file alone.
    data = bytearray(source.read_bytes())
    text = (small_litert["dir"] / INFO_FILE).read_bytes()
    inside = text.index(b'"cache_length"')
    at = data.index(text) + inside
    data[at : at + 2] = b"\xff\xfe"
    damaged = tmp_path / "damaged" / "int8.tflite"
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    expected = (
        f"{damaged}: its embedded export info ({INFO_ENTRY}) is damaged (UnicodeDecodeError at "
        f"byte {inside}); rebuild it or copy it again"
    )
    assert cli_error_line(capfd, damaged) == f"llm2tflite: error: {expected}"
    assert open_model_error(damaged) == expected

    # Damaged: the embedded tokenizer's JSON broken.
    tokenizer = small_litert["tokenizer"].read_bytes()
    data = bytearray(source.read_bytes())
    at = data.index(tokenizer) + tokenizer.index(b'"model"')
    data[at] = ord("'")
    broken = tmp_path / "broken" / "int8.tflite"
    broken.parent.mkdir()
    broken.write_bytes(bytes(data))
    pattern = (
        re.escape(f"{broken}: its embedded tokenizer (llm2tflite.tokenizer.json) cannot be read (")
        + r".+\); rebuild it or copy it again"
    )
    assert re.fullmatch("llm2tflite: error: " + pattern, cli_error_line(capfd, broken))
    assert re.fullmatch(pattern, open_model_error(broken))

    # Mismatched: well-formed info of another cache length than the graph's.
    info = {**small_litert["info"], "cache_length": small_litert["info"]["cache_length"] + 3}
    info.pop("export_seconds", None)
    other = tmp_path / "other" / "int8.tflite"
    other.parent.mkdir()
    payload = (json.dumps(info, indent=2) + "\n").encode()
    _with_entry(source, other, INFO_ENTRY, payload)
    expected = (
        f"the export info inside {other} describes a cache of {info['cache_length']} positions, "
        f"{other} has {info['cache_length'] - 3}: not its export info"
    )
    assert cli_error_line(capfd, other) == f"llm2tflite: error: {expected}"
    assert open_model_error(other) == expected
