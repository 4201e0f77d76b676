"""Write artifacts under a temporary name and move them into place only when complete.

A job killed mid-write must leave nothing that Snakemake (or a user) takes for a finished
artifact: every stage writes through these helpers. The rules they keep:

- Nothing is deleted that this module did not create. A file replaces a file (``os.replace``:
  at every instant the old or the new file is there, never neither); a directory is moved into
  place only where no directory or an empty one stands. A target of the other kind (a directory
  where a file is written, or a file where a directory is written), a symbolic link to a
  directory, or a directory with contents is refused with :class:`TargetExistsError`, before
  anything is written.
- The new content is on disk before it gets its name: files (and, for a directory, every file
  and directory inside it) are fsync'ed before the rename and the parent directory after it, so
  after a power loss the artifact is either the complete new one or absent/the old one.
- Temporary names carry the host, the process id and a random part, so concurrent writers never
  share one; a temporary left by a killed writer on this host (its process is gone) is removed by
  the next write of the same artifact. Temporaries of live processes and of other hosts are left
  alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path


class TargetExistsError(FileExistsError):
    """The target exists and writing it would destroy something this module did not create."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    # Only characters that are safe in a file name and cannot contain the separator "-".
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname().split(".")[0]) or "host"


def _prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _own_prefix(path: Path) -> str:
    return f"{_prefix(path)}{_host()}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of ``path`` left by writers on this host that no longer run."""
    stale = re.compile(re.escape(_prefix(path)) + re.escape(_host()) + r"-(\d+)-[A-Za-z0-9_]+$")
    for candidate in path.parent.glob(f"{_prefix(path)}*"):
        match = stale.match(candidate.name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            _remove(candidate)


def _absolute(path: str | os.PathLike) -> Path:
    # abspath normalises "." and "..": atomic_path(".") is about the working directory itself.
    return Path(os.path.abspath(os.fspath(path)))


def check_target(path: str | os.PathLike, is_dir: bool = False) -> Path:
    """Raise TargetExistsError unless writing ``path`` (a file, or a directory) destroys nothing.

    Returns the absolute path.
    """
    path = _absolute(path)
    if path.parent == path:
        raise TargetExistsError(f"refusing to write over the root directory {str(path)!r}")
    if not os.path.lexists(path):
        return path
    kind = "directory" if is_dir else "file"
    if path.is_symlink():
        if path.is_dir():
            raise TargetExistsError(
                f"refusing to replace {str(path)!r}: it is a symbolic link to a directory; "
                f"remove it or choose another path for the {kind}"
            )
        if is_dir:
            raise TargetExistsError(
                f"refusing to replace {str(path)!r} with a directory: it is a symbolic link; "
                "remove it or choose another path"
            )
        return path
    if path.is_dir():
        if not is_dir:
            raise TargetExistsError(
                f"refusing to write file {str(path)!r}: a directory stands there; remove it or "
                "choose another path"
            )
        if any(path.iterdir()):
            raise TargetExistsError(
                f"refusing to replace directory {str(path)!r}: it is not empty; remove it or "
                "choose another path"
            )
        return path
    if is_dir:
        raise TargetExistsError(
            f"refusing to write directory {str(path)!r}: a file stands there; remove it or "
            "choose another path"
        )
    return path


def _temporary_sibling(path: Path, is_dir: bool) -> Path:
    # Same directory as the target so the final rename is atomic (same filesystem).
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=_own_prefix(path), dir=path.parent))
        mode = 0o777
    else:
        fd, name = tempfile.mkstemp(prefix=_own_prefix(path), dir=path.parent)
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


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            file = Path(directory, name)
            if not file.is_symlink():
                _fsync(file)
        _fsync(Path(directory))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False):
    """Yield a temporary path to write; on success rename it to ``path``, on failure delete it.

    Raises TargetExistsError (before yielding) when ``path`` stands as something this would
    destroy; see the module docstring.
    """
    path = check_target(path, is_dir)
    tmp = _temporary_sibling(path, is_dir)
    try:
        yield tmp
        if is_dir:
            _fsync_tree(tmp)
        else:
            _fsync(tmp)
        # Checked again: something may have appeared at the target while we wrote.
        check_target(path, is_dir)
        try:
            # A directory: rename(2) replaces only an empty directory, atomically; a file:
            # os.replace swaps the new file in with no moment without one.
            os.replace(tmp, path)
        except OSError as error:
            raise TargetExistsError(
                f"could not move the new {path.name!r} into place at "
                f"{str(path)!r}: {error.strerror}"
            ) from error
        _fsync(path.parent)
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
