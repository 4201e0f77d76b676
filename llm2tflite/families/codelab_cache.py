"""The codelab route's decoding speed-ups, shared by every family (``Architecture.fast_decoding``).

KerasHub's causal LMs (GPT-2, Llama, Gemma 3) decode the same way: one 6-D cache tensor
[batch, layers, 2, length, kv_heads, head_dim], a ``call_with_cache`` that embeds the tokens and
runs each decoder layer on its slice of the cache, and a ``_build_cache`` that seeds the cache with
one forward pass. They differ only in the embedding, the decoder layer's keyword names for its
cache and cache index, the cache's heads and head size, and the extra inputs their ``generate_step``
passes along; a family supplies those and wraps the functions below in its own signatures.

Heavy: imports Keras. Import it inside the family's codelab methods.
"""

from __future__ import annotations

import math

from keras import ops


def call_with_builtin_cache_slices(backbone, embed, cache_keyword, index_keyword):
    """The family's ``call_with_cache``, with the per-layer cache read by a 3-D slice.

    KerasHub reads layer i of its 6-D cache as ``cache[:, i, ...]``. TFLite's builtin
    STRIDED_SLICE stops at 5-D, so the converter turns each of those reads into a Select TF op
    (FlexStridedSlice), and the Flex delegate copies the whole cache into TensorFlow for every
    layer and every generated token. Here the cache is viewed as [batch, layers, rest] (a
    reshape) and sliced in 3-D, which stays a builtin; the arithmetic is KerasHub's, line for line.

    ``embed(token_ids, cache_update_index)`` is the family's embedding step (positions included);
    ``cache_keyword`` and ``index_keyword`` name the decoder layer's cache and cache index
    arguments. The returned ``call_with_cache(token_ids, cache, cache_update_index,
    **layer_inputs)`` passes ``layer_inputs`` (e.g. Gemma 3's padding mask) to every layer.
    """

    def call_with_cache(token_ids, cache, cache_update_index, **layer_inputs):
        x = embed(token_ids, cache_update_index)
        layer_shape = tuple(cache.shape[2:])  # (2, length, kv_heads, head_dim)
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
                **{cache_keyword: current_cache, index_keyword: cache_update_index},
                **layer_inputs,
            )
            caches.append(next_cache)
        cache = ops.stack(caches, axis=1)
        hidden_states = x = backbone.layer_norm(x)
        logits = backbone.token_embedding(x, reverse=True)
        return logits, hidden_states, cache

    return call_with_cache


def build_cache_over_prompt(causal_lm, call_with_cache, prompt_length, kv_heads, head_dim):
    """The family's ``_build_cache``, running the seeding forward pass over the prompt only.

    KerasHub seeds the cache with one forward pass over all max_length positions, padding
    included (100 positions for a 5-token prompt). Keys and values are per position (learned
    position rows and rotary angles depend on the position alone) and positions past the prompt
    are rewritten by the decoding steps before any query can attend to them (the causal mask
    stops at the position being decoded; sliding windows only hide more), so a pass over the
    prompt's positions fills the same cache entries that are ever read. The hidden states are
    zero-padded back to max_length for samplers that read them.

    ``kv_heads`` and ``head_dim`` are the cache's last two sizes. The returned
    ``build_cache(token_ids, **call_inputs)`` passes ``call_inputs`` to ``call_with_cache``
    (e.g. Gemma 3's padding mask, which stays full length: it masks all max_length cache rows).
    """
    backbone = causal_lm.backbone

    def build_cache(token_ids, **call_inputs):
        batch_size, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        shape = [batch_size, backbone.num_layers, 2, max_length, kv_heads, head_dim]
        cache = ops.zeros(shape, dtype=causal_lm.compute_dtype)
        _, hidden_states, cache = call_with_cache(
            token_ids[:, :prompt_length], cache, 0, **call_inputs
        )
        hidden_states = ops.pad(hidden_states, [[0, 0], [0, max_length - prompt_length], [0, 0]])
        return hidden_states, cache

    return build_cache
