"""What a model family module provides, and the defaults every family shares.

One subclass per family (``gpt2.py``, ...), registered in ``llm2tflite/architectures/__init__.py``
under its KerasHub causal-LM class. The generic stages (train, twin, trace, the LiteRT export,
resource sizing, the config check) ask the family for what differs between architectures and
hold no family names themselves, in the spirit of Hugging Face optimum's per-architecture export
configs and litert-torch's one-folder-per-model converter.

Class attributes and the "light" methods must not import TensorFlow or Keras: the Snakefile's
config check and the DAG's resource sizing call them while Snakemake parses the workflow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping


class Architecture:
    """A KerasHub causal LM family: its shapes, how to build one, how to export it fast."""

    #: Short name, used in the config (``train: {architecture: NAME}``) and in messages.
    name: str = ""
    #: The KerasHub task class (``keras_hub.models.<causal_lm_class>``): the registry's key.
    causal_lm_class: str = ""
    #: How text becomes ids: "byte_level_bpe" (vocab.json + merges.txt) or "sentencepiece"
    #: (one SentencePiece model proto). Decides how the vocabulary stage trains a vocabulary.
    tokenizer_kind: str = ""
    #: The files of a tokenizer directory of this family, as the vocabulary stage writes them.
    tokenizer_files: tuple[str, ...] = ()
    #: How a ``shape_of:`` twin gets its tokenizer: "published" (the family's real tokenizer
    #: files, fetched from PyPI) or "trained" (the vocabulary stage learns one of the family's
    #: kind on the workflow's corpus, as many pieces as the corpus supports).
    twin_tokenizer: str = "trained"
    #: SentencePiece families: the special pieces the family's KerasHub tokenizer expects, as
    #: SentencePiece trainer options (``{unk,bos,eos,pad}_{id,piece}``,
    #: ``user_defined_symbols``, ``add_dummy_prefix``); None: SentencePiece's own defaults.
    sentencepiece_layout: Mapping | None = None
    #: KerasHub presets of the family whose architecture we know without downloading them:
    #: preset name -> backbone constructor arguments (for ``shape_of:`` twins and sizing).
    presets: Mapping[str, Mapping] = {}
    #: The parameter counts KerasHub publishes for those presets (``<family>_presets.py``
    #: metadata), which a twin built from ``presets`` must reproduce exactly.
    preset_parameters: Mapping[str, int] = {}
    #: The ``train: model:`` section: the backbone arguments a user may set, as a JSON schema
    #: (validated by the config check) and their defaults.
    train_model_schema: Mapping = {}
    train_model_defaults: Mapping = {}

    # ---- light: no TensorFlow, no Keras ------------------------------------------------------

    def parameter_count(self, backbone_config: Mapping) -> int:
        """The backbone's parameter count, computed from its constructor arguments."""
        raise NotImplementedError

    def max_sequence_length(self, backbone_config: Mapping) -> int | None:
        """Longest sequence the backbone's position handling supports (None: unbounded)."""
        return backbone_config.get("max_sequence_length")

    def train_model_config(self, overrides: Mapping | None = None) -> dict:
        """``train_model_defaults`` updated with the config's ``train: model:`` section."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.train_model_defaults))
        if unknown:
            raise ValueError(f"{self.name}: unknown model setting(s) {unknown}; known: "
                             f"{sorted(self.train_model_defaults)}")
        return {**self.train_model_defaults, **overrides}

    def semantic_errors(self, model_config: Mapping, where: str) -> list[str]:
        """Checks of a ``train: model:`` section that a JSON schema cannot express."""
        return []

    # ---- heavy: import Keras inside -----------------------------------------------------------

    def load_tokenizer(self, tokenizer_dir):
        """The family's KerasHub tokenizer on the files of ``tokenizer_dir``."""
        raise NotImplementedError

    def build_causal_lm(self, backbone_config: Mapping, tokenizer, sequence_length: int):
        """A freshly initialised causal LM (weights drawn from the global Keras seed).

        ``sequence_length`` is the preprocessor's packing length (training windows).
        """
        raise NotImplementedError

    def line_preprocessor(self, preprocessor):
        """A function of a batch of text lines (a string tensor) -> the preprocessor's
        ``(x, y, sample_weight)``: how training packs plain lines. The default is the
        preprocessor itself."""
        return preprocessor

    def prompt_packer(self, preprocessor):
        """A function (ragged prompt ids [1, None], length) -> (token_ids, padding_mask) [1,
        length]: the start token, the ids, padding; what the family's ``generate_preprocess``
        packs (no end token). The default is the preprocessor's StartEndPacker."""

        def pack(token_ids, sequence_length):
            return preprocessor.packer(token_ids, sequence_length=sequence_length,
                                       add_end_value=False)

        return pack

    def stop_token_ids(self, tokenizer) -> list[int]:
        """The token ids the family's own ``generate()`` stops at (by default: the end token)."""
        return [int(tokenizer.end_token_id)]

    @contextlib.contextmanager
    def fast_decoding(self, causal_lm, prompt_length):
        """While the codelab route traces ``generate_step``: the family's decoding speed-ups.

        ``prompt_length`` is the number of prompt tokens (start token included) in the packed
        batch, a scalar tensor. The default changes nothing.
        """
        yield
