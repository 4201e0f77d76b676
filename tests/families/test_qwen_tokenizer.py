"""Qwen's tokenizer: every tokenizer of the workflow gives Hugging Face's ids; KerasHub's own does
not.

The oracle is Hugging Face ``tokenizers`` on a ``tokenizer.json`` written by hand in the form of
Qwen 2.5's published one (conftest's ``qwen_tokenizer_json``: NFC normalizer; a Split on Qwen's
regex, isolated, then the byte-level mapping without its own regex; BPE without byte fallback;
the special tokens as added tokens): nothing of it comes from llm2tflite.

- The LiteRT route's runtime tokenizer (``tokenizer.json`` written by the workflow's
  ``runtime_tokenizer`` stage) gives the oracle's ids on >= 1,000 held-out corpus lines and hard
  cases (digit runs, capital contractions, CRLF, trailing spaces, emoji, CJK, Qwen's special
  tokens, decomposed accents ...), on two vocabularies: the one the workflow's vocabulary stage
  learns for Qwen (its pre-tokenizer) and one learned with cl100k's pattern (multi-digit and
  cross-piece merges, as Qwen's own vocabulary, which builds on cl100k's, has them), on which
  the pre-tokenizers' differences change ids.
- The family's exact tokenizer (``Qwen.exact_tokenizer``: KerasHub's ``QwenTokenizer`` with
  ``llm2tflite.families.byte_level_bpe``, what every model the workflow loads tokenizes with) on
  the second vocabulary, both of its paths: in a TensorFlow graph (the Keras reference, the
  codelab route's in-graph tokenizer) and eager (what KerasHub's ``generate()`` tokenizes
  with), gives the oracle's ids on every case, and so does it converted to a ``.tflite`` with
  Select TF ops (as the codelab route's traced tokenizer), special tokens included.
- KerasHub 0.31's own ``QwenTokenizer`` on the same texts differs from the oracle exactly on the
  cases ``KERAS_HUB_DIFFERS`` names (graph: GPT-2's pattern, no normalization; eager: Llama 3's
  pattern passed to ``Split`` as a literal string, so the whole text is one piece): the cases
  can tell a wrong tokenizer from a right one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_tokenizer_parity import HARD_CASES, _ids_keras

from llm2tflite.families import registry
from llm2tflite.inputs import vocab as vocab_stage

from conftest import QWEN_SPECIAL_TOKENS as SPECIAL_TOKENS
from conftest import qwen_tokenizer_json

# OpenAI's cl100k_base pattern: digits in runs of up to 3, so its vocabulary has digit merges.
CL100K_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CORPUS = "corpus lines"
NAMED_CASES = {
    "digit runs": "In 2025 we paid 1,000,000 and 3.14159 for 12345 items",
    "capital contractions": "I'M sure IT'S fine, WE'LL see, DON'T go, they'RE here",
    "crlf": "first line\r\nsecond line\r\n\r\nthird",
    "trailing spaces": "trailing spaces   ",
    "newline runs": "a\n\n\nb \n c",
    "emoji": "emoji 🤖🎉👍🏽 👨‍👩‍👧‍👦 🇪🇸",
    "cjk": "日本語のテキストと中文文本",
    "chat special tokens": "<|im_start|>user\nHola, ¿qué tal?<|im_end|>\n<|im_start|>assistant\n",
    "end of text": "fin<|endoftext|>next",
    "inverted punctuation": "¿Dónde está? ¡Hola!",
    "decomposed accents": "cafe\u0301 nin\u0303o",
    "leading spaces": "   leading",
    "tabs": "tabs\tand\tmore",
    **{f"hard case {i}: {text[:24]!r}": text for i, text in enumerate(HARD_CASES)},
}
_SPACES = "whitespace runs: KerasHub splits the last space off a run (its re2 stand-in for GPT-2's "
_SPACES += r"\s+(?!\S)), Qwen keeps the run whole"
_TAB_WORD = (
    "Qwen joins one non-letter (tab, ¿, ¡) to the word after it; GPT-2's pattern only a space"
)
_NFC = "Qwen normalizes to NFC first; KerasHub does not normalize"
_DIGITS_GRAPH = (
    "GPT-2's pattern keeps a digit run whole (' 2025'), merged by BPE; Qwen splits digits"
)
_ONE_PIECE = "KerasHub's eager path does not split the text (its pattern is taken as a literal "
_ONE_PIECE += "string): BPE merges across Qwen's pieces (digit runs)"
# The cases KerasHub 0.31's own QwenTokenizer tokenizes otherwise than Qwen, per path, and why.
KERAS_HUB_DIFFERS = {
    "graph": {
        CORPUS: "corpus lines with ¿ or ¡ before a word, digit runs, whitespace runs",
        "digit runs": _DIGITS_GRAPH,
        "capital contractions": "GPT-2's contractions are lower-case only ('M, 'S ...)",
        "trailing spaces": _SPACES,
        "inverted punctuation": _TAB_WORD,
        "decomposed accents": _NFC,
        "tabs": _TAB_WORD,
        f"hard case 2: {HARD_CASES[2][:24]!r}": _SPACES,
        f"hard case 6: {HARD_CASES[6][:24]!r}": _TAB_WORD,
        f"hard case 11: {HARD_CASES[11][:24]!r}": _DIGITS_GRAPH,
        f"hard case 12: {HARD_CASES[12][:24]!r}": _TAB_WORD,
    },
    "eager": {
        CORPUS: _ONE_PIECE,
        "digit runs": _ONE_PIECE,
        "decomposed accents": _NFC,
        f"hard case 11: {HARD_CASES[11][:24]!r}": _ONE_PIECE,
    },
}


def oracle_ids(vocab_dir, texts):
    from tokenizers import Tokenizer

    vocab = json.loads((vocab_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = (vocab_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    oracle = Tokenizer.from_str(qwen_tokenizer_json(vocab, [m for m in merges if m]))
    return [oracle.encode(text, add_special_tokens=False).ids for text in texts]


def _corpus_lines(default_corpus_and_vocab, count=1000):
    lines = (default_corpus_and_vocab / "heldout.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= count
    return lines[:count]


@pytest.fixture(scope="module")
def cl100k_vocab(default_corpus_and_vocab, tmp_path_factory):
    """A 4,000-token byte-level BPE learned with cl100k's pattern on the default corpus and the
    hard cases (20 times each, so that their pieces get merges), Qwen's special tokens last."""
    lines = (default_corpus_and_vocab / "train.txt").read_text(encoding="utf-8").splitlines()
    vocab, merges = vocab_stage.train_byte_level_bpe(
        lines + [text for text in NAMED_CASES.values() for _ in range(20)],
        4000,
        layout={"split_pattern": CL100K_PATTERN, "special_tokens": SPECIAL_TOKENS},
    )
    out = tmp_path_factory.mktemp("cl100k_vocab") / "vocab"
    vocab_stage.write_vocabulary(out, vocab, merges)
    return out


@pytest.fixture(scope="module")
def texts(default_corpus_and_vocab):
    return {CORPUS: _corpus_lines(default_corpus_and_vocab)} | {
        name: [text] for name, text in NAMED_CASES.items()
    }


@pytest.mark.parametrize("vocabulary", ["workflow", "cl100k merges"])
def test_runtime_tokenizer_gives_qwens_ids(
    vocabulary, small_qwen, qwen_vocab, cl100k_vocab, texts, tmp_path
):
    """The runtime tokenizer's tokenizer.json (the workflow's runtime_tokenizer CLI on the small
    Qwen's preset; the same writer on the second vocabulary) against the oracle, and its ids
    back to the (NFC-normalized) text."""
    import unicodedata

    from llm2tflite.litert.runtime_tokenizer import (
        load_runtime_tokenizer,
        write_runtime_tokenizer,
    )

    qwen = registry.by_name("qwen")
    if vocabulary == "workflow":
        vocab_dir, tokenizer = qwen_vocab, small_qwen["causal_lm"].preprocessor.tokenizer
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "llm2tflite.litert.runtime_tokenizer",
                "--preset",
                str(small_qwen["preset"]),
                "--out-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
    else:
        vocab_dir = cl100k_vocab
        tokenizer = qwen.exact_tokenizer(qwen.load_tokenizer(cl100k_vocab), None)
        write_runtime_tokenizer(tokenizer, qwen.tokenizer_kind, tmp_path)
    runtime = load_runtime_tokenizer(tmp_path / "tokenizer.json")
    all_texts = [text for group in texts.values() for text in group]
    ids = [runtime.encode(text) for text in all_texts]
    expected = oracle_ids(vocab_dir, all_texts)
    mismatches = [(t, a, b) for t, a, b in zip(all_texts, ids, expected) if a != b]
    assert not mismatches, mismatches[:3]
    assert sum(len(i) for i in ids) > 5 * len(all_texts)
    assert [runtime.decode(i) for i in ids] == [
        unicodedata.normalize("NFC", text) for text in all_texts
    ]
    # Qwen's special tokens are single ids, the vocabulary stage's last three.
    assert runtime.vocabulary_size() == tokenizer.vocabulary_size()
    assert runtime.encode("<|im_start|><|im_end|><|endoftext|>") == [
        tokenizer.token_to_id(token) for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    ]
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == [
        tokenizer.vocabulary_size() - 3 + i for i in range(3)
    ]


@pytest.fixture(scope="module")
def tokenizer_ids(cl100k_vocab, texts):
    """The ids of KerasHub's QwenTokenizer ("keras_hub") and of the family's exact one
    ("exact") on every text, per path (one graph call and one eager call for all of them), and
    the oracle's: {(tokenizer, path, case): (ids, expected)}."""
    qwen = registry.by_name("qwen")
    keras_hub = qwen.load_tokenizer(cl100k_vocab)
    tokenizers = {"keras_hub": keras_hub, "exact": qwen.exact_tokenizer(keras_hub, None)}
    all_texts = [text for group in texts.values() for text in group]
    expected = oracle_ids(cl100k_vocab, all_texts)
    by_case = {}
    for which, tokenizer in tokenizers.items():
        paths = {
            "graph": _ids_keras(tokenizer, all_texts),
            "eager": [[int(i) for i in row] for row in tokenizer.tokenize(all_texts)],
        }
        for path, ids in paths.items():
            start = 0
            for name, group in texts.items():
                end = start + len(group)
                by_case[which, path, name] = (ids[start:end], expected[start:end])
                start = end
    return by_case


CASES = [
    pytest.param(path, name, id=f"{path}-{name}")
    for path in KERAS_HUB_DIFFERS
    for name in (CORPUS, *NAMED_CASES)
]


def _differing(ids, expected):
    assert len(ids) == len(expected)
    return sum(a != b for a, b in zip(ids, expected))


@pytest.mark.parametrize(("path", "case"), CASES)
def test_exact_tokenizer_gives_qwens_ids(tokenizer_ids, path, case):
    ids, expected = tokenizer_ids["exact", path, case]
    differing = _differing(ids, expected)
    assert differing == 0, f"{differing}/{len(ids)} texts differ; first ids {ids[0][:12]}"


@pytest.mark.parametrize(("path", "case"), CASES)
def test_keras_hub_tokenizer_differs_where_named(tokenizer_ids, path, case):
    """KerasHub's own tokenizer differs from Qwen's on the cases KERAS_HUB_DIFFERS names (so
    they can fail a wrong tokenizer), and only on them."""
    ids, expected = tokenizer_ids["keras_hub", path, case]
    reason = KERAS_HUB_DIFFERS[path].get(case)
    differing = _differing(ids, expected)
    if reason is None:
        assert differing == 0, f"{differing}/{len(ids)} texts differ; first ids {ids[0][:12]}"
    else:
        assert differing > 0, f"KerasHub's tokenizer gives Qwen's ids, expected not: {reason}"


def test_exact_tokenizer_in_a_tflite_file_gives_qwens_ids(cl100k_vocab, texts, tmp_path):
    """The exact tokenizer converted to a .tflite with Select TF ops, as the codelab route's
    traced tokenizer is: Qwen's ids on the named cases, its special tokens as single ids (the
    BPE cache KerasHub fills with them at build time starts empty in a converted file)."""
    import numpy as np
    import tensorflow as tf

    from llm2tflite.codelab.runtime import load_interpreter

    qwen = registry.by_name("qwen")
    tokenizer = qwen.exact_tokenizer(qwen.load_tokenizer(cl100k_vocab), None)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer = tokenizer  # tracked: its lookup tables are saved with the graph

        @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name="prompt")])
        def tokenize(self, prompt):
            return {"token_ids": tf.cast(self.tokenizer(prompt).to_tensor(), tf.int32)}

    module = Module()
    tf.saved_model.save(module, str(tmp_path), signatures={"tokenize": module.tokenize})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path), ["tokenize"])
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    (tmp_path / "tokenizer.tflite").write_bytes(converter.convert())
    runner = load_interpreter(tmp_path / "tokenizer.tflite").get_signature_runner("tokenize")
    named = [text for text in NAMED_CASES.values() if text]  # the runtime's output is never empty
    ids = [
        [int(i) for i in runner(prompt=np.array([t.encode("utf-8")], dtype=object))["token_ids"][0]]
        for t in named
    ]
    assert ids == oracle_ids(cl100k_vocab, named)
    assert NAMED_CASES["chat special tokens"] in named and NAMED_CASES["end of text"] in named
