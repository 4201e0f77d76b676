"""Learn a GPT-2-format byte-level BPE vocabulary (`vocab.json` + `merges.txt`) from a corpus.

The files are what `keras_hub.models.GPT2Tokenizer(vocabulary=..., merges=...)` loads, and they
tokenize exactly like `tokenizers.ByteLevelBPETokenizer(vocab, merges)` (GPT-2's own format).

Two choices keep the vocabulary safe for KerasHub:

* `<|endoftext|>` gets the LAST id (vocab_size - 1). KerasHub's GPT-2 preprocessing pads with
  id 0 and stops generation at `<|endoftext|>`: if that token were id 0, every padded position
  would look like end-of-text. `tokenizers` puts special tokens first, so we train without it
  and append it ourselves.
* Digits are learned one per token (no merge involves a digit). KerasHub tokenizes in two
  ways: in TF graphs (tf.data, fit(), the TFLite export) with GPT-2's pre-tokenization regex,
  and eagerly (e.g. a prompt in generate()) through `tokenizers` with another pre-tokenizer
  (Llama 3's pattern, which 0.31 even passes as a literal string, so nothing is split).
  Merges learned inside GPT-2's pieces never span their boundaries, so the two agree, except
  where pre-tokenizers cut digit runs differently (GPT-2 " 2025", Llama 3 " ", "202", "5").
  Without digit merges every variant gives one token per digit, GPT-2's ids included.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm2tflite import atomic

END_OF_TEXT = "<|endoftext|>"
VOCAB_FILENAME = "vocab.json"
MERGES_FILENAME = "merges.txt"
BYTE_ALPHABET_SIZE = 256
MERGES_HEADER = "#version: 0.2"  # as in OpenAI's GPT-2 merges.txt; KerasHub skips it


def train_byte_level_bpe(lines: list[str], vocab_size: int, min_frequency: int = 2):
    """Return (vocab dict token -> id with END_OF_TEXT last, merges list of "a b" strings)."""
    from tokenizers import ByteLevelBPETokenizer, pre_tokenizers

    if vocab_size <= BYTE_ALPHABET_SIZE + 1:
        raise ValueError(
            f"vocab_size must exceed {BYTE_ALPHABET_SIZE + 1} (the byte alphabet plus "
            f"{END_OF_TEXT}), got {vocab_size}"
        )
    tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
    # Training-only pre-tokenizer: split digits apart so no merge ever contains a digit (see the
    # module docstring). Encoding later uses the plain GPT-2 pre-tokenizer, which gives the same
    # pieces for every other character.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.train_from_iterator(
        lines,
        vocab_size=vocab_size - 1,  # one id left for END_OF_TEXT
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[],
    )
    model = json.loads(tokenizer.to_str())["model"]
    # Recent `tokenizers` store merges as [a, b] pairs, older ones as "a b" strings.
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    vocab = dict(sorted(model["vocab"].items(), key=lambda item: item[1]))
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise AssertionError("tokenizers returned non-contiguous ids")
    if END_OF_TEXT in vocab:
        raise AssertionError(f"{END_OF_TEXT} unexpectedly learned from the corpus")
    vocab[END_OF_TEXT] = len(vocab)
    return vocab, merges


def write_vocabulary(out_dir, vocab: dict[str, int], merges: list[str]) -> None:
    """Write out_dir/vocab.json and out_dir/merges.txt, the directory appearing all at once."""
    with atomic.atomic_path(out_dir, is_dir=True) as tmp_dir:
        # Insertion order is id order, so the file reads like GPT-2's encoder.json.
        (tmp_dir / VOCAB_FILENAME).write_text(
            json.dumps(vocab, ensure_ascii=False), encoding="utf-8"
        )
        (tmp_dir / MERGES_FILENAME).write_text(
            "".join(line + "\n" for line in [MERGES_HEADER, *merges]), encoding="utf-8"
        )


def vocabulary_paths(vocab_dir) -> tuple[str, str]:
    vocab_dir = Path(vocab_dir)
    return str(vocab_dir / VOCAB_FILENAME), str(vocab_dir / MERGES_FILENAME)


def load_reference_tokenizer(vocab_dir):
    """The Hugging Face GPT-2-style tokenizer for these files (the ids KerasHub must match)."""
    from tokenizers import ByteLevelBPETokenizer

    vocab_path, merges_path = vocabulary_paths(vocab_dir)
    return ByteLevelBPETokenizer(vocab_path, merges_path, add_prefix_space=False)


def read_lines(path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llm2tflite.vocab",
        description="Learn a GPT-2 byte-level BPE vocabulary (vocab.json + merges.txt).",
    )
    parser.add_argument("--corpus", required=True, help="UTF-8 text, one sentence per line.")
    parser.add_argument("--vocab-size", type=int, default=2048,
                        help="Total size including <|endoftext|> (default: 2048).")
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--out-dir", required=True, help="Directory to create (replaced).")
    args = parser.parse_args(argv)
    try:
        vocab, merges = train_byte_level_bpe(
            read_lines(args.corpus), args.vocab_size, args.min_frequency
        )
    except ValueError as error:
        parser.error(str(error))
    write_vocabulary(args.out_dir, vocab, merges)
    note = "" if len(vocab) == args.vocab_size else (
        f" (the corpus supports no more merges than this; asked for {args.vocab_size})")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out_dir}{note}; "
          f"{END_OF_TEXT} = {vocab[END_OF_TEXT]}")


if __name__ == "__main__":
    main()
