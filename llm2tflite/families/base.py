"""What a model family module provides, and the defaults every family shares.

One subclass per family (``gpt2.py``, ...), registered in ``llm2tflite/families/registry.py``
under its KerasHub causal-LM class. The generic stages (train, twin, trace, the LiteRT export,
resource sizing, the config check) ask the family for what differs between architectures and
hold no family names themselves, in the spirit of Hugging Face optimum's per-architecture export
configs and litert-torch's one-folder-per-model converter.

The LiteRT route's hook (``litert_cache_shapes``, ``litert_decoder``, ``litert_logits``; see
"LiteRT route" below) is the family's prefill/decode forward pass over an external KV cache.
``llm2tflite.litert.export`` (generic) builds every signature from it; the building blocks the
cache contract forces (cache update, attention over the cache) are shared in
``llm2tflite.families.litert_blocks``.

Class attributes and the "light" methods must not import TensorFlow or Keras: the Snakefile's
config check and the DAG's resource sizing call them while Snakemake parses the workflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence

# The LiteRT contract's fill value for hidden positions of the float32 additive mask, as
# LiteRT-LM fills it (never -inf: 0 * -inf is NaN). llm2tflite.litert.export documents the mask.
MASK_HIDDEN = -0.7 * 3.4028234663852886e38


@dataclasses.dataclass(frozen=True)
class KVCacheShape:
    """One layer's K and V caches of the LiteRT route: their heads and head size (the layout:
    ``llm2tflite.litert.contract.KV_CACHE_LAYOUT``)."""

    kv_heads: int
    head_dim: int


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
    #: Byte-level BPE families other than GPT-2: how the vocabulary stage learns their
    #: vocabulary (``{"split_pattern": REGEX, "special_tokens": (...)}``, optionally
    #: ``"normalizer": "NFC"``, see ``llm2tflite.inputs.vocab``); None: GPT-2's (its regex,
    #: <|endoftext|> last).
    byte_level_bpe_layout: Mapping | None = None
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
    #: Hugging Face checkpoints (a ``preset:`` directory with ``config.json`` + ``*.safetensors``,
    #: loaded by KerasHub's own converter, ``keras_hub/src/utils/transformers/``): the
    #: ``model_type`` values of ``config.json`` that KerasHub converts to this family's causal
    #: LM -> the Transformers class written in ``config.json``'s ``architectures`` (the value the
    #: loader is given when a checkpoint lacks it, as KerasHub's own exporter writes them).
    transformers_model_types: Mapping[str, str] = {}
    #: The tokenizer files KerasHub's converter reads from such a checkpoint: alternatives, the
    #: first whose files are all present is read.
    transformers_tokenizer_files: tuple[tuple[str, ...], ...] = ()
    #: The family's chat template for its instruction models, as prefix/suffix per role
    #: (``llm2tflite.core.chat.ChatTemplate``): ``{"user": {"prefix", "suffix"}, "model":
    #: {...}}``; None: the family has none (the config may set one, ``litert: chat_template:``).
    chat_template: Mapping | None = None

    # ---- light: no TensorFlow, no Keras ------------------------------------------------------

    def parameter_count(self, backbone_config: Mapping) -> int:
        """The backbone's parameter count, computed from its constructor arguments."""
        raise NotImplementedError

    def max_sequence_length(self, backbone_config: Mapping) -> int | None:
        """Longest sequence the backbone's position handling supports (None: unbounded)."""
        return backbone_config.get("max_sequence_length")

    def weight_input_widths(self, backbone_config: Mapping) -> dict[str, int]:
        """The input widths of the backbone's weight matrices (embedding tables included: their
        rows), by the setting that gives each: a blockwise quantization's block must divide
        every one. Empty when the config does not say (a preset not known without its files)."""
        return {
            key: backbone_config[key]
            for key in ("hidden_dim", "intermediate_dim")
            if backbone_config.get(key) is not None
        }

    def train_model_config(self, overrides: Mapping | None = None) -> dict:
        """``train_model_defaults`` updated with the config's ``train: model:`` section."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.train_model_defaults))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown model setting(s) {unknown}; known: "
                f"{sorted(self.train_model_defaults)}"
            )
        return {**self.train_model_defaults, **overrides}

    def semantic_errors(self, model_config: Mapping, where: str) -> list[str]:
        """Checks of a ``train: model:`` section that a JSON schema cannot express."""
        return []

    def transformers_backbone_config(self, hf_config: Mapping) -> dict:
        """The backbone arguments KerasHub's converter builds from a checkpoint's
        ``config.json`` (``convert_backbone_config``, mirrored without importing Keras), for the
        light methods above. Raises ValueError (one line) for a checkpoint the family's modules
        cannot handle."""
        raise NotImplementedError(f"{self.name}: no Hugging Face checkpoints")

    def check_transformers_tokenizer(self, checkpoint_dir) -> None:
        """Raise ValueError (one line) for a checkpoint whose tokenizer files the family cannot
        reproduce exactly (light: no TensorFlow); by default every one KerasHub reads is fine."""

    # ---- heavy: import Keras inside -----------------------------------------------------------

    def load_tokenizer(self, tokenizer_dir):
        """The family's KerasHub tokenizer on the files of ``tokenizer_dir``."""
        raise NotImplementedError

    def exact_tokenizer(self, tokenizer, preset):
        """The tokenizer the workflow uses for a model of this family loaded from ``preset`` (a
        preset name or directory, None if unknown), given KerasHub's: by default KerasHub's own.
        A family whose KerasHub tokenizer is not id-exact with the model's reference tokenizer
        returns one that is (``llm2tflite.inputs.sources.load_causal_lm`` puts it in the
        preprocessor; the LiteRT route's runtime tokenizer is written from it)."""
        return tokenizer

    def build_causal_lm(self, backbone_config: Mapping, tokenizer, sequence_length: int):
        """A freshly initialised causal LM (weights drawn from the global Keras seed): the
        ``causal_lm_class`` task on its own backbone and preprocessor classes.

        ``sequence_length`` is the preprocessor's packing length (training windows).
        """
        import keras_hub

        task = getattr(keras_hub.models, self.causal_lm_class)
        preprocessor = task.preprocessor_cls(tokenizer, sequence_length=sequence_length)
        backbone = task.backbone_cls(**backbone_config)
        return task(backbone=backbone, preprocessor=preprocessor)

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
            return preprocessor.packer(
                token_ids, sequence_length=sequence_length, add_end_value=False
            )

        return pack

    def stop_token_ids(self, tokenizer) -> list[int]:
        """The token ids the family's own ``generate()`` stops at (by default: the end token)."""
        return [int(tokenizer.end_token_id)]

    def codelab_cache_methods(self):
        """The family's faster ``call_with_cache`` and ``_build_cache`` for the codelab route, or
        None: ``(causal_lm_class, make_call_with_cache, make_build_cache)`` where
        ``make_call_with_cache(causal_lm)`` returns the replacement ``call_with_cache`` and
        ``make_build_cache(causal_lm, call_with_cache, prompt_length)`` the replacement
        ``_build_cache``. See ``fast_decoding``."""
        return None

    @contextlib.contextmanager
    def fast_decoding(self, causal_lm, prompt_length):
        """While the codelab route traces ``generate_step``: the family's decoding speed-ups
        (``codelab_cache_methods``), whose outputs equal KerasHub's ``generate()``:

        - each layer's slice of KerasHub's 6-D cache is read with a builtin 3-D slice instead of
          a Select TF ``StridedSlice`` that copies the whole cache into TensorFlow at every
          layer and token;
        - the cache is seeded by a forward pass over the prompt's tokens only, instead of all
          ``max_length`` positions.

        ``prompt_length`` is the number of prompt tokens (start token included) in the packed
        batch, a scalar tensor. A subclass of the family's class that overrides either method is
        traced unchanged; a family without speed-ups too.
        """
        methods = self.codelab_cache_methods()
        if methods is None:
            yield
            return
        family_class, make_call_with_cache, make_build_cache = methods
        with cache_methods_replaced(
            causal_lm,
            family_class,
            make_call_with_cache,
            lambda model, call: make_build_cache(model, call, prompt_length),
        ):
            yield

    # ---- LiteRT route (heavy: import Keras inside) -----------------------------------------
    #
    # The family's forward pass over an external KV cache, traced by ``llm2tflite.litert.export``
    # into every ``prefill_<T>`` signature and the ``decode`` signature (T = 1). The exporter
    # calls the methods below inside ``keras.StatelessScope`` with every weight read once, so
    # the family calls the Keras model's own sublayers (embeddings, norms, dense projections,
    # MLP, rotary embedding ...) and the math stays KerasHub's; it writes by hand only what the
    # cache contract forces: the cache update and attention over the cache
    # (``llm2tflite.families.litert_blocks``).
    #
    # Tensors: those of docs/litert-contract.md (batch 1, T tokens in this call, S = cache
    # length; ``token_ids`` is the contract's ``tokens``). A family with sliding-window layers
    # narrows the runtime's causal mask per layer from input_pos (hiding s <= input_pos[t] -
    # window); each layer's (k, v) cache pair has that layer's ``litert_cache_shapes`` entry
    # (heads and head_dim may differ per layer; kv_heads < query heads for grouped-query
    # attention).
    # Positions come from input_pos (learned position tables are gathered by it, rotary
    # embeddings computed from it); cache rows are written at input_pos[0] .. input_pos[0]+T-1
    # with ``litert_blocks.update_caches`` (-> DYNAMIC_UPDATE_SLICE) and attention reads the
    # updated 4-D caches directly (``litert_blocks.attention``): never a per-layer slice of a
    # stacked cache (a STRIDED_SLICE copy that dominated decode, ~1 GB/s).
    # An embedding table must be read by row lookup (``ops.take``, what Keras' Embedding does):
    # the converter rewrites such GATHERs into EMBEDDING_LOOKUP so the quantizer quantizes the
    # table (once, even when the output projection shares it).

    def litert_cache_shapes(self, causal_lm) -> Sequence[KVCacheShape]:
        """One entry per decoder layer (in order): that layer's K and V cache shape."""
        raise NotImplementedError(f"{self.name}: no LiteRT route (litert_cache_shapes)")

    def litert_max_positions(self, causal_lm) -> int | None:
        """Most positions the model can address (learned position tables); None: unbounded.

        The cache length S must not exceed it.
        """
        return getattr(causal_lm.backbone, "max_sequence_length", None)

    def litert_decoder(self, causal_lm, token_ids, input_pos, mask, kv_caches):
        """The decoder over ``token_ids``: ``(hidden, new_kv_caches)``.

        ``hidden`` [1, T, hidden_dim] is the last decoder layer's output, before the final
        normalization (``litert_logits`` applies it, so a signature that needs no logits skips
        it); ``new_kv_caches`` the updated (k, v) pairs, same shapes and order as ``kv_caches``.
        """
        raise NotImplementedError(f"{self.name}: no LiteRT route (litert_decoder)")

    def litert_logits(self, causal_lm, hidden):
        """Final normalization and output projection (tied or not, soft-capped if the model
        caps): hidden [1, T, hidden_dim] -> logits float32 [1, T, vocabulary_size]."""
        raise NotImplementedError(f"{self.name}: no LiteRT route (litert_logits)")


@contextlib.contextmanager
def cache_methods_replaced(causal_lm, family_class, call_with_cache, build_cache):
    """While the codelab route traces: ``causal_lm``'s ``call_with_cache`` and ``_build_cache``
    replaced by the family's faster equivalents (made by ``call_with_cache(causal_lm)`` and
    ``build_cache(causal_lm, faster_call_with_cache)``).

    A subclass of ``family_class`` that overrides either method is traced unchanged: its own
    code may compute something else.
    """
    model_class = type(causal_lm)
    if (
        model_class.call_with_cache is not family_class.call_with_cache
        or model_class._build_cache is not family_class._build_cache
    ):
        yield
        return
    faster_call = call_with_cache(causal_lm)
    # Instance attributes shadow the methods for generate_step; set through object.__setattr__
    # so Keras does not track the functions as layer attributes.
    object.__setattr__(causal_lm, "call_with_cache", faster_call)
    object.__setattr__(causal_lm, "_build_cache", build_cache(causal_lm, faster_call))
    try:
        yield
    finally:
        object.__delattr__(causal_lm, "call_with_cache")
        object.__delattr__(causal_lm, "_build_cache")
