from __future__ import annotations

import pytest

from llm2tflite import atomic


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failed_directory_write_keeps_previous_artifact(tmp_path):
    target = tmp_path / "traced"
    target.mkdir()
    (target / "old").write_text("previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(target, is_dir=True) as tmp:
            (tmp / "new").write_text("partial")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["traced"]
    assert (target / "old").read_text() == "previous"


def test_successful_writes_replace(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)
