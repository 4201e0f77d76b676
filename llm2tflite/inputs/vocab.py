"""Learn a tokenizer vocabulary from a corpus, of the kind the model family reads.

Two kinds (``Architecture.tokenizer_kind``; the workflow passes the family's):

* ``byte_level_bpe``: GPT-2-format `vocab.json` + `merges.txt` (below);
* ``sentencepiece``: one SentencePiece model proto, `tokenizer.model` (see
  ``train_sentencepiece``), with the special pieces at the ids the family's KerasHub tokenizer
  expects (``Architecture.sentencepiece_layout``; ``--architecture NAME`` on the CLI), either
  exactly ``--vocab-size`` pieces or, with ``--at-most``, as many as the corpus supports up to
  that many (a ``shape_of:`` twin's tokenizer, as large as the corpus allows).

Byte-level BPE. The files are what `keras_hub.models.GPT2Tokenizer(vocabulary=..., merges=...)`
loads, and they tokenize exactly like `tokenizers.ByteLevelBPETokenizer(vocab, merges)` (GPT-2's
own format).

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
import io
import json
import re
from pathlib import Path

from llm2tflite.core import atomic

END_OF_TEXT = "<|endoftext|>"
VOCAB_FILENAME = "vocab.json"
MERGES_FILENAME = "merges.txt"
BYTE_ALPHABET_SIZE = 256
MERGES_HEADER = "#version: 0.2"  # as in OpenAI's GPT-2 merges.txt; KerasHub skips it
SENTENCEPIECE_FILENAME = "tokenizer.model"
TOKENIZER_KINDS = ("byte_level_bpe", "sentencepiece")
# The special pieces when the family names none: SentencePiece's own defaults (<unk> 0, <s> 1,
# </s> 2, no padding piece, a dummy prefix space). A family's ``sentencepiece_layout`` replaces
# any of these and may add user-defined pieces (``user_defined_symbols``), placed in order at the
# lowest ids the special pieces leave free.
SENTENCEPIECE_DEFAULT_LAYOUT = {
    "unk_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "pad_id": -1,
    "add_dummy_prefix": True,
}
_LAYOUT_KEYS = {
    f"{name}_{what}" for name in ("unk", "bos", "eos", "pad") for what in ("id", "piece")
} | {"user_defined_symbols", "add_dummy_prefix"}
# The most pieces one SentencePiece model may ask for when the corpus decides (``at_most``).
_NO_LIMIT = 1 << 20


def train_byte_level_bpe(
    lines: list[str], vocab_size: int, min_frequency: int = 2, layout: dict | None = None
):
    """Return (vocab dict token -> id with the special tokens last, merges list of "a b"
    strings).

    ``layout``: a family's ``byte_level_bpe_layout``, ``{"split_pattern": REGEX,
    "special_tokens": (...)}`` and optionally ``"normalizer": "NFC"``: learned on text
    normalized and split as the family's tokenizer.json does (e.g. Llama 3's pattern; Qwen's,
    after NFC), its special tokens appended in order. None: GPT-2's (below), ``END_OF_TEXT``
    last.
    """
    from tokenizers import ByteLevelBPETokenizer, Regex, normalizers, pre_tokenizers

    specials = list((layout or {}).get("special_tokens", (END_OF_TEXT,)))
    if vocab_size <= BYTE_ALPHABET_SIZE + len(specials):
        raise ValueError(
            f"vocab_size must exceed {BYTE_ALPHABET_SIZE + len(specials)} (the byte alphabet "
            f"plus {', '.join(specials)}), got {vocab_size}"
        )
    tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
    if layout is None:
        # Training-only pre-tokenizer: split digits apart so no merge ever contains a digit (see
        # the module docstring). Encoding later uses the plain GPT-2 pre-tokenizer, which gives
        # the same pieces for every other character.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(layout["split_pattern"]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        if layout.get("normalizer") == "NFC":
            tokenizer.normalizer = normalizers.NFC()
        elif layout.get("normalizer") is not None:
            raise ValueError(f"normalizer {layout['normalizer']!r}: only NFC is supported")
    tokenizer.train_from_iterator(
        lines,
        vocab_size=vocab_size - len(specials),  # ids left for the special tokens
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
    for special in specials:
        if special in vocab:
            raise AssertionError(f"{special} unexpectedly learned from the corpus")
        vocab[special] = len(vocab)
    return vocab, merges


def sentencepiece_layout(layout: dict | None = None) -> dict:
    """SENTENCEPIECE_DEFAULT_LAYOUT updated with a family's ``sentencepiece_layout``."""
    layout = dict(layout or {})
    unknown = sorted(set(layout) - _LAYOUT_KEYS)
    if unknown:
        raise ValueError(
            f"unknown SentencePiece layout key(s) {unknown}; known: {sorted(_LAYOUT_KEYS)}"
        )
    merged = {**SENTENCEPIECE_DEFAULT_LAYOUT, **layout}
    if "user_defined_symbols" in merged:
        merged["user_defined_symbols"] = list(merged["user_defined_symbols"])
    return merged


def _special_piece_count(layout: dict) -> int:
    return len([key for key in ("unk_id", "bos_id", "eos_id", "pad_id") if layout[key] >= 0]) + len(
        layout.get("user_defined_symbols", ())
    )


def sentencepiece_trainer_options(
    vocab_size: int, layout: dict | None = None, at_most: bool = False
) -> dict:
    """SentencePiece trainer options: Llama 2's tokenizer recipe, made deterministic.

    As Llama's tokenizer: BPE, byte fallback (a character outside the vocabulary becomes its
    UTF-8 bytes, <0xF0>..., never <unk>: emoji and any script round-trip), digits split one per
    piece, no Unicode normalization ("identity": the ids of a text are those of its exact
    characters), whitespace kept as written (no collapsing of runs), and every character of the
    corpus kept (character_coverage 1). The special pieces, their ids and the dummy prefix
    space come from ``layout`` (the family's; see ``sentencepiece_layout``).
    ``at_most``: ``vocab_size`` is an upper bound; the model gets every piece the corpus
    supports up to it (``hard_vocab_limit=False``) instead of failing when it supports fewer.
    Deterministic: one thread, every sentence read in file order (no sampling, no shuffle);
    the proto stores these options but no path or date.
    """
    return dict(
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        **sentencepiece_layout(layout),
        hard_vocab_limit=not at_most,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )


def train_sentencepiece(
    lines: list[str],
    vocab_size: int | None,
    seed: int = 0,
    layout: dict | None = None,
    at_most: bool = False,
) -> bytes:
    """A serialized SentencePiece model proto learned from `lines` (same lines, same bytes).

    ``vocab_size`` pieces exactly, or with ``at_most`` as many as the corpus supports up to
    ``vocab_size`` (None: no bound). ``layout``: the family's special pieces.
    """
    import sentencepiece as spm

    at_most = at_most or vocab_size is None
    limit = _NO_LIMIT if vocab_size is None else vocab_size
    specials = _special_piece_count(sentencepiece_layout(layout))
    # Every id below the special pieces + 256 is a special or byte piece; then learned pieces.
    smallest = specials + 256 + 1
    if limit < smallest:
        raise ValueError(
            f"vocab_size must be at least {smallest} ({specials} special pieces, "
            f"256 byte pieces and the corpus's characters), got {limit}"
        )
    model = io.BytesIO()
    # The trainer draws no random numbers with these options; seeded all the same, so a future
    # option that samples stays reproducible.
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            **sentencepiece_trainer_options(limit, layout, at_most=at_most),
        )
    except RuntimeError as error:
        # e.g. "Vocabulary size too high (20000). Please set it to a value <= 4186."
        most = re.search(
            r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", str(error)
        )
        if most:
            raise ValueError(
                f"the corpus supports at most {most.group(1)} SentencePiece pieces, "
                f"asked for {vocab_size}: lower the vocabulary size"
            ) from None
        raise ValueError(f"SentencePiece training failed: {str(error).splitlines()[0]}") from None
    return model.getvalue()


def write_sentencepiece(out_dir, model_proto: bytes) -> None:
    """Write out_dir/tokenizer.model, the directory appearing all at once."""
    with atomic.atomic_path(out_dir, is_dir=True) as tmp_dir:
        (tmp_dir / SENTENCEPIECE_FILENAME).write_bytes(model_proto)


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
        prog="python -m llm2tflite.inputs.vocab",
        description="Learn a tokenizer vocabulary: GPT-2 byte-level BPE (vocab.json + "
        "merges.txt) or SentencePiece (tokenizer.model).",
    )
    parser.add_argument("--corpus", required=True, help="UTF-8 text, one sentence per line.")
    parser.add_argument(
        "--kind",
        choices=TOKENIZER_KINDS,
        default=None,
        help="the tokenizer kind (default: the --architecture's, else byte_level_bpe)",
    )
    parser.add_argument(
        "--architecture",
        default=None,
        help="the model family (llm2tflite/families/): its tokenizer kind "
        "and SentencePiece special pieces",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=2048,
        help="Total size including special tokens (default: 2048).",
    )
    parser.add_argument(
        "--at-most",
        action="store_true",
        help="as many pieces (merges) as the corpus supports, at most --vocab-size",
    )
    parser.add_argument(
        "--min-frequency",
        type=int,
        default=2,
        help="byte_level_bpe: least count of a pair to merge (default: 2)",
    )
    parser.add_argument("--out-dir", required=True, help="Directory to create (replaced).")
    args = parser.parse_args(argv)
    layout, bpe_layout, kind = None, None, args.kind
    if args.architecture is not None:
        from llm2tflite.families import registry

        try:
            family = registry.by_name(args.architecture)
        except registry.UnsupportedArchitectureError as error:
            parser.error(str(error))
        if kind is not None and kind != family.tokenizer_kind:
            parser.error(f"--kind {kind}: {family.name} reads {family.tokenizer_kind} tokenizers")
        kind, layout = family.tokenizer_kind, family.sentencepiece_layout
        bpe_layout = family.byte_level_bpe_layout
    kind = kind or "byte_level_bpe"
    lines = read_lines(args.corpus)
    if kind == "sentencepiece":
        try:
            model_proto = train_sentencepiece(
                lines, args.vocab_size, layout=layout, at_most=args.at_most
            )
        except ValueError as error:
            parser.error(str(error))
        write_sentencepiece(args.out_dir, model_proto)
        import sentencepiece as spm

        pieces = spm.SentencePieceProcessor(model_proto=model_proto).get_piece_size()
        note = f" (all the corpus supports; at most {args.vocab_size})" if args.at_most else ""
        print(
            f"wrote a {pieces}-piece SentencePiece model{note} ({len(model_proto)} bytes) "
            f"to {Path(args.out_dir) / SENTENCEPIECE_FILENAME}"
        )
        return
    try:
        vocab, merges = train_byte_level_bpe(
            lines, args.vocab_size, args.min_frequency, layout=bpe_layout
        )
    except ValueError as error:
        parser.error(str(error))
    write_vocabulary(args.out_dir, vocab, merges)
    if len(vocab) == args.vocab_size:
        note = ""
    elif args.at_most:
        note = f" (all the corpus supports; at most {args.vocab_size})"
    else:
        note = f" (the corpus supports no more merges than this; asked for {args.vocab_size})"
    specials = (bpe_layout or {}).get("special_tokens", (END_OF_TEXT,))
    print(
        f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out_dir}{note}; "
        + ", ".join(f"{token} = {vocab[token]}" for token in specials)
    )


if __name__ == "__main__":
    main()
