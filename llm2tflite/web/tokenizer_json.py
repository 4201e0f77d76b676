"""A SentencePiece ``tokenizer.model`` as a ``tokenizer.json`` that JavaScript tokenizers read.

The demo page tokenizes in the browser with ``@huggingface/tokenizers``, which reads only
``tokenizer.json``. A byte-level BPE model already has one
(``llm2tflite.litert.runtime_tokenizer``); a SentencePiece model's proto is rewritten here as the
same algorithm in Hugging Face's terms:

- SentencePiece BPE merges, at each step, the adjacent pair whose merged piece scores highest (its
  vocabulary rank). As a ``BPE`` model: every split of every normal piece into two pieces of the
  vocabulary is a merge, ranked by the merged piece's score (then by the parts' ids, which only
  orders merges that can never compete: two splits of one piece are never adjacent at once);
- byte fallback: characters outside the vocabulary become their UTF-8 bytes' ``<0xXX>`` pieces
  (``byte_fallback``), others ``<unk>``;
- the normalizer: the dummy prefix (``Prepend("▁")``) and spaces escaped as ``▁``;
- the decoder: ``▁`` back to spaces, byte pieces to characters, the dummy prefix's space off.

Control pieces (``<s>``, ``</s>``) stay plain vocabulary entries, never matched in text (as in
SentencePiece, where the text "<s>" is tokenized as characters); user-defined pieces become added
tokens, matched in the raw text as SentencePiece matches them.

Only what ids depend on is supported: model type BPE, the "identity" normalization rule and no
collapsing of whitespace runs (what ``llm2tflite.inputs.vocab`` trains, and Llama's and Gemma 3's
tokenizers use). Anything else raises :class:`UnsupportedTokenizerError` instead of writing a
file that gives other ids. ``tests/web/test_web_tokenizer.py`` checks the ids against
``sentencepiece`` on the corpus lines and hard cases.
"""

from __future__ import annotations

from pathlib import Path

SPIECE_UNDERLINE = "\u2581"
# sentencepiece_model.proto: ModelProto.SentencePiece.Type and TrainerSpec.ModelType.
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_MODEL_BPE = 2


class UnsupportedTokenizerError(ValueError):
    """The SentencePiece model uses a feature the tokenizer.json would not reproduce."""


def _model_proto(data: bytes):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(data)
    return proto


def _check_supported(proto) -> None:
    spec, normalizer = proto.trainer_spec, proto.normalizer_spec
    problems = []
    if spec.model_type != _MODEL_BPE:
        problems.append(f"model type {spec.model_type} (only BPE, 2, is converted)")
    if normalizer.name not in ("identity", "") or normalizer.precompiled_charsmap:
        problems.append(f"normalization rule {normalizer.name!r} (only 'identity')")
    if normalizer.remove_extra_whitespaces:
        problems.append("remove_extra_whitespaces (whitespace runs would be collapsed)")
    if not normalizer.escape_whitespaces and proto.normalizer_spec.HasField("escape_whitespaces"):
        problems.append("escape_whitespaces off")
    if problems:
        raise UnsupportedTokenizerError(
            "cannot convert this SentencePiece model to tokenizer.json: " + "; ".join(problems)
        )


def bpe_merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """Merges of a SentencePiece BPE vocabulary: (piece, score, type) in id order."""
    ids = {piece: i for i, (piece, _, kind) in enumerate(pieces) if kind == _NORMAL}
    ranked = []
    for merged_id, (piece, score, kind) in enumerate(pieces):
        if kind != _NORMAL or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                ranked.append((-score, merged_id, ids[left], ids[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def sentencepiece_to_json(data: bytes) -> str:
    """The ``tokenizer.json`` text of a serialized SentencePiece model (see the module doc)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    proto = _model_proto(data)
    _check_supported(proto)
    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    vocabulary = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    if len(vocabulary) != len(pieces):
        raise UnsupportedTokenizerError("the SentencePiece model has duplicate pieces")
    unknown = [piece for piece, _, kind in pieces if kind == _UNKNOWN]
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocabulary,
            merges=bpe_merges(pieces),
            unk_token=unknown[0] if unknown else None,
            fuse_unk=True,
            byte_fallback=proto.trainer_spec.byte_fallback,
        )
    )
    steps = [normalizers.Replace(" ", SPIECE_UNDERLINE)]
    if proto.normalizer_spec.add_dummy_prefix:
        steps.insert(0, normalizers.Prepend(SPIECE_UNDERLINE))
    tokenizer.normalizer = normalizers.Sequence(steps)
    decoding = [decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        decoding.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(decoding)
    user_defined = [piece for piece, _, kind in pieces if kind == _USER_DEFINED]
    if user_defined:
        tokenizer.add_tokens([AddedToken(p, normalized=False, special=False) for p in user_defined])
    return tokenizer.to_str(pretty=False)


def write_tokenizer_json(model_path, out_path) -> Path:
    from llm2tflite.core import atomic

    text = sentencepiece_to_json(Path(model_path).read_bytes())
    atomic.write_bytes(out_path, text.encode("utf-8"))
    return Path(out_path)
