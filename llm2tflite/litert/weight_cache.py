"""Where the XNNPACK weight cache of a LiteRT-route ``.tflite`` lives, and how it is made safely.

Creating a ``CompiledModel`` repacks every weight for XNNPACK's kernels (most of a cold load: 1.2 s
on the GPT-2 124M twin's int8 file). XNNPACK can write the packed weights to a file and map them
back on the next load (``CpuOptions(xnnpack_weight_cache_path=FILE)``; a directory is refused).
This module chooses that file and keeps it correct:

- **Where**: the directory given (``weight_cache_dir``, or ``$LLM2TFLITE_WEIGHT_CACHE_DIR``), else
  ``.xnnpack_cache/`` beside the model; if that directory cannot be written (a read-only results
  tree), ``$XDG_CACHE_HOME/llm2tflite/xnnpack`` (``~/.cache/...``); if none can, no cache (the
  model still loads, cold).
- **Never stale**: the file name carries a key of the model file's size, modification time (ns)
  and a SHA-256 of its first and last 64 KiB, and of the ai-edge-litert version (XNNPACK's packing
  may change with it). A rebuilt model (new bytes, new mtime) gets a new name; the caches of
  earlier versions of the same model path are removed when the new one is written.
- **Concurrent first use**: a process that finds no cache has XNNPACK write it under a name of
  its own (host, pid, random) and renames it into place when the model is created (the file is
  complete then: XNNPACK packs every subgraph at creation; running signatures adds nothing). Two
  processes starting at once each write their own and the last rename wins; both files are whole,
  and a process keeps its mapping of a file renamed over.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from pathlib import Path

CACHE_DIR_ENV = "LLM2TFLITE_WEIGHT_CACHE_DIR"
BESIDE_MODEL_DIR = ".xnnpack_cache"
SUFFIX = ".xnnpack"
_SAMPLE_BYTES = 64 * 1024
_FINAL = re.compile(r"^(?P<model>.+)-(?P<key>[0-9a-f]{16})" + re.escape(SUFFIX) + "$")


def _litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001  (a missing distribution record only weakens the key)
        return "unknown"


def model_key(path) -> str:
    """16 hex digits that change whenever the model file's bytes (or the runtime) change."""
    path = Path(path)
    status = path.stat()
    digest = hashlib.sha256()
    digest.update(f"{status.st_size}:{status.st_mtime_ns}:{_litert_version()}".encode())
    with open(path, "rb") as f:
        digest.update(f.read(_SAMPLE_BYTES))
        if status.st_size > _SAMPLE_BYTES:
            f.seek(max(_SAMPLE_BYTES, status.st_size - _SAMPLE_BYTES))
            digest.update(f.read())
    return digest.hexdigest()[:16]


def _model_tag(path: Path) -> str:
    # The model's name plus its absolute path's hash: two models named int8.tflite sharing one
    # cache directory never evict each other's cache.
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{path.name}-{where}"


def _writable_dir(directory: Path) -> Path | None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return directory if os.access(directory, os.W_OK | os.X_OK) else None


def cache_directory(model_path, weight_cache_dir=None) -> Path | None:
    """The directory the model's weight cache goes in (see the module docstring), or None."""
    chosen = weight_cache_dir or os.environ.get(CACHE_DIR_ENV)
    if chosen:
        return _writable_dir(Path(chosen).expanduser())
    beside = _writable_dir(Path(model_path).parent / BESIDE_MODEL_DIR)
    if beside is not None:
        return beside
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return _writable_dir(user_cache / "llm2tflite" / "xnnpack")


class WeightCache:
    """The weight cache file of one model: ``path`` (final name), ``exists``, ``found`` (it
    existed when this object was made), and the file to hand XNNPACK (``creation_path``),
    renamed into place by ``created()``."""

    def __init__(self, model_path, directory: Path):
        model_path = Path(model_path)
        self.tag = _model_tag(model_path)
        self.directory = directory
        self.path = directory / f"{self.tag}-{model_key(model_path)}{SUFFIX}"
        self.exists = self.path.is_file() and self.path.stat().st_size > 0
        self.found = self.exists  # there before this process's load (``exists``: now)
        host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname().split(".")[0]) or "host"
        self._temporary = self.path.with_name(
            f".{self.path.name}.tmp-{host}-{os.getpid()}-{secrets.token_hex(4)}"
        )

    @property
    def creation_path(self) -> Path:
        """The file XNNPACK reads (the cache exists) or writes (under a name of this process)."""
        return self.path if self.exists else self._temporary

    def created(self) -> None:
        """The model was created: move a cache this process wrote into place, drop stale ones."""
        if self.exists:
            return
        if not self._temporary.is_file() or self._temporary.stat().st_size == 0:
            self.discard()
            return
        os.replace(self._temporary, self.path)
        self.exists = True
        self._remove_stale()

    def discard(self) -> None:
        """Creation failed: remove what this process wrote."""
        try:
            self._temporary.unlink()
        except FileNotFoundError:
            pass

    def _remove_stale(self) -> None:
        # Caches of earlier versions of this model (other keys); a process still using one keeps
        # its mapping after the unlink.
        for other in self.directory.iterdir():
            match = _FINAL.match(other.name)
            if match and match["model"] == self.tag and other != self.path:
                try:
                    other.unlink()
                except OSError:
                    pass


def weight_cache_for(model_path, weight_cache_dir=None) -> WeightCache | None:
    """The model's :class:`WeightCache`, or None when no directory can hold it."""
    directory = cache_directory(model_path, weight_cache_dir)
    return WeightCache(model_path, directory) if directory is not None else None
