"""The SentencePiece vocabulary stage: deterministic, with the special ids KerasHub's Llama needs.

Trained on a 3,000-line corpus (a fraction of a second per model); no TensorFlow except for the
KerasHub tokenizer check.
"""

from __future__ import annotations

import pytest

import llm2tflite  # noqa: F401  (KERAS_BACKEND before keras)
from llm2tflite.families import registry
from llm2tflite.inputs import corpus, vocab

from conftest import run_sentencepiece_vocab_cli

SMALL_TRAIN_LINES = 3000
SMALL_VOCAB_SIZE = 800


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("sp_corpus")
    train_lines, heldout_lines = corpus.generate_corpus(0, SMALL_TRAIN_LINES, 200)
    corpus.write_lines(out / "train.txt", train_lines)
    corpus.write_lines(out / "heldout.txt", heldout_lines)
    return out


def test_sentencepiece_cli_is_deterministic(small_corpus, tmp_path):
    """Two processes, same corpus: byte-identical model files; another corpus: another file."""
    for name in ("a", "b"):
        completed = run_sentencepiece_vocab_cli(
            small_corpus / "train.txt", tmp_path / name, SMALL_VOCAB_SIZE
        )
        assert completed.returncode == 0, completed.stderr
    first = (tmp_path / "a" / vocab.SENTENCEPIECE_FILENAME).read_bytes()
    assert first == (tmp_path / "b" / vocab.SENTENCEPIECE_FILENAME).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [vocab.SENTENCEPIECE_FILENAME]

    other_lines = vocab.read_lines(small_corpus / "train.txt")[: SMALL_TRAIN_LINES // 2]
    assert vocab.train_sentencepiece(other_lines, SMALL_VOCAB_SIZE) != first
    # No path, host or time in the proto: a model trained in-process is the same bytes.
    assert (
        vocab.train_sentencepiece(vocab.read_lines(small_corpus / "train.txt"), SMALL_VOCAB_SIZE)
        == first
    )


def test_sentencepiece_model_is_llama_style(small_corpus):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    proto = vocab.train_sentencepiece(
        vocab.read_lines(small_corpus / "train.txt"), SMALL_VOCAB_SIZE
    )
    model = sentencepiece_model_pb2.ModelProto.FromString(proto)
    spec = model.trainer_spec
    assert spec.model_type == sentencepiece_model_pb2.TrainerSpec.BPE
    assert spec.byte_fallback and spec.split_digits
    assert not spec.input and not spec.model_prefix  # nothing of the machine it ran on
    assert model.normalizer_spec.name == "identity"
    processor = spm.SentencePieceProcessor(model_proto=proto)
    assert processor.get_piece_size() == SMALL_VOCAB_SIZE
    assert [processor.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert (processor.unk_id(), processor.bos_id(), processor.eos_id(), processor.pad_id()) == (
        0,
        1,
        2,
        -1,
    )
    # Byte fallback: text outside the corpus's alphabet round-trips, never becomes <unk>.
    for text in ["emoji 🤖👨‍👩‍👧 日本語", "Estoy disfrutando de", "  two  spaces\t\n"]:
        ids = processor.encode(text)
        assert processor.unk_id() not in ids
        assert processor.decode(ids) == text
    assert processor.encode("2026") == [
        processor.piece_to_id(p) for p in ["▁", "2", "0", "2", "6"]
    ]  # digits one per piece


def test_llama_tokenizer_reads_it_with_the_ids_keras_hub_expects(small_corpus, tmp_path):
    completed = run_sentencepiece_vocab_cli(
        small_corpus / "train.txt", tmp_path / "vocab", SMALL_VOCAB_SIZE
    )
    assert completed.returncode == 0, completed.stderr
    family = registry.by_name("llama")
    assert family.tokenizer_kind == "sentencepiece"
    assert family.tokenizer_files == (vocab.SENTENCEPIECE_FILENAME,)
    tokenizer = family.load_tokenizer(tmp_path / "vocab")
    assert (tokenizer.start_token_id, tokenizer.end_token_id, tokenizer.pad_token_id) == (1, 2, 0)
    assert tokenizer.vocabulary_size() == SMALL_VOCAB_SIZE


def test_vocabulary_size_errors_are_one_line(small_corpus, tmp_path):
    too_large = run_sentencepiece_vocab_cli(small_corpus / "train.txt", tmp_path / "large", 90000)
    assert too_large.returncode == 2
    assert "the corpus supports at most" in too_large.stderr
    assert "lower the vocabulary size" in too_large.stderr
    assert "Traceback" not in too_large.stderr
    too_small = run_sentencepiece_vocab_cli(small_corpus / "train.txt", tmp_path / "small", 100)
    assert too_small.returncode == 2 and "at least 260" in too_small.stderr
    assert not (tmp_path / "large").exists() and not (tmp_path / "small").exists()
