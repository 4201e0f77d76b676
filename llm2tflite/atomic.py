"""Write artifacts under a temporary name and move them into place only when complete.

A job killed mid-write must leave nothing that Snakemake (or a user) takes for a finished
artifact: every stage writes through these helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_sibling(path: Path, is_dir: bool) -> Path:
    # Same directory as the target so the final rename is atomic (same filesystem).
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    # A write killed hard (SIGKILL, power loss) leaves its temporary behind: the next write of
    # the same artifact cleans it up. (Snakemake never runs two jobs writing one artifact.)
    for stale in path.parent.glob(f"{prefix}*"):
        _remove(stale)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
        mode = 0o777
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
        os.close(fd)
        tmp, mode = Path(name), 0o666
    # mkdtemp/mkstemp create private (0700/0600) entries; artifacts get the usual permissions.
    os.chmod(tmp, mode & ~_umask())
    return tmp


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False):
    """Yield a temporary path to write; on success rename it to ``path``, on failure delete it."""
    path = Path(path)
    tmp = _temporary_sibling(path, is_dir)
    try:
        yield tmp
        if not is_dir:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        if path.exists():
            _remove(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
