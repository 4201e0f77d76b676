"""Llama (``keras_hub.models.LlamaCausalLM``): SentencePiece, RMSNorm, RoPE, gated MLP, GQA.

Everything the workflow needs to know about the family: the KerasHub presets' shapes and
parameter counts (``shape_of:`` twins, resource sizing), the ``train:`` model settings, how to
build a fresh model on a SentencePiece vocabulary, the codelab route's decoding speed-ups, and the
LiteRT route's prefill/decode forward pass over an external KV cache.

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
from llm2tflite.families.base import Architecture, KVCacheShape

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


class Llama(Architecture):
    name = "llama"
    causal_lm_class = "LlamaCausalLM"
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

    def codelab_cache_methods(self):
        from keras_hub.models import LlamaCausalLM

        return LlamaCausalLM, _call_with_builtin_cache_slices, _build_cache_over_prompt

    # ---- LiteRT route ----------------------------------------------------------------------

    def litert_cache_shapes(self, causal_lm):
        """Each layer's key/value heads (fewer than query heads: grouped-query attention)."""
        return [
            KVCacheShape(
                kv_heads=attention.num_key_value_heads,
                head_dim=int(attention._key_dense.kernel.shape[-1]),
            )
            for attention in (layer._self_attention_layer for layer in _decoder_layers(causal_lm))
        ]

    def litert_max_positions(self, causal_lm):
        return None  # rotary positions: no learned position table to run out of

    def litert_decoder(self, causal_lm, token_ids, input_pos, mask, kv_caches):
        """LlamaBackbone's forward pass with each layer's attention over the external cache.

        Everything but the attention core is the model's own sublayers, called as
        ``LlamaTransformerDecoder.call`` and ``LlamaAttention.call`` call them at inference
        (dropout is the identity): the token embedding (a row lookup: EMBEDDING_LOOKUP after
        conversion), per layer the RMSNorm before attention, the query/key/value projections,
        the layer's own rotary embedding at ``input_pos`` (``litert_blocks.rotary_cos_sin``: one
        cos/sin pair per signature, shared by every layer with the same rotary settings), the
        output projection, the RMSNorm before the MLP and the gated MLP (SiLU of the gate in
        float32, times the up projection, then the down projection).

        Attention (``litert_blocks.attention``) reads the updated 4-D cache directly: the query
        heads that share a key/value head are one [T * groups, head_dim] x [head_dim, S]
        product, where KerasHub repeats every key/value head ``groups`` times (a copy of the
        whole cache per layer and step).
        """
        from keras import ops

        from llm2tflite.families import litert_blocks

        backbone = causal_lm.backbone
        x = backbone.token_embedding(token_ids)
        start = input_pos[0]
        rotations = litert_blocks.Rotations(input_pos)
        new_caches = []
        for layer, (key_cache, value_cache) in zip(_decoder_layers(causal_lm), kv_caches):
            attention = layer._self_attention_layer
            residual = x
            normalized = layer._self_attention_layernorm(x)
            query = attention._query_dense(normalized)
            key = attention._key_dense(normalized)
            query, key = rotations.apply(attention.rotary_embedding_layer, query, key)
            key_cache, value_cache = litert_blocks.update_caches(
                key_cache, value_cache, key, attention._value_dense(normalized), start
            )
            attended = litert_blocks.attention(
                query, key_cache, value_cache, mask, scale=attention._inv_norm_factor
            )
            x = attention._output_dense(attended) + residual
            residual = x
            normalized = layer._feedforward_layernorm(x)
            # As LlamaTransformerDecoder: the activation in float32, whatever the compute dtype.
            gate = ops.cast(layer._feedforward_gate_dense(normalized), "float32")
            gate = ops.cast(layer.activation(gate), layer.compute_dtype)
            up = layer._feedforward_intermediate_dense(normalized)
            x = layer._feedforward_output_dense(ops.multiply(up, gate)) + residual
            new_caches.append((key_cache, value_cache))
        return x, new_caches

    def litert_logits(self, causal_lm, hidden):
        """Final RMSNorm and the output projection: the ReversibleEmbedding's reverse matrix
        (its own ``reverse_embeddings`` when untied, as Llama's are; the transposed table when
        tied)."""
        backbone = causal_lm.backbone
        return backbone.token_embedding(backbone.layer_norm(hidden), reverse=True)


def _decoder_layers(causal_lm):
    """The backbone's decoder layers, checked to be what ``litert_decoder`` mirrors."""
    from keras_hub.src.models.llama.llama_attention import LlamaAttention
    from keras_hub.src.models.llama.llama_decoder import LlamaTransformerDecoder

    layers = causal_lm.backbone.transformer_layers
    for layer in layers:
        attention = getattr(layer, "_self_attention_layer", None)
        if (
            type(layer).call is not LlamaTransformerDecoder.call
            or type(attention).call is not LlamaAttention.call
        ):
            raise ValueError(
                f"{layer.name}: the LiteRT export mirrors LlamaTransformerDecoder "
                f"and LlamaAttention; {type(layer).__name__} computes something "
                "else"
            )
    return layers


def _call_with_builtin_cache_slices(causal_lm):
    """LlamaCausalLM.call_with_cache with builtin cache slices (``codelab_cache``)."""
    from llm2tflite.families import codelab_cache

    backbone = causal_lm.backbone
    return codelab_cache.call_with_builtin_cache_slices(
        backbone,
        lambda token_ids, cache_update_index: backbone.token_embedding(token_ids),
        "self_attention_cache",
        "self_attention_cache_update_index",
    )


def _build_cache_over_prompt(causal_lm, call_with_cache, prompt_length):
    """LlamaCausalLM._build_cache over the prompt only (``codelab_cache``): the cache holds
    the key/value heads (fewer than the query heads: grouped-query attention)."""
    from llm2tflite.families import codelab_cache

    backbone = causal_lm.backbone
    return codelab_cache.build_cache_over_prompt(
        causal_lm,
        call_with_cache,
        prompt_length,
        kv_heads=backbone.num_key_value_heads,
        head_dim=backbone.hidden_dim // backbone.num_query_heads,
    )


ARCHITECTURE = Llama()
