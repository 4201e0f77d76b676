"""Broken model files get one line, never a traceback, from the CLI and from open_model (both
routes), and ``python -m llm2tflite verify`` names each artifact changed since it was built.

Damage that passes LiteRT's flatbuffer verifier, which both runtimes run first (a tensor index
flipped in an operator), fails when the model runs: one line too. Weight bytes are not checked
at open (``verify`` re-hashes the files)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from llm2tflite.__main__ import main
from llm2tflite.litert.contract import INFO_FILE, TOKENIZER_JSON

REPO = Path(__file__).resolve().parents[2]


def without_embedded_files(source, target):
    """A copy of a LiteRT-route file without its embedded export info and tokenizer (as files
    were built before llm2tflite.litert.embedded): it needs the files beside it."""
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert.embedded import PREFIX

    model = litert_convert.read_model(Path(source).read_bytes())
    kept = []
    for entry in model.metadata:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name.startswith(PREFIX):
            model.buffers[entry.buffer].data = None
        else:
            kept.append(entry)
    assert len(kept) == len(model.metadata) - 2
    model.metadata = kept
    Path(target).write_bytes(litert_convert.write_model(model))
    return target


def litert_copy(small_litert, directory, variant="int8", embedded=True):
    """The file and its sidecar files in ``directory``; ``embedded=False``: a file that carries
    no export info or tokenizer of its own."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (INFO_FILE, TOKENIZER_JSON):
        shutil.copy2(small_litert["dir"] / name, directory / name)
    target = directory / f"{variant}.tflite"
    if embedded:
        shutil.copyfile(small_litert["tflite"][variant], target)
    else:
        without_embedded_files(small_litert["tflite"][variant], target)
    return target


def cli_error_line(capfd, path) -> str:
    """The CLI's stderr on ``generate path`` (a process of its own, as a user runs it): exactly
    one line (returned), exit code 2."""
    completed = subprocess.run(
        [sys.executable, "-m", "llm2tflite", "generate", str(path), "hola"],
        cwd=path.parent,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    return lines[0]


def open_model_error(path) -> str:
    from llm2tflite.model_files import ModelOpenError, open_model

    with pytest.raises(ModelOpenError) as raised:
        open_model(path, threads=1)
    message = str(raised.value)
    assert "\n" not in message
    return message


def truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


def test_truncated_litert_file(small_litert, tmp_path, capfd):
    path = litert_copy(small_litert, tmp_path)
    truncate(path, path.stat().st_size // 2)
    assert "is damaged (truncated or altered" in cli_error_line(capfd, path)
    assert "is damaged" in open_model_error(path)


def test_altered_litert_flatbuffer(small_litert, tmp_path, capfd):
    """The flatbuffer's tables altered (its root offset): LiteRT's loader would crash on it."""
    path = litert_copy(small_litert, tmp_path)
    data = bytearray(path.read_bytes())
    data[0:4] = (len(data) + 4096).to_bytes(4, "little")  # the root table past the end
    path.write_bytes(bytes(data))
    line = cli_error_line(capfd, path)
    assert str(path) in line and "damaged" in line
    assert "damaged" in open_model_error(path)


def test_a_damaged_shape_constant_in_a_litert_file(small_litert, tmp_path, capfd):
    """Valid flatbuffer, wrong numbers: every 4-element int32 constant (the reshapes' target
    shapes) set to 3s, so no reshape can hold its input. LiteRT fails to allocate the tensors
    (a RuntimeError from CompiledModel, until now a traceback)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    path = litert_copy(small_litert, tmp_path)
    data = bytearray(path.read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    base = np.frombuffer(data, np.uint8).ctypes.data
    damaged = 0
    for s in range(model.SubgraphsLength()):
        for t in range(model.Subgraphs(s).TensorsLength()):
            tensor = model.Subgraphs(s).Tensors(t)
            buffer = model.Buffers(tensor.Buffer())
            if tensor.Type() == schema.TensorType.INT32 and buffer.DataLength() == 16:
                start = buffer.DataAsNumpy().ctypes.data - base
                np.frombuffer(data, np.int32, count=4, offset=start)[:] = 3
                damaged += 1
    assert damaged
    path.write_bytes(bytes(data))
    line = cli_error_line(capfd, path)
    assert line.startswith(f"llm2tflite: error: {path}: LiteRT cannot prepare its signatures (")
    assert line.endswith(
        "Failed to allocate tensors): the file is damaged; rebuild it or copy it again"
    )
    assert "cannot prepare its signatures" in open_model_error(path)


def test_missing_sidecar_of_a_file_without_its_own(small_litert, tmp_path, capfd):
    """A file built without embedded info needs the files beside it (a file with them runs
    alone: tests/litert/test_self_describing_files.py)."""
    path = litert_copy(small_litert, tmp_path, embedded=False)
    (tmp_path / INFO_FILE).unlink()
    expected = (
        f"{tmp_path / INFO_FILE} is missing: the LiteRT model's export info (written by the "
        "workflow's litert export) must lie beside it (int8.tflite carries none of its own)"
    )
    assert cli_error_line(capfd, path) == f"llm2tflite: error: {expected}"
    assert open_model_error(path) == expected
    shutil.copy2(small_litert["dir"] / INFO_FILE, tmp_path / INFO_FILE)
    (tmp_path / TOKENIZER_JSON).unlink()
    expected = (
        f"{tmp_path} must hold exactly one tokenizer file (tokenizer.json or tokenizer.model), "
        "found 0; the workflow's runtime_tokenizer rule writes it (int8.tflite carries none of "
        "its own)"
    )
    assert cli_error_line(capfd, path) == f"llm2tflite: error: {expected}"
    assert open_model_error(path) == expected


def test_mismatched_export_info(small_litert, tmp_path, capfd):
    path = litert_copy(small_litert, tmp_path, embedded=False)
    info = json.loads((tmp_path / INFO_FILE).read_text())
    info["cache_length"] = int(info["cache_length"]) + 3
    (tmp_path / INFO_FILE).write_text(json.dumps(info))
    expected = (
        f"{tmp_path / INFO_FILE} describes a cache of {info['cache_length']} positions, {path} "
        f"has {info['cache_length'] - 3}: not its export info"
    )
    assert cli_error_line(capfd, path) == f"llm2tflite: error: {expected}"
    assert open_model_error(path) == expected


def test_unreadable_export_info(small_litert, tmp_path, capfd):
    path = litert_copy(small_litert, tmp_path)
    (tmp_path / INFO_FILE).write_text("{not json")
    assert "is not readable export info" in cli_error_line(capfd, path)


def test_litertlm_given_for_a_tflite(tmp_path, capfd):
    bundle = tmp_path / "int8.tflite"
    bundle.write_bytes(b"LITERTLM" + bytes(64))  # a LiteRT-LM bundle's magic, renamed
    assert "is a LiteRT-LM bundle" in cli_error_line(capfd, bundle)
    assert "LiteRT-LM bundle" in open_model_error(bundle)


def test_truncated_codelab_file(small_export, tmp_path, capfd):
    path = tmp_path / "fp32.tflite"
    shutil.copyfile(small_export["tflite"], path)
    truncate(path, path.stat().st_size // 3)
    expected = (
        f"{path} is damaged (truncated or altered since it was built: its signature table cannot "
        "be read, error); rebuild it or copy it again"
    )
    assert cli_error_line(capfd, path) == f"llm2tflite: error: {expected}"
    assert open_model_error(path) == expected


def flipped_copy(source, target, at: int, count: int = 4):
    """A copy of ``source`` with ``count`` bytes from ``at`` inverted (bit flips)."""
    data = bytearray(Path(source).read_bytes())
    for i in range(at, at + count):
        data[i] ^= 0xFF
    Path(target).write_bytes(bytes(data))
    return target


def _codelab_table_positions(path):
    """Where a flip hits the flatbuffer's tables (not weights): the root table's vtable; the
    operator list of the middle subgraph; the first input index of an operator of the
    generation signature's subgraph."""
    from llm2tflite.core import flatbuffer

    data = Path(path).read_bytes()
    model = flatbuffer.root_model(data)
    root = struct.unpack_from("<I", data, 0)[0]
    vtable = root - struct.unpack_from("<i", data, root)[0]
    middle = model.Subgraphs(model.SubgraphsLength() // 2)._tab
    operators = middle.Vector(middle.Offset(10))  # Subgraph.operators
    (generate,) = [
        model.SignatureDefs(i).SubgraphIndex()
        for i in range(model.SignatureDefsLength())
        if model.SignatureDefs(i).SignatureKey() == b"serving_default"
    ]
    subgraph = model.Subgraphs(generate)
    (operator,) = [
        subgraph.Operators(j)
        for j in range(subgraph.OperatorsLength())
        if subgraph.Operators(j).InputsLength() and subgraph.Operators(j).Inputs(0) > 0
    ][:1]
    return {
        "vtable": vtable,
        "operators": operators,
        "operator_input": operator._tab.Vector(operator._tab.Offset(6)),  # Operator.inputs
    }


@pytest.fixture(scope="module")
def codelab_flips(small_export):
    return _codelab_table_positions(small_export["tflite"])


@pytest.mark.parametrize("where", ["vtable", "operators"])
def test_bit_flipped_codelab_file(small_export, codelab_flips, tmp_path, capfd, where):
    """Flips in the header's vtable and in the middle of the flatbuffer (a subgraph's operator
    list, 70 % into the file): the file still has a readable signature table, and TensorFlow's
    interpreter crashed the process on both (segmentation fault); LiteRT's verifier refuses."""
    source = small_export["tflite"]
    at = codelab_flips[where]
    size = source.stat().st_size
    assert (at < 64) if where == "vtable" else (0.3 * size < at < 0.9 * size)
    path = flipped_copy(source, tmp_path / "fp32.tflite", at, 8 if where == "vtable" else 4)
    expected = (
        f"{path} is damaged (truncated or altered since it was built: The model is not a valid "
        "Flatbuffer buffer); rebuild it or copy it again"
    )
    assert cli_error_line(capfd, path) == f"llm2tflite: error: {expected}"
    assert open_model_error(path) == expected


def test_bit_flipped_codelab_operator_fails_when_run(small_export, codelab_flips, tmp_path, capfd):
    """A tensor index flipped in an operator passes the verifier (an int vector like any
    other): the generation signature fails when it runs, in one line."""
    path = flipped_copy(
        small_export["tflite"], tmp_path / "fp32.tflite", codelab_flips["operator_input"]
    )
    pattern = (
        re.escape(f"{path} is damaged (its serving_default signature fails: RuntimeError: Invalid ")
        + r"tensor index -\d+ in node inputs\. The subgraph has \d+ tensors"
        + re.escape("); rebuild it or copy it again")
    )
    assert re.fullmatch("llm2tflite: error: " + pattern, cli_error_line(capfd, path))
    from llm2tflite.model_files import ModelOpenError, open_model

    model = open_model(path, threads=1)
    with pytest.raises(ModelOpenError) as raised:
        model.generate("hola")
    assert re.fullmatch(pattern, str(raised.value))


def test_verify_names_each_changed_artifact(tmp_path, capfd):
    from llm2tflite.report.manifest import build_manifest

    project = tmp_path / "project"
    (project / "results" / "m").mkdir(parents=True)
    names = ["results/m/a.bin", "results/m/b.bin", "results/m/c.bin", "results/m/d.bin"]
    for index, name in enumerate(names):
        (project / name).write_bytes(bytes([index]) * 100)
    manifest = project / "results" / "reports" / "default" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        manifest.write_text(json.dumps(build_manifest(names)))
        assert main(["verify"]) == 0
        assert "4 artifacts" in capfd.readouterr().out
        (project / names[0]).write_bytes(bytes([9]) * 100)  # same size, other bytes
        (project / names[1]).write_bytes(b"short")
        (project / names[2]).unlink()
        assert main(["verify", str(manifest)]) == 1
    finally:
        os.chdir(cwd)
    out = capfd.readouterr().out.strip().splitlines()
    assert out[:3] == [
        f"{names[0]}: changed since it was built (same size, different bytes)",
        f"{names[1]}: changed since it was built (100 bytes then, 5 now)",
        f"{names[2]}: missing (listed in {manifest})",
    ]
    assert out[3].endswith("3 changed") and len(out) == 4
