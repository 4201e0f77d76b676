"""The decoder KerasHub's Llama-derived families share, for both routes: RMSNorm before attention
and before the MLP, grouped-query attention with rotary positions (query/key RMSNorm in some), a
SwiGLU MLP, untied or tied ReversibleEmbedding.

KerasHub writes that decoder once per family (``QwenTransformerDecoder``,
``Qwen3TransformerDecoder``, ``LlamaTransformerDecoder`` ...) with the same sublayer names
(``_self_attention_layernorm``, ``_self_attention_layer._query_dense`` ...,
``_feedforward_gate_dense`` ...) and the same ``call_with_cache``/``_build_cache`` on its
causal LM. ``RotaryGQAFamily`` is what a family module needs on top of ``base.Architecture``
to run such a model through both routes; a family names its KerasHub classes and, where they
differ, overrides one method (``attention_head_dim``, ``normalize_query_key``).

Light at import (no Keras): the heavy parts import inside the methods.
"""

from __future__ import annotations

from collections.abc import Mapping

from llm2tflite.families.base import Architecture, KVCacheShape


def shape_errors(model: Mapping, where: str) -> list[str]:
    """A rotary grouped-query model config's impossible shapes, one line each (the config
    check's ``semantic_errors`` of the rotary families). The head size is ``head_dim`` where the
    config sets it (Gemma 3, Qwen 3), else hidden_dim / num_query_heads."""
    heads, kv_heads = model["num_query_heads"], model["num_key_value_heads"]
    errors = []
    if "head_dim" in model:
        if model["head_dim"] % 2:
            errors.append(
                f"{where}.head_dim: {model['head_dim']} must be even (rotary embeddings "
                "rotate pairs)"
            )
    elif model["hidden_dim"] % heads:
        errors.append(
            f"{where}.hidden_dim: {model['hidden_dim']} is not a multiple of num_query_heads "
            f"{heads}; change one of them"
        )
    elif (model["hidden_dim"] // heads) % 2:
        errors.append(
            f"{where}.hidden_dim: the head size hidden_dim / num_query_heads = "
            f"{model['hidden_dim'] // heads} must be even (rotary embeddings rotate pairs)"
        )
    if heads % kv_heads:
        errors.append(
            f"{where}.num_query_heads: {heads} is not a multiple of "
            f"num_key_value_heads {kv_heads} (grouped-query attention shares each "
            "key/value head among a whole number of query heads)"
        )
    return errors


class RotaryGQAFamily(Architecture):
    """A family whose decoder layers are KerasHub's Llama-style decoder (see the module)."""

    #: ``(module, class name)`` of the family's decoder layer and attention layer in KerasHub:
    #: the LiteRT forward pass mirrors their ``call`` and refuses a layer that overrides it.
    decoder_layer_class: tuple[str, str] = ("", "")
    attention_class: tuple[str, str] = ("", "")

    # ---- what differs between the families -------------------------------------------------

    def attention_head_dim(self, backbone) -> int:
        """The attention head size (Llama, Qwen 2: hidden_dim / query heads)."""
        return backbone.hidden_dim // backbone.num_query_heads

    def normalize_query_key(self, attention, query, key):
        """What the attention layer does to the projected queries and keys before the rotary
        embedding (Llama, Qwen 2: nothing; Qwen 3: an RMSNorm of each head)."""
        return query, key

    def check_attention(self, attention, cache_length: int) -> None:
        """Raise ValueError for an attention layer the LiteRT forward pass cannot reproduce at
        this cache length (e.g. a sliding window shorter than the cache)."""

    # ---- codelab route ---------------------------------------------------------------------

    def codelab_cache_methods(self):
        import keras_hub

        return (
            getattr(keras_hub.models, self.causal_lm_class),
            self._call_with_builtin_cache_slices,
            self._build_cache_over_prompt,
        )

    @staticmethod
    def _call_with_builtin_cache_slices(causal_lm):
        """``call_with_cache`` with builtin cache slices (``codelab_cache``)."""
        from llm2tflite.families import codelab_cache

        backbone = causal_lm.backbone
        return codelab_cache.call_with_builtin_cache_slices(
            backbone,
            lambda token_ids, cache_update_index: backbone.token_embedding(token_ids),
            "self_attention_cache",
            "self_attention_cache_update_index",
        )

    def _build_cache_over_prompt(self, causal_lm, call_with_cache, prompt_length):
        """``_build_cache`` over the prompt only (``codelab_cache``): the cache holds the
        key/value heads (fewer than the query heads: grouped-query attention)."""
        from llm2tflite.families import codelab_cache

        backbone = causal_lm.backbone
        return codelab_cache.build_cache_over_prompt(
            causal_lm,
            call_with_cache,
            prompt_length,
            kv_heads=backbone.num_key_value_heads,
            head_dim=self.attention_head_dim(backbone),
        )

    # ---- LiteRT route ----------------------------------------------------------------------

    def litert_cache_shapes(self, causal_lm):
        """Each layer's key/value heads (fewer than query heads: grouped-query attention)."""
        return [
            KVCacheShape(
                kv_heads=attention.num_key_value_heads,
                head_dim=int(attention._key_dense.kernel.shape[-1]),
            )
            for attention in (layer._self_attention_layer for layer in self._layers(causal_lm))
        ]

    def litert_max_positions(self, causal_lm):
        return None  # rotary positions: no learned position table to run out of

    def litert_decoder(self, causal_lm, token_ids, input_pos, mask, kv_caches):
        """The backbone's forward pass with each layer's attention over the external cache.

        Everything but the attention core is the model's own sublayers, called as the decoder
        layer's and attention layer's ``call`` call them at inference (dropout is the
        identity): the token embedding (a row lookup: EMBEDDING_LOOKUP after conversion), per
        layer the RMSNorm before attention, the query/key/value projections (with their biases
        where the family has them: Qwen 2), the family's query/key normalization
        (``normalize_query_key``), the layer's own rotary embedding at ``input_pos``
        (``litert_blocks.Rotations``: one cos/sin pair per signature, shared by the layers), the
        output projection, the RMSNorm before the MLP and the gated MLP (SiLU of the gate in
        float32, times the up projection, then the down projection).

        Attention (``litert_blocks.attention``) reads the updated 4-D caches as stored: the query
        heads that share a key/value head are one product, where KerasHub repeats every
        key/value head for each of its query heads (a copy of the cache per layer and step).
        """
        from keras import ops

        from llm2tflite.families import litert_blocks

        backbone = causal_lm.backbone
        cache_length = int(mask.shape[-1])
        x = backbone.token_embedding(token_ids)
        start = input_pos[0]
        rotations = litert_blocks.Rotations(input_pos)
        new_caches = []
        for layer, (key_cache, value_cache) in zip(self._layers(causal_lm), kv_caches):
            attention = layer._self_attention_layer
            self.check_attention(attention, cache_length)
            residual = x
            normalized = layer._self_attention_layernorm(x)
            query = attention._query_dense(normalized)
            key = attention._key_dense(normalized)
            query, key = self.normalize_query_key(attention, query, key)
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
            # As the decoder layer: the activation in float32, whatever the compute dtype.
            gate = ops.cast(layer._feedforward_gate_dense(normalized), "float32")
            gate = ops.cast(layer.activation(gate), layer.compute_dtype)
            up = layer._feedforward_intermediate_dense(normalized)
            x = layer._feedforward_output_dense(ops.multiply(up, gate)) + residual
            new_caches.append((key_cache, value_cache))
        return x, new_caches

    def litert_logits(self, causal_lm, hidden):
        """Final RMSNorm and the output projection: the ReversibleEmbedding's transposed table
        when tied, its own ``reverse_embeddings`` when untied."""
        backbone = causal_lm.backbone
        return backbone.token_embedding(backbone.layer_norm(hidden), reverse=True)

    def _layers(self, causal_lm):
        """The backbone's decoder layers, checked to be what ``litert_decoder`` mirrors."""
        import importlib

        decoder_class, attention_class = (
            getattr(importlib.import_module(module), name)
            for module, name in (self.decoder_layer_class, self.attention_class)
        )
        layers = causal_lm.backbone.transformer_layers
        for layer in layers:
            attention = getattr(layer, "_self_attention_layer", None)
            if (
                type(layer).call is not decoder_class.call
                or type(attention).call is not attention_class.call
            ):
                raise ValueError(
                    f"{layer.name}: the LiteRT export mirrors {decoder_class.__name__} and "
                    f"{attention_class.__name__}; {type(layer).__name__} computes something else"
                )
        return layers
