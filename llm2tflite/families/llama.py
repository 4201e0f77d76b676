"""Llama (``keras_hub.models.LlamaCausalLM``): SentencePiece, RMSNorm, RoPE, gated MLP, GQA.

Everything the workflow needs to know about the family: the KerasHub presets' shapes and
parameter counts (``shape_of:`` twins, resource sizing), the ``train:`` model settings, how to
build a fresh model on a SentencePiece vocabulary. Both routes' decoder (the codelab route's
cache methods, the LiteRT route's forward pass over an external KV cache) is the one KerasHub's
Llama-derived families share: ``rotary_gqa.RotaryGQAFamily``.

KerasHub's ``Llama3CausalLM`` subclasses ``LlamaCausalLM`` (same decoder, same cache) but
tokenizes with byte-level BPE: it is not this family (the registry refuses it by its own class,
see ``registry.for_causal_lm``), since everything here assumes SentencePiece. For the same
reason this family takes no Hugging Face checkpoint: KerasHub 0.31 converts every ``model_type``
"llama" checkpoint with its Llama 3 converter (``Llama3CausalLM``, byte-level BPE from
``tokenizer.json``), Llama 2's SentencePiece ones included.
"""

from __future__ import annotations

from collections.abc import Mapping

from llm2tflite.families import rotary_gqa

# Llama 2 7B (Meta's params.json and the Hugging Face config KerasHub converted its presets from):
# untied input/output embeddings, multi-head attention (as many key/value heads as query heads).
_LLAMA2_7B = dict(
    vocabulary_size=32000,
    num_layers=32,
    num_query_heads=32,
    num_key_value_heads=32,
    hidden_dim=4096,
    intermediate_dim=11008,
    rope_max_wavelength=10000,
    layer_norm_epsilon=1e-5,
)


class Llama(rotary_gqa.RotaryGQAFamily):
    name = "llama"
    causal_lm_class = "LlamaCausalLM"
    decoder_layer_class = ("keras_hub.src.models.llama.llama_decoder", "LlamaTransformerDecoder")
    attention_class = ("keras_hub.src.models.llama.llama_attention", "LlamaAttention")
    tokenizer_kind = "sentencepiece"
    tokenizer_files = ("tokenizer.model",)  # llm2tflite.inputs.vocab.SENTENCEPIECE_FILENAME
    # LlamaTokenizer looks up "<s>" and "</s>" by name and KerasHub pads with id 0; Llama's own
    # vocabulary has <unk> = 0, <s> = 1, </s> = 2 and no padding piece (SentencePiece's
    # defaults). Padding then reads as <unk>, never as end-of-text, and with byte fallback no
    # text ever encodes to <unk>.
    sentencepiece_layout = {
        "unk_id": 0,
        "bos_id": 1,
        "eos_id": 2,
        "pad_id": -1,
        "add_dummy_prefix": True,
    }
    # LlamaBackbone arguments of KerasHub's float Llama presets. Its `_int8` presets (same
    # architecture, int8 weights) publish counts that include the quantization scales (e.g.
    # llama2_7b_en_int8: 6,739,839,488 = 6,738,415,616 + one scale per output channel of every
    # kernel); a float twin of them would be a llama2_7b_en twin, so they are not listed.
    presets = {
        "llama2_7b_en": _LLAMA2_7B,
        "llama2_instruct_7b_en": _LLAMA2_7B,
        "vicuna_1.5_7b_en": _LLAMA2_7B,
    }
    # keras_hub/src/models/llama/llama_presets.py, "params".
    preset_parameters = {
        "llama2_7b_en": 6_738_415_616,
        "llama2_instruct_7b_en": 6_738_415_616,
        "vicuna_1.5_7b_en": 6_738_415_616,
    }
    # A model the size of the GPT-2 default (~0.9 M parameters on a 2,000-piece vocabulary) that
    # still exercises grouped-query attention (2 query heads per key/value head).
    train_model_defaults = {
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "hidden_dim": 128,
        "intermediate_dim": 352,
        "rope_max_wavelength": 10000,
        "layer_norm_epsilon": 1e-6,
        "dropout": 0.0,
    }
    # No tie_word_embeddings: LlamaBackbone 0.31 accepts it but leaves it out of get_config(), so a
    # tied model saved as a preset reloads untied and fails to load its own weights.
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
            "dropout": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }

    def parameter_count(self, backbone_config: Mapping) -> int:
        """LlamaBackbone's parameters: embeddings (input and output), blocks, final RMSNorm.

        No biases anywhere; one RMSNorm scale vector before attention, one before the MLP.
        """
        d, f = backbone_config["hidden_dim"], backbone_config["intermediate_dim"]
        heads, kv_heads = (
            backbone_config["num_query_heads"],
            backbone_config["num_key_value_heads"],
        )
        head_dim = d // heads
        attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim  # q, o; k, v
        gated_mlp = 3 * d * f  # gate, up (intermediate) and down (output) projections
        per_layer = attention + gated_mlp + 2 * d
        tables = 1 if backbone_config.get("tie_word_embeddings") else 2
        embeddings = tables * backbone_config["vocabulary_size"] * d
        return embeddings + backbone_config["num_layers"] * per_layer + d

    def max_sequence_length(self, backbone_config: Mapping) -> int | None:
        return None  # rotary positions: no learned position table to run out of

    def semantic_errors(self, model_config: Mapping, where: str) -> list[str]:
        return rotary_gqa.shape_errors(self.train_model_config(model_config), where)

    def load_tokenizer(self, tokenizer_dir):
        import keras_hub

        (model_file,) = (f"{tokenizer_dir}/{name}" for name in self.tokenizer_files)
        tokenizer = keras_hub.models.LlamaTokenizer(proto=model_file)
        if tokenizer.end_token_id == tokenizer.pad_token_id:
            # KerasHub pads Llama inputs with id 0: padding would read as end-of-text.
            raise ValueError(f"</s> has id {tokenizer.end_token_id}, the padding id")
        return tokenizer


ARCHITECTURE = Llama()
