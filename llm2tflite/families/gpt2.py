"""GPT-2 (``keras_hub.models.GPT2CausalLM``): byte-level BPE, learned positions, LayerNorm, GELU.

Everything the workflow needs to know about the family: the KerasHub presets' shapes and
parameter counts (``shape_of:`` twins, resource sizing), the ``train:`` model settings, how to
build a fresh model on a vocabulary, the codelab route's decoding speed-ups, and the LiteRT
route's prefill/decode forward pass over an external KV cache.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from llm2tflite.families.base import Architecture, KVCacheShape

_BASE = dict(
    vocabulary_size=50257,
    num_layers=12,
    num_heads=12,
    hidden_dim=768,
    intermediate_dim=3072,
    max_sequence_length=1024,
    dropout=0.1,
)


class GPT2(Architecture):
    name = "gpt2"
    causal_lm_class = "GPT2CausalLM"
    tokenizer_kind = "byte_level_bpe"
    tokenizer_files = ("vocab.json", "merges.txt")
    # A twin gets GPT-2's real vocab.json + merges.txt (llm2tflite.families.gpt2_assets, from PyPI).
    twin_tokenizer = "published"
    # GPT2Backbone arguments of KerasHub's GPT-2 presets (the published GPT-2 hyperparameters).
    presets = {
        "gpt2_base_en": _BASE,
        "gpt2_base_en_cnn_dailymail": _BASE,
        "gpt2_medium_en": dict(
            _BASE, num_layers=24, num_heads=16, hidden_dim=1024, intermediate_dim=4096
        ),
        "gpt2_large_en": dict(
            _BASE, num_layers=36, num_heads=20, hidden_dim=1280, intermediate_dim=5120
        ),
        "gpt2_extra_large_en": dict(
            _BASE, num_layers=48, num_heads=25, hidden_dim=1600, intermediate_dim=6400
        ),
    }
    # keras_hub/src/models/gpt2/gpt2_presets.py, "params".
    preset_parameters = {
        "gpt2_base_en": 124_439_808,
        "gpt2_base_en_cnn_dailymail": 124_439_808,
        "gpt2_medium_en": 354_823_168,
        "gpt2_large_en": 774_030_080,
        "gpt2_extra_large_en": 1_557_611_200,
    }
    train_model_defaults = {
        "num_layers": 2,
        "num_heads": 4,
        "hidden_dim": 128,
        "intermediate_dim": 512,
        "max_sequence_length": 256,
        "dropout": 0.1,
    }
    train_model_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "num_layers": {"type": "integer", "minimum": 1},
            "num_heads": {"type": "integer", "minimum": 1},
            "hidden_dim": {"type": "integer", "minimum": 1},
            "intermediate_dim": {"type": "integer", "minimum": 1},
            "max_sequence_length": {"type": "integer", "minimum": 2},
            "dropout": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }

    def parameter_count(self, backbone_config: Mapping) -> int:
        """GPT2Backbone's parameters: token + position embeddings, blocks, final LayerNorm."""
        d, f = backbone_config["hidden_dim"], backbone_config["intermediate_dim"]
        attention = 4 * d * d + 4 * d  # query/key/value/output kernels and biases
        feedforward = 2 * d * f + f + d
        layer_norms = 2 * 2 * d
        per_layer = attention + feedforward + layer_norms
        embeddings = (
            backbone_config["vocabulary_size"] + backbone_config["max_sequence_length"]
        ) * d
        return embeddings + backbone_config["num_layers"] * per_layer + 2 * d

    def semantic_errors(self, model_config: Mapping, where: str) -> list[str]:
        model = self.train_model_config(model_config)
        if model["hidden_dim"] % model["num_heads"]:
            return [
                f"{where}.hidden_dim: {model['hidden_dim']} is not a multiple of num_heads "
                f"{model['num_heads']}; change one of them"
            ]
        return []

    def load_tokenizer(self, tokenizer_dir):
        import keras_hub

        vocab, merges = (f"{tokenizer_dir}/{name}" for name in self.tokenizer_files)
        tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
        if tokenizer.end_token_id == tokenizer.pad_token_id:
            # KerasHub pads with id 0: padding would read as end-of-text (see
            # llm2tflite.inputs.vocab).
            raise ValueError(f"<|endoftext|> has id {tokenizer.end_token_id}, the padding id")
        return tokenizer

    def build_causal_lm(self, backbone_config: Mapping, tokenizer, sequence_length: int):
        import keras_hub

        preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
            tokenizer, sequence_length=sequence_length
        )
        backbone = keras_hub.models.GPT2Backbone(**backbone_config)
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)

    def codelab_cache_methods(self):
        from keras_hub.models import GPT2CausalLM

        return GPT2CausalLM, _call_with_builtin_cache_slices, _build_cache_over_prompt

    # ---- LiteRT route ----------------------------------------------------------------------

    def litert_cache_shapes(self, causal_lm):
        return [
            KVCacheShape(
                kv_heads=layer._self_attention_layer._num_heads,
                head_dim=layer._self_attention_layer._key_dim,
            )
            for layer in _decoder_layers(causal_lm)
        ]

    def litert_decoder(self, causal_lm, token_ids, input_pos, mask, kv_caches):
        """GPT2Backbone's forward pass with each layer's attention over the external cache.

        Everything but the attention core is the model's own sublayers (embeddings, position
        table gathered at ``input_pos``, LayerNorms, projections, GELU MLP), called as
        ``TransformerDecoder.call`` calls them with ``normalize_first=True`` at inference
        (dropout is the identity).
        """
        from llm2tflite.families import litert_blocks

        backbone = causal_lm.backbone
        tokens = backbone.token_embedding(token_ids)
        positions = backbone.position_embedding(tokens, positions=input_pos)
        x = backbone.embeddings_add((tokens, positions))
        start = input_pos[0]
        new_caches = []
        for layer, (key_cache, value_cache) in zip(_decoder_layers(causal_lm), kv_caches):
            attention = layer._self_attention_layer
            residual = x
            x = layer._self_attention_layer_norm(x)
            query = attention._query_dense(x)
            key_cache = litert_blocks.update_cache(key_cache, attention._key_dense(x), start)
            value_cache = litert_blocks.update_cache(value_cache, attention._value_dense(x), start)
            x = litert_blocks.attention(
                query, key_cache, value_cache, mask, scale=attention._inverse_sqrt_key_dim
            )
            x = attention._output_dense(x) + residual
            residual = x
            x = layer._feedforward_layer_norm(x)
            x = layer._feedforward_intermediate_dense(x)
            x = layer._feedforward_output_dense(x) + residual
            new_caches.append((key_cache, value_cache))
        return x, new_caches

    def litert_logits(self, causal_lm, hidden):
        backbone = causal_lm.backbone
        return backbone.token_embedding(backbone.layer_norm(hidden), reverse=True)


def _decoder_layers(causal_lm):
    """The backbone's TransformerDecoder layers, checked to be what ``litert_decoder`` mirrors."""
    layers = causal_lm.backbone.transformer_layers
    for layer in layers:
        if not layer.normalize_first or layer._cross_attention_layer is not None:
            raise ValueError(
                f"{layer.name}: the LiteRT export mirrors GPT-2's pre-norm decoder layer without "
                "cross-attention; this layer differs"
            )
    return layers


def _call_with_builtin_cache_slices(causal_lm):
    """GPT2CausalLM.call_with_cache, with the per-layer cache read by a 3-D slice.

    KerasHub keeps the decoding cache as one 6-D tensor [batch, layers, 2, length, heads,
    head_dim] and reads layer i as ``cache[:, i, ...]``. TFLite's builtin STRIDED_SLICE stops at
    5-D, so the converter turns each of those reads into a Select TF op (FlexStridedSlice), and
    the Flex delegate copies the whole cache into TensorFlow for every layer and every generated
    token. Here the cache is viewed as [batch, layers, rest] (a reshape) and sliced in 3-D, which
    stays a builtin; the arithmetic is KerasHub's, line for line.
    """
    from keras import ops

    backbone = causal_lm.backbone

    def call_with_cache(token_ids, cache, cache_update_index):
        tokens = backbone.token_embedding(token_ids)
        positions = backbone.position_embedding(tokens, start_index=cache_update_index)
        x = backbone.embeddings_add((tokens, positions))
        x = backbone.embeddings_dropout(x)
        layer_shape = tuple(cache.shape[2:])  # (2, length, heads, head_dim)
        static = None not in layer_shape  # max_length is a Python int when traced
        if static:
            flat_cache = ops.reshape(cache, (-1, backbone.num_layers, math.prod(layer_shape)))
        caches = []
        for i, transformer_layer in enumerate(backbone.transformer_layers):
            if static:
                current_cache = ops.reshape(flat_cache[:, i, :], (-1, *layer_shape))
            else:
                current_cache = cache[:, i, ...]
            x, next_cache = transformer_layer(
                x,
                self_attention_cache=current_cache,
                self_attention_cache_update_index=cache_update_index,
            )
            caches.append(next_cache)
        cache = ops.stack(caches, axis=1)
        hidden_states = x = backbone.layer_norm(x)
        logits = backbone.token_embedding(x, reverse=True)
        return logits, hidden_states, cache

    return call_with_cache


def _build_cache_over_prompt(causal_lm, call_with_cache, prompt_length):
    """GPT2CausalLM._build_cache, running the seeding forward pass over the prompt only.

    KerasHub seeds the cache with one forward pass over all max_length positions, padding
    included (100 positions for a 5-token prompt). Positions past the prompt are rewritten by
    the decoding steps before any query can attend to them (the attention mask stops at the
    position being decoded), so a pass over the prompt's positions fills the same cache entries.
    The hidden states are zero-padded back to max_length for samplers that read them.
    """
    from keras import ops

    backbone = causal_lm.backbone

    def build_cache(token_ids):
        batch_size, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        head_dim = backbone.hidden_dim // backbone.num_heads
        shape = [batch_size, backbone.num_layers, 2, max_length, backbone.num_heads, head_dim]
        cache = ops.zeros(shape, dtype=causal_lm.compute_dtype)
        _, hidden_states, cache = call_with_cache(token_ids[:, :prompt_length], cache, 0)
        hidden_states = ops.pad(hidden_states, [[0, 0], [0, max_length - prompt_length], [0, 0]])
        return hidden_states, cache

    return build_cache


ARCHITECTURE = GPT2()
