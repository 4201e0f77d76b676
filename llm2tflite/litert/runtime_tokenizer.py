"""The LiteRT route's tokenizer, outside the graph: files written from the model's own vocabulary.

The LiteRT route's ``.tflite`` takes token ids, so the runtime (ours, LiteRT-LM, an app) needs the
model's tokenizer as a file. What file depends on the tokenizer's kind
(``Architecture.tokenizer_kind``), never on the model family:

- ``byte_level_bpe`` (GPT-2 style): ``tokenizer.json``, a Hugging Face ``tokenizers`` file made from
  the KerasHub tokenizer's own vocabulary and merges: a BPE model, GPT-2's byte-level
  pre-tokenizer (its regex, no prefix space) and decoder, and the tokenizer's unsplittable special
  tokens (``<|endoftext|>``) as special added tokens, so that text containing them maps to their
  ids as in KerasHub. Read at run time with ``tokenizers``; LiteRT-LM's builder takes it as
  ``hf_tokenizer``. A family with an exact tokenizer of its own (``Architecture.exact_tokenizer``,
  Llama 3's and Qwen's, ``llm2tflite.families.byte_level_bpe``) writes its file: a Hugging Face
  checkpoint's own ``tokenizer.json`` without its post-processor (the start token is the
  runtime's to add), or one built with the family's pre-tokenizer.
- ``sentencepiece`` (Llama style): ``tokenizer.model``, the KerasHub tokenizer's SentencePiece
  model proto as is. Read at run time with ``sentencepiece``; LiteRT-LM's builder takes it as
  ``sp_tokenizer``.

Both give exactly KerasHub's ids (tested on >= 1,000 corpus lines and hard cases, and on GPT-2's
real vocabulary). Neither adds the start token: the runtime puts it first, as KerasHub's
preprocessor does.

CLI (the workflow's ``runtime_tokenizer`` rule)::

    python -m llm2tflite.litert.runtime_tokenizer --preset results/<model>/preset \
        --out-dir results/<model>/litert
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import llm2tflite  # noqa: F401  (KERAS_BACKEND before keras)
from llm2tflite.core import atomic
from llm2tflite.litert.contract import RUNTIME_TOKENIZER_FILES as FILE_BY_KIND
from llm2tflite.litert.contract import SENTENCEPIECE_MODEL, TOKENIZER_JSON

# KerasHub keeps the header line of a GPT-2 merges.txt in its merges list.
_MERGES_HEADER_PREFIX = "#version"


def runtime_file(tokenizer_kind: str) -> str:
    """The file name the runtime reads for this tokenizer kind (light: no TF, no tokenizers)."""
    try:
        return FILE_BY_KIND[tokenizer_kind]
    except KeyError:
        raise ValueError(
            f"no runtime tokenizer for tokenizer kind {tokenizer_kind!r}; known: "
            f"{', '.join(FILE_BY_KIND)}"
        ) from None


# ---- writing -----------------------------------------------------------------------------------


def byte_level_bpe_json(
    vocabulary: Mapping[str, int], merges: Iterable[str], special_tokens: Iterable[str] = ()
) -> str:
    """A ``tokenizer.json`` for a GPT-2-style byte-level BPE: token -> id, "a b" merges."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    pairs = []
    for merge in merges:
        if merge.startswith(_MERGES_HEADER_PREFIX) or not merge.strip():
            continue
        first, second = merge.split(" ")
        pairs.append((first, second))
    tokenizer = Tokenizer(models.BPE(vocab=dict(vocabulary), merges=pairs, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    specials = [AddedToken(token, special=True, normalized=False) for token in special_tokens]
    if specials:
        tokenizer.add_special_tokens(specials)
    for token in special_tokens:
        if tokenizer.token_to_id(token) != vocabulary.get(token):
            raise ValueError(f"special token {token!r} is not in the vocabulary")
    return tokenizer.to_str(pretty=False)


def write_runtime_tokenizer(keras_tokenizer, tokenizer_kind: str, out_dir) -> Path:
    """Write the runtime tokenizer file of ``keras_tokenizer`` into ``out_dir``; its path."""
    out_path = Path(out_dir) / runtime_file(tokenizer_kind)
    if tokenizer_kind == "byte_level_bpe" and hasattr(keras_tokenizer, "hugging_face_json"):
        # A family's exact tokenizer (llm2tflite.families.byte_level_bpe) knows its own file.
        atomic.write_bytes(out_path, keras_tokenizer.hugging_face_json().encode("utf-8"))
    elif tokenizer_kind == "byte_level_bpe":
        specials = list(getattr(keras_tokenizer, "unsplittable_tokens", None) or [])
        text = byte_level_bpe_json(
            dict(keras_tokenizer.vocabulary), list(keras_tokenizer.merges), specials
        )
        atomic.write_bytes(out_path, text.encode("utf-8"))
    elif tokenizer_kind == "sentencepiece":
        # KerasHub keeps the serialized model proto, however the tokenizer was made.
        atomic.write_bytes(out_path, bytes(keras_tokenizer.proto))
    return out_path


def load_keras_tokenizer(preset: str):
    """The KerasHub tokenizer of a preset (a directory, or a name KerasHub can download)."""
    import keras_hub

    from llm2tflite.inputs.sources import PresetUnavailableError

    try:
        return keras_hub.tokenizers.Tokenizer.from_preset(preset)
    except Exception as error:  # noqa: BLE001  (same advice for every load failure)
        raise PresetUnavailableError(
            f"could not load the tokenizer of preset {preset!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else ''})"
        ) from error


# ---- reading -----------------------------------------------------------------------------------


class HuggingFaceTokenizer:
    """``tokenizer.json`` read with Hugging Face ``tokenizers`` (``data``: its bytes, read from
    elsewhere than ``path``, e.g. a model's metadata)."""

    kind = "byte_level_bpe"

    def __init__(self, path, data: bytes | None = None):
        from tokenizers import Tokenizer

        self.path = path if data is not None else Path(path)
        if data is None:
            self._tokenizer = Tokenizer.from_file(str(path))
        else:
            self._tokenizer = Tokenizer.from_str(data.decode("utf-8"))

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        # Special tokens are text like any other (KerasHub's detokenize prints them too).
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def vocabulary_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)


class SentencePieceTokenizer:
    """``tokenizer.model`` read with ``sentencepiece`` (``data``: as ``HuggingFaceTokenizer``)."""

    kind = "sentencepiece"

    def __init__(self, path, data: bytes | None = None):
        import sentencepiece

        self.path = path if data is not None else Path(path)
        if data is None:
            self._processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
        else:
            self._processor = sentencepiece.SentencePieceProcessor(model_proto=data)

    def encode(self, text: str) -> list[int]:
        return list(self._processor.encode(text, out_type=int))

    def decode(self, ids) -> str:
        return self._processor.decode([int(i) for i in ids])

    def vocabulary_size(self) -> int:
        return int(self._processor.get_piece_size())


_READER_BY_FILE = {
    TOKENIZER_JSON: HuggingFaceTokenizer,
    SENTENCEPIECE_MODEL: SentencePieceTokenizer,
}


def find_runtime_tokenizer(directory) -> Path:
    """The runtime tokenizer file in ``directory`` (exactly one of the known names)."""
    directory = Path(directory)
    found = [directory / name for name in _READER_BY_FILE if (directory / name).is_file()]
    if len(found) != 1:
        raise FileNotFoundError(
            f"{directory} must hold exactly one tokenizer file ({' or '.join(_READER_BY_FILE)}), "
            f"found {len(found)}; the workflow's runtime_tokenizer rule writes it"
        )
    return found[0]


def load_runtime_tokenizer(path):
    """The tokenizer of a ``tokenizer.json`` / ``tokenizer.model`` file, or of the one in a dir."""
    path = Path(path)
    if path.is_dir():
        path = find_runtime_tokenizer(path)
    return _reader(path.name, path)(path)


def tokenizer_from_bytes(file_name: str, data: bytes, origin: str):
    """The tokenizer of a runtime tokenizer file's bytes read from elsewhere (a model's metadata):
    ``file_name`` tells its kind, ``origin`` (the tokenizer's ``path``) where they came from."""
    return _reader(file_name, origin)(origin, bytes(data))


def _reader(file_name: str, where):
    try:
        return _READER_BY_FILE[file_name]
    except KeyError:
        raise ValueError(
            f"{where}: not a runtime tokenizer file ({' or '.join(_READER_BY_FILE)})"
        ) from None


def main(argv=None) -> None:
    from llm2tflite.families import registry
    from llm2tflite.inputs.sources import PresetUnavailableError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="KerasHub preset name or directory")
    parser.add_argument("--out-dir", required=True, help="e.g. results/<model>/litert")
    args = parser.parse_args(argv)
    family, _ = registry.for_preset(args.preset)
    try:
        keras_tokenizer = load_keras_tokenizer(args.preset)
    except PresetUnavailableError as error:
        print(f"llm2tflite: error: {error}", file=sys.stderr)
        sys.exit(2)
    keras_tokenizer = family.exact_tokenizer(keras_tokenizer, args.preset)
    path = write_runtime_tokenizer(keras_tokenizer, family.tokenizer_kind, args.out_dir)
    runtime = load_runtime_tokenizer(path)
    if runtime.vocabulary_size() != keras_tokenizer.vocabulary_size():
        path.unlink()
        print(
            f"llm2tflite: error: {path.name} has {runtime.vocabulary_size()} tokens, the "
            f"KerasHub tokenizer {keras_tokenizer.vocabulary_size()}",
            file=sys.stderr,
        )
        sys.exit(1)
    summary = {
        "file": str(path),
        "kind": family.tokenizer_kind,
        "vocabulary_size": runtime.vocabulary_size(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
