"""Fetch GPT-2's real tokenizer files (vocab.json + merges.txt, 50257 tokens) through pip.

Offline we cannot download KerasHub's ``gpt2_base_en`` preset, but PyPI carries GPT-2's BPE files
inside the openai-whisper 20230124 source package (MIT license, ``whisper/assets/gpt2/``). pip is
the only client used, so this works wherever PyPI is reachable. Each file is checked against its
pinned SHA-256 and written into ``--out-dir`` on its own (atomically), next to whatever else the
directory holds: an existing directory is never replaced, and a file of the same name with other
content is refused, not overwritten.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from llm2tflite.core import atomic
from llm2tflite.core.hashing import sha256_file

WHISPER_REQUIREMENT = "openai-whisper==20230124"
WHISPER_SDIST = "openai-whisper-20230124.tar.gz"
ASSET_DIR_IN_SDIST = "openai-whisper-20230124/whisper/assets/gpt2"
# SHA-256 of the files inside the sdist (from `pip download openai-whisper==20230124`): a
# changed or tampered upload, or another file under the same name, is refused.
TOKENIZER_SHA256 = {
    "vocab.json": "3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7",
    "merges.txt": "fe36cab26d4f4421ed725e10a2e9ddb7f799449c603a96e7f29b5a3c82a95862",
}
TOKENIZER_FILES = tuple(TOKENIZER_SHA256)
GPT2_VOCABULARY_SIZE = 50257


class AssetsUnavailableError(RuntimeError):
    """PyPI could not be reached (or did not serve the package)."""


class AssetsMismatchError(RuntimeError):
    """A file is not GPT-2's (its SHA-256 differs from the pinned one)."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm2tflite" / "gpt2_tokenizer"


def _download_sdist(download_dir: Path) -> Path:
    # The sdist's setup.py imports pkg_resources, which setuptools >= 81 dropped; pip builds its
    # metadata even for `download --no-deps`, so pin setuptools in the isolated build env. Older
    # pip reads PIP_CONSTRAINT there, newer pip reads PIP_BUILD_CONSTRAINT.
    constraint = download_dir / "build-constraints.txt"
    constraint.write_text("setuptools<81\n")
    env = {**os.environ, "PIP_CONSTRAINT": str(constraint), "PIP_BUILD_CONSTRAINT": str(constraint)}
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--timeout",
        "30",
        "--retries",
        "1",
        "-d",
        str(download_dir),
        WHISPER_REQUIREMENT,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    sdist = download_dir / WHISPER_SDIST
    if completed.returncode != 0 or not sdist.exists():
        last_lines = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-5:])
        raise AssetsUnavailableError(
            f"pip could not download {WHISPER_REQUIREMENT} (is PyPI reachable?):\n{last_lines}"
        )
    return sdist


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _existing_files(out_dir: Path) -> set[str]:
    """Tokenizer files already in ``out_dir`` and verified; raise if one is someone else's."""
    if out_dir.exists() and not out_dir.is_dir():
        raise atomic.TargetExistsError(
            f"--out-dir {str(out_dir)!r} is a file, not a directory; choose another path"
        )
    present = set()
    for name in TOKENIZER_FILES:
        path = out_dir / name
        if not os.path.lexists(path):
            continue
        if not path.is_file() or sha256_file(path) != TOKENIZER_SHA256[name]:
            raise AssetsMismatchError(
                f"{str(path)!r} exists and is not GPT-2's {name} (SHA-256 differs); it is left "
                "as it is: remove it or choose another --out-dir"
            )
        present.add(name)
    return present


def fetch_gpt2_tokenizer(out_dir: str | os.PathLike | None = None) -> Path:
    """Return a directory holding GPT-2's vocab.json and merges.txt, downloading once."""
    out_dir = Path(out_dir) if out_dir else default_cache_dir()
    missing = [name for name in TOKENIZER_FILES if name not in _existing_files(out_dir)]
    if not missing:
        return out_dir
    with tempfile.TemporaryDirectory() as download_dir:
        sdist = _download_sdist(Path(download_dir))
        with tarfile.open(sdist) as archive:
            contents = {
                name: archive.extractfile(f"{ASSET_DIR_IN_SDIST}/{name}").read() for name in missing
            }
    for name, data in contents.items():
        if _sha256(data) != TOKENIZER_SHA256[name]:
            raise AssetsMismatchError(
                f"{name} in {WHISPER_REQUIREMENT} from PyPI has SHA-256 {_sha256(data)}, not the "
                f"pinned {TOKENIZER_SHA256[name]}; refusing to use it"
            )
    for name, data in contents.items():
        atomic.write_bytes(out_dir / name, data)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", help=f"default: {default_cache_dir()}")
    args = parser.parse_args(argv)
    try:
        print(fetch_gpt2_tokenizer(args.out_dir))
    except (AssetsUnavailableError, AssetsMismatchError, atomic.TargetExistsError) as error:
        print(f"llm2tflite: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
