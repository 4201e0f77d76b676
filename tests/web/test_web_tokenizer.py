"""The demo page's tokenizer.json of a SentencePiece model: the ids sentencepiece gives.

The tokenizer is the default ``tiny_llama``'s, trained from its config settings (corpus and
vocabulary) by the stage modules in a few seconds; the lines are its held-out and train corpus
plus hard cases. Python ``tokenizers`` reads the file here; the browser test
(test_web_page.py) checks tokenizers.js on the same kind of lines. No TensorFlow, no browser.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

HARD_CASES = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "a  b   c    d",
    "   leading and trailing   ",
    "emoji 😀🎉👩‍👩‍👧 ok",
    "🙂",
    "accents: àéîõü ÀÉÎÕÜ ñ Ñ ç ß œ",
    "combining: e\u0301 n\u0303",
    "日本語のテキスト 中文 한국어",
    "Ελληνικά русский עברית العربية",
    "digits 0123456789 3.14159 1,000,000",
    "tabs\tand\nnewlines\r\nmixed",
    "<s> </s> <unk> <0x41>",
    "▁ already escaped ▁▁",
    "x" * 300,
    "¿Dónde está la biblioteca? ¡Mañana!",
    "punctuation!!! ??? ... ---",
]
MIN_LINES = 1000


def _tiny_llama_settings() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    return config["models"]["tiny_llama"]["train"]


@pytest.fixture(scope="module")
def tiny_llama_tokenizer(tmp_path_factory):
    """tiny_llama's tokenizer.model and corpus lines, built as the workflow builds them."""
    from llm2tflite.inputs import corpus

    settings = _tiny_llama_settings()
    out = tmp_path_factory.mktemp("web_sp")
    train, heldout = corpus.generate_corpus(
        settings["corpus"]["seed"],
        settings["corpus"]["train_lines"],
        settings["corpus"]["heldout_lines"],
    )
    corpus.write_lines(out / "train.txt", train)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.inputs.vocab",
            "--kind",
            "sentencepiece",
            "--corpus",
            str(out / "train.txt"),
            "--vocab-size",
            str(settings["vocabulary"]["size"]),
            "--out-dir",
            str(out / "vocab"),
        ],
        check=True,
        capture_output=True,
    )
    (model,) = (out / "vocab").glob("*.model")
    return model, heldout + train[:1000]


def test_tokenizer_json_gives_sentencepiece_ids(tiny_llama_tokenizer):
    import sentencepiece
    from tokenizers import Tokenizer

    from llm2tflite.web.tokenizer_json import sentencepiece_to_json

    model, lines = tiny_llama_tokenizer
    lines = lines + HARD_CASES
    assert len(lines) >= MIN_LINES
    converted = Tokenizer.from_str(sentencepiece_to_json(model.read_bytes()))
    processor = sentencepiece.SentencePieceProcessor(model_file=str(model))
    mismatches = []
    for line in lines:
        expected = processor.encode(line, out_type=int)
        got = converted.encode(line, add_special_tokens=False).ids
        decoded = converted.decode(expected, skip_special_tokens=False)
        if got != expected or decoded != processor.decode(expected):
            mismatches.append((line, got[:12], expected[:12]))
    assert not mismatches, f"{len(mismatches)} of {len(lines)} lines differ: {mismatches[:3]}"


def test_unsupported_sentencepiece_models_are_refused(tiny_llama_tokenizer):
    from sentencepiece import sentencepiece_model_pb2

    from llm2tflite.web.tokenizer_json import UnsupportedTokenizerError, sentencepiece_to_json

    model, _ = tiny_llama_tokenizer
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.read_bytes())
    proto.trainer_spec.model_type = 1  # unigram
    proto.normalizer_spec.remove_extra_whitespaces = True
    with pytest.raises(UnsupportedTokenizerError, match="model type 1.*remove_extra_whitespaces"):
        sentencepiece_to_json(proto.SerializeToString())


def test_page_cli_writes_a_complete_page(tiny_llama_tokenizer, tmp_path):
    """The page stage on a LiteRT-route directory (the model file need not be a real one to lay
    out the page): every file index.html loads, the blocklist normalized, page.json."""
    model, _ = tiny_llama_tokenizer
    litert = tmp_path / "tiny_llama" / "litert"
    litert.mkdir(parents=True)
    (litert / "tokenizer.model").write_bytes(model.read_bytes())
    (litert / "int8.tflite").write_bytes(b"not a model")
    (litert / "litert_export.json").write_text("{}", encoding="utf-8")
    blocklist = tmp_path / "words.txt"
    blocklist.write_text("# test\nCabrón\n", encoding="utf-8")
    out = tmp_path / "web" / "tiny_llama"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.web.page",
            "--litert-dir",
            str(litert),
            "--variant",
            "int8",
            "--blocklist",
            str(blocklist),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "app.js", "model.js", "sampler.js", "safety.js"} <= names
    assert {"int8.tflite", "litert_export.json", "tokenizer.json", "page.json"} <= names
    page = json.loads((out / "page.json").read_text())
    assert page["model"] == "tiny_llama" and page["file"] == "int8.tflite"
    assert json.loads((out / "blocklist.json").read_text())["normalized"] == ["cabron"]
    # Written once: a second build refuses to replace a page it did not just write.
    again = subprocess.run(
        [sys.executable, "-m", "llm2tflite.web.page", "--litert-dir", str(litert)]
        + ["--variant", "int8", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert again.returncode != 0 and "not empty" in again.stderr
