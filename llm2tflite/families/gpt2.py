"""GPT-2 (``keras_hub.models.GPT2CausalLM``): byte-level BPE, learned positions, LayerNorm, GELU.

Everything the workflow needs to know about the family: the KerasHub presets' shapes and
parameter counts (``shape_of:`` twins, resource sizing), the ``train:`` model settings, how to
build a fresh model on a vocabulary, the codelab route's decoding speed-ups, and the LiteRT
route's prefill/decode forward pass over an external KV cache.
"""

from __future__ import annotations

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
    # Hugging Face GPT-2 checkpoints (keras_hub/src/utils/transformers/convert_gpt2.py).
    transformers_model_types = {"gpt2": "GPT2LMHeadModel"}
    transformers_tokenizer_files = (("vocab.json", "merges.txt"),)
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

    def transformers_backbone_config(self, hf_config: Mapping) -> dict:
        """convert_gpt2.convert_backbone_config: the MLP is always 4 * n_embd wide (KerasHub
        reads no n_inner), so a checkpoint with another width would not load."""
        hidden = hf_config["n_embd"]
        if hf_config.get("n_inner") not in (None, 4 * hidden):
            raise ValueError(
                f"n_inner {hf_config['n_inner']} is not 4 * n_embd = {4 * hidden}, the only MLP "
                "width KerasHub's GPT-2 converter builds"
            )
        return {
            "vocabulary_size": hf_config["vocab_size"],
            "num_layers": hf_config["n_layer"],
            "num_heads": hf_config["n_head"],
            "hidden_dim": hidden,
            "intermediate_dim": 4 * hidden,
            "dropout": hf_config["resid_pdrop"],
            "max_sequence_length": hf_config["n_positions"],
        }

    def load_tokenizer(self, tokenizer_dir):
        import keras_hub

        vocab, merges = (f"{tokenizer_dir}/{name}" for name in self.tokenizer_files)
        tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
        if tokenizer.end_token_id == tokenizer.pad_token_id:
            # KerasHub pads with id 0: padding would read as end-of-text (see
            # llm2tflite.inputs.vocab).
            raise ValueError(f"<|endoftext|> has id {tokenizer.end_token_id}, the padding id")
        return tokenizer

    def exact_tokenizer(self, tokenizer, preset):
        """KerasHub's GPT-2 tokenizer, whose <|endoftext|> in text is one id in the codelab
        route's .tflite too (``byte_level_bpe.keep_unsplittable_tokens_in_graph``), as in
        KerasHub and ``tokenizers``."""
        from llm2tflite.families import byte_level_bpe

        return byte_level_bpe.keep_unsplittable_tokens_in_graph(tokenizer)

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
            key_cache, value_cache = litert_blocks.update_caches(
                key_cache, value_cache, attention._key_dense(x), attention._value_dense(x), start
            )
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
    """GPT2CausalLM.call_with_cache with builtin cache slices (``codelab_cache``)."""
    from llm2tflite.families import codelab_cache

    backbone = causal_lm.backbone

    def embed(token_ids, cache_update_index):
        tokens = backbone.token_embedding(token_ids)
        positions = backbone.position_embedding(tokens, start_index=cache_update_index)
        x = backbone.embeddings_add((tokens, positions))
        return backbone.embeddings_dropout(x)

    return codelab_cache.call_with_builtin_cache_slices(
        backbone, embed, "self_attention_cache", "self_attention_cache_update_index"
    )


def _build_cache_over_prompt(causal_lm, call_with_cache, prompt_length):
    """GPT2CausalLM._build_cache over the prompt only (``codelab_cache``)."""
    from llm2tflite.families import codelab_cache

    backbone = causal_lm.backbone
    return codelab_cache.build_cache_over_prompt(
        causal_lm,
        call_with_cache,
        prompt_length,
        kv_heads=backbone.num_heads,
        head_dim=backbone.hidden_dim // backbone.num_heads,
    )


ARCHITECTURE = GPT2()
