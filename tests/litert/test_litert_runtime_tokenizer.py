"""The LiteRT route's tokenizer outside the graph gives exactly KerasHub's ids.

Same texts as the codelab route's parity test (>= 1,000 held-out corpus lines and its hard cases)
plus special tokens inside text, on the default model's vocabulary, on GPT-2's real 50257-token
files, and on a SentencePiece model (the tokenizer kind of Llama-style families).
"""

from __future__ import annotations

import pytest
from test_tokenizer_parity import HARD_CASES, _assert_same, _ids_keras, _parity_texts

SPECIAL_CASES = [
    "x<|endoftext|>y",
    "<|endoftext|><|endoftext|> z",
    "a <|endoftext|> b",
    "<|endoftext",
    "|endoftext|>",
    "year 2026 and 123456 and 3.14",
]


def _runtime_ids(tokenizer, texts):
    return [tokenizer.encode(text) for text in texts]


def _check_parity(keras_tokenizer, runtime, texts):
    keras_ids = _ids_keras(keras_tokenizer, texts)
    runtime_ids = _runtime_ids(runtime, texts)
    _assert_same("runtime tokenizer", runtime_ids, "KerasHub", keras_ids, texts)
    # Decoding gives the text back, and KerasHub's detokenize agrees.
    assert [runtime.decode(ids) for ids in runtime_ids] == texts
    detokenized = keras_tokenizer.detokenize(keras_ids[:200])
    assert [runtime.decode(ids) for ids in runtime_ids[:200]] == list(detokenized)
    assert sum(len(ids) for ids in runtime_ids) > 5 * len(texts)
    return runtime_ids


def test_default_vocabulary_from_the_preset(default_corpus_and_vocab, tmp_path):
    """Through the workflow's CLI: preset -> tokenizer.json -> tokenizers' ids."""
    import json
    import subprocess
    import sys

    from llm2tflite.families import registry
    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer

    from conftest import build_random_preset

    preset = build_random_preset(default_corpus_and_vocab / "vocab", tmp_path / "preset")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.litert.runtime_tokenizer",
            "--preset",
            str(preset),
            "--out-dir",
            str(tmp_path / "litert"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["file"].endswith("tokenizer.json") and summary["kind"] == "byte_level_bpe"
    runtime = load_runtime_tokenizer(tmp_path / "litert")
    keras_tokenizer = registry.by_name("gpt2").load_tokenizer(default_corpus_and_vocab / "vocab")
    assert (
        runtime.vocabulary_size() == keras_tokenizer.vocabulary_size() == summary["vocabulary_size"]
    )
    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt") + SPECIAL_CASES
    ids = _check_parity(keras_tokenizer, runtime, texts)
    end = keras_tokenizer.end_token_id
    # SPECIAL_CASES[:2]: the end token inside text is one id, as in KerasHub.
    assert ids[-6][1] == end and ids[-5][:2] == [end, end]


@pytest.mark.network
def test_gpt2_real_vocabulary(gpt2_tokenizer_dir, default_corpus_and_vocab, tmp_path):
    from llm2tflite.families import registry
    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer, write_runtime_tokenizer

    keras_tokenizer = registry.by_name("gpt2").load_tokenizer(gpt2_tokenizer_dir)
    path = write_runtime_tokenizer(keras_tokenizer, "byte_level_bpe", tmp_path)
    runtime = load_runtime_tokenizer(path)
    assert runtime.vocabulary_size() == 50257
    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt") + SPECIAL_CASES
    _check_parity(keras_tokenizer, runtime, texts)
    # Known GPT-2 ids, independent of any tokenizer implementation here.
    assert runtime.encode("Hello world") == [15496, 995]
    assert runtime.encode("<|endoftext|>") == [50256]


def test_sentencepiece_model_is_shipped_as_is(default_corpus_and_vocab, tmp_path):
    import io

    import keras_hub
    import sentencepiece as spm

    from llm2tflite.litert.runtime_tokenizer import (
        SENTENCEPIECE_MODEL,
        load_runtime_tokenizer,
        write_runtime_tokenizer,
    )

    lines = (default_corpus_and_vocab / "train.txt").read_text(encoding="utf-8").splitlines()
    proto = io.BytesIO()
    # Llama-style settings: BPE with byte fallback (emoji and any script round-trip), digits
    # split, no normalization, a dummy prefix space.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines[:5000]),
        model_writer=proto,
        vocab_size=800,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    keras_tokenizer = keras_hub.models.LlamaTokenizer(proto=proto.getvalue())
    path = write_runtime_tokenizer(keras_tokenizer, "sentencepiece", tmp_path)
    assert path.name == SENTENCEPIECE_MODEL and path.read_bytes() == proto.getvalue()
    runtime = load_runtime_tokenizer(tmp_path)
    texts = _parity_texts(default_corpus_and_vocab / "heldout.txt") + HARD_CASES
    keras_ids = _ids_keras(keras_tokenizer, texts)
    runtime_ids = _runtime_ids(runtime, texts)
    _assert_same("runtime tokenizer", runtime_ids, "KerasHub", keras_ids, texts)
    detokenized = keras_tokenizer.detokenize(keras_ids[:200])
    assert [runtime.decode(ids) for ids in runtime_ids[:200]] == list(detokenized)


def test_runtime_file_by_kind_and_errors(tmp_path):
    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer, runtime_file

    assert runtime_file("byte_level_bpe") == "tokenizer.json"
    assert runtime_file("sentencepiece") == "tokenizer.model"
    with pytest.raises(ValueError, match="no runtime tokenizer"):
        runtime_file("wordpiece")
    with pytest.raises(FileNotFoundError, match="exactly one tokenizer file"):
        load_runtime_tokenizer(tmp_path)
