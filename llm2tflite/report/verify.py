"""Re-hash the artifacts a manifest lists and say which changed since they were built.

``python -m llm2tflite verify [results/reports/<config>/manifest.json]``: one line per artifact that
is missing or whose bytes differ from the manifest (``llm2tflite.report.manifest``), then one
summary line. The manifest's paths are relative to the project directory the workflow ran in,
three levels above ``results/reports/<config>/manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from llm2tflite.core.hashing import sha256_file

MANIFEST_GLOB = "results/reports/*/manifest.json"


class ManifestError(ValueError):
    """No manifest, or not one the workflow wrote (one line)."""


def find_manifest(given=None, project=".") -> Path:
    """The manifest given, else the only ``results/reports/*/manifest.json`` under ``project``."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise ManifestError(f"manifest {str(path)!r} does not exist")
        return path
    found = sorted(Path(project).glob(MANIFEST_GLOB))
    if len(found) != 1:
        listed = ", ".join(map(str, found)) or "none"
        raise ManifestError(
            f"give the manifest to check: {MANIFEST_GLOB} matches {listed} "
            "(run from the project directory, or pass the path)"
        )
    return found[0]


def _project_root(manifest: Path) -> Path:
    parts = manifest.resolve().parts
    if len(parts) >= 4 and parts[-4] == "results" and parts[-3] == "reports":
        return manifest.resolve().parents[3]
    return Path.cwd()


def changed_artifacts(manifest: Path) -> tuple[int, list[str]]:
    """(artifacts checked, one line per artifact missing or changed)."""
    try:
        artifacts = json.loads(manifest.read_text(encoding="utf-8"))["artifacts"]
        entries = {str(k): (v["sha256"], int(v["bytes"])) for k, v in artifacts.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ManifestError(
            f"{manifest} is not a manifest of this workflow ({type(error).__name__}: {error})"
        ) from None
    root = _project_root(manifest)
    lines = []
    for name, (sha256, size) in sorted(entries.items()):
        path = root / name
        if not path.is_file():
            lines.append(f"{name}: missing (listed in {manifest})")
            continue
        actual_size = path.stat().st_size
        if actual_size != size:
            lines.append(
                f"{name}: changed since it was built ({size} bytes then, {actual_size} now)"
            )
        elif sha256_file(path) != sha256:
            lines.append(f"{name}: changed since it was built (same size, different bytes)")
    return len(entries), lines
