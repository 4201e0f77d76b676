"""The tokenizer inside the converted TFLite model gives exactly KerasHub's ids.

It can break silently (a scalar string input once gave garbage ids on GPT-2's real vocabulary), and
a toy vocabulary or a single prompt can hide that, so: >= 1,000 held-out corpus lines plus hard
cases, on the default model's vocabulary and on GPT-2's real 50257-token vocabulary, each checked
against KerasHub's tokenizer in TensorFlow and against Hugging Face `tokenizers` on the same files.
"""

from __future__ import annotations

import pytest

from conftest import build_random_preset

HARD_CASES = [
    "",
    " ",
    "   ",
    "\t\n  \n",
    "Estoy disfrutando de",
    " Estoy disfrutando de ",
    "¿Qué tal? ¡Hola, cigüeña! Ñandú, pingüino, acción, árbol.",
    "naïve café résumé — “quotes” ‘single’ … «guillemets»",
    "emoji 🤖🎉👍🏽 family 👨‍👩‍👧‍👦 flags 🇪🇸🇬🇧",
    "日本語のテキストと中文文本",
    "Ελληνικά και русский текст",
    "numbers 3.14159 1,000,000 2026-11-25 #42 @user",
    "tabs\tand\r\nwindows newlines\x0bvertical",
    "a" * 300,
    "repetition " * 200,
    ("Mixed English y español, with emoji 🚀 and accents áéíóú. " * 40).strip(),
    # The end token inside text: one id, as `tokenizers` reads an added special token.
    "a <|endoftext|> b",
    "x<|endoftext|>y",
    "<|endoftext|><|endoftext|> z",
    "<|endoftext",
]


def _ids_tflite(model, texts):
    return [model.token_ids(text) for text in texts]


def _ids_keras(tokenizer, texts):
    """KerasHub's tokenizer on TensorFlow's graph path (the one traced into the model)."""
    import tensorflow as tf

    ragged = tf.function(tokenizer)(tf.constant(texts))
    return [[int(i) for i in row] for row in ragged.to_list()]


def _ids_hf(vocab_dir, texts):
    from tokenizers import ByteLevelBPETokenizer

    oracle = ByteLevelBPETokenizer(str(vocab_dir / "vocab.json"), str(vocab_dir / "merges.txt"))
    oracle.add_special_tokens(["<|endoftext|>"])  # as GPT-2's tokenizer.json adds it
    return [oracle.encode(text).ids for text in texts]


def _assert_same(name_a, ids_a, name_b, ids_b, texts):
    mismatches = [(t, a, b) for t, a, b in zip(texts, ids_a, ids_b) if a != b]
    assert not mismatches, (
        f"{len(mismatches)}/{len(texts)} texts tokenize differently in {name_a} and {name_b}; "
        f"first: {mismatches[0][0][:80]!r}\n  {name_a}: {mismatches[0][1][:20]}\n"
        f"  {name_b}: {mismatches[0][2][:20]}"
    )


def _parity_texts(heldout_file, count=1000):
    lines = heldout_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= count, f"held-out corpus has only {len(lines)} lines"
    return lines[:count] + HARD_CASES


def test_default_vocabulary_parity(small_export, default_corpus_and_vocab):
    from llm2tflite.codelab.runtime import TFLiteModel

    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt")
    tokenizer = small_export["causal_lm"].preprocessor.tokenizer
    tflite_ids = _ids_tflite(TFLiteModel(small_export["tflite"]), texts)
    keras_ids = _ids_keras(tokenizer, texts)
    _assert_same("TFLite", tflite_ids, "KerasHub", keras_ids, texts)
    _assert_same(
        "KerasHub",
        keras_ids,
        "tokenizers",
        _ids_hf(default_corpus_and_vocab / "vocab", texts),
        texts,
    )
    # The ids are not trivially short: the corpus lines really went through BPE.
    assert sum(len(ids) for ids in tflite_ids) > 5 * len(texts)


@pytest.mark.network
def test_gpt2_real_vocabulary_parity(gpt2_tokenizer_dir, default_corpus_and_vocab, tmp_path):
    from llm2tflite.codelab.convert import convert_saved_model
    from llm2tflite.codelab.runtime import TFLiteModel
    from llm2tflite.codelab.trace import SIGNATURES, export_saved_model
    from llm2tflite.core import atomic
    from llm2tflite.families.gpt2_assets import GPT2_VOCABULARY_SIZE
    from llm2tflite.inputs.sources import load_causal_lm

    # A companion model built the same way as every exported model, on GPT-2's vocabulary.
    preset = build_random_preset(gpt2_tokenizer_dir, tmp_path / "preset")
    causal_lm = load_causal_lm(str(preset))
    tokenizer = causal_lm.preprocessor.tokenizer
    assert tokenizer.vocabulary_size() == GPT2_VOCABULARY_SIZE
    export_saved_model(causal_lm, tmp_path / "traced", max_length=16, sequence_length=8)
    flatbuffer, _ = convert_saved_model(str(tmp_path / "traced"), "fp32", SIGNATURES)
    atomic.write_bytes(tmp_path / "gpt2.tflite", flatbuffer)

    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt")
    tflite_ids = _ids_tflite(TFLiteModel(tmp_path / "gpt2.tflite"), texts)
    keras_ids = _ids_keras(tokenizer, texts)
    _assert_same("TFLite", tflite_ids, "KerasHub", keras_ids, texts)
    _assert_same("KerasHub", keras_ids, "tokenizers", _ids_hf(gpt2_tokenizer_dir, texts), texts)
    # Known GPT-2 ids, independent of any tokenizer implementation here.
    assert TFLiteModel(tmp_path / "gpt2.tflite").token_ids("Hello world") == [15496, 995]


# ---- GPT-2's tokenizer files: pinned, and fetched without harming the target directory -------


def _gpt2_assets(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "llm2tflite.families.gpt2_assets", *args],
        capture_output=True,
        text=True,
    )


@pytest.mark.network
def test_gpt2_assets_match_their_pinned_sha256(gpt2_tokenizer_dir):
    import hashlib

    from llm2tflite.families.gpt2_assets import TOKENIZER_SHA256

    for name, digest in TOKENIZER_SHA256.items():
        assert hashlib.sha256((gpt2_tokenizer_dir / name).read_bytes()).hexdigest() == digest


@pytest.mark.network
def test_gpt2_assets_into_a_users_folder_keep_its_contents(gpt2_tokenizer_dir, tmp_path):
    folder = tmp_path / "my_folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    completed = _gpt2_assets("--out-dir", str(folder))
    if completed.returncode == 2 and "is PyPI reachable" in completed.stderr:
        from conftest import skip_or_fail

        skip_or_fail(completed.stderr)
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "notes.txt", "vocab.json"]
    assert (folder / "notes.txt").read_text() == "mine"
    for name in ("vocab.json", "merges.txt"):
        assert (folder / name).read_bytes() == (gpt2_tokenizer_dir / name).read_bytes()


def test_gpt2_assets_refuse_to_overwrite_another_file(tmp_path):
    folder = tmp_path / "my_folder"
    folder.mkdir()
    (folder / "vocab.json").write_text('{"my": 0}')
    completed = _gpt2_assets("--out-dir", str(folder))
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert "is not GPT-2's vocab.json (SHA-256 differs)" in completed.stderr
    assert (folder / "vocab.json").read_text() == '{"my": 0}'
    assert [p.name for p in folder.iterdir()] == ["vocab.json"]


def test_gpt2_assets_refuse_a_file_as_out_dir(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("data")
    completed = _gpt2_assets("--out-dir", str(target))
    assert completed.returncode == 2 and completed.stderr.count("\n") == 1, completed.stderr
    assert "is a file, not a directory" in completed.stderr
    assert target.read_text() == "data"
