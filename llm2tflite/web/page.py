"""The demo page: a LiteRT-route model in the browser with LiteRT.js (issue 18).

Layout (rules ``web_runtime``: ``llm2tflite.web.vendor``, and ``web_page``: this module;
served by ``python -m llm2tflite serve``)::

    results/reports/<config>/web/
        runtime/            LiteRT.js (+ its wasm builds) and tokenizers.js, shared by the pages
            versions.json   the vendored packages' versions (copied into the manifest)
        <model>/            one page per model: index.html, app.js, model.js, sampler.js,
                            safety.js, page.json, <variant>.tflite, litert_export.json,
                            tokenizer.json, blocklist.json

The pages sit with the per-config reports because a page depends on config choices (the
variant, the blocklist) that another config of the same project may make differently. The
runtime directory is shared so that each page does not carry LiteRT.js's ~28 MB of wasm.

The page tokenizes with ``@huggingface/tokenizers``, which reads ``tokenizer.json`` only: a
byte-level BPE model's is copied, a SentencePiece model's ``tokenizer.model`` converted
(``llm2tflite.web.tokenizer_json``). The blocklist is written normalized by
``llm2tflite.core.safety``'s rules, so that the browser matches what the CLI matches.

CLI::

    python -m llm2tflite.web.page --litert-dir results/tiny/litert --variant int8 \\
        --out results/reports/default/web/tiny [--blocklist FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from llm2tflite.core import atomic
from llm2tflite.litert.contract import INFO_FILE, SENTENCEPIECE_MODEL, TOKENIZER_JSON

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = ("index.html", "app.js", "model.js", "sampler.js", "safety.js")
RUNTIME_DIR_NAME = "runtime"
PAGE_FILE = "page.json"


def runtime_tokenizer_file(litert_dir: Path) -> Path:
    """The LiteRT route's tokenizer file in ``litert_dir``: exactly one of the contract's names.

    Looked up here by the contract's names (``llm2tflite.litert.contract``) rather than with
    ``llm2tflite.litert.runtime_tokenizer``, whose CLI imports the model families: the page's
    code inputs stay the web package, core and the contract."""
    names = (TOKENIZER_JSON, SENTENCEPIECE_MODEL)
    found = [litert_dir / name for name in names if (litert_dir / name).is_file()]
    if len(found) != 1:
        raise SystemExit(
            f"error: {litert_dir} must hold exactly one tokenizer file ({TOKENIZER_JSON} or "
            f"{SENTENCEPIECE_MODEL}), found {len(found)}; the workflow's runtime_tokenizer rule "
            "writes it"
        )
    return found[0]


def tokenizer_json_text(litert_dir: Path) -> str:
    """The model's runtime tokenizer as tokenizer.json text (SentencePiece converted)."""
    path = runtime_tokenizer_file(Path(litert_dir))
    if path.name == TOKENIZER_JSON:
        return path.read_text(encoding="utf-8")
    if path.name == SENTENCEPIECE_MODEL:
        from llm2tflite.web.tokenizer_json import sentencepiece_to_json

        return sentencepiece_to_json(path.read_bytes())
    raise SystemExit(f"error: {path}: no tokenizer.json conversion for this tokenizer")


def blocklist_json(path=None) -> dict:
    from llm2tflite.core.safety import _normalize, load_blocklist

    words = load_blocklist(path)
    return {"normalized": sorted({_normalize(w) for w in words}), "count": len(words)}


def build_page(
    litert_dir, variant: str, out_dir, blocklist=None, model: str | None = None, threads: int = 1
) -> dict:
    """Write one model's page into ``out_dir`` (see the module docstring); its page.json."""
    litert_dir = Path(litert_dir)
    model_file = litert_dir / f"{variant}.tflite"
    for needed in (model_file, litert_dir / INFO_FILE):
        if not needed.is_file():
            raise SystemExit(f"error: {needed} is missing (build the LiteRT route first)")
    page = {
        "model": model or litert_dir.parent.name,
        "variant": variant,
        "file": model_file.name,
        "info": INFO_FILE,
        "tokenizer": "tokenizer.json",
        "blocklist": "blocklist.json",
        "wasm": f"../{RUNTIME_DIR_NAME}/litertjs/wasm/",
        "threads": threads,
    }
    tokenizer_text = tokenizer_json_text(litert_dir)
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        for name in STATIC_FILES:
            shutil.copyfile(STATIC_DIR / name, tmp / name)
        shutil.copyfile(model_file, tmp / model_file.name)
        shutil.copyfile(litert_dir / INFO_FILE, tmp / INFO_FILE)
        (tmp / "tokenizer.json").write_text(tokenizer_text, encoding="utf-8")
        (tmp / "blocklist.json").write_text(
            json.dumps(blocklist_json(blocklist), ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (tmp / PAGE_FILE).write_text(json.dumps(page, indent=2) + "\n", encoding="utf-8")
    return page


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--litert-dir", required=True, help="results/<model>/litert")
    parser.add_argument("--variant", required=True, help="fp32, int8 or int4")
    parser.add_argument("--out", required=True, help=".../web/<model>")
    parser.add_argument("--model", help="the page's model name (default: the litert dir's parent)")
    parser.add_argument("--blocklist", help="default: the package's llm2tflite/data/blocklist.txt")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT.js CPU threads (default 1)")
    args = parser.parse_args(argv)
    page = build_page(
        args.litert_dir, args.variant, args.out, args.blocklist, args.model, args.threads
    )
    print(json.dumps(page))


if __name__ == "__main__":
    main()
