"""Building blocks the LiteRT route's KV-cache contract forces on every family (Keras ops).

A family's ``litert_decoder`` (see ``base.Architecture``) reuses its Keras sublayers for
everything else; these functions are what KerasHub's own cached attention cannot do for the
contract's cache (one 4-D K and one 4-D V tensor per layer, an additive mask from the runtime) and its positions (``input_pos``, not a start index):

- ``update_caches``: write the T new keys and values at ``input_pos[0]`` (one
  DYNAMIC_UPDATE_SLICE per cache), in the contract's layout (``contract.KV_CACHE_LAYOUT``: K
  [1, kv_heads, head_dim, S], V [1, kv_heads, S, head_dim]);
- ``attention``: scaled dot-product attention of the queries over the whole updated cache,
  grouped-query aware, each cache read as stored: no transpose of a cache, no per-layer slice of
  a stacked cache;
- ``rotary_cos_sin`` / ``apply_rotary``: a KerasHub rotary embedding layer's cos/sin at
  ``input_pos`` (its own frequencies: wavelength, scaling, rope type, Llama 3.1 smoothing) and
  its own rotation; ``rotary_key`` tells layers with equal settings apart from the others, and
  ``Rotations`` rotates every layer's queries and keys with one cos/sin pair per distinct
  setting and signature.

Heavy: imports Keras. Import it inside the family's LiteRT methods.
"""

from __future__ import annotations

from keras import ops


def update_caches(key_cache, value_cache, key, value, start):
    """The layer's caches with positions ``start .. start + T - 1`` replaced by ``key`` and
    ``value`` [1, T, kv_heads, head_dim]: K [1, kv_heads, head_dim, S], V [1, kv_heads, S,
    head_dim] (``contract.KV_CACHE_LAYOUT``). The new rows are transposed, never the caches.

    Lowered to TFLite's DYNAMIC_UPDATE_SLICE, which clamps ``start`` so the whole update fits:
    a chunk with start + T > S would overwrite earlier rows, which is why every prefill length
    must fit the cache and the runtime must not start a chunk past S - T.
    """
    zero = ops.zeros((), dtype="int32")
    start = ops.cast(start, "int32")
    key_cache = ops.slice_update(
        key_cache, [zero, zero, zero, start], ops.transpose(key, (0, 2, 3, 1))
    )
    value_cache = ops.slice_update(
        value_cache, [zero, zero, start, zero], ops.transpose(value, (0, 2, 1, 3))
    )
    return key_cache, value_cache


def attention(query, key_cache, value_cache, mask, scale, soft_cap=None):
    """Attention of ``query`` [1, T, N, D] over the caches K [1, K, D, S] and V [1, K, S, D]
    (``update_caches``; N = K * groups).

    ``mask`` [1, 1, T, S] is added to the scores (0 visible, large negative hidden). Query head
    n reads K/V head ``n // (N // K)``, as KerasHub's grouped-query layers repeat K/V heads.
    The query is scaled before the dot product and the softmax runs in float32, as Keras'
    MultiHeadAttention does; ``soft_cap`` (Gemma 2 style) caps the scores as
    ``tanh(s / cap) * cap`` before the mask. Returns [1, T, N, D].
    """
    _, t, n, d = query.shape
    k = key_cache.shape[1]
    groups = n // k
    if groups * k != n:
        raise ValueError(f"{n} query heads cannot share {k} key/value heads")
    query = ops.multiply(query, ops.cast(scale, query.dtype))
    keys, values = key_cache, value_cache  # stored as the matmuls read them
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


# ---- rotary position embeddings at input_pos ----------------------------------------------------

# What ``rotary_cos_sin`` mirrors: RotaryEmbedding.call with ``positions`` (KerasHub 0.31). A
# subclass that overrides one of these computes something else: refused rather than guessed.
_ROTARY_METHODS_MIRRORED = (
    "call",
    "_compute_cos_sin_embedding",
    "_compute_positions",
    "_apply_rotary_pos_emb",
)
# Layer settings that change nothing in the computation (see rotary_key).
_ROTARY_CONFIG_IGNORED = ("name", "trainable")


def _check_rotary_layer(rotary_layer):
    from keras_hub.layers import RotaryEmbedding

    if not isinstance(rotary_layer, RotaryEmbedding):
        raise TypeError(f"{type(rotary_layer).__name__} is not a KerasHub RotaryEmbedding")
    changed = [
        name
        for name in _ROTARY_METHODS_MIRRORED
        if getattr(type(rotary_layer), name) is not getattr(RotaryEmbedding, name)
    ]
    if changed:
        raise ValueError(
            f"{type(rotary_layer).__name__} overrides RotaryEmbedding.{changed[0]}: "
            "the LiteRT route's rotary_cos_sin does not know its computation"
        )


def rotary_key(rotary_layer):
    """Hashable settings of a rotary layer: equal keys, equal cos/sin at the same positions."""
    config = rotary_layer.get_config()
    return (
        type(rotary_layer).__name__,
        tuple(
            sorted(
                (key, repr(value))
                for key, value in config.items()
                if key not in _ROTARY_CONFIG_IGNORED
            )
        ),
    )


def rotary_cos_sin(rotary_layer, input_pos, head_dim: int):
    """The cos and sin a KerasHub rotary layer applies at positions ``input_pos`` [T].

    Returns two [1, T, 1, head_dim] tensors in the layer's compute dtype, which broadcast over
    the heads of a [1, T, heads, head_dim] query or key (``apply_rotary``). Equal to what
    ``rotary_layer(x, positions=input_pos)`` (and, for contiguous positions, ``start_index``)
    computes: the frequencies are the layer's own (``_get_inverse_freq``: ``max_wavelength``;
    ``scaling_factor`` for the linear and dynamic rope types; YaRN's ramp; for
    ``LlamaRotaryEmbedding`` its Llama 3.1 frequency adjustment and smoothing, and no position
    scaling, as KerasHub computes it), and YaRN's position truncation and temperature factor
    are applied as ``_compute_cos_sin_embedding`` applies them.

    The one difference is how the angles are formed: KerasHub's ``einsum("bi,j->bij")`` outer
    product becomes a broadcast multiply (one product per entry either way, so the same
    float32 values). The converter lowers that einsum to a FULLY_CONNECTED whose "weights" are
    the frequencies, which ai-edge-quantizer then quantizes (int4 blockwise even fails on the
    [head_dim / 2, 1] kernel); the frequencies are constant-folded here.
    """
    from keras import ops

    _check_rotary_layer(rotary_layer)
    dtype = rotary_layer.compute_dtype
    inverse_freq = rotary_layer._get_inverse_freq(head_dim)  # [head_dim / 2], float32
    positions = ops.cast(input_pos, "float32")
    yarn = rotary_layer.rope_type == "yarn"
    if (
        yarn
        and rotary_layer.truncate
        and (rotary_layer.original_max_position_embeddings is not None)
    ):
        positions = ops.minimum(
            positions, ops.cast(rotary_layer.original_max_position_embeddings, "float32")
        )
    angles = ops.multiply(positions[:, None], inverse_freq[None, :])  # [T, head_dim / 2]
    angles = ops.concatenate([angles, angles], axis=-1)[None, :, None, :]
    cos = ops.cast(ops.cos(angles), dtype)
    sin = ops.cast(ops.sin(angles), dtype)
    if yarn:
        factor = ops.add(
            ops.multiply(
                ops.cast(0.1, dtype), ops.log(ops.cast(rotary_layer.scaling_factor, dtype))
            ),
            ops.cast(1.0, dtype),
        )
        cos, sin = cos * factor, sin * factor
    return cos, sin


def apply_rotary(rotary_layer, x, cos, sin):
    """``x`` [1, T, heads, head_dim] rotated by ``rotary_cos_sin``'s cos/sin: the layer's own
    rotation (``_apply_rotary_pos_emb``: halves swapped and negated, no interleaving)."""
    _check_rotary_layer(rotary_layer)
    rank = len(x.shape)
    if (rotary_layer.sequence_axis % rank, rotary_layer.feature_axis % rank) != (1, rank - 1):
        raise ValueError(
            f"{rotary_layer.name}: sequence axis {rotary_layer.sequence_axis}, "
            f"feature axis {rotary_layer.feature_axis}; apply_rotary takes "
            "[1, T, heads, head_dim]"
        )
    if x.shape[-1] != cos.shape[-1]:
        raise ValueError(
            f"rotary cos/sin of size {cos.shape[-1]} for features of size {x.shape[-1]}"
        )
    return rotary_layer._apply_rotary_pos_emb(x, cos, sin)


class Rotations:
    """Rotary embeddings at ``input_pos`` for one signature's layers: the cos/sin of each
    distinct rotary setting (``rotary_key``) computed once, shared by every layer that has it
    (Gemma 3's local and global layers differ; Llama's all agree)."""

    def __init__(self, input_pos):
        self._input_pos = input_pos
        self._cos_sin = {}  # rotary settings -> (cos, sin) at input_pos

    def apply(self, rotary_layer, query, key):
        """``query`` and ``key`` [1, T, heads, head_dim] rotated by ``rotary_layer``."""
        settings = rotary_key(rotary_layer)
        if settings not in self._cos_sin:
            self._cos_sin[settings] = rotary_cos_sin(
                rotary_layer, self._input_pos, int(key.shape[-1])
            )
        cos, sin = self._cos_sin[settings]
        return (
            apply_rotary(rotary_layer, query, cos, sin),
            apply_rotary(rotary_layer, key, cos, sin),
        )
