"""Fetch GPT-2's real tokenizer files (vocab.json + merges.txt, 50257 tokens) through pip.

Offline we cannot download KerasHub's ``gpt2_base_en`` preset, but PyPI carries GPT-2's BPE files
inside the openai-whisper 20230124 source package (MIT license, ``whisper/assets/gpt2/``). pip is
the only client used, so this works wherever PyPI is reachable.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from llm2tflite import atomic

WHISPER_REQUIREMENT = "openai-whisper==20230124"
WHISPER_SDIST = "openai-whisper-20230124.tar.gz"
ASSET_DIR_IN_SDIST = "openai-whisper-20230124/whisper/assets/gpt2"
TOKENIZER_FILES = ("vocab.json", "merges.txt")
GPT2_VOCABULARY_SIZE = 50257


class AssetsUnavailableError(RuntimeError):
    """PyPI could not be reached (or did not serve the package)."""


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
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--timeout", "30", "--retries", "1",
        "-d", str(download_dir), WHISPER_REQUIREMENT,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    sdist = download_dir / WHISPER_SDIST
    if completed.returncode != 0 or not sdist.exists():
        last_lines = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-5:])
        raise AssetsUnavailableError(
            f"pip could not download {WHISPER_REQUIREMENT} (is PyPI reachable?):\n{last_lines}"
        )
    return sdist


def fetch_gpt2_tokenizer(out_dir: str | os.PathLike | None = None) -> Path:
    """Return a directory holding GPT-2's vocab.json and merges.txt, downloading once."""
    out_dir = Path(out_dir) if out_dir else default_cache_dir()
    if all((out_dir / name).is_file() for name in TOKENIZER_FILES):
        return out_dir
    with tempfile.TemporaryDirectory() as download_dir:
        sdist = _download_sdist(Path(download_dir))
        with tarfile.open(sdist) as archive, atomic.atomic_path(out_dir, is_dir=True) as tmp:
            for name in TOKENIZER_FILES:
                member = archive.extractfile(f"{ASSET_DIR_IN_SDIST}/{name}")
                (tmp / name).write_bytes(member.read())
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", help=f"default: {default_cache_dir()}")
    args = parser.parse_args(argv)
    try:
        print(fetch_gpt2_tokenizer(args.out_dir))
    except AssetsUnavailableError as error:
        print(f"llm2tflite: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
