"""Llama 3 (``keras_hub.models.Llama3CausalLM``): Llama's decoder, byte-level BPE tokenizer.

KerasHub's ``Llama3CausalLM`` is ``LlamaCausalLM`` (same ``LlamaBackbone``, same cache) with a
byte-level BPE tokenizer (``Llama3Tokenizer``), and KerasHub converts every Hugging Face
``model_type: llama`` checkpoint to it (Llama 3.x, SmolLM2, and Llama 2's SentencePiece ones,
whose tokenizer.json it reads as BPE). The decoder, the codelab route's decoding speed-ups and the
LiteRT route's forward pass are ``llama.Llama``'s, inherited; this module adds what differs: the
presets' shapes, the checkpoints, and the tokenizer.

The tokenizer is KerasHub's ``Llama3Tokenizer`` made id-exact with Hugging Face ``tokenizers``
(``llm2tflite.families.byte_level_bpe``), in the graph and outside it: every model the workflow
loads (``llm2tflite.inputs.sources.load_causal_lm``) gets it (``exact_tokenizer``), so the Keras
reference, the codelab route's traced tokenizer and the LiteRT route's ``tokenizer.json`` agree.
A checkpoint's own ``tokenizer.json`` says how it splits text (Llama 3's pattern, SmolLM2's
digits and GPT-2 regex, ...); a KerasHub preset stores only vocabulary and merges, and is read
with Llama 3's tokenizer.json settings (its split pattern, ``ignore_merges``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llm2tflite.families.byte_level_bpe import LLAMA3_SPLIT_PATTERN
from llm2tflite.families.llama import Llama

BEGIN_OF_TEXT, END_OF_TEXT = "<|begin_of_text|>", "<|end_of_text|>"
START_HEADER, END_HEADER, END_OF_TURN = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"

# Meta's Llama 3 configs (params.json / Hugging Face config.json): vocabulary 128,256, grouped
# query attention with 8 key/value heads, RoPE base 500,000, RMSNorm epsilon 1e-5. KerasHub's
# presets are untied (their published counts hold two embedding matrices: LlamaBackbone's
# get_config leaves tie_word_embeddings out). Llama 3.1/3.2 scale RoPE ("llama3" rope_scaling).
_LLAMA3 = dict(
    vocabulary_size=128_256,
    num_key_value_heads=8,
    rope_max_wavelength=500_000,
    layer_norm_epsilon=1e-5,
)
_ROPE_3_1 = dict(
    rope_frequency_adjustment_factor=8.0,
    rope_low_freq_factor=1.0,
    rope_high_freq_factor=4.0,
    rope_pretraining_sequence_length=8192,
)
_ROPE_3_2 = dict(_ROPE_3_1, rope_frequency_adjustment_factor=32.0)
_8B = dict(_LLAMA3, num_layers=32, num_query_heads=32, hidden_dim=4096, intermediate_dim=14_336)
_3_1_8B = dict(_8B, **_ROPE_3_1)
_3_2_1B = dict(
    _LLAMA3, num_layers=16, num_query_heads=32, hidden_dim=2048, intermediate_dim=8192, **_ROPE_3_2
)
_3_2_3B = dict(
    _LLAMA3, num_layers=28, num_query_heads=24, hidden_dim=3072, intermediate_dim=8192, **_ROPE_3_2
)
# SmolLM2 (Hugging Face's HuggingFaceTB/SmolLM2-*/config.json): Llama's architecture, a
# 49,152-token vocabulary, tied embeddings, RoPE base 100,000. KerasHub loads these checkpoints
# by their "hf://" handle; its converter passes no rms_norm_eps (LlamaBackbone's default 1e-6
# instead of their 1e-5) and keeps tie_word_embeddings, as written here.
_SMOLLM2 = dict(vocabulary_size=49_152, rope_max_wavelength=100_000, tie_word_embeddings=True)
_SMOLLM2_135M = dict(
    _SMOLLM2,
    num_layers=30,
    num_query_heads=9,
    num_key_value_heads=3,
    hidden_dim=576,
    intermediate_dim=1536,
)
_SMOLLM2_360M = dict(
    _SMOLLM2,
    num_layers=32,
    num_query_heads=15,
    num_key_value_heads=5,
    hidden_dim=960,
    intermediate_dim=2560,
)


class Llama3(Llama):
    name = "llama3"
    causal_lm_class = "Llama3CausalLM"
    tokenizer_kind = "byte_level_bpe"
    tokenizer_files = ("vocab.json", "merges.txt")
    # The real tokenizers are model-hub downloads: the vocabulary stage learns a byte-level BPE
    # with Llama 3's split pattern and special tokens on the workflow's corpus.
    twin_tokenizer = "trained"
    sentencepiece_layout = None
    # The vocabulary stage's byte-level BPE for this family (``llm2tflite.inputs.vocab``): split
    # as Llama 3 does, the special tokens Llama3Tokenizer looks up appended after the learned
    # ones (as Llama 3's ids 128000 ...; never id 0, KerasHub's padding).
    byte_level_bpe_layout = {
        "split_pattern": LLAMA3_SPLIT_PATTERN,
        "special_tokens": (BEGIN_OF_TEXT, END_OF_TEXT, START_HEADER, END_HEADER, END_OF_TURN),
    }
    presets = {
        "llama3_8b_en": _8B,
        "llama3_instruct_8b_en": _8B,
        "llama3.1_8b": _3_1_8B,
        "llama3.1_instruct_8b": _3_1_8B,
        "llama3.1_guard_8b": _3_1_8B,
        "llama3.2_1b": _3_2_1B,
        "llama3.2_instruct_1b": _3_2_1B,
        "llama3.2_guard_1b": _3_2_1B,
        "llama3.2_3b": _3_2_3B,
        "llama3.2_instruct_3b": _3_2_3B,
        "hf://HuggingFaceTB/SmolLM2-135M": _SMOLLM2_135M,
        "hf://HuggingFaceTB/SmolLM2-135M-Instruct": _SMOLLM2_135M,
        "hf://HuggingFaceTB/SmolLM2-360M": _SMOLLM2_360M,
        "hf://HuggingFaceTB/SmolLM2-360M-Instruct": _SMOLLM2_360M,
    }
    # keras_hub/src/models/llama3/llama3_presets.py, "params"; SmolLM2: the parameters of the
    # checkpoint's model.safetensors (tied: one embedding matrix).
    preset_parameters = {
        "llama3_8b_en": 8_030_261_248,
        "llama3_instruct_8b_en": 8_030_261_248,
        "llama3.1_8b": 8_030_261_248,
        "llama3.1_instruct_8b": 8_030_261_248,
        "llama3.1_guard_8b": 8_030_261_248,
        "llama3.2_1b": 1_498_482_688,
        "llama3.2_instruct_1b": 1_498_482_688,
        "llama3.2_guard_1b": 1_498_482_688,
        "llama3.2_3b": 3_606_752_256,
        "llama3.2_instruct_3b": 3_606_752_256,
        "hf://HuggingFaceTB/SmolLM2-135M": 134_515_008,
        "hf://HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008,
        "hf://HuggingFaceTB/SmolLM2-360M": 361_821_120,
        "hf://HuggingFaceTB/SmolLM2-360M-Instruct": 361_821_120,
    }
    # Hugging Face checkpoints (keras_hub/src/utils/transformers/convert_llama3.py): the
    # converter reads tokenizer.json (vocabulary, merges, added tokens) and tokenizer_config.json
    # (bos_token, eos_token).
    transformers_model_types = {"llama": "LlamaForCausalLM"}
    transformers_tokenizer_files = (("tokenizer.json", "tokenizer_config.json"),)

    # ---- light ----------------------------------------------------------------------------------

    def transformers_backbone_config(self, hf_config: Mapping) -> dict:
        """convert_llama3.convert_backbone_config: no rms_norm_eps (KerasHub keeps LlamaBackbone's
        1e-6), tie_word_embeddings and rope_theta required, rope_scaling only of type llama3."""
        rope_theta = (hf_config.get("rope_parameters") or {}).get("rope_theta")
        if rope_theta is None:
            rope_theta = hf_config["rope_theta"]
        config = {
            "vocabulary_size": hf_config["vocab_size"],
            "num_layers": hf_config["num_hidden_layers"],
            "num_query_heads": hf_config["num_attention_heads"],
            "hidden_dim": hf_config["hidden_size"],
            "intermediate_dim": hf_config["intermediate_size"],
            "num_key_value_heads": hf_config["num_key_value_heads"],
            "tie_word_embeddings": hf_config["tie_word_embeddings"],
            "rope_max_wavelength": rope_theta,
        }
        scaling = hf_config.get("rope_scaling")
        if scaling is not None:
            if scaling.get("rope_type") != "llama3":
                raise ValueError(
                    f"rope_scaling type {scaling.get('rope_type')!r}: KerasHub's converter "
                    "reads only type 'llama3'"
                )
            config.update(
                rope_frequency_adjustment_factor=scaling["factor"],
                rope_low_freq_factor=scaling["low_freq_factor"],
                rope_high_freq_factor=scaling["high_freq_factor"],
                rope_pretraining_sequence_length=scaling["original_max_position_embeddings"],
            )
        return config

    def check_transformers_tokenizer(self, checkpoint_dir) -> None:
        """tokenizer.json must be a byte-level BPE whose pre-tokenizer ``byte_level_bpe``
        reproduces in the graph (else the codelab route would silently tokenize otherwise)."""
        from llm2tflite.families import byte_level_bpe

        path = Path(checkpoint_dir).expanduser() / "tokenizer.json"
        byte_level_bpe.from_tokenizer_json(path.read_text(encoding="utf-8"), "tokenizer.json")

    # ---- heavy ----------------------------------------------------------------------------------

    def load_tokenizer(self, tokenizer_dir):
        """KerasHub's own Llama3Tokenizer on the vocabulary stage's files (what a built model is
        saved with, so that its preset is a plain KerasHub preset); loading the preset gives it
        the exact tokenizer (``exact_tokenizer``)."""
        import keras_hub

        vocab, merges = (f"{tokenizer_dir}/{name}" for name in self.tokenizer_files)
        tokenizer = keras_hub.models.Llama3Tokenizer(vocabulary=vocab, merges=merges)
        _check_padding(tokenizer)
        return tokenizer

    def exact_tokenizer(self, tokenizer, preset):
        """Llama3Tokenizer id-exact with ``tokenizers`` (``byte_level_bpe``): a checkpoint's
        ``tokenizer.json`` as it is (its pre-tokenizer, every added token, ``ignore_merges``)
        with KerasHub's converter's start, end and special tokens; a KerasHub preset's
        vocabulary and merges with Llama 3's split pattern and ``ignore_merges``."""
        import json

        from keras_hub.models import Llama3Tokenizer

        from llm2tflite.families import byte_level_bpe, registry

        exact_class = byte_level_bpe.exact_tokenizer_class(Llama3Tokenizer)
        if preset is not None and registry.transformers_config(preset) is not None:
            directory = Path(preset).expanduser()
            spec = byte_level_bpe.from_tokenizer_json(
                (directory / "tokenizer.json").read_text(encoding="utf-8"),
                str(directory / "tokenizer.json"),
            )
            settings = json.loads((directory / "tokenizer_config.json").read_text("utf-8"))
            bos, eos = (_content(settings[key]) for key in ("bos_token", "eos_token"))
            # As convert_llama3.convert_tokenizer: every added token but the reserved ones.
            misc = {t for t in spec.added_tokens if not t.startswith("<|reserved_special_token_")}
        else:
            specials = list(tokenizer.unsplittable_tokens or tokenizer.special_tokens)
            spec = byte_level_bpe.ByteLevelBPE(
                vocabulary=dict(tokenizer.vocabulary),
                merges=[m for m in tokenizer.merges if not m.startswith("#version")],
                added_tokens=tuple(specials),
                split_patterns=(byte_level_bpe.LLAMA3_SPLIT_PATTERN,),
                ignore_merges=True,
            )
            bos, eos = tokenizer.start_token, tokenizer.end_token
            misc = set(specials)
        exact = exact_class(spec, bos_token=bos, eos_token=eos, misc_special_tokens=misc)
        return exact

    def line_preprocessor(self, preprocessor):
        """Training packs lines as the model's preprocessor does, but tokenized by the exact
        tokenizer (KerasHub's graph path splits with GPT-2's regex): a preprocessor of its own,
        used for the training data only (the model keeps KerasHub's, so its preset is plain)."""
        from keras_hub.models import Llama3CausalLMPreprocessor

        return Llama3CausalLMPreprocessor(
            self.exact_tokenizer(preprocessor.tokenizer, None),
            sequence_length=preprocessor.sequence_length,
            add_start_token=preprocessor.add_start_token,
            add_end_token=preprocessor.add_end_token,
        )

    def stop_token_ids(self, tokenizer) -> list[int]:
        """The end token, and <|eot_id|> when KerasHub adds it (end token <|end_of_text|>): what
        Llama3CausalLM.generate(stop_token_ids="auto") stops at."""
        ids = [int(tokenizer.end_token_id)]
        if getattr(tokenizer, "end_token2_id", None) is not None:
            ids.append(int(tokenizer.end_token2_id))
        return list(dict.fromkeys(ids))


def _content(token):
    """A tokenizer_config.json token: a string, or an AddedToken dict."""
    return token["content"] if isinstance(token, Mapping) else token


def _check_padding(tokenizer):
    if tokenizer.end_token_id == tokenizer.pad_token_id:
        # KerasHub pads Llama 3 inputs with id 0: padding would read as end-of-text.
        raise ValueError(f"{tokenizer.end_token} has id {tokenizer.end_token_id}, the padding id")


ARCHITECTURE = Llama3()
