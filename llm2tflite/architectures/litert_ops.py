"""Building blocks the LiteRT route's KV-cache contract forces on every family (Keras ops).

A family's ``litert_decoder`` (see ``base.Architecture``) reuses its Keras sublayers for
everything else; these two functions are what KerasHub's own cached attention cannot do for the
contract's cache (one 4-D ``[1, S, kv_heads, head_dim]`` K and V tensor per layer, an additive
mask from the runtime):

- ``update_cache``: write the T new rows at ``input_pos[0]`` (one DYNAMIC_UPDATE_SLICE);
- ``attention``: scaled dot-product attention of the queries over the whole updated cache,
  grouped-query aware, reading the 4-D cache by transposing it (no per-layer slice of a
  stacked cache).

Heavy: imports Keras. Import it inside the family's LiteRT methods.
"""

from __future__ import annotations

from keras import ops


def update_cache(cache, update, start):
    """``cache`` [1, S, H, D] with rows ``start .. start + T - 1`` replaced by ``update``
    [1, T, H, D].

    Lowered to TFLite's DYNAMIC_UPDATE_SLICE, which clamps ``start`` so the whole update fits:
    a chunk with start + T > S would overwrite earlier rows, which is why every prefill length
    must fit the cache and the runtime must not start a chunk past S - T.
    """
    zero = ops.zeros((), dtype="int32")
    return ops.slice_update(cache, [zero, ops.cast(start, "int32"), zero, zero], update)


def attention(query, key_cache, value_cache, mask, scale, soft_cap=None):
    """Attention of ``query`` [1, T, N, D] over the caches [1, S, K, D] (N = K * groups).

    ``mask`` [1, 1, T, S] is added to the scores (0 visible, large negative hidden). Query head
    n reads K/V head ``n // (N // K)``, as KerasHub's grouped-query layers repeat K/V heads.
    The query is scaled before the dot product and the softmax runs in float32, as Keras'
    MultiHeadAttention does; ``soft_cap`` (Gemma 2 style) caps the scores as
    ``tanh(s / cap) * cap`` before the mask. Returns [1, T, N, D].
    """
    _, t, n, d = query.shape
    k = key_cache.shape[2]
    groups = n // k
    if groups * k != n:
        raise ValueError(f"{n} query heads cannot share {k} key/value heads")
    query = ops.multiply(query, ops.cast(scale, query.dtype))
    # The caches themselves transposed, each read once per layer: K [1, K, D, S], V [1, K, S, D].
    keys = ops.transpose(key_cache, (0, 2, 3, 1))
    values = ops.transpose(value_cache, (0, 2, 1, 3))
    if groups == 1:
        queries = ops.transpose(query, (0, 2, 1, 3))  # [1, N, T, D]
    else:
        # [1, T, K, G, D] -> [1, K, T * G, D]: each K/V head serves its G query heads at once.
        queries = ops.reshape(query, (1, t, k, groups, d))
        queries = ops.reshape(ops.transpose(queries, (0, 2, 1, 3, 4)), (1, k, t * groups, d))
    scores = ops.matmul(queries, keys)  # [1, K, T*G, S]
    if soft_cap is not None:
        scores = ops.multiply(ops.tanh(ops.divide(scores, soft_cap)), soft_cap)
    if groups == 1:
        scores = ops.add(scores, mask)
    else:
        s = scores.shape[-1]
        scores = ops.reshape(scores, (1, k, t, groups, s))
        scores = ops.add(scores, ops.reshape(mask, (1, 1, t, 1, s)))
        scores = ops.reshape(scores, (1, k, t * groups, s))
    probabilities = ops.softmax(ops.cast(scores, "float32"), axis=-1)
    output = ops.matmul(ops.cast(probabilities, values.dtype), values)  # [1, K, T*G, D]
    if groups == 1:
        return ops.transpose(output, (0, 2, 1, 3))
    output = ops.transpose(ops.reshape(output, (1, k, t, groups, d)), (0, 2, 1, 3, 4))
    return ops.reshape(output, (1, t, n, d))
