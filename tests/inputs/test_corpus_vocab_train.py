"""The offline default model source: corpus -> BPE vocabulary -> small trained GPT-2 preset.

Everything here is built small in tmp dirs (a 3,000-line corpus, a 600-token vocabulary, a
1-layer 32-wide GPT-2 trained for 80 steps), so the file needs about 75 s of CPU.
"""

from __future__ import annotations

import json
import math
import re

import pytest

import llm2tflite  # noqa: F401  (KERAS_BACKEND before keras)
from llm2tflite.inputs import corpus, train, vocab

from conftest import run_module

SMALL_TRAIN_LINES = 3000
SMALL_HELDOUT_LINES = 300
SMALL_VOCAB_SIZE = 600
# A model small enough to train in seconds, still a real GPT2Backbone.
TINY_MODEL = {
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 32,
    "intermediate_dim": 64,
    "max_sequence_length": 48,
    "dropout": 0.0,
}
TINY_FIT = {"seed": 7, "sequence_length": 40, "batch_size": 32, "epochs": 1, "learning_rate": 0.02}
TINY_STEPS = 80
# Hard tokenization cases beyond the corpus: accents, ñ, ¿¡, digits runs, symbols, unseen words.
EXTRA_TEXTS = [
    "¿Dónde está la estación? ¡Qué niño tan simpático!",
    "Mañana, el pingüino come 2025 piñas a las 10:30 en Zürich.",
    "Tengo 3 gatos y 12 perros; cuestan 45,50 €.",
    "It's 7 o'clock, isn't it? \"Yes\" (maybe) - I'm fine.",
    "Estoy disfrutando de",
    "ÁÉÍÓÚ ü ç ß — «comillas» 😀",
]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """train.txt, heldout.txt and vocab/ (vocab.json, merges.txt), built in-process."""
    out = tmp_path_factory.mktemp("small_data")
    train_lines, heldout_lines = corpus.generate_corpus(0, SMALL_TRAIN_LINES, SMALL_HELDOUT_LINES)
    corpus.write_lines(out / "train.txt", train_lines)
    corpus.write_lines(out / "heldout.txt", heldout_lines)
    vocab.write_vocabulary(
        out / "vocab", *vocab.train_byte_level_bpe(train_lines, SMALL_VOCAB_SIZE)
    )
    return out


# ============================================================================ corpus


def test_corpus_cli_is_deterministic_and_splits_are_disjoint(tmp_path):
    def generate(name, seed):
        completed = run_module(
            "llm2tflite.inputs.corpus",
            seed=seed,
            train_lines=2000,
            heldout_lines=300,
            out_train=tmp_path / f"{name}.train",
            out_heldout=tmp_path / f"{name}.heldout",
        )
        assert completed.returncode == 0, completed.stderr
        return (
            (tmp_path / f"{name}.train").read_bytes(),
            (tmp_path / f"{name}.heldout").read_bytes(),
        )

    first, again, other_seed = generate("a", 0), generate("b", 0), generate("c", 1)
    assert first == again
    assert first[0] != other_seed[0] and first[1] != other_seed[1]

    train_text, heldout_text = (part.decode("utf-8") for part in first)
    assert train_text.endswith("\n") and heldout_text.endswith("\n")
    train_lines, heldout_lines = train_text.splitlines(), heldout_text.splitlines()
    assert len(train_lines) == 2000 and len(heldout_lines) == 300
    assert all(line.strip() == line and line for line in train_lines + heldout_lines)
    assert len(set(train_lines)) == 2000 and len(set(heldout_lines)) == 300
    assert not set(train_lines) & set(heldout_lines)
    # No temporary file left next to the outputs.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.{s}" for n in "abc" for s in ("train", "heldout")
    )


# SHA-256 of the default model's corpus (seed 0, 20,000 train and 1,500 held-out lines), as
# generated before the lexicon moved from corpus.py to llm2tflite/data/corpus_lexicon.yaml: the
# data file must give byte-identical text (the trained default model depends on it).
DEFAULT_CORPUS_SHA256 = {
    "train.txt": "f07ebfd9869a794c7e0a5b735687d763968c030c6f62711c18a28e0c0b6093aa",
    "heldout.txt": "7daa9895f7c0ab67c7e9e63a72bfcbe8f362a7d69ef5e22922bf7c95b042ce5d",
}


def test_default_corpus_is_byte_identical_to_before_the_lexicon_moved(default_corpus_and_vocab):
    import hashlib

    from conftest import default_train_config

    corpus_settings = default_train_config()["corpus"]
    assert (
        corpus_settings["seed"],
        corpus_settings["train_lines"],
        corpus_settings["heldout_lines"],
    ) == (0, 20000, 1500)
    for name, digest in DEFAULT_CORPUS_SHA256.items():
        data = (default_corpus_and_vocab / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name


def test_lexicon_is_package_data_and_the_corpus_code_holds_no_word_lists():
    import fnmatch

    from conftest import REPO

    data_dir = REPO / "llm2tflite" / "data"
    package_data = re.search(
        r"\[tool.setuptools.package-data\]\nllm2tflite = \[(.*?)\]",
        (REPO / "pyproject.toml").read_text(),
    ).group(1)
    patterns = re.findall(r'"([^"]+)"', package_data)
    for path in data_dir.iterdir():
        relative = str(path.relative_to(REPO / "llm2tflite"))
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
    assert (data_dir / corpus.LEXICON_FILE).is_file()
    source = (REPO / "llm2tflite" / "inputs" / "corpus.py").read_text()
    assert '_nouns("""' not in source and len(source.splitlines()) < 800
    assert len(corpus.FOOD) > 10 and corpus.ADJECTIVES["joven"].spanish("m", True) == "jóvenes"


def test_default_sizes_leave_enough_unseen_heldout_lines():
    train_lines, heldout_lines = corpus.generate_corpus(0, 20000, 1500)
    assert len(set(heldout_lines)) == 1500
    assert not set(heldout_lines) & set(train_lines)


def test_prompt_is_in_domain(small_data):
    for name in ("train.txt", "heldout.txt"):
        lines = vocab.read_lines(small_data / name)
        spanish = [line for line in lines if line.startswith(corpus.SPANISH_PROMPT)]
        english = [line for line in lines if line.startswith(corpus.ENGLISH_PROMPT + " ")]
        assert len(spanish) >= 0.1 * len(lines), (name, len(spanish))
        assert len(english) >= 0.05 * len(lines), (name, len(english))
        # The prompt's last token is the word "de" (not "del"): enough lines continue it.
        after_de = [line for line in spanish if line.startswith(corpus.SPANISH_PROMPT + " ")]
        assert len(after_de) >= 0.06 * len(lines), (name, len(after_de))
        # Varied continuations, not one memorised sentence.
        continuations = {line.split()[3] for line in after_de}
        assert {"la", "mi", "un", "este"} <= continuations, continuations
    assert "Estoy disfrutando de la música." in set(corpus.generate_corpus(0, 20000, 10)[0])


def test_sentences_are_well_formed(small_data):
    lines = vocab.read_lines(small_data / "train.txt") + vocab.read_lines(
        small_data / "heldout.txt"
    )
    for line in lines:
        assert "  " not in line and line[-1] in ".?!", line
        first_letter = next(char for char in line if char.isalpha())
        assert first_letter.isupper(), line
        assert (line.startswith("¿") or "¿" not in line) and (line[0] != "¿" or line[-1] == "?")
        assert line[0] != "¡" or line[-1] == "!", line
        # Spanish contractions ("del", "al") and English a/an.
        assert not re.search(r"\b(de|a) el\b", line, re.IGNORECASE), line
        assert not re.search(r"\ba [aeio]", line) and not re.search(r"\ban [^aeiou]", line), line
    spanish_marks = [line for line in lines if re.search(r"[áéíóúñ¿¡]", line)]
    assert len(spanish_marks) >= 0.2 * len(lines)
    assert sum(bool(re.search(r"\d", line)) for line in lines) >= 0.01 * len(lines)


def test_exhausted_templates_fail_instead_of_looping(monkeypatch):
    monkeypatch.setattr(corpus, "sample_sentence", lambda rng: rng.choice(["Uno.", "Dos."]))
    with pytest.raises(ValueError, match="distinct"):
        corpus.generate_corpus(0, 3, 1)


# ============================================================================ vocabulary


def test_end_of_text_has_the_last_id_never_zero(small_data):
    vocab_json = json.loads((small_data / "vocab" / "vocab.json").read_text(encoding="utf-8"))
    assert sorted(vocab_json.values()) == list(range(SMALL_VOCAB_SIZE))
    assert vocab_json[vocab.END_OF_TEXT] == SMALL_VOCAB_SIZE - 1 != 0
    merges = (small_data / "vocab" / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    # Every byte is a token, then one token per merge, then <|endoftext|>.
    assert len(merges) - 1 == SMALL_VOCAB_SIZE - 256 - 1
    for merge in merges[1:]:
        left, right = merge.split(" ")
        assert left in vocab_json and right in vocab_json and left + right in vocab_json


def test_vocab_cli_is_deterministic(small_data, tmp_path):
    for name in ("a", "b"):
        completed = run_module(
            "llm2tflite.inputs.vocab",
            "--corpus",
            str(small_data / "train.txt"),
            "--vocab-size",
            str(SMALL_VOCAB_SIZE),
            "--out-dir",
            str(tmp_path / name),
        )
        assert completed.returncode == 0, completed.stderr
    for filename in ("vocab.json", "merges.txt"):
        expected = (small_data / "vocab" / filename).read_bytes()
        assert (tmp_path / "a" / filename).read_bytes() == expected
        assert (tmp_path / "b" / filename).read_bytes() == expected
    too_small = run_module(
        "llm2tflite.inputs.vocab",
        "--corpus",
        str(small_data / "train.txt"),
        "--vocab-size",
        "100",
        "--out-dir",
        str(tmp_path / "c"),
    )
    assert too_small.returncode == 2 and "vocab_size" in too_small.stderr
    assert not (tmp_path / "c").exists()


def test_keras_hub_tokenizer_matches_tokenizers(small_data):
    """KerasHub's eager (Python) and graph (tf.data, TFLite) paths give GPT-2's ids."""
    import keras_hub
    import tensorflow as tf

    texts = vocab.read_lines(small_data / "heldout.txt") + EXTRA_TEXTS
    assert sum(not text.isascii() for text in texts) >= 50
    reference = vocab.load_reference_tokenizer(small_data / "vocab")
    expected = [encoding.ids for encoding in reference.encode_batch(texts)]

    vocab_path, merges_path = vocab.vocabulary_paths(small_data / "vocab")
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab_path, merges=merges_path)
    assert tokenizer.end_token_id == SMALL_VOCAB_SIZE - 1 and tokenizer.pad_token_id == 0
    eager = [list(map(int, ids)) for ids in tokenizer(texts)]
    graph = tf.function(tokenizer)(tf.constant(texts)).to_list()
    for text, want, got_eager, got_graph in zip(texts, expected, eager, graph):
        assert got_eager == want, text
        assert got_graph == want, text
    # Merges are really used (ids are not just bytes) and decoding is lossless.
    assert sum(map(len, expected)) < 0.5 * sum(len(text.encode()) for text in texts)
    assert tokenizer.detokenize(expected[0]) == texts[0]


# ============================================================================ training


@pytest.fixture(scope="module")
def deterministic_ops():
    """Op determinism for this module only (it is process-wide in TF)."""
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    train.enable_determinism()
    yield
    if not was_enabled:
        tf_config.disable_op_determinism()


@pytest.fixture(scope="module")
def trained_tiny(small_data, deterministic_ops):
    return train.train_and_evaluate(
        vocab.read_lines(small_data / "train.txt"),
        vocab.read_lines(small_data / "heldout.txt"),
        small_data / "vocab",
        "gpt2",
        TINY_MODEL,
        TINY_FIT,
        max_steps=TINY_STEPS,
    )


def test_settings_are_validated(small_data):
    assert set(train.resolve_fit({})) == set(train.FIT_DEFAULTS)
    assert train.resolve_fit({"epochs": 5})["epochs"] == 5
    for bad in ({"epoch": 2}, {"epochs": 1.5}, {"batch_size": 0}, {"learning_rate": 0}):
        with pytest.raises(ValueError):
            train.resolve_fit(bad)
    assert train.resolve_model("gpt2", {"num_layers": 3})["num_layers"] == 3
    for bad in ({"num_layer": 2}, {"hidden_dim": 30, "num_heads": 4}):
        with pytest.raises(ValueError):
            train.resolve_model("gpt2", bad)
    with pytest.raises(ValueError, match="unsupported architecture 'bert'"):
        train.resolve_model("bert", {})
    with pytest.raises(ValueError, match="below model.max_sequence_length"):
        train.build_causal_lm(
            small_data / "vocab", "gpt2", {"max_sequence_length": 32}, {"sequence_length": 32}
        )


def test_build_is_seeded(small_data):
    import numpy as np

    first = train.build_causal_lm(small_data / "vocab", "gpt2", TINY_MODEL, TINY_FIT)
    again = train.build_causal_lm(small_data / "vocab", "gpt2", TINY_MODEL, TINY_FIT)
    other = train.build_causal_lm(small_data / "vocab", "gpt2", TINY_MODEL, {**TINY_FIT, "seed": 8})
    assert first.backbone.vocabulary_size == SMALL_VOCAB_SIZE
    pairs = list(zip(first.get_weights(), again.get_weights(), other.get_weights()))
    assert all(np.array_equal(a, b) for a, b, _ in pairs)
    assert not all(np.array_equal(a, c) for a, _, c in pairs)


def test_short_training_lowers_heldout_loss(trained_tiny):
    _, metrics = trained_tiny
    # A fresh model is close to uniform over the vocabulary.
    assert abs(metrics["heldout_loss_untrained"] - math.log(SMALL_VOCAB_SIZE)) < 1.0
    assert metrics["heldout_loss_trained"] < 0.8 * metrics["heldout_loss_untrained"]
    assert metrics["heldout_tokens"] > 5 * SMALL_HELDOUT_LINES
    assert metrics["steps"] == TINY_STEPS and metrics["num_parameters"] > 0
    assert metrics["lines_at_sequence_length"] == 0  # no line lost its end token
    train.check_improvement(metrics)
    with pytest.raises(train.TrainingFailedError, match="did not clearly lower"):
        train.check_improvement(
            {**metrics, "heldout_loss_trained": 0.9 * metrics["heldout_loss_untrained"]}
        )


def _train_args(small_data, out_preset, out_metrics) -> list[str]:
    """The train stage's data and output arguments on ``small_data``."""
    return [
        "--corpus",
        str(small_data / "train.txt"),
        "--heldout",
        str(small_data / "heldout.txt"),
        "--vocab-dir",
        str(small_data / "vocab"),
        "--out-preset",
        str(out_preset),
        "--out-metrics",
        str(out_metrics),
    ]


def test_train_cli_saves_a_reloadable_reproducible_preset(small_data, trained_tiny, tmp_path):
    import keras_hub
    import numpy as np

    preset, metrics_path = tmp_path / "preset", tmp_path / "metrics.json"
    completed = run_module(
        "llm2tflite.inputs.train",
        *_train_args(small_data, preset, metrics_path),
        "--architecture",
        "gpt2",
        "--model-json",
        json.dumps(TINY_MODEL),
        "--fit-json",
        json.dumps(TINY_FIT),
        "--max-steps",
        str(TINY_STEPS),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for relative in (
        "config.json",
        "model.weights.h5",
        "tokenizer.json",
        "assets/tokenizer/vocabulary.json",
        "assets/tokenizer/merges.txt",
    ):
        assert (preset / relative).is_file(), relative

    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    for field in (
        "heldout_loss_untrained",
        "heldout_loss_trained",
        "train_seconds",
        "num_parameters",
        "epochs",
        "model",
        "fit",
        "sample_generation",
    ):
        assert field in metrics, field
    assert metrics["architecture"] == "gpt2"
    assert metrics["model"] == train.resolve_model("gpt2", TINY_MODEL)
    assert metrics["fit"] == train.resolve_fit(TINY_FIT)
    sample = metrics["sample_generation"]
    assert sample["prompt"] == "Estoy disfrutando de" and sample["max_length"] == 30
    assert sample["output"].startswith("Estoy disfrutando de")

    reloaded = keras_hub.models.CausalLM.from_preset(str(preset))
    assert isinstance(reloaded, keras_hub.models.GPT2CausalLM)
    reloaded.compile(sampler="greedy")
    assert reloaded.generate("Estoy disfrutando de", max_length=30) == sample["output"]

    # Same seeds, data and steps in another process: the same weights, bit for bit.
    in_process, in_process_metrics = trained_tiny
    assert metrics["heldout_loss_trained"] == in_process_metrics["heldout_loss_trained"]
    for saved, trained in zip(reloaded.backbone.get_weights(), in_process.backbone.get_weights()):
        assert np.array_equal(saved, trained)
    assert not list(tmp_path.glob(".*tmp-*"))


def test_train_cli_fails_loudly_when_loss_does_not_drop(
    small_data, trained_tiny, tmp_path, monkeypatch, capsys
):
    """No preset, no metrics, exit 1 and a clear message (training itself is tested above)."""
    causal_lm, metrics = trained_tiny
    not_better = {**metrics, "heldout_loss_trained": 0.85 * metrics["heldout_loss_untrained"]}
    monkeypatch.setattr(
        train, "train_and_evaluate", lambda *args, **kwargs: (causal_lm, not_better)
    )
    with pytest.raises(SystemExit) as exit_info:
        train.main(_train_args(small_data, tmp_path / "preset", tmp_path / "m.json"))
    assert exit_info.value.code == 1
    assert "did not clearly lower the held-out loss" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no preset, no metrics, no temporary leftovers


def test_length_grouped_batches_change_nothing(small_data, trained_tiny):
    """Cutting padding columns per batch gives the full-width loss; batch count is exact."""
    import keras
    import numpy as np

    causal_lm, _ = trained_tiny
    packed = train.pack_lines(
        causal_lm.preprocessor, vocab.read_lines(small_data / "heldout.txt")[:100]
    )
    assert packed.token_ids.shape[1] == TINY_FIT["sequence_length"]
    assert packed.lengths.max() < packed.token_ids.shape[1] - 8  # there is padding to cut

    hidden = causal_lm.backbone(
        {"token_ids": packed.token_ids, "padding_mask": packed.padding_mask}
    )
    logits = keras.ops.convert_to_numpy(
        causal_lm.backbone.token_embedding(hidden, reverse=True)
    ).astype(np.float64)
    log_probs = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    token_losses = -np.take_along_axis(log_probs, packed.labels[..., None], -1)[..., 0]
    full_width = (token_losses * packed.sample_weight).sum() / packed.sample_weight.sum()
    assert train.heldout_loss(causal_lm, packed)["loss"] == pytest.approx(full_width, rel=1e-5)

    batches = list(train._batched_dataset(packed, batch_size=8, shuffle_seed=0))
    assert len(batches) == train.batches_per_epoch(packed, batch_size=8)
    assert sum(len(labels) for _, labels, _ in batches) == len(packed)
    assert max(labels.shape[1] for _, labels, _ in batches) < packed.token_ids.shape[1]


def test_byte_level_layout_learns_on_nfc_text_when_it_says_so():
    """A family layout with ``"normalizer": "NFC"`` (Qwen's) learns on composed text, as its
    tokenizer.json encodes it: "café" written with a combining accent becomes one learned token
    "café" (composed); without the normalizer the accent stays a piece of its own (the split
    pattern's letters exclude combining marks) and "café" is never learned."""
    from tokenizers import pre_tokenizers

    from conftest import QWEN2_TOKENIZER_PATTERN

    def byte_level(text):
        mapping = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        return mapping.pre_tokenize_str(text)[0][0]

    lines = ["cafe\u0301 nin\u0303o y cafe\u0301"] * 50
    layout = {"split_pattern": QWEN2_TOKENIZER_PATTERN, "special_tokens": ("<|endoftext|>",)}
    plain, _ = vocab.train_byte_level_bpe(lines, 400, layout=layout)
    composed, _ = vocab.train_byte_level_bpe(lines, 400, layout={**layout, "normalizer": "NFC"})
    assert byte_level("café") in composed and byte_level("café") not in plain
    assert byte_level("cafe") in plain
    with pytest.raises(ValueError, match="only NFC"):
        vocab.train_byte_level_bpe(lines, 400, layout={**layout, "normalizer": "NFKC"})
