"""Qwen 2 / 2.5 (``keras_hub.models.QwenCausalLM``): byte-level BPE, RMSNorm, RoPE, SwiGLU, GQA
with biased query/key/value projections.

Everything the workflow needs to know about the family: the KerasHub presets' shapes and
parameter counts (``shape_of:`` twins, resource sizing), the ``train:`` model settings, how to
build a fresh model on a byte-level BPE vocabulary, Hugging Face ``qwen2`` checkpoints, and both
routes (the decoder is KerasHub's Llama-style one: ``rotary_gqa.RotaryGQAFamily``).

The tokenizer. Qwen's own (Hugging Face ``tokenizer.json``) is a byte-level BPE whose text is
NFC-normalized and pre-tokenized with ``QWEN_SPLIT_PATTERN`` (single digits, case-insensitive
contractions, a punctuation character joined to the word after it ...). KerasHub's
``QwenTokenizer`` is a ``BytePairTokenizer``: in a TensorFlow graph it pre-tokenizes with
GPT-2's pattern and does not normalize, and its eager path does not split at all, so its ids
differ from Qwen's on text with digits, "¿word", "'S", some whitespace runs or decomposed
accents (measured in tests/families/test_qwen_tokenizer.py). Every model the workflow loads
gets instead ``QwenTokenizer`` made id-exact with ``tokenizers``
(``llm2tflite.families.byte_level_bpe``, as Llama 3's: ``exact_tokenizer``), so the Keras
reference, the codelab route's in-graph tokenizer and the LiteRT route's ``tokenizer.json``
give Qwen's ids: a checkpoint's own ``tokenizer.json`` as it is, a KerasHub preset's or a
learned vocabulary with Qwen's pattern, NFC and its special tokens.

No start token: Qwen puts nothing before the text (``QwenTokenizer.start_token_id`` is None, as
Hugging Face's ``bos_token``); ``<|endoftext|>`` ends text and pads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llm2tflite.families import rotary_gqa
from llm2tflite.families.byte_level_bpe import LLAMA3_SPLIT_PATTERN
from llm2tflite.families.rotary_gqa import RotaryGQAFamily

# Qwen 2's and Qwen 3's pre-tokenization pattern (their tokenizer.json's Split pre-tokenizer;
# Qwen 1's tiktoken pattern): Llama 3's with single digits. GPT-2's differs: " ?\p{N}+" (digit
# runs with a space), " ?\p{L}+", case-sensitive contractions.
QWEN_SPLIT_PATTERN = LLAMA3_SPLIT_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
END_OF_TEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# Qwen's special tokens, in the order of their ids (151643, 151644, 151645 in Qwen's vocabulary,
# right after the 151,643 byte-level BPE tokens).
QWEN_SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)

# QwenBackbone arguments of KerasHub's Qwen 2.5 presets, from the Hugging Face configs they were
# converted from (keras_hub/src/utils/transformers/convert_qwen.py): RoPE base 1,000,000, RMSNorm
# epsilon 1e-6, no sliding window, biases on the query/key/value projections only. The 0.5B and
# 3B models tie the output projection to the embedding; the larger ones do not (and have 152,064
# rows).
_ROPE = dict(rope_max_wavelength=1_000_000, layer_norm_epsilon=1e-6)
_QWEN2_5_0_5B = dict(
    vocabulary_size=151_936,
    num_layers=24,
    num_query_heads=14,
    num_key_value_heads=2,
    hidden_dim=896,
    intermediate_dim=4864,
    tie_word_embeddings=True,
    **_ROPE,
)
_QWEN2_5_3B = dict(
    vocabulary_size=151_936,
    num_layers=36,
    num_query_heads=16,
    num_key_value_heads=2,
    hidden_dim=2048,
    intermediate_dim=11_008,
    tie_word_embeddings=True,
    **_ROPE,
)
_QWEN2_5_32B = dict(
    vocabulary_size=152_064,
    num_layers=64,
    num_query_heads=40,
    num_key_value_heads=8,
    hidden_dim=5120,
    intermediate_dim=27_648,
    tie_word_embeddings=False,
    **_ROPE,
)
_QWEN2_5_72B = dict(
    vocabulary_size=152_064,
    num_layers=80,
    num_query_heads=64,
    num_key_value_heads=8,
    hidden_dim=8192,
    intermediate_dim=29_568,
    tie_word_embeddings=False,
    **_ROPE,
)


class Qwen(RotaryGQAFamily):
    name = "qwen"
    causal_lm_class = "QwenCausalLM"
    tokenizer_kind = "byte_level_bpe"
    tokenizer_files = ("vocab.json", "merges.txt")
    # Qwen's vocabulary is a model-hub download: a twin's tokenizer is a byte-level BPE the
    # vocabulary stage learns on the workflow's corpus, with Qwen's special tokens last.
    twin_tokenizer = "trained"
    # The vocabulary stage's byte-level BPE for this family (``llm2tflite.inputs.vocab``): text
    # normalized and split as Qwen's tokenizer.json does, Qwen's special tokens after the learned
    # ones (as in Qwen's vocabulary; never id 0, KerasHub's padding).
    byte_level_bpe_layout = {
        "split_pattern": QWEN_SPLIT_PATTERN,
        "normalizer": "NFC",
        "special_tokens": QWEN_SPECIAL_TOKENS,
    }
    decoder_layer_class = ("keras_hub.src.models.qwen.qwen_decoder", "QwenTransformerDecoder")
    attention_class = ("keras_hub.src.models.qwen.qwen_attention", "QwenAttention")
    # The presets whose exact configuration is known (their published parameter counts are
    # reproduced below). Left out: the 1.5B and 7B ones, whose KerasHub counts match no Qwen
    # 2.5 configuration, qwen2.5_coder_14b (published as a round 14,000,000,000) and the Math
    # models (another RoPE base and context).
    presets = {
        "qwen2.5_0.5b_en": _QWEN2_5_0_5B,
        "qwen2.5_instruct_0.5b_en": _QWEN2_5_0_5B,
        "qwen2.5_coder_0.5b": _QWEN2_5_0_5B,
        "qwen2.5_coder_instruct_0.5b": _QWEN2_5_0_5B,
        "qwen2.5_3b_en": _QWEN2_5_3B,
        "qwen2.5_coder_3b": _QWEN2_5_3B,
        "qwen2.5_coder_instruct_3b": _QWEN2_5_3B,
        "qwen2.5_instruct_32b_en": _QWEN2_5_32B,
        "qwen2.5_coder_32b": _QWEN2_5_32B,
        "qwen2.5_coder_instruct_32b": _QWEN2_5_32B,
        "qwen2.5_instruct_72b_en": _QWEN2_5_72B,
    }
    # keras_hub/src/models/qwen/qwen_presets.py, "params".
    preset_parameters = {
        "qwen2.5_0.5b_en": 494_032_768,
        "qwen2.5_instruct_0.5b_en": 494_032_768,
        "qwen2.5_coder_0.5b": 494_032_768,
        "qwen2.5_coder_instruct_0.5b": 494_032_768,
        "qwen2.5_3b_en": 3_085_938_688,
        "qwen2.5_coder_3b": 3_085_938_688,
        "qwen2.5_coder_instruct_3b": 3_085_938_688,
        "qwen2.5_instruct_32b_en": 32_763_876_352,
        "qwen2.5_coder_32b": 32_763_876_352,
        "qwen2.5_coder_instruct_32b": 32_763_876_352,
        "qwen2.5_instruct_72b_en": 72_706_203_648,
    }
    # Hugging Face Qwen 2 / 2.5 checkpoints (keras_hub/src/utils/transformers/convert_qwen.py),
    # whose tokenizer KerasHub reads from tokenizer.json only.
    transformers_model_types = {"qwen2": "Qwen2ForCausalLM"}
    transformers_tokenizer_files = (("tokenizer.json",),)
    # A small Qwen with every feature of the real ones: grouped-query attention (2 query heads
    # per key/value head), biased projections, tied embeddings.
    train_model_defaults = {
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "hidden_dim": 64,
        "intermediate_dim": 128,
        "rope_max_wavelength": 10000,
        "layer_norm_epsilon": 1e-6,
        "tie_word_embeddings": True,
        "dropout": 0.0,
    }
    train_model_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "num_layers": {"type": "integer", "minimum": 1},
            "num_query_heads": {"type": "integer", "minimum": 1},
            "num_key_value_heads": {"type": "integer", "minimum": 1},
            "hidden_dim": {"type": "integer", "minimum": 2},
            "intermediate_dim": {"type": "integer", "minimum": 1},
            "rope_max_wavelength": {"type": "number", "exclusiveMinimum": 0},
            "layer_norm_epsilon": {"type": "number", "exclusiveMinimum": 0},
            "tie_word_embeddings": {"type": "boolean"},
            "dropout": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }

    # ---- light ----------------------------------------------------------------------------------

    def head_dim(self, backbone_config: Mapping) -> int:
        return backbone_config["hidden_dim"] // backbone_config["num_query_heads"]

    def parameter_count(self, backbone_config: Mapping) -> int:
        """QwenBackbone's parameters: embedding (and output projection when untied), blocks,
        final RMSNorm. Per layer: query/key/value projections with biases, the output projection
        without, the SwiGLU MLP's three kernels, two RMSNorm scales."""
        d, f = backbone_config["hidden_dim"], backbone_config["intermediate_dim"]
        heads, kv_heads = (
            backbone_config["num_query_heads"],
            backbone_config["num_key_value_heads"],
        )
        head_dim = self.head_dim(backbone_config)
        attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim  # q, o; k, v
        attention += self.attention_extra_parameters(backbone_config)
        gated_mlp = 3 * d * f
        per_layer = attention + gated_mlp + 2 * d
        tables = 1 if backbone_config.get("tie_word_embeddings", True) else 2
        embeddings = tables * backbone_config["vocabulary_size"] * d
        return embeddings + backbone_config["num_layers"] * per_layer + d

    def attention_extra_parameters(self, backbone_config: Mapping) -> int:
        """Qwen 2: the query, key and value biases."""
        heads, kv_heads = (
            backbone_config["num_query_heads"],
            backbone_config["num_key_value_heads"],
        )
        return (heads + 2 * kv_heads) * self.head_dim(backbone_config)

    def max_sequence_length(self, backbone_config: Mapping) -> int | None:
        return None  # rotary positions: no learned position table to run out of

    def weight_input_widths(self, backbone_config: Mapping) -> dict[str, int]:
        """Hidden and feed-forward widths, and the attention output projection's input (query
        heads x head_dim: the hidden width for Qwen 2, not always for Qwen 3)."""
        widths = super().weight_input_widths(backbone_config)
        if backbone_config.get("num_query_heads") and backbone_config.get("hidden_dim"):
            widths["num_query_heads x head_dim"] = backbone_config[
                "num_query_heads"
            ] * self.head_dim(backbone_config)
        return widths

    def semantic_errors(self, model_config: Mapping, where: str) -> list[str]:
        return rotary_gqa.shape_errors(self.train_model_config(model_config), where)

    def transformers_backbone_config(self, hf_config: Mapping) -> dict:
        """convert_qwen.convert_backbone_config, with the keys QwenBackbone takes.

        KerasHub's converter hands the backbone ``use_sliding_window`` (which QwenBackbone
        does not read: its setting is ``use_sliding_window_attention``, left at False) and reads
        ``use_sliding_window`` and ``sliding_window`` without defaults, so a config.json without
        them (KerasHub's own Qwen exporter writes neither) does not load: refused here, in one
        line, and so is a checkpoint that asks for sliding-window attention.
        """
        missing = [k for k in ("use_sliding_window", "sliding_window") if k not in hf_config]
        if missing:
            raise ValueError(
                f"config.json has no {' or '.join(missing)} (KerasHub's Qwen converter reads "
                "them; Qwen's own checkpoints have them, KerasHub's exporter leaves them out)"
            )
        if hf_config["use_sliding_window"]:
            raise ValueError(
                "use_sliding_window is true: KerasHub's Qwen converter builds the model without "
                "the window, which would compute something else"
            )
        rope_theta = (hf_config.get("rope_parameters") or {}).get("rope_theta")
        return {
            "vocabulary_size": hf_config["vocab_size"],
            "hidden_dim": hf_config["hidden_size"],
            "num_layers": hf_config["num_hidden_layers"],
            "num_query_heads": hf_config["num_attention_heads"],
            "num_key_value_heads": hf_config["num_key_value_heads"],
            "intermediate_dim": hf_config["intermediate_size"],
            "layer_norm_epsilon": hf_config["rms_norm_eps"],
            "rope_max_wavelength": rope_theta
            if rope_theta is not None
            else hf_config["rope_theta"],
            "sliding_window_size": hf_config["sliding_window"],
            "tie_word_embeddings": hf_config["tie_word_embeddings"],
        }

    def check_transformers_tokenizer(self, checkpoint_dir) -> None:
        """tokenizer.json must be a byte-level BPE whose pre-tokenizer ``byte_level_bpe``
        reproduces in the graph (else the codelab route would silently tokenize otherwise)."""
        from llm2tflite.families import byte_level_bpe

        path = Path(checkpoint_dir).expanduser() / "tokenizer.json"
        byte_level_bpe.from_tokenizer_json(path.read_text(encoding="utf-8"), "tokenizer.json")

    # ---- heavy ----------------------------------------------------------------------------------

    def load_tokenizer(self, tokenizer_dir):
        """QwenTokenizer on vocab.json + merges.txt, Qwen's special tokens that the vocabulary
        has kept whole (as KerasHub's converter makes them unsplittable): KerasHub's own (what a
        built model is saved with, so that its preset is a plain KerasHub preset); loading the
        preset gives it the exact tokenizer (``exact_tokenizer``)."""
        import json

        import keras_hub

        vocab, merges = (f"{tokenizer_dir}/{name}" for name in self.tokenizer_files)
        with open(vocab, encoding="utf-8") as f:
            known = json.load(f)
        specials = [token for token in QWEN_SPECIAL_TOKENS if token in known]
        tokenizer = getattr(keras_hub.models, self.tokenizer_class)(
            vocabulary=vocab, merges=merges, unsplittable_tokens=specials
        )
        if tokenizer.end_token_id == 0:
            # KerasHub pads Qwen inputs with id 0: padding would read as end-of-text.
            raise ValueError(f"the end token has id {tokenizer.end_token_id}, the padding id")
        return tokenizer

    def exact_tokenizer(self, tokenizer, preset):
        """The family's KerasHub tokenizer id-exact with ``tokenizers`` (``byte_level_bpe``): a
        checkpoint's ``tokenizer.json`` as it is (its pre-tokenizer, normalizer, added tokens),
        its unsplittable tokens those of KerasHub's converter (every added token but reserved
        ones); a KerasHub preset's or a learned vocabulary and merges with Qwen's pattern, NFC
        and the tokenizer's unsplittable tokens as added tokens."""
        import keras_hub

        from llm2tflite.families import byte_level_bpe, registry

        exact_class = byte_level_bpe.exact_tokenizer_class(
            getattr(keras_hub.models, self.tokenizer_class)
        )
        if preset is not None and registry.transformers_config(preset) is not None:
            path = Path(preset).expanduser() / "tokenizer.json"
            spec = byte_level_bpe.from_tokenizer_json(path.read_text(encoding="utf-8"), str(path))
            # As convert_qwen.convert_tokenizer: every added token but the reserved ones.
            unsplittable = [
                t for t in spec.added_tokens if not t.startswith("<|reserved_special_token_")
            ]
        else:
            unsplittable = list(tokenizer.unsplittable_tokens or [])
            spec = byte_level_bpe.ByteLevelBPE(
                vocabulary=dict(tokenizer.vocabulary),
                merges=[m for m in tokenizer.merges if not m.startswith("#version")],
                added_tokens=tuple(unsplittable),
                split_patterns=(QWEN_SPLIT_PATTERN,),
                normalizer="NFC",
            )
        return exact_class(spec, unsplittable_tokens=unsplittable)

    def line_preprocessor(self, preprocessor):
        """Training packs lines as the model's preprocessor does, but tokenized by the exact
        tokenizer: a preprocessor of its own (of the model's class), for the training data
        only (the model keeps KerasHub's, so its preset is plain)."""
        return type(preprocessor)(
            self.exact_tokenizer(preprocessor.tokenizer, None),
            sequence_length=preprocessor.sequence_length,
            add_start_token=preprocessor.add_start_token,
            add_end_token=preprocessor.add_end_token,
        )

    tokenizer_class = "QwenTokenizer"


ARCHITECTURE = Qwen()


# Qwen3Backbone arguments of KerasHub's Qwen 3 causal-LM presets (the Hugging Face configs they
# were converted from, keras_hub/src/utils/transformers/convert_qwen3.py): head size 128 whatever
# the width, RoPE base 1,000,000, RMSNorm epsilon 1e-6, no sliding window (the converter's None),
# a 151,936-row embedding, tied up to 4B.
def _qwen3(layers, heads, kv_heads, hidden, intermediate, tied):
    return dict(
        vocabulary_size=151_936,
        num_layers=layers,
        num_query_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=128,
        hidden_dim=hidden,
        intermediate_dim=intermediate,
        tie_word_embeddings=tied,
        sliding_window_size=None,
        **_ROPE,
    )


_QWEN3_0_6B = _qwen3(28, 16, 8, 1024, 3072, True)


class Qwen3(Qwen):
    """Qwen 3 (``keras_hub.models.Qwen3CausalLM``): Qwen 2's decoder without the projection
    biases, with an RMSNorm of every query and key head before the rotary embedding, and a head
    size of its own (not hidden_dim / heads). Same tokenizer, but KerasHub's ends text at
    ``<|im_end|>`` (its end token, so the stop token) and pads with ``<|endoftext|>``."""

    name = "qwen3"
    causal_lm_class = "Qwen3CausalLM"
    tokenizer_class = "Qwen3Tokenizer"
    decoder_layer_class = ("keras_hub.src.models.qwen3.qwen3_decoder", "Qwen3TransformerDecoder")
    attention_class = ("keras_hub.src.models.qwen3.qwen3_attention", "Qwen3Attention")
    # The causal LMs (the qwen3_embedding_* and harrier presets are text embedders).
    presets = {
        "qwen3_0.6b_en": _QWEN3_0_6B,
        "qwen3_1.7b_en": _qwen3(28, 16, 8, 2048, 6144, True),
        "qwen3_4b_en": _qwen3(36, 32, 8, 2560, 9728, True),
        "qwen3_8b_en": _qwen3(36, 32, 8, 4096, 12_288, False),
        "qwen3_14b_en": _qwen3(40, 40, 8, 5120, 17_408, False),
        "qwen3_32b_en": _qwen3(64, 64, 8, 5120, 25_600, False),
    }
    # keras_hub/src/models/qwen3/qwen3_presets.py, "params".
    preset_parameters = {
        "qwen3_0.6b_en": 596_049_920,
        "qwen3_1.7b_en": 1_720_574_976,
        "qwen3_4b_en": 4_022_468_096,
        "qwen3_8b_en": 8_190_735_360,
        "qwen3_14b_en": 14_768_307_200,
        "qwen3_32b_en": 32_762_123_264,
    }
    transformers_model_types = {"qwen3": "Qwen3ForCausalLM"}
    train_model_defaults = {**Qwen.train_model_defaults, "head_dim": 16}
    train_model_schema = {
        **Qwen.train_model_schema,
        "properties": {
            **Qwen.train_model_schema["properties"],
            "head_dim": {"type": "integer", "minimum": 2},
        },
    }

    def head_dim(self, backbone_config: Mapping) -> int:
        return backbone_config["head_dim"]

    def attention_extra_parameters(self, backbone_config: Mapping) -> int:
        """Qwen 3: the query and key RMSNorm scales (one head's size each)."""
        return 2 * backbone_config["head_dim"]

    def semantic_errors(self, model_config: Mapping, where: str) -> list[str]:
        return rotary_gqa.shape_errors(self.train_model_config(model_config), where)

    def transformers_backbone_config(self, hf_config: Mapping) -> dict:
        """convert_qwen3.convert_backbone_config (which reads use_sliding_window, sliding_window
        and head_dim without defaults)."""
        missing = [
            key
            for key in ("use_sliding_window", "sliding_window", "head_dim")
            if key not in hf_config
        ]
        if missing:
            raise ValueError(
                f"config.json has no {' or '.join(missing)} (KerasHub's Qwen 3 converter "
                "reads them)"
            )
        rope_theta = (hf_config.get("rope_parameters") or {}).get("rope_theta")
        return {
            "vocabulary_size": hf_config["vocab_size"],
            "head_dim": hf_config["head_dim"],
            "hidden_dim": hf_config["hidden_size"],
            "num_layers": hf_config["num_hidden_layers"],
            "num_query_heads": hf_config["num_attention_heads"],
            "num_key_value_heads": hf_config["num_key_value_heads"],
            "intermediate_dim": hf_config["intermediate_size"],
            "layer_norm_epsilon": hf_config["rms_norm_eps"],
            "rope_max_wavelength": rope_theta
            if rope_theta is not None
            else hf_config["rope_theta"],
            "sliding_window_size": (
                hf_config["sliding_window"] if hf_config["use_sliding_window"] else None
            ),
            "tie_word_embeddings": hf_config["tie_word_embeddings"],
        }

    # ---- both routes: what Qwen3Attention does differently -------------------------------------

    def attention_head_dim(self, backbone) -> int:
        return backbone.head_dim

    def normalize_query_key(self, attention, query, key):
        """Qwen3Attention.call: each query and key head RMS-normalized (its own scale) after the
        projection, before the rotary embedding."""
        return attention._query_dense_layer_norm(query), attention._key_dense_layer_norm(key)

    def check_attention(self, attention, cache_length: int) -> None:
        """A sliding window (Qwen3Attention masks keys more than ``sliding_window_size`` - 1
        before the query) shorter than the cache is not reproduced: the runtime's mask is
        causal only."""
        window = attention.sliding_window_size
        if window and window < cache_length:
            raise ValueError(
                f"qwen3: a sliding window of {window} positions is shorter than the cache "
                f"({cache_length}); the LiteRT route exports full attention only"
            )


QWEN3_ARCHITECTURE = Qwen3()
