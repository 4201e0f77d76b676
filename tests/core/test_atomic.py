"""llm2tflite.core.atomic: a write is all or nothing, and never destroys what it did not create."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from llm2tflite.core import atomic

from conftest import start_atomic_writer


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failed_directory_write_leaves_nothing(tmp_path):
    target = tmp_path / "traced"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(target, is_dir=True) as tmp:
            (tmp / "new").write_text("partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_successful_writes_replace(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)


def test_file_replaced_in_place_keeps_the_inode_swap_atomic(tmp_path):
    """os.replace: the old file stays readable under its name until the new one takes it."""
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"


def test_directory_written_into_an_empty_directory(tmp_path):
    """Snakemake (or a user) may have created the empty directory already: it is replaced."""
    target = tmp_path / "vocab"
    target.mkdir()
    with atomic.atomic_path(target, is_dir=True) as tmp:
        (tmp / "vocab.json").write_text("{}")
    assert [p.name for p in target.iterdir()] == ["vocab.json"]


def test_directory_where_a_file_stands_is_refused(tmp_path):
    target = tmp_path / "traced"
    target.write_text("user data")
    with pytest.raises(atomic.TargetExistsError, match="a file stands there"):
        with atomic.atomic_path(target, is_dir=True):
            raise AssertionError("must not get to write")
    assert target.read_text() == "user data"
    assert [p.name for p in tmp_path.iterdir()] == ["traced"]


def _write_directory(target):
    with atomic.atomic_path(target, is_dir=True) as tmp:
        (tmp / "vocab.json").write_text("{}")


@pytest.mark.parametrize(
    "write, refusal",
    [
        (lambda target: atomic.write_text(target, "report"), "a directory stands there"),
        (_write_directory, "not empty"),
    ],
    ids=["file", "directory"],
)
def test_directory_with_contents_is_never_replaced(tmp_path, write, refusal):
    """Neither a file nor a directory is written where a directory with contents stands."""
    target = tmp_path / "my_folder"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(atomic.TargetExistsError, match=refusal):
        write(target)
    assert (target / "thesis.tex").read_text() == "years of work"
    assert [p.name for p in target.iterdir()] == ["thesis.tex"]
    assert [p.name for p in tmp_path.iterdir()] == ["my_folder"]


def test_directory_that_fills_up_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "traced"
    with pytest.raises(atomic.TargetExistsError):
        with atomic.atomic_path(target, is_dir=True) as tmp:
            (tmp / "saved_model.pb").write_text("new")
            target.mkdir()
            (target / "theirs").write_text("someone else's")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["traced"]


def test_symlink_to_a_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for is_dir in (False, True):
        with pytest.raises(atomic.TargetExistsError, match="symbolic link"):
            with atomic.atomic_path(tmp_path / "link", is_dir=is_dir):
                pass
    assert (tmp_path / "real" / "keep").read_text() == "x"


def test_working_directory_is_never_wiped(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "work")
    for target in (".", "./", "../work"):
        with pytest.raises(atomic.TargetExistsError):
            with atomic.atomic_path(target, is_dir=True) as tmp:
                (tmp / "x").write_text("x")
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["work"]
    with pytest.raises(atomic.TargetExistsError):
        atomic.write_text("/", "x")


def test_concurrent_writers_never_share_or_remove_a_temporary(tmp_path):
    """Two writers of one artifact at once: each keeps its own temporary until it finishes."""
    target = tmp_path / "shared.json"
    inside, release = threading.Barrier(3), threading.Event()
    temporaries, errors = [], []

    def writer(payload):
        try:
            with atomic.atomic_path(target) as tmp:
                temporaries.append(tmp)
                tmp.write_text(payload)
                inside.wait(timeout=10)
                release.wait(timeout=10)
                assert tmp.read_text() == payload
        except BaseException as error:  # noqa: BLE001  (reported by the main thread)
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("first", "second")]
    for thread in threads:
        thread.start()
    inside.wait(timeout=10)
    assert len(set(temporaries)) == 2 and all(t.exists() for t in temporaries)
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors, errors
    assert target.read_text() in ("first", "second")
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_live_writer_in_another_process_keeps_its_temporary(tmp_path):
    target = tmp_path / "model.tflite"
    writer = start_atomic_writer(
        target,
        """
        import sys
        tmp.write_bytes(b"slow writer")
        print(tmp, flush=True)
        sys.stdin.readline()
        """,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        their_tmp = writer.stdout.readline().strip()
        assert os.path.exists(their_tmp)
        atomic.write_bytes(target, b"fast writer")
        assert os.path.exists(their_tmp), "a concurrent writer's temporary was removed"
    finally:
        writer.communicate("done\n", timeout=30)
    assert writer.returncode == 0
    assert target.read_bytes() == b"slow writer"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_stale_temporary_of_a_dead_writer_is_removed(tmp_path):
    target = tmp_path / "model.tflite"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"{atomic._prefix(target)}{atomic._host()}-{dead.stdout.strip()}-abc123"
    stale.write_bytes(b"half")
    other_host = tmp_path / f"{atomic._prefix(target)}elsewhere-1-abc123"
    other_host.write_bytes(b"a job on another node")
    atomic.write_bytes(target, b"complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.tflite", other_host.name])


def test_content_is_synced_before_the_rename(tmp_path, monkeypatch):
    """fsync of the file (or every file of a directory), then the rename, then the parent."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os,
        "fsync",
        lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)),
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))
    )
    atomic.write_bytes(tmp_path / "a.bin", b"x")
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert ".a.bin.tmp-" in events[0][1] and events[2][1] == str(tmp_path)

    events.clear()
    with atomic.atomic_path(tmp_path / "dir", is_dir=True) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights.bin").write_bytes(b"w")
    synced = [path for kind, path in events if kind == "fsync"]
    assert any(p.endswith("/sub/weights.bin") for p in synced[:-1])
    assert [e[0] for e in events][-2:] == ["replace", "fsync"] and synced[-1] == str(tmp_path)
