"""``results/reports/<config name>/manifest.json``: SHA-256 of every artifact, and the versions.

Two runs of the same config should give the same manifest; comparing two manifests shows at once
which artifact differs. Reading package versions from metadata keeps this stage free of a
TensorFlow import.
"""

from __future__ import annotations

import argparse
import json
import platform
from importlib import metadata
from pathlib import Path

from llm2tflite.core import atomic
from llm2tflite.core.hashing import sha256_file

VERSIONED_PACKAGES = (
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-text",
    "keras",
    "keras-hub",
    "snakemake",
    "numpy",
    "tokenizers",
    "sentencepiece",
    "safetensors",
    "ai-edge-litert",
    "ai-edge-quantizer",
)


def artifact_files(paths) -> list[Path]:
    """Files of the given paths, directories expanded, sorted; temporary writes left out."""
    files = []
    for path in map(Path, paths):
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files += [p for p in candidates if ".tmp-" not in p.name]
    return sorted(set(files))


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_manifest(paths, npm_versions=None) -> dict:
    """``npm_versions``: a JSON file of vendored JavaScript packages' versions (the demo pages'
    runtime/versions.json), recorded under ``versions["npm"]``."""
    files = artifact_files(paths)
    versions = package_versions()
    if npm_versions:
        versions["npm"] = json.loads(Path(npm_versions).read_text(encoding="utf-8"))
    return {
        "versions": versions,
        "artifacts": {str(p): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--npm-versions", help="JSON versions of vendored npm packages")
    parser.add_argument("paths", nargs="+", help="artifact files or directories")
    args = parser.parse_args(argv)
    atomic.write_json(args.out, build_manifest(args.paths, args.npm_versions))


if __name__ == "__main__":
    main()
