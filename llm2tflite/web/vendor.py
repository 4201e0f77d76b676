"""The demo pages' shared JavaScript runtime: LiteRT.js and tokenizers.js, vendored.

Copies what the pages load of the packages ``npm ci`` installed (``llm2tflite.web.node_env``)
into ``results/reports/<config>/web/runtime/`` with their versions (``versions.json``, which the
manifest records), so that the pages need no CDN. Kept apart from ``llm2tflite.web.page``: the
runtime does not depend on the models, the tokenizers or the blocklist, nor reruns with them.

CLI (the workflow's ``web_runtime`` rule)::

    python -m llm2tflite.web.vendor --node-modules .snakemake/web-node-env/node_modules \\
        --out results/reports/default/web/runtime
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from llm2tflite.core import atomic

VERSIONS_FILE = "versions.json"
# What the page loads of each package (LiteRT.js picks its wasm build at run time: relaxed SIMD
# or not, threaded when cross-origin isolated; the JSPI build serves WebNN/WebGPU only).
RUNTIME_FILES = {
    "@litertjs/core": {
        "dist/index.js": "litertjs/core/index.js",
        **{
            f"wasm/litert_wasm_{build}internal.{ext}": (
                f"litertjs/wasm/litert_wasm_{build}internal.{ext}"
            )
            for build in ("", "compat_", "threaded_")
            for ext in ("js", "wasm")
        },
    },
    "@litertjs/wasm-utils": {"dist/index.js": "litertjs/wasm-utils/index.js"},
    "@huggingface/tokenizers": {
        "dist/tokenizers.min.mjs": "tokenizers/tokenizers.min.mjs",
        "LICENSE": "tokenizers/LICENSE",
    },
}


def build_runtime(node_modules, out_dir) -> dict:
    """Copy the page's JavaScript runtime from ``node_modules`` into ``out_dir``; the versions."""
    node_modules = Path(node_modules)
    versions = {}
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        for package, files in RUNTIME_FILES.items():
            source = node_modules / package
            manifest = source / "package.json"
            if not manifest.is_file():
                raise SystemExit(f"error: {source} is missing; run `npm ci` (web_node_env rule)")
            versions[package] = json.loads(manifest.read_text(encoding="utf-8"))["version"]
            for name, target in files.items():
                (tmp / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, tmp / target)
        (tmp / VERSIONS_FILE).write_text(json.dumps(versions, indent=2) + "\n", encoding="utf-8")
    return versions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", required=True)
    parser.add_argument("--out", required=True, help=".../web/runtime")
    args = parser.parse_args(argv)
    print(json.dumps(build_runtime(args.node_modules, args.out)))


if __name__ == "__main__":
    main()
