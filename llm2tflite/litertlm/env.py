"""The LiteRT-LM environment: a venv from requirements-litert-lm.txt for llm2tflite.litertlm.bundle.

``litert-lm-builder`` and ``litert_lm`` need protobuf >= 6.31, which TensorFlow 2.18.1 cannot
import, so bundles are packed and run in a venv of their own. The workflow's ``litertlm_env``
rule creates it (config ``litertlm: venv:``, default ``.snakemake/litert-lm-venv``) unless
``--sdm conda`` is on (then ``envs/litert-lm.yaml``). The marker file, written last, records the
interpreter, protobuf version and ``pip freeze``: the rule's output, present only when the venv
is complete. Standard library only (it runs before any environment exists).

CLI::

    python -m llm2tflite.litertlm.env --requirements requirements-litert-lm.txt \
        --dir .snakemake/litert-lm-venv
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from llm2tflite.core import atomic
from llm2tflite.core.hashing import sha256_file

REQUIREMENTS_FILE = "requirements-litert-lm.txt"
#: Where the workflow creates the venv (relative to its working directory).
DEFAULT_VENV_DIR = ".snakemake/litert-lm-venv"
#: Written last: the rule's output (the venv is complete when it exists).
VENV_MARKER = "llm2tflite-litert-lm-env.json"


def create_venv(requirements, venv_dir, python: str | None = None) -> dict:
    """A fresh venv at ``venv_dir`` with ``requirements`` installed; its marker file last.

    ``python``: the interpreter the venv is based on (default: this one's base interpreter).
    On a cluster, put ``venv_dir`` on the filesystem the jobs share (the workflow's working
    directory is) and create it where PyPI is reachable (the workflow runs it as a local rule).
    """
    venv_dir = Path(venv_dir).absolute()
    if venv_dir.exists() or venv_dir.is_symlink():
        # Replace only a venv this module made (its marker, or a venv's pyvenv.cfg of a run that
        # stopped before the marker) or an empty directory (Snakemake creates the output's
        # parent before the job): never a directory the user keeps something else in.
        ours = (
            (venv_dir / VENV_MARKER).is_file()
            or (venv_dir / "pyvenv.cfg").is_file()
            or (venv_dir.is_dir() and not any(venv_dir.iterdir()))
        )
        if not venv_dir.is_dir() or venv_dir.is_symlink() or not ours:
            raise SystemExit(
                f"error: {venv_dir} exists and is not a LiteRT-LM venv made by llm2tflite; "
                "remove it or set litertlm.venv to another directory"
            )
        shutil.rmtree(venv_dir)
    base = python or getattr(sys, "_base_executable", None) or sys.executable
    started = time.perf_counter()
    subprocess.run([base, "-m", "venv", str(venv_dir)], check=True)
    venv_python = venv_dir / "bin" / "python"
    subprocess.run(
        [
            str(venv_python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
        check=True,
    )
    check = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import litert_lm, litert_lm_builder, google.protobuf as p; print(p.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    freeze = subprocess.run(
        [str(venv_python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.split()
    record = {
        "python": str(venv_python),
        "builder": str(venv_dir / "bin" / "litert-lm-builder"),
        "protobuf": check.stdout.strip(),
        "requirements": str(requirements),
        "requirements_sha256": sha256_file(requirements),
        "packages": freeze,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic.write_json(venv_dir / VENV_MARKER, record)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", default=REQUIREMENTS_FILE)
    parser.add_argument("--dir", default=DEFAULT_VENV_DIR)
    parser.add_argument("--python", help="base interpreter (default: this one's)")
    args = parser.parse_args(argv)
    record = create_venv(args.requirements, args.dir, args.python)
    print(f"created {args.dir} (protobuf {record['protobuf']}, {record['seconds']} s)")


if __name__ == "__main__":
    main()
