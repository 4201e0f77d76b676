"""The XNNPACK weight cache of the LiteRT runtime: created on first use, reused, never stale after
a rebuild, safe when two processes start at once; greedy ids the same with and without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm2tflite.litert.contract import INFO_FILE, TOKENIZER_JSON

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Estoy disfrutando de"


def copy_model(small_litert, directory: Path, variant: str = "int8") -> Path:
    """The variant with its sidecars in a directory of its own (the cache goes beside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = small_litert["dir"]
    for name in (INFO_FILE, TOKENIZER_JSON):
        shutil.copy2(source / name, directory / name)
    target = directory / "model.tflite"
    shutil.copyfile(small_litert["tflite"][variant], target)
    return target


def cache_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def uncached_ids(path, prompt=PROMPT) -> list[int]:
    from llm2tflite.litert.runtime import LiteRTModel

    return LiteRTModel(path, threads=1, weight_cache=False).generate(prompt).token_ids


def test_cache_created_on_first_use_then_reused(small_litert, tmp_path):
    from llm2tflite.litert.runtime import LiteRTModel

    model_path = copy_model(small_litert, tmp_path / "model")
    caches = tmp_path / "caches"
    first = LiteRTModel(model_path, threads=1, weight_cache_dir=caches)
    [name] = cache_files(caches)  # one file, no temporary left behind
    assert first.weight_cache.path == caches / name and name.endswith(".xnnpack")
    assert (caches / name).stat().st_size > 0
    written = (caches / name).stat().st_mtime_ns
    second = LiteRTModel(model_path, threads=1, weight_cache_dir=caches)
    assert cache_files(caches) == [name]
    assert (caches / name).stat().st_mtime_ns == written  # read, not rewritten
    expected = uncached_ids(model_path)
    assert first.generate(PROMPT).token_ids == expected
    assert second.generate(PROMPT).token_ids == expected


def test_default_cache_lies_beside_the_model(small_litert, tmp_path, monkeypatch):
    from llm2tflite.litert.runtime import LiteRTModel
    from llm2tflite.litert.weight_cache import BESIDE_MODEL_DIR, CACHE_DIR_ENV

    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    model_path = copy_model(small_litert, tmp_path / "model")
    model = LiteRTModel(model_path, threads=1)
    assert model.weight_cache.path.parent == model_path.parent / BESIDE_MODEL_DIR
    assert model.weight_cache.path.is_file()


def test_rebuilt_model_gets_a_new_cache_never_the_stale_one(small_litert, tmp_path):
    """Rewrite the model file with another model (as a rebuild does): the old cache is neither
    used nor kept, and the ids are the new model's, as computed without any cache."""
    from llm2tflite.litert.runtime import LiteRTModel

    model_path = copy_model(small_litert, tmp_path / "model", "int8")
    caches = tmp_path / "caches"
    LiteRTModel(model_path, threads=1, weight_cache_dir=caches)
    [old] = cache_files(caches)
    rebuilt = model_path.with_name(".rebuild")
    shutil.copyfile(small_litert["tflite"]["fp32"], rebuilt)
    os.replace(rebuilt, model_path)  # as llm2tflite.core.atomic writes artifacts
    model = LiteRTModel(model_path, threads=1, weight_cache_dir=caches)
    [new] = cache_files(caches)
    assert new != old
    assert model.generate(PROMPT).token_ids == uncached_ids(model_path)


def test_same_bytes_rewritten_also_change_the_key(small_litert, tmp_path):
    from llm2tflite.litert.weight_cache import model_key

    model_path = copy_model(small_litert, tmp_path / "model")
    before = model_key(model_path)
    data = model_path.read_bytes()
    stat = model_path.stat()
    model_path.write_bytes(data)
    os.utime(model_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert model_key(model_path) != before


CHILD = """
import sys
from llm2tflite.litert.runtime import LiteRTModel
model = LiteRTModel(sys.argv[1], threads=1, weight_cache_dir=sys.argv[2])
print(" ".join(map(str, model.generate(sys.argv[3]).token_ids)))
"""


def test_two_processes_creating_the_cache_at_once(small_litert, tmp_path):
    model_path = copy_model(small_litert, tmp_path / "model")
    caches = tmp_path / "caches"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", CHILD, str(model_path), str(caches), PROMPT]
    children = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (_, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr.decode()
    expected = " ".join(map(str, uncached_ids(model_path)))
    assert [out.decode().strip() for out, _ in outputs] == [expected, expected]
    assert len(cache_files(caches)) == 1  # one final cache, no temporaries
    # And the cache they left is whole: a third load reads it and computes the same ids.
    third = subprocess.run(command, env=env, capture_output=True, timeout=300, check=True)
    assert third.stdout.decode().strip() == expected


def test_unwritable_cache_directory_loads_without_cache(small_litert, tmp_path):
    from llm2tflite.litert.runtime import LiteRTModel

    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    model_path = copy_model(small_litert, tmp_path / "model")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        model = LiteRTModel(model_path, threads=1, weight_cache_dir=locked / "caches")
    finally:
        locked.chmod(0o700)
    assert model.weight_cache is None
    assert model.generate(PROMPT).token_ids == uncached_ids(model_path)
