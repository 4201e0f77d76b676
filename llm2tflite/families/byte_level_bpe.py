"""Byte-level BPE tokenizers that give exactly Hugging Face ``tokenizers``' ids, in the graph and
outside it, for families whose pre-tokenizer is not GPT-2's (Llama 3, SmolLM2, Qwen 2/3).

What a ``tokenizer.json`` says, and KerasHub 0.31 does not do:

- KerasHub's ``BytePairTokenizer`` pre-tokenizes in TensorFlow (the graph path: tf.data, the
  codelab route's traced tokenizer) with GPT-2's split regex, whatever the model: Llama 3 splits
  with ``LLAMA3_SPLIT_PATTERN`` (digits in runs of at most 3, contractions in any case, newlines
  kept together, a punctuation run takes the newlines after it), SmolLM2 with GPT-2's regex after
  isolating every digit, Qwen with Llama 3's pattern but ``\\p{N}`` single digits;
- its eager path (``tokenizers`` underneath, e.g. a prompt given to ``generate()``) passes Llama
  3's pattern to ``pre_tokenizers.Split`` as a plain ``str``, which ``tokenizers`` reads as a
  literal string, not a regex: nothing is split, and merges cross word boundaries;
- its Llama 3 converter keeps neither the ``<|reserved_special_token_N|>`` added tokens (text
  holding one is byte-pair encoded) nor the BPE model's ``ignore_merges`` (a pre-token that is
  itself in the vocabulary is one token, whatever the merges would make of it).

``ByteLevelBPE`` holds what decides the ids (vocabulary, merges, added tokens, the
pre-tokenizer's split patterns, the normalizer, ``ignore_merges``), read from a checkpoint's
``tokenizer.json`` (``from_tokenizer_json``) or given for a KerasHub preset (which stores only
vocabulary and merges: the family says the rest). ``exact_tokenizer_class(base)`` subclasses a
KerasHub tokenizer class (``Llama3Tokenizer``; a Qwen family passes ``QwenTokenizer``) and
overrides only what differs: the TensorFlow pre-tokenization (``pre_tokenize``), the whole-word
lookup of ``ignore_merges`` before KerasHub's own BPE merge loop, and the eager path's
``tokenizers.Tokenizer`` (the ``tokenizer.json`` itself). Its ``hugging_face_json()`` is the LiteRT
route's runtime tokenizer file.

The graph path uses RE2 (``tf_text.regex_split``), which differs from the Oniguruma regexes of
``tokenizers`` in three ways, each handled here and checked code point by code point in the
tests:

- RE2's ``\\s`` is ASCII ``[\\t\\n\\f\\r ]``; Oniguruma's is Unicode White_Space (``WHITESPACE``);
- RE2's Unicode tables are older: letters and digits of scripts added since (Unicode 16's
  Garay, Todhri, ...) are added to ``\\p{L}`` and ``\\p{N}`` explicitly;
- RE2 has no lookahead. The patterns end in ``\\s+(?!\\S)|\\s+`` (a whitespace run leaves its
  last character to the word after it). The text is first cut before every whitespace
  character that is followed by a non-space (``_cut_pattern``): no token of the original
  pattern spans such a point, and the lookahead sees the same thing at a cut as in the whole
  text, so each piece tokenizes as it would in place; within a piece the lookahead
  alternative can only meet runs at the piece's end, where plain ``\\s+`` matches the same.
  Whitespace that the pattern can join to what precedes it (Llama 3's ``[\\r\\n]`` after
  punctuation and after other whitespace) is not a cut point.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence

# Llama 3's pre-tokenizer (Meta's tiktoken pattern; tokenizer.json "Split" with "Isolated").
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# GPT-2's, which tokenizers' ByteLevel pre-tokenizer applies when use_regex is true.
GPT2_SPLIT_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# tokenizers' Digits pre-tokenizer: every digit (Rust's char::is_numeric: \p{N}) alone, or runs.
DIGITS_PATTERN = {True: r"\p{N}", False: r"\p{N}+"}
# The lookahead alternative the graph path emulates (see the module docstring).
_LOOKAHEAD_TAIL = r"|\s+(?!\S)|\s+"

# Oniguruma's \s (Unicode White_Space), as RE2 class content.
WHITESPACE = (
    r"\t\n\x{0b}\f\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
# Letters and digits Oniguruma (tokenizers 0.23) knows and TensorFlow 2.18's RE2 does not: the
# scripts and characters of Unicode 16. tests/families/test_llama3.py compares both
# classes with tokenizers' over every code point.
_NEWER_LETTERS = (
    r"\x{1c89}-\x{1c8a}\x{a7cb}-\x{a7cd}\x{a7da}-\x{a7dc}\x{105c0}-\x{105f3}\x{10d4a}-\x{10d65}"
    r"\x{10d6f}-\x{10d85}\x{10ec2}-\x{10ec4}\x{11380}-\x{11389}\x{1138b}\x{1138e}"
    r"\x{11390}-\x{113b5}\x{113b7}\x{113d1}\x{113d3}\x{11bc0}-\x{11be0}\x{13460}-\x{143fa}"
    r"\x{16100}-\x{1611d}\x{16d40}-\x{16d6c}\x{18cff}\x{1e5d0}-\x{1e5ed}\x{1e5f0}"
    r"\x{2ebf0}-\x{2ee5d}"
)
_NEWER_NUMBERS = (
    r"\x{10d40}-\x{10d49}\x{116d0}-\x{116e3}\x{11bf0}-\x{11bf9}\x{16130}-\x{16139}"
    r"\x{16d70}-\x{16d79}\x{1ccf0}-\x{1ccf9}\x{1e5f1}-\x{1e5fa}"
)
_CLASS_CONTENT = {
    r"\s": WHITESPACE,
    r"\p{L}": r"\p{L}" + _NEWER_LETTERS,
    r"\p{N}": r"\p{N}" + _NEWER_NUMBERS,
}
_ESCAPE = re.compile(r"\\p\{[LN]\}|\\[sS]|\\.|\[|\]|.", re.DOTALL)


class UnsupportedTokenizerError(ValueError):
    """A tokenizer.json this module cannot reproduce exactly in the graph."""


def re2_pattern(pattern: str) -> str:
    """An Oniguruma split pattern in RE2 syntax, Unicode classes as tokenizers has them, and the
    trailing ``\\s+(?!\\S)|\\s+`` (if any) as ``\\s+`` (the cut points emulate the lookahead).
    Any other lookaround is refused."""
    if pattern.endswith(_LOOKAHEAD_TAIL):
        pattern = pattern[: -len(_LOOKAHEAD_TAIL)] + r"|\s+"
    if re.search(r"\(\?<?[=!]", pattern):
        raise UnsupportedTokenizerError(f"split pattern {pattern!r}: lookaround RE2 cannot run")
    out, in_class = [], False
    for token in _ESCAPE.findall(pattern):
        if token == "[" and not in_class:
            in_class = True
            out.append(token)
        elif token == "]" and in_class:
            in_class = False
            out.append(token)
        elif token in _CLASS_CONTENT:
            content = _CLASS_CONTENT[token]
            out.append(content if in_class else f"[{content}]")
        elif token == r"\S":
            if in_class:
                raise UnsupportedTokenizerError(rf"split pattern {pattern!r}: \S in a class")
            out.append(f"[^{WHITESPACE}]")
        else:
            out.append(token)
    return "".join(out)


def _cut_pattern(pattern: str) -> str | None:
    """Where the text is cut to emulate ``\\s+(?!\\S)`` (None: the pattern has no lookahead): a
    whitespace character followed by a non-space, but not whitespace the pattern can join to
    what precedes it: ``[\\r\\n]`` in the Llama 3 / Qwen patterns (``\\s*[\\r\\n]+``, punctuation
    followed by ``[\\r\\n]*``). Each cut point starts a new piece (the two characters matched
    here start it)."""
    if not pattern.endswith(_LOOKAHEAD_TAIL):
        return None
    cut = WHITESPACE
    if r"[\r\n]" in pattern:
        cut = WHITESPACE.replace(r"\n", "").replace(r"\r", "")
    return f"[{cut}][^{WHITESPACE}]"


@dataclasses.dataclass(frozen=True)
class ByteLevelBPE:
    """What decides a byte-level BPE tokenizer's ids (see the module docstring)."""

    vocabulary: Mapping[str, int]
    merges: Sequence[str]
    #: Split out of the text before anything else, matched on the raw text, each one id (every
    #: added token of a tokenizer.json, reserved ones included).
    added_tokens: Sequence[str]
    #: The pre-tokenizer: split patterns applied in turn ("Isolated"), then byte-level mapping.
    split_patterns: Sequence[str]
    normalizer: str | None = None  # "NFC" or None
    ignore_merges: bool = False
    #: A checkpoint's own tokenizer.json (None: built from the fields above).
    source_json: str | None = None

    def hugging_face_json(self) -> str:
        """The ``tokenizer.json`` that encodes exactly so: a checkpoint's own, without its
        post-processor, padding and truncation (the runtime puts the start token first, as
        KerasHub's packer does; a template adding it would double it); else one built with
        ``tokenizers`` from the fields."""
        if self.source_json is not None:
            data = json.loads(self.source_json)
            data.update(post_processor=None, padding=None, truncation=None)
            return json.dumps(data, ensure_ascii=False)
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
        from tokenizers import pre_tokenizers as pre

        vocabulary = {t: i for t, i in self.vocabulary.items() if t not in self.added_tokens}
        pairs = [tuple(m.split(" ")) for m in self.merges if not m.startswith("#version")]
        tokenizer = Tokenizer(
            models.BPE(vocab=vocabulary, merges=pairs, ignore_merges=self.ignore_merges)
        )
        if self.normalizer == "NFC":
            tokenizer.normalizer = normalizers.NFC()
        steps = [pre.Split(Regex(p), behavior="isolated") for p in self.split_patterns]
        tokenizer.pre_tokenizer = pre.Sequence(
            [*steps, pre.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        tokenizer.decoder = decoders.ByteLevel()
        added = sorted(self.added_tokens, key=self.vocabulary.__getitem__)
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
        for token in added:
            if tokenizer.token_to_id(token) != self.vocabulary[token]:
                raise ValueError(f"added token {token!r} does not get id {self.vocabulary[token]}")
        return tokenizer.to_str()


def _pre_tokenizer_steps(pre_tokenizer: Mapping | None, where: str) -> list[str]:
    """The split patterns of a tokenizer.json ``pre_tokenizer`` ending in ByteLevel."""
    if pre_tokenizer is None:
        raise UnsupportedTokenizerError(f"{where}: no pre_tokenizer (not a byte-level BPE)")
    steps = (
        pre_tokenizer["pretokenizers"] if pre_tokenizer["type"] == "Sequence" else [pre_tokenizer]
    )
    patterns = []
    for index, step in enumerate(steps):
        kind, last = step["type"], index == len(steps) - 1
        if kind == "Split" and not last:
            regex = step.get("pattern", {}).get("Regex")
            if regex is None or step.get("behavior") != "Isolated" or step.get("invert"):
                raise UnsupportedTokenizerError(
                    f"{where}: Split {step.get('pattern')} {step.get('behavior')} (only an "
                    "Isolated regex split is supported)"
                )
            patterns.append(regex)
        elif kind == "Digits" and not last:
            patterns.append(DIGITS_PATTERN[bool(step.get("individual_digits"))])
        elif kind == "ByteLevel" and last:
            if step.get("add_prefix_space"):
                raise UnsupportedTokenizerError(f"{where}: ByteLevel with add_prefix_space")
            if step.get("use_regex", True):
                patterns.append(GPT2_SPLIT_PATTERN)
        else:
            raise UnsupportedTokenizerError(
                f"{where}: pre-tokenizer {kind} at step {index + 1} of {len(steps)} (supported: "
                "Split and Digits steps, then ByteLevel)"
            )
    if not steps or steps[-1]["type"] != "ByteLevel":
        raise UnsupportedTokenizerError(f"{where}: the pre-tokenizer does not end in ByteLevel")
    for pattern in patterns:
        try:
            re2_pattern(pattern)  # refuses what RE2 cannot run
        except UnsupportedTokenizerError as error:
            raise UnsupportedTokenizerError(f"{where}: {error}") from None
    return patterns


def from_tokenizer_json(text: str, where: str = "tokenizer.json") -> ByteLevelBPE:
    """A Hugging Face ``tokenizer.json`` of a byte-level BPE, checked to be one this module
    reproduces exactly (else UnsupportedTokenizerError, one line)."""
    data = json.loads(text)
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise UnsupportedTokenizerError(f"{where}: model {model.get('type')}, not BPE")
    unsupported = {
        key: model.get(key)
        for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix")
        if model.get(key) not in (None, "")
    }
    if model.get("byte_fallback"):
        unsupported["byte_fallback"] = True
    if unsupported:
        raise UnsupportedTokenizerError(f"{where}: BPE options {unsupported} are not supported")
    normalizer = data.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise UnsupportedTokenizerError(
            f"{where}: normalizer {normalizer.get('type')} (supported: none, NFC)"
        )
    patterns = _pre_tokenizer_steps(data.get("pre_tokenizer"), where)
    vocabulary = dict(model["vocab"])
    added = []
    for token in data.get("added_tokens", []):
        options = [k for k in ("lstrip", "rstrip", "single_word") if token.get(k)]
        if options:
            raise UnsupportedTokenizerError(
                f"{where}: added token {token['content']!r} with {', '.join(options)}"
            )
        vocabulary[token["content"]] = token["id"]
        added.append(token["content"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return ByteLevelBPE(
        vocabulary=vocabulary,
        merges=merges,
        added_tokens=tuple(added),
        split_patterns=tuple(patterns),
        normalizer="NFC" if normalizer is not None else None,
        ignore_merges=bool(model.get("ignore_merges", False)),
        source_json=text,
    )


# ---- the graph path (TensorFlow) ---------------------------------------------------------------


def _split_isolated(pieces, pattern: str):
    """Each string of ``pieces`` (1-D) split as tokenizers' ``Split(Regex(pattern),
    "isolated")``: ragged [pieces, (tokens)]."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    cut = _cut_pattern(pattern)
    if cut is not None:
        # Cut before every lookahead point; parts that start a piece: a cut or a row's first.
        parts = tf_text.regex_split(pieces, cut, cut)
        flat = parts.flat_values
        rows = parts.value_rowids()
        first = tf.range(tf.size(flat, out_type=tf.int64)) == tf.gather(parts.row_starts(), rows)
        starts = tf.logical_or(first, tf.strings.regex_full_match(flat, cut))
        segment = tf.cumsum(tf.cast(starts, tf.int64)) - 1
        joined = tf.strings.unsorted_segment_join(
            flat, segment, tf.reduce_sum(tf.cast(starts, tf.int64))
        )
        per_piece = tf.math.unsorted_segment_sum(
            tf.cast(starts, tf.int64), rows, tf.shape(pieces, out_type=tf.int64)[0]
        )
        segments = tf.RaggedTensor.from_row_lengths(joined, per_piece)
        regex = re2_pattern(pattern)
        tokens = tf_text.regex_split(segments.flat_values, regex, regex)
        return tf.RaggedTensor.from_row_splits(tokens, segments.row_splits).merge_dims(1, 2)
    regex = re2_pattern(pattern)
    return tf_text.regex_split(pieces, regex, regex)


def alternation(tokens) -> str:
    """An RE2 alternation of ``tokens``, longest first (tokenizers matches added tokens
    leftmost-longest)."""
    return "|".join(re.escape(token) for token in sorted(tokens, key=len, reverse=True))


def pre_tokenize(inputs, spec: ByteLevelBPE):
    """``inputs`` (a 1-D string tensor) -> ragged [batch, (pre-tokens)] as tokenizers makes
    them: added tokens first (each a pre-token of its own, never split or normalized), the rest
    normalized and split by each pattern in turn."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    if spec.added_tokens:
        added_pattern = alternation(spec.added_tokens)
        pieces = tf_text.regex_split(inputs, added_pattern, added_pattern)
    else:
        pieces = tf.RaggedTensor.from_tensor(tf.expand_dims(inputs, 1))
    flat = pieces.flat_values
    added = (
        tf.strings.regex_full_match(flat, added_pattern)
        if spec.added_tokens
        else tf.zeros_like(flat, dtype=tf.bool)
    )
    text = tf.where(added, tf.constant(""), flat)
    if spec.normalizer == "NFC":
        text = tf_text.normalize_utf8(text, "NFC")
    tokens = tf.RaggedTensor.from_tensor(tf.expand_dims(text, 1))
    for pattern in spec.split_patterns:
        split = _split_isolated(tokens.flat_values, pattern)
        tokens = tf.RaggedTensor.from_row_splits(
            split.flat_values, tf.gather(split.row_splits, tokens.row_splits)
        )
    # An added token is its own single pre-token; other pieces are their split tokens.
    whole = tf.RaggedTensor.from_row_lengths(tf.boolean_mask(flat, added), tf.cast(added, tf.int64))
    per_piece = tf.concat([whole, tokens], axis=1)
    tokens = tf.RaggedTensor.from_row_splits(per_piece, pieces.row_splits)
    return tokens.merge_dims(1, 2)


# ---- the KerasHub tokenizer ---------------------------------------------------------------------


def cache_as_themselves(tokenizer, tokens, pattern: str):
    """Put the ``tokens`` that ``pattern`` matches whole into a KerasHub ``BytePairTokenizer``'s
    BPE cache as themselves (one id each); returns the others, for the merge loop.

    KerasHub inserts its unsplittable tokens into that cache (a MutableHashTable) when the
    tokenizer is built: contents that a SavedModel keeps but a converted .tflite does not. Its
    table starts empty, and the merge loop would spell such a token out in bytes."""
    import tensorflow as tf

    whole = tf.strings.regex_full_match(tokens, pattern)
    tokenizer.cache.insert(tf.boolean_mask(tokens, whole), tf.boolean_mask(tokens, whole))
    return tf.boolean_mask(tokens, ~whole)


def keep_unsplittable_tokens_in_graph(tokenizer):
    """Make a KerasHub ``BytePairTokenizer`` keep each unsplittable token (GPT-2's
    ``<|endoftext|>``) one id in a converted .tflite, as it is in TensorFlow
    (``cache_as_themselves``); returns it. The merge step is replaced on the instance, not by a
    subclass: KerasHub finds a tokenizer's Transformers exporter and preset class by its class."""
    merge = tokenizer._bpe_merge_and_update_cache_tf
    if getattr(merge, "keeps_unsplittable_tokens", False) or not tokenizer.unsplittable_tokens:
        return tokenizer
    pattern = alternation(tokenizer.unsplittable_tokens)

    def merge_keeping_unsplittable_tokens(tokens):
        return merge(cache_as_themselves(tokenizer, tokens, pattern))

    merge_keeping_unsplittable_tokens.keeps_unsplittable_tokens = True
    tokenizer._bpe_merge_and_update_cache_tf = merge_keeping_unsplittable_tokens
    return tokenizer


class ExactPreTokenization:
    """Mixin for a KerasHub ``BytePairTokenizer`` subclass: tokenizers' pre-tokenization in the
    graph, ``ignore_merges``, and the eager path on the tokenizer.json itself. Everything else
    (vocabulary tables, BPE merge loop, cache, detokenization, special-token ids) is KerasHub's.
    ``byte_level_bpe`` must be set before the base class's ``__init__`` runs."""

    byte_level_bpe: ByteLevelBPE

    def hugging_face_json(self) -> str:
        return self.byte_level_bpe.hugging_face_json()

    def _set_vocabulary_and_merges_tokenizers(self, vocabulary, merges):
        """The eager path (``tokenize`` outside a tf.function) on tokenizers with exactly the
        tokenizer.json's pre-tokenizer (KerasHub's passes its regex as a literal string)."""
        from tokenizers import Tokenizer

        self.vocabulary = dict(vocabulary)
        self.merges = list(merges)
        self._tokenizer = Tokenizer.from_str(self.hugging_face_json())
        # As BytePairTokenizer: the graph path's state, if not built yet, exists as attributes.
        for name in (
            "byte2unicode",
            "unicode2byte",
            "cache",
            "id_to_token_map",
            "token_to_id_map",
            "merge_ranks_lookup_default",
            "merge_ranks",
        ):
            if not hasattr(self, name):
                setattr(self, name, None)

    def _bpe_merge_and_update_cache_tf(self, tokens):
        """An added token is its own id, in the graph too (``cache_as_themselves``).
        ``ignore_merges``: a pre-token that is in the vocabulary is that token. The others go
        through KerasHub's merge loop."""
        import tensorflow as tf

        spec = self.byte_level_bpe
        if not spec.ignore_merges and not spec.added_tokens:
            return super()._bpe_merge_and_update_cache_tf(tokens)
        if spec.added_tokens:
            tokens = cache_as_themselves(self, tokens, alternation(spec.added_tokens))
        if spec.ignore_merges:
            mapped = tf.strings.reduce_join(
                self.byte2unicode.lookup(tf.strings.bytes_split(tokens)), axis=-1
            )
            whole = self.token_to_id_map.lookup(mapped) != -1
            self.cache.insert(tf.boolean_mask(tokens, whole), tf.boolean_mask(mapped, whole))
            tokens = tf.boolean_mask(tokens, ~whole)
        return super()._bpe_merge_and_update_cache_tf(tokens)

    def _tokenize_tf(self, inputs):
        """KerasHub's ``BytePairTokenizer._tokenize_tf`` with ``pre_tokenize`` in place of
        ``split_strings_for_bpe`` (GPT-2's regex, with a marker character that text may hold)."""
        import tensorflow as tf

        self._maybe_initialized_tf()
        inputs = tf.convert_to_tensor(inputs)
        unbatched = inputs.shape.rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)
        if inputs.shape.rank > 1:
            raise ValueError(
                "`tokenize()` inputs should be a string, list of strings, or string tensor "
                f"with rank < 2. Received: {inputs}"
            )
        raw_tokens = pre_tokenize(inputs, self.byte_level_bpe)
        token_row_splits = raw_tokens.row_splits
        flat_tokens = raw_tokens.flat_values
        cache_lookup = self.cache.lookup(flat_tokens)
        cache_mask = cache_lookup == ""
        has_unseen_words = tf.math.reduce_any(cache_mask & (flat_tokens != ""))

        def process_unseen_tokens():
            self._bpe_merge_and_update_cache_tf(tf.boolean_mask(flat_tokens, cache_mask))
            return self.cache.lookup(flat_tokens)

        tokenized_words = tf.cond(has_unseen_words, process_unseen_tokens, lambda: cache_lookup)
        tokens = tf.strings.split(tokenized_words, sep=" ")
        if self.compute_dtype != tf.string:
            tokens = self.token_to_id_map.lookup(tokens)
        tokens = tf.RaggedTensor.from_row_splits(
            tokens.flat_values, tf.gather(tokens.row_splits, token_row_splits)
        )
        if self.sequence_length:
            output_shape = tokens.shape.as_list()
            output_shape[-1] = self.sequence_length
            tokens = tokens.to_tensor(shape=output_shape)
        if unbatched:
            tokens = tf.squeeze(tokens, 0)
            tf.ensure_shape(tokens, shape=[self.sequence_length])
        return tokens


@functools.cache
def exact_tokenizer_class(base):
    """``base`` (a KerasHub ``BytePairTokenizer`` subclass) with ``ExactPreTokenization``; its
    constructor takes the ``ByteLevelBPE`` first, then ``base``'s own arguments (vocabulary and
    merges come from the ByteLevelBPE)."""
    from keras_hub.src.utils.tensor_utils import preprocessing_function

    def __init__(self, byte_level_bpe, **kwargs):
        self.byte_level_bpe = byte_level_bpe
        kwargs.setdefault("unsplittable_tokens", list(byte_level_bpe.added_tokens))
        base.__init__(
            self,
            vocabulary=dict(byte_level_bpe.vocabulary),
            merges=list(byte_level_bpe.merges),
            **kwargs,
        )

    return type(
        f"Exact{base.__name__}",
        (ExactPreTokenization, base),
        {
            "__init__": __init__,
            "__doc__": f"KerasHub's {base.__name__}, id-exact with tokenizers ({__name__}).",
            "_tokenize_tf": preprocessing_function(ExactPreTokenization._tokenize_tf),
        },
    )
