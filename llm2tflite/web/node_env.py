"""The demo page's JavaScript packages: ``npm ci`` from llm2tflite/web/package-lock.json.

The page vendors LiteRT.js (``@litertjs/core``, its ``@litertjs/wasm-utils``) and
``@huggingface/tokenizers`` at the versions the lock file pins, so that it needs no CDN when it
runs. The workflow's ``web_node_env`` rule (a local rule: it needs the npm registry) installs
them into ``.snakemake/web-node-env/node_modules``; the marker file, written last, records the
installed versions and the lock file's hash, and is the rule's output. Standard library only.

CLI::

    python -m llm2tflite.web.node_env --dir .snakemake/web-node-env
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from llm2tflite.core import atomic
from llm2tflite.core.hashing import sha256_file

WEB_PACKAGE_DIR = Path(__file__).resolve().parent
#: Where the workflow installs the packages (relative to its working directory).
DEFAULT_DIR = ".snakemake/web-node-env"
#: Written last: the rule's output (the install is complete when it exists).
MARKER = "llm2tflite-web-env.json"
PACKAGE_FILES = ("package.json", "package-lock.json")


def installed_versions(node_modules) -> dict:
    """name -> version of every package directly under ``node_modules`` (scoped ones too)."""
    versions = {}
    for manifest in sorted(Path(node_modules).glob("*/package.json")) + sorted(
        Path(node_modules).glob("@*/*/package.json")
    ):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        versions[data["name"]] = data["version"]
    return versions


def install(directory, package_dir=WEB_PACKAGE_DIR, npm: str = "npm") -> dict:
    """``npm ci`` of ``package_dir``'s lock file into ``directory``; its marker file last."""
    directory = Path(directory).absolute()
    if directory.exists() and not (directory / MARKER).is_file():
        # Only what this module made (package.json beside node_modules) or an empty directory
        # (Snakemake creates the output's parent) is replaced.
        ours = (directory / "package-lock.json").is_file() or not any(directory.iterdir())
        if not ours:
            raise SystemExit(
                f"error: {directory} exists and is not llm2tflite's web packages directory; "
                "remove it or set web.node_env to another directory"
            )
    if shutil.which(npm) is None:
        raise SystemExit(
            "error: npm not found; the demo page vendors its JavaScript packages with `npm ci` "
            "(Debian: apt-get install npm; or .ci/install-browser.sh), or set web.models: []"
        )
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).unlink(missing_ok=True)
    for name in PACKAGE_FILES:
        shutil.copyfile(Path(package_dir) / name, directory / name)
    # No install scripts: the packages are static files the page serves.
    subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        check=True,
    )
    record = {
        "node_modules": str(directory / "node_modules"),
        "package_lock_sha256": sha256_file(directory / "package-lock.json"),
        "versions": installed_versions(directory / "node_modules"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic.write_json(directory / MARKER, record)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=DEFAULT_DIR)
    parser.add_argument("--package-dir", default=str(WEB_PACKAGE_DIR), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    record = install(args.dir, args.package_dir)
    print(json.dumps({"dir": args.dir, **record}))


if __name__ == "__main__":
    main()
