"""Gemma 3 (``keras_hub.models.Gemma3CausalLM``), text only: SentencePiece, sliding-window GQA.

Everything the workflow needs to know about the family: the KerasHub text presets' exact
backbone arguments and parameter counts (``shape_of:`` twins, resource sizing), the ``train:``
model settings, the SentencePiece layout its tokenizer expects, how to build a fresh model, the
stop tokens its ``generate()`` uses, the codelab route's decoding speed-ups, and the LiteRT
route's prefill/decode forward pass over an external KV cache.

The decoder (``Gemma3Backbone`` / ``Gemma3DecoderBlock`` / ``CachedGemma3Attention``): token
embedding scaled by sqrt(hidden_dim) and tied to the output projection; per layer an RMSNorm of
Gemma's ``x * (1 + scale)`` form before and after attention and before and after the MLP;
grouped-query attention with RMSNorm on queries and keys and rotary positions; a GeGLU MLP
(``gelu_tanh(x W1) * (x W2)``, then W3). Five of every six layers (``i % 6 < 5``) attend only to
the last ``sliding_window_size`` positions with RoPE wavelength 10,000 (local); the sixth sees
everything with RoPE wavelength 1,000,000 (global).

Only text models: a backbone with a vision encoder (the ``gemma3_4b`` ... vision presets) or an
embedding head is refused where it matters (parameter count, LiteRT export).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from llm2tflite.families import rotary_gqa
from llm2tflite.families.base import (
    MASK_HIDDEN,
    Architecture,
    KVCacheShape,
)

# Gemma3Backbone arguments shared by every KerasHub text preset: what KerasHub's conversion
# script (keras-hub tools/checkpoint_conversion/convert_gemma3_checkpoints.py, convert_model)
# passes for a Flax Gemma 3 config without vision encoder. No soft caps (final_logit_softcap
# and attn_logits_soft_cap are None in every Gemma 3 config), query/key norm, post-attention and
# post-MLP norms, sliding windows on, epsilon 1e-6.
_TEXT = dict(
    image_size=None,
    query_head_dim_normalize=True,
    use_query_key_norm=True,
    use_post_ffw_norm=True,
    use_post_attention_norm=True,
    attention_logit_soft_cap=None,
    final_logit_soft_cap=None,
    use_sliding_window_attention=True,
    local_rope_scaling_factor=1.0,
    global_rope_scaling_factor=1.0,
    vision_encoder=None,
    layer_norm_epsilon=1e-6,
    dropout=0,
)

# The Flax configs the presets were converted from (google-deepmind/gemma, gemma/gm/nn/_gemma.py:
# Gemma3_270M, Gemma3_1B, Gemma3_4B, Gemma3_12B, Gemma3_27B; layer counts from the same file and
# KerasHub's preset descriptions). num_embed -> vocabulary_size, embed_dim -> hidden_dim,
# hidden_dim -> intermediate_dim, num_heads/num_kv_heads/head_dim, sliding_window_size,
# global_scale_factor -> global_rope_scaling_factor, query_pre_attn_norm
# BY_ONE_OVER_SQRT_EMBED_DIM_DIV_NUM_HEADS -> query_head_dim_normalize=False (27B).


# What sets the text presets apart, in the order KerasHub's conversion script passes it (the order
# a twin's info file lists it).
_SIZES = ("num_layers", "num_query_heads", "num_key_value_heads", "hidden_dim")
_SIZES += ("intermediate_dim", "head_dim", "sliding_window_size")


def _text_preset(*sizes, **text):
    """One text preset's Gemma3Backbone arguments: ``_TEXT`` changed by ``text``, then the
    vocabulary size and ``sizes`` (as ``_SIZES`` names them)."""
    return dict(_TEXT, **text, vocabulary_size=262_144, **dict(zip(_SIZES, sizes, strict=True)))


# Layers, query heads, key/value heads, hidden_dim, intermediate_dim, head_dim, window; the
# 4B, 12B and 27B models scale the global layers' RoPE by 8.
_ROPE_X8 = {"global_rope_scaling_factor": 8.0}
_GEMMA3_270M = _text_preset(18, 4, 1, 640, 2048, 256, 512)
_GEMMA3_1B = _text_preset(26, 4, 1, 1152, 6 * 1152, 256, 512)
_GEMMA3_4B = _text_preset(34, 8, 4, 2560, 2560 * 8 // 2, 256, 1024, **_ROPE_X8)
_GEMMA3_12B = _text_preset(48, 16, 8, 30 * 128, 8 * 30 * 128 // 2, 256, 1024, **_ROPE_X8)
_GEMMA3_27B = _text_preset(
    62, 32, 16, 5376, 5376 * 8 // 2, 128, 1024, **_ROPE_X8, query_head_dim_normalize=False
)

# Gemma 3's SentencePiece vocabulary (google-deepmind/gemma, gemma/gm/text/_tokenizer.py,
# _Gemma3SpecialTokens): <pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4, [multimodal] 5,
# <unused0> .. <unused98> 6 .. 104, <start_of_turn> 105, <end_of_turn> 106. Pieces are
# encoded without a dummy prefix space ("Hello world!" -> "Hello", " world", "!").
_UNUSED_PIECES = tuple(f"<unused{i}>" for i in range(99))
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"


class Gemma3(Architecture):
    name = "gemma3"
    causal_lm_class = "Gemma3CausalLM"
    tokenizer_kind = "sentencepiece"
    tokenizer_files = ("tokenizer.model",)  # llm2tflite.inputs.vocab.SENTENCEPIECE_FILENAME
    # The twin's tokenizer: Gemma's own vocabulary is a model-hub download, so the workflow
    # trains a SentencePiece model with Gemma's special-piece layout on its corpus.
    twin_tokenizer = "trained"
    sentencepiece_layout = {
        "pad_id": 0,
        "pad_piece": "<pad>",
        "eos_id": 1,
        "eos_piece": "<eos>",
        "bos_id": 2,
        "bos_piece": "<bos>",
        "unk_id": 3,
        "unk_piece": "<unk>",
        # Typed USER_DEFINED, as in Gemma's vocabulary: a chat template's "<start_of_turn>"
        # written in the text encodes to its single id.
        "user_defined_symbols": (
            "<mask>",
            "[multimodal]",
            *_UNUSED_PIECES,
            START_OF_TURN,
            END_OF_TURN,
        ),
        "add_dummy_prefix": False,
    }
    # KerasHub's Gemma 3 chat format (Gemma3CausalLMPreprocessor's documented prompts, Gemma's
    # own template): "<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"; the
    # reply ends with <end_of_turn> (a stop token, ``stop_token_ids``).
    chat_template = {
        "user": {"prefix": f"{START_OF_TURN}user\n", "suffix": f"{END_OF_TURN}\n"},
        "model": {"prefix": f"{START_OF_TURN}model\n", "suffix": f"{END_OF_TURN}\n"},
    }
    # Gemma3Backbone arguments of KerasHub 0.31's text-only Gemma 3 causal-LM presets (the
    # vision presets add a SigLIP encoder; the embedding presets, embedding_gemma3_300m and
    # harrier_embedding_oss_270m, are not causal LMs).
    presets = {
        "gemma3_270m": _GEMMA3_270M,
        "gemma3_instruct_270m": _GEMMA3_270M,
        "function_gemma_instruct_270m": _GEMMA3_270M,
        "gemma3_1b": _GEMMA3_1B,
        "gemma3_instruct_1b": _GEMMA3_1B,
        "gemma3_4b_text": _GEMMA3_4B,
        "gemma3_instruct_4b_text": _GEMMA3_4B,
        "gemma3_12b_text": _GEMMA3_12B,
        "gemma3_instruct_12b_text": _GEMMA3_12B,
        "gemma3_27b_text": _GEMMA3_27B,
        "gemma3_instruct_27b_text": _GEMMA3_27B,
        "medgemma_instruct_27b_text": _GEMMA3_27B,
    }
    # keras_hub/src/models/gemma3/gemma3_presets.py, "params".
    preset_parameters = {
        "gemma3_270m": 268_098_176,
        "gemma3_instruct_270m": 268_098_176,
        "function_gemma_instruct_270m": 268_098_176,
        "gemma3_1b": 999_885_952,
        "gemma3_instruct_1b": 999_885_952,
        "gemma3_4b_text": 3_880_099_328,
        "gemma3_instruct_4b_text": 3_880_099_328,
        "gemma3_12b_text": 11_765_788_416,
        "gemma3_instruct_12b_text": 11_765_788_416,
        "gemma3_27b_text": 27_009_002_240,
        "gemma3_instruct_27b_text": 27_009_002_240,
        "medgemma_instruct_27b_text": 27_009_002_240,
    }
    # Hugging Face Gemma 3 text checkpoints (keras_hub/src/utils/transformers/convert_gemma3.py;
    # model_type "gemma3" is the multimodal model, with a vision tower). KerasHub reads
    # tokenizer.model, or builds the SentencePiece model from tokenizer.json.
    transformers_model_types = {"gemma3_text": "Gemma3ForCausalLM"}
    transformers_tokenizer_files = (("tokenizer.model",), ("tokenizer.json",))
    # A small Gemma 3 with every feature of the real ones: 6 layers (5 sliding-window, 1
    # global), multi-query attention (4 query heads on 1 key/value head, as gemma3_270m/1b),
    # query/key norm, post-norms, a window shorter than the traced generations.
    train_model_defaults = {
        "num_layers": 6,
        "num_query_heads": 4,
        "num_key_value_heads": 1,
        "hidden_dim": 64,
        "intermediate_dim": 256,
        "head_dim": 16,
        "sliding_window_size": 32,
        "use_sliding_window_attention": True,
        "query_head_dim_normalize": True,
        "use_query_key_norm": True,
        "use_post_attention_norm": True,
        "use_post_ffw_norm": True,
        "attention_logit_soft_cap": None,
        "final_logit_soft_cap": None,
        "local_rope_scaling_factor": 1.0,
        "global_rope_scaling_factor": 1.0,
        "layer_norm_epsilon": 1e-6,
        "dropout": 0.0,
    }
    train_model_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "num_layers": {"type": "integer", "minimum": 1},
            "num_query_heads": {"type": "integer", "minimum": 1},
            "num_key_value_heads": {"type": "integer", "minimum": 1},
            "hidden_dim": {"type": "integer", "minimum": 1},
            "intermediate_dim": {"type": "integer", "minimum": 1},
            "head_dim": {"type": "integer", "minimum": 2},
            "sliding_window_size": {"type": "integer", "minimum": 1},
            "use_sliding_window_attention": {"type": "boolean"},
            "query_head_dim_normalize": {"type": "boolean"},
            "use_query_key_norm": {"type": "boolean"},
            "use_post_attention_norm": {"type": "boolean"},
            "use_post_ffw_norm": {"type": "boolean"},
            "attention_logit_soft_cap": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "final_logit_soft_cap": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "local_rope_scaling_factor": {"type": "number", "exclusiveMinimum": 0},
            "global_rope_scaling_factor": {"type": "number", "exclusiveMinimum": 0},
            "layer_norm_epsilon": {"type": "number", "exclusiveMinimum": 0},
            "dropout": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }

    # ---- light ----------------------------------------------------------------------------------

    def parameter_count(self, backbone_config: Mapping) -> int:
        """Gemma3Backbone's parameters (text only): tied embedding, blocks, final RMSNorm.

        No biases anywhere. Per layer: query/key/value/output projections, an RMSNorm scale of
        head_dim for queries and for keys (use_query_key_norm), the GeGLU MLP's two gating
        projections and its output projection, and two to four RMSNorm scales of hidden_dim
        (pre-attention, pre-MLP, post-attention and post-MLP if enabled).
        """
        if backbone_config.get("vision_encoder") is not None:
            raise ValueError("gemma3: only text-only backbones are supported (vision_encoder)")
        if backbone_config.get("is_embedding_model"):
            raise ValueError("gemma3: embedding models are not causal LMs")
        d, f = backbone_config["hidden_dim"], backbone_config["intermediate_dim"]
        head_dim = backbone_config["head_dim"]
        heads, kv_heads = (
            backbone_config["num_query_heads"],
            backbone_config["num_key_value_heads"],
        )
        attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
        if backbone_config.get("use_query_key_norm", True):
            attention += 2 * head_dim
        gated_mlp = 3 * d * f
        norms = d * (
            2
            + bool(backbone_config.get("use_post_attention_norm", False))
            + bool(backbone_config.get("use_post_ffw_norm", False))
        )
        per_layer = attention + gated_mlp + norms
        embedding = backbone_config["vocabulary_size"] * d  # tied: one table
        return embedding + backbone_config["num_layers"] * per_layer + d

    def max_sequence_length(self, backbone_config: Mapping) -> int | None:
        return None  # rotary positions: no learned position table to run out of

    def weight_input_widths(self, backbone_config: Mapping) -> dict[str, int]:
        """Hidden and feed-forward widths, and the attention output projection's input (query
        heads x head_dim, unlike other families not always the hidden width)."""
        widths = super().weight_input_widths(backbone_config)
        heads, head_dim = backbone_config.get("num_query_heads"), backbone_config.get("head_dim")
        if heads and head_dim:
            widths["num_query_heads x head_dim"] = heads * head_dim
        return widths

    def semantic_errors(self, model_config: Mapping, where: str) -> list[str]:
        return rotary_gqa.shape_errors(self.train_model_config(model_config), where)

    def transformers_backbone_config(self, hf_config: Mapping) -> dict:
        """convert_gemma3.convert_backbone_config of a text config (model_type gemma3_text),
        with its defaults for absent keys."""
        if hf_config.get("use_bidirectional_attention", False):
            raise ValueError("an embedding model (use_bidirectional_attention), not a causal LM")
        rope_scaling = hf_config.get("rope_scaling")
        rope = hf_config.get("rope_parameters") or {}
        global_rope = rope_scaling if rope_scaling is not None else rope.get("full_attention", {})
        window, layer_types = hf_config.get("sliding_window"), hf_config.get("layer_types", [])
        if layer_types:
            sliding = any(kind == "sliding_attention" for kind in layer_types)
        else:
            sliding = window not in (None, 0)
        head_dim, scalar = hf_config["head_dim"], hf_config.get("query_pre_attn_scalar")
        return {
            **_TEXT,
            "vocabulary_size": hf_config.get("vocab_size", 262_144),
            "num_layers": hf_config["num_hidden_layers"],
            "num_query_heads": hf_config.get("num_attention_heads", 8),
            "num_key_value_heads": hf_config.get("num_key_value_heads", 4),
            "hidden_dim": hf_config["hidden_size"],
            "intermediate_dim": hf_config["intermediate_size"],
            "head_dim": head_dim,
            "use_post_ffw_norm": hf_config.get("use_post_ffw_norm", True),
            "use_post_attention_norm": hf_config.get("use_post_attention_norm", True),
            "attention_logit_soft_cap": hf_config.get("attn_logit_softcapping"),
            "final_logit_soft_cap": hf_config.get("final_logit_softcapping"),
            "use_sliding_window_attention": sliding,
            "query_head_dim_normalize": True if scalar is None else scalar == head_dim,
            "sliding_window_size": window or 4096,
            "local_rope_scaling_factor": rope.get("sliding_attention", {}).get("factor", 1.0),
            "global_rope_scaling_factor": (global_rope or {}).get("factor", 1.0),
            "layer_norm_epsilon": hf_config.get("rms_norm_eps", 1e-6),
            "use_query_key_norm": hf_config.get("use_query_key_norm", True),
        }

    # ---- heavy ----------------------------------------------------------------------------------

    def load_tokenizer(self, tokenizer_dir):
        """Gemma3Tokenizer on a SentencePiece model with Gemma's special pieces, text only.

        ``has_vision_tokens=False``: the text presets' preprocessor has no image converter and
        never inserts image tokens, and a vocabulary trained by the workflow has none.
        """
        import keras_hub

        (model_file,) = (f"{tokenizer_dir}/{name}" for name in self.tokenizer_files)
        tokenizer = keras_hub.models.Gemma3Tokenizer(proto=model_file, has_vision_tokens=False)
        if tokenizer.end_token_id == tokenizer.pad_token_id:
            raise ValueError(f"<eos> has id {tokenizer.end_token_id}, the padding id")
        return tokenizer

    def build_causal_lm(self, backbone_config: Mapping, tokenizer, sequence_length: int):
        """Text only: no image size, and the preprocessor without an image converter (token_ids
        and padding_mask only)."""
        config = {"image_size": None, **backbone_config}
        return super().build_causal_lm(config, tokenizer, sequence_length)

    def line_preprocessor(self, preprocessor):
        """Gemma3CausalLMPreprocessor trains on {"prompts", "responses"} pairs, not plain text.

        A line is a response to an empty prompt: packed as <bos> line <eos>, every token after
        <bos> weighted, exactly what the plain-text causal-LM preprocessors do.
        """
        import tensorflow as tf

        def preprocess(lines):
            return preprocessor({"prompts": tf.fill(tf.shape(lines), ""), "responses": lines})

        return preprocess

    def prompt_packer(self, preprocessor):
        """Start token, prompt ids, padding: Gemma3CausalLMPreprocessor.generate_preprocess.

        KerasHub packs with a MultiSegmentPacker (its RoundRobinTrimmer is a TF Text kernel,
        ``TFText>RoundRobinTrim``, that TFLite knows neither as a builtin nor as an allowlisted
        Flex op) and takes ``token_ids != pad`` as the padding mask. One segment, no end value,
        cut by the caller to fit: that is exactly what a StartEndPacker gives, in core TF ops.
        """
        from keras_hub.layers import StartEndPacker

        tokenizer = preprocessor.tokenizer
        packer = StartEndPacker(
            sequence_length=None,
            start_value=tokenizer.start_token_id,
            pad_value=tokenizer.pad_token_id,
            return_padding_mask=True,
        )

        def pack(token_ids, sequence_length):
            return packer(token_ids, sequence_length=sequence_length)

        return pack

    def stop_token_ids(self, tokenizer) -> list[int]:
        """<eos> and <end_of_turn>: what Gemma3CausalLM.generate(stop_token_ids="auto") uses."""
        ids = [int(tokenizer.end_token_id), int(tokenizer.token_to_id(END_OF_TURN))]
        return list(dict.fromkeys(ids))

    def codelab_cache_methods(self):
        from keras_hub.models import Gemma3CausalLM

        return Gemma3CausalLM, _call_with_builtin_cache_slices, _build_cache_over_prompt

    # ---- LiteRT route ----------------------------------------------------------------------

    def litert_cache_shapes(self, causal_lm):
        backbone = _text_backbone(causal_lm)
        return [
            KVCacheShape(
                kv_heads=layer.attention.num_key_value_heads, head_dim=layer.attention.head_dim
            )
            for layer in backbone.transformer_layers
        ]

    def litert_decoder(self, causal_lm, token_ids, input_pos, mask, kv_caches):
        """Gemma3Backbone's forward pass with each layer's attention over the external cache.

        Everything but the attention core is the model's own sublayers, called as
        ``Gemma3DecoderBlock.call`` and ``CachedGemma3Attention.call`` call them at inference
        (dropout is the identity): the embedding (a row lookup) scaled by sqrt(hidden_dim); per
        layer the pre-attention RMSNorm, the query/key/value projections, the query and key
        RMSNorms, the layer's own rotary embedding (its wavelength and scaling) at
        ``input_pos``, the output projection, the post-attention RMSNorm, the pre-MLP RMSNorm,
        the GeGLU MLP and the post-MLP RMSNorm. Attention (``litert_blocks.attention``) reads the
        updated 4-D cache directly: the 4 query heads of gemma3_270m's single key/value head
        are one [4 T, head_dim] x [head_dim, S] product, no repeated copy of the cache.

        Sliding-window layers: KerasHub hides key positions more than ``sliding_window_size``
        - 1 before the query (``CachedGemma3Attention._mask_sliding_window``). The runtime's
        mask is causal only, so those layers get it narrowed in the graph from ``input_pos``
        (one SELECT per call, shared by every sliding layer), unless the cache is no longer
        than the window: then no query ever has a key that far back and the causal mask is
        already KerasHub's (checked statically from the mask's shape, nothing in the graph).
        """
        from keras import ops

        from llm2tflite.families import litert_blocks

        backbone = _text_backbone(causal_lm)
        cache_length = int(mask.shape[-1])
        x = backbone.token_embedding(token_ids)
        x = x * ops.cast(ops.sqrt(backbone.hidden_dim), x.dtype)
        start = input_pos[0]
        sliding_masks = {}  # window -> the causal mask narrowed to the window
        rotations = litert_blocks.Rotations(input_pos)
        new_caches = []
        for layer, (key_cache, value_cache) in zip(backbone.transformer_layers, kv_caches):
            attention = layer.attention
            normalized = layer.pre_attention_norm(x)
            query = attention.query_dense(normalized)
            key = attention.key_dense(normalized)
            if attention.use_query_key_norm:
                query, key = attention.query_norm(query), attention.key_norm(key)
            query, key = rotations.apply(attention.rope_layer, query, key)
            key_cache, value_cache = litert_blocks.update_caches(
                key_cache, value_cache, key, attention.value_dense(normalized), start
            )
            layer_mask = mask
            window = attention.sliding_window_size
            if attention.use_sliding_window_attention and cache_length > window:
                if window not in sliding_masks:
                    sliding_masks[window] = _narrow_to_window(mask, input_pos, window)
                layer_mask = sliding_masks[window]
            if attention.query_head_dim_normalize:
                scale = 1.0 / math.sqrt(attention.head_dim)
            else:
                scale = 1.0 / math.sqrt(attention.hidden_dim // attention.num_query_heads)
            attended = litert_blocks.attention(
                query, key_cache, value_cache, layer_mask, scale, soft_cap=attention.logit_soft_cap
            )
            attended = attention.output_dense(attended)
            if layer.use_post_attention_norm:
                attended = layer.post_attention_norm(attended)
            x = x + attended
            normalized = layer.pre_ffw_norm(x)
            gated = _gelu_tanh(layer.gating_ffw(normalized)) * layer.gating_ffw_2(normalized)
            gated = layer.ffw_linear(gated)
            if layer.use_post_ffw_norm:
                gated = layer.post_ffw_norm(gated)
            x = x + gated
            new_caches.append((key_cache, value_cache))
        return x, new_caches

    def litert_logits(self, causal_lm, hidden):
        """Final RMSNorm and the tied output projection (soft-capped if the model caps)."""
        backbone = _text_backbone(causal_lm)
        return backbone.token_embedding(backbone.layer_norm(hidden), reverse=True)


def _text_backbone(causal_lm):
    """The backbone, checked to be what the LiteRT forward pass mirrors: text-only, causal."""
    backbone = causal_lm.backbone
    if backbone.vision_encoder is not None:
        raise ValueError(
            "gemma3: the LiteRT route exports text-only models (this backbone has a vision encoder)"
        )
    if backbone.use_bidirectional_attention or backbone.is_embedding_model:
        raise ValueError("gemma3: an embedding model (bidirectional attention) is not a causal LM")
    return backbone


def _gelu_tanh(x):
    import keras

    return keras.activations.gelu(x, approximate=True)


def _narrow_to_window(mask, input_pos, window):
    """The additive causal ``mask`` [1, 1, T, S] with keys s <= input_pos[t] - window hidden.

    KerasHub's band (|query - key| <= window - 1, with the causal mask) keeps the query's own
    position and the window - 1 before it. Hidden entries get the contract's fill value
    (``MASK_HIDDEN``); visible ones keep the runtime's (so a runtime's padding rows stay
    hidden).
    """
    from keras import ops

    cache_length = int(mask.shape[-1])
    keys = ops.arange(cache_length, dtype="int32")
    too_old = ops.less_equal(keys[None, :], ops.cast(input_pos, "int32")[:, None] - window)
    return ops.where(too_old[None, None], ops.cast(MASK_HIDDEN, mask.dtype), mask)


def _call_with_builtin_cache_slices(causal_lm):
    """Gemma3CausalLM.call_with_cache (text only) with builtin cache slices
    (``codelab_cache``): the embedding scaled by sqrt(hidden_dim), the masks passed to every
    layer."""
    from keras import ops

    from llm2tflite.families import codelab_cache

    backbone = causal_lm.backbone

    def embed(token_ids, cache_update_index):
        x = backbone.token_embedding(token_ids)
        return x * ops.cast(ops.sqrt(backbone.hidden_dim), x.dtype)

    text_call = codelab_cache.call_with_builtin_cache_slices(
        backbone, embed, "cache", "cache_update_index"
    )

    def call_with_cache(
        token_ids,
        cache,
        cache_update_index,
        img_embeddings=None,
        vision_mask=None,
        padding_mask=None,
        vision_indices=None,
        cache_update_mask=None,
    ):
        _refuse_images(img_embeddings)
        return text_call(
            token_ids,
            cache,
            cache_update_index,
            padding_mask=padding_mask,
            vision_mask=vision_mask,
            cache_update_mask=cache_update_mask,
        )

    return call_with_cache


def _build_cache_over_prompt(causal_lm, call_with_cache, prompt_length):
    """Gemma3CausalLM._build_cache (text only) over the prompt only (``codelab_cache``)."""
    from llm2tflite.families import codelab_cache

    backbone = causal_lm.backbone
    text_build = codelab_cache.build_cache_over_prompt(
        causal_lm,
        call_with_cache,
        prompt_length,
        kv_heads=backbone.num_key_value_heads,
        head_dim=backbone.head_dim,
    )

    def build_cache(token_ids, img_embeddings, vision_mask, padding_mask, vision_indices):
        _refuse_images(img_embeddings)
        return text_build(token_ids, padding_mask=padding_mask)

    return build_cache


def _refuse_images(img_embeddings):
    if img_embeddings is not None:
        raise ValueError("gemma3: the codelab route traces text-only generation")


ARCHITECTURE = Gemma3()
