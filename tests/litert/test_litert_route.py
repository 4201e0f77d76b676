"""The LiteRT route on a tiny 2-layer GPT-2: export, builtins-only conversion, quantization.

One module-scoped model (built, exported, converted and quantized once) serves every test; the
fp32 file must reproduce Keras (logits and greedy ids), every file must be builtins-only with
unique tensor names, and the quantized files must hold the tied embedding table once.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import build_random_preset

CACHE_LENGTH = 40
PREFILL_LENGTHS = (4, 16)
PROMPTS = [
    "Estoy disfrutando de",
    "I am enjoying the",
    "Mañana por la mañana vamos a la playa con mis amigos y después",
]


@pytest.fixture(scope="module")
def litert_files(default_corpus_and_vocab, tmp_path_factory):
    """preset -> litert/{saved_model, litert_export.json, fp32/int8/int4 .tflite + reports}."""
    from llm2tflite.core import atomic
    from llm2tflite.inputs.sources import load_causal_lm
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export
    from llm2tflite.litert import quantize as litert_quantize

    out = tmp_path_factory.mktemp("litert")
    preset = build_random_preset(
        default_corpus_and_vocab / "vocab",
        out / "preset",
        seed=1,
        num_layers=2,
        num_heads=4,
        max_sequence_length=64,
    )
    causal_lm = load_causal_lm(str(preset))
    info = litert_export.export(
        causal_lm, out / "saved_model", out / "litert_export.json", CACHE_LENGTH, PREFILL_LENGTHS
    )
    flatbuffer, report = litert_convert.convert(
        out / "saved_model", litert_export.signature_keys(info)
    )
    atomic.write_bytes(out / "fp32.tflite", flatbuffer)
    files = {
        "dir": out,
        "preset": preset,
        "causal_lm": causal_lm,
        "info": info,
        "fp32": out / "fp32.tflite",
        "reports": {"fp32": report},
    }
    for variant in ("int8", "int4"):
        flatbuffer, report = litert_quantize.quantize(out / "fp32.tflite", variant)
        atomic.write_bytes(out / f"{variant}.tflite", flatbuffer)
        files[variant], files["reports"][variant] = out / f"{variant}.tflite", report
    return files


class Session:
    """A minimal prefill/decode driver over the contract (what a runtime does), for the tests."""

    def __init__(self, path, info):
        from ai_edge_litert.interpreter import Interpreter

        from llm2tflite.litert import contract

        self.info = info
        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.cache_length = info["cache_length"]
        self.hidden = np.float32(info["mask"]["hidden"])
        self.caches = {
            name: np.zeros(shape, np.float32)
            for name, shape in contract.cache_input_shapes(info).items()
        }
        self.position = 0

    def _mask(self, positions, length):
        mask = np.full((1, 1, length, self.cache_length), self.hidden, np.float32)
        for row, position in enumerate(positions):
            mask[0, 0, row, : position + 1] = 0
        return mask

    def run(self, signature, ids, length):
        """Run ``signature`` (T = length) on ``ids`` at the next positions, padded to T."""
        count = len(ids)
        assert 0 < count <= length and self.position + length <= self.cache_length
        positions = np.arange(self.position, self.position + length, dtype=np.int32)
        tokens = np.zeros((1, length), np.int32)
        tokens[0, :count] = ids
        runner = self.interpreter.get_signature_runner(signature)
        outputs = runner(
            tokens=tokens, input_pos=positions, mask=self._mask(positions, length), **self.caches
        )
        self.caches = {name: outputs[name] for name in self.caches}
        self.position += count
        return outputs.get("logits")

    def prefill(self, ids):
        """Chunks of the longest prefill length that fits, the tail padded; logits or None."""
        chunks = []
        lengths = sorted(self.info["prefill_lengths"])
        while ids:
            fitting = [t for t in lengths if self.position + t <= self.cache_length]
            length = next((t for t in fitting if t >= len(ids)), fitting[-1])
            take = min(length, len(ids))
            logits = self.run(f"prefill_{length}", ids[:take], length)
            chunks.append(None if logits is None else logits[:, :take])
            ids = ids[take:]
        if chunks and chunks[0] is not None:
            return np.concatenate(chunks, axis=1)
        return None

    def decode(self, token):
        return self.run("decode", [token], 1)[0, 0]

    def greedy(self, prompt_ids, max_length, stop_ids):
        """Prefill all prompt ids but the last; decode the last and then each new token."""
        ids = list(prompt_ids)
        self.prefill(ids[:-1])
        while len(ids) < max_length:
            token = int(np.argmax(self.decode(ids[-1])))
            if token in stop_ids:
                break
            ids.append(token)
        return ids


def _keras_logits(causal_lm, ids):
    ids = np.asarray(ids, np.int32)[None]
    return np.asarray(causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}))


def _random_ids(count, vocabulary_size, seed=0):
    return [int(i) for i in np.random.default_rng(seed).integers(0, vocabulary_size, count)]


def test_fp32_decode_logits_equal_keras(litert_files):
    """Prefill (two chunks, the second padded) then decode: every decode step's logits are
    Keras' logits at that position (so the prefill wrote the right cache rows too)."""
    info = litert_files["info"]
    ids = _random_ids(30, info["vocabulary_size"])
    expected = _keras_logits(litert_files["causal_lm"], ids)[0]
    session = Session(litert_files["fp32"], info)
    assert session.prefill(ids[:19]) is None  # prefill_16 + prefill_4 (1 padding row)
    for position in range(19, 30):
        np.testing.assert_allclose(
            session.decode(ids[position]), expected[position], rtol=0, atol=2e-5
        )


def test_fp32_prefill_logits_equal_keras(litert_files, tmp_path):
    """With ``prefill_logits``, each prefill chunk's logits are Keras' logits (T rows)."""
    from llm2tflite.core import atomic
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export

    causal_lm, info = litert_files["causal_lm"], litert_files["info"]
    info = litert_export.export(
        causal_lm,
        tmp_path / "sm",
        tmp_path / "info.json",
        CACHE_LENGTH,
        PREFILL_LENGTHS,
        prefill_logits=True,
    )
    flatbuffer, _ = litert_convert.convert(tmp_path / "sm", litert_export.signature_keys(info))
    atomic.write_bytes(tmp_path / "fp32.tflite", flatbuffer)
    ids = _random_ids(22, info["vocabulary_size"], seed=1)
    logits = Session(tmp_path / "fp32.tflite", info).prefill(ids)
    assert logits.shape == (1, 22, info["vocabulary_size"])
    np.testing.assert_allclose(logits, _keras_logits(causal_lm, ids), rtol=0, atol=2e-5)


def test_fp32_greedy_ids_equal_keras_generate(litert_files):
    """A Python prefill/decode loop over the fp32 file gives KerasHub generate()'s ids."""
    causal_lm, info = litert_files["causal_lm"], litert_files["info"]
    preprocessor = causal_lm.preprocessor
    packed = preprocessor.generate_preprocess(PROMPTS, sequence_length=CACHE_LENGTH)
    # generate() on packed ids (no preprocessor) returns ids: one batch, one compilation.
    causal_lm.preprocessor = None
    try:
        generated = causal_lm.generate(packed, stop_token_ids=info["stop_token_ids"])
    finally:
        causal_lm.preprocessor = preprocessor
    for row, prompt in enumerate(PROMPTS):
        prompt_ids = np.asarray(packed["token_ids"][row])[
            np.asarray(packed["padding_mask"][row], bool)
        ].tolist()
        expected = np.asarray(generated["token_ids"][row])[
            np.asarray(generated["padding_mask"][row], bool)
        ].tolist()
        assert prompt_ids[0] == info["start_token_id"]
        got = Session(litert_files["fp32"], info).greedy(
            prompt_ids, CACHE_LENGTH, info["stop_token_ids"]
        )
        assert got == expected, prompt
        assert len(got) > len(prompt_ids)


def test_quantized_variants_track_fp32(litert_files):
    """int8/int4 run the same loop; their logits stay near fp32's (the weights are quantized,
    nothing else)."""
    info = litert_files["info"]
    ids = _random_ids(12, info["vocabulary_size"], seed=2)
    reference = None
    for variant, tolerance in (("fp32", 0), ("int8", 0.05), ("int4", 0.5)):
        session = Session(litert_files[variant], info)
        session.prefill(ids[:-1])
        logits = session.decode(ids[-1])
        if reference is None:
            reference = logits
        scale = np.abs(reference).max()
        assert np.abs(logits - reference).max() <= tolerance * scale, variant


def test_signatures_and_tensor_names(litert_files):
    """The contract's signatures, input/output names and shapes, read from each file."""
    from ai_edge_litert.interpreter import Interpreter

    from llm2tflite.litert import convert as litert_convert

    info = litert_files["info"]
    assert info["prefill_signatures"] == {"prefill_4": 4, "prefill_16": 16}
    assert info["layers"] == [{"kv_heads": 4, "head_dim": 8}] * 2
    for variant in ("fp32", "int8", "int4"):
        interpreter = Interpreter(model_path=str(litert_files[variant]))
        signatures = interpreter.get_signature_list()
        assert sorted(signatures) == ["decode", "prefill_16", "prefill_4"]
        for name, expected in info["signatures"].items():
            runner = interpreter.get_signature_runner(name)
            inputs = {
                k: [str(np.dtype(v["dtype"])), v["shape"].tolist()]
                for k, v in runner.get_input_details().items()
            }
            outputs = {
                k: [str(np.dtype(v["dtype"])), v["shape"].tolist()]
                for k, v in runner.get_output_details().items()
            }
            assert inputs == expected["inputs"] and outputs == expected["outputs"], (variant, name)
        model = litert_convert.read_model(litert_files[variant].read_bytes())
        assert litert_convert.tensor_names_unique(model), variant


def test_builtin_ops_only_and_embedding_lookups(litert_files):
    from llm2tflite.litert import convert as litert_convert

    for variant in ("fp32", "int8", "int4"):
        report = litert_files["reports"][variant]
        for signature, ops in report["op_counts"].items():
            assert not [op for op in ops if op.startswith("CUSTOM")], (variant, signature)
            # Token and position tables: looked up, never GATHERed (quantizable).
            assert ops.get("EMBEDDING_LOOKUP") == 2 and "GATHER" not in ops, (variant, signature)
            # One cache update per K and V of each layer, no strided slice of a stacked cache.
            assert ops["DYNAMIC_UPDATE_SLICE"] == 4
        model = litert_convert.read_model(litert_files[variant].read_bytes())
        litert_convert.check_builtins_only(model)
    lookups = litert_files["reports"]["fp32"]["embedding_lookups"]
    assert {tuple(entry["table_shape"]) for entry in lookups} == {
        (litert_files["info"]["vocabulary_size"], 32),
        (64, 32),
    }


def test_tied_table_stored_once_quantized(litert_files):
    """int8/int4: the token table (shared by the lookup and the output projection) is one
    quantized buffer; no float copy of it is left."""
    from llm2tflite.core import flatbuffer
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import quantize as litert_quantize

    vocabulary = litert_files["info"]["vocabulary_size"]
    schema = flatbuffer.schema()
    for variant, tensor_type in (
        ("int8", schema.TensorType.INT8),
        ("int4", schema.TensorType.INT4),
    ):
        model = litert_convert.read_model(litert_files[variant].read_bytes())
        tables = {}
        for subgraph in model.subgraphs:
            for tensor in subgraph.tensors:
                if list(tensor.shape) == [vocabulary, 32] and litert_convert._is_constant(
                    model, tensor
                ):
                    tables[tensor.buffer] = tensor.type
        assert list(tables.values()) == [tensor_type], variant
        largest = litert_quantize.largest_float_constants(model)
        assert all(entry["bytes"] < vocabulary * 4 for entry in largest), largest


def test_quantized_sizes(litert_files):
    """Weights: int8 one byte each, int4 half a byte (plus scales); the files shrink."""
    causal_lm = litert_files["causal_lm"]
    # Every matrix (embedding tables, kernels) is quantized; vectors (biases, norms) stay float.
    weights = sum(
        int(np.prod(v.shape))
        for v in causal_lm.backbone.weights
        if len(v.shape) >= 2 and "bias" not in v.path
    )
    sizes = {v: litert_files[v].stat().st_size for v in ("fp32", "int8", "int4")}
    int8_bytes = litert_files["reports"]["int8"]["constants"]["INT8"]["bytes"]
    int4_bytes = litert_files["reports"]["int4"]["constants"]["INT4"]["bytes"]
    assert int8_bytes == weights
    assert int4_bytes == weights // 2
    # (Tiny model: the per-row scales of the 3000-row table, stored per signature, are a large
    # share of the file; at 124M parameters the files are 497 / 129 / 70 MB.)
    assert sizes["int4"] < sizes["int8"] < sizes["fp32"]
    for variant, size in sizes.items():
        assert litert_files["reports"][variant]["size_bytes"] == size


def test_dynamic_update_slice_clamps_a_chunk_past_the_cache(litert_files):
    """Why the runtime must never start a chunk past S - T: the update is moved back to fit
    and overwrites earlier rows (documented in llm2tflite/litert/export.py)."""
    info = litert_files["info"]
    session = Session(litert_files["fp32"], info)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(litert_files["fp32"])).get_signature_runner("prefill_4")
    start = CACHE_LENGTH - 2  # rows 38..41 asked for; only 38..39 exist
    outputs = runner(
        tokens=np.ones((1, 4), np.int32),
        input_pos=np.arange(start, start + 4, dtype=np.int32),
        mask=np.zeros((1, 1, 4, CACHE_LENGTH), np.float32),
        **session.caches,
    )
    # Positions: K [1, heads, head_dim, S]'s last axis, V [1, heads, S, head_dim]'s third.
    written_keys = np.flatnonzero(np.abs(outputs["kv_cache_k_0"][0]).sum(axis=(0, 1)))
    written_values = np.flatnonzero(np.abs(outputs["kv_cache_v_0"][0]).sum(axis=(0, 2)))
    for written in (written_keys, written_values):
        assert written.tolist() == list(range(CACHE_LENGTH - 4, CACHE_LENGTH))


def test_prefill_chunk_that_does_not_fit_is_refused(litert_files, tmp_path):
    from llm2tflite.litert import export as litert_export

    with pytest.raises(litert_export.LiteRTSettingsError, match="do not fit a cache of 40"):
        litert_export.export(
            litert_files["causal_lm"],
            tmp_path / "sm",
            tmp_path / "i.json",
            CACHE_LENGTH,
            [4, CACHE_LENGTH + 1],
        )
    with pytest.raises(litert_export.LiteRTSettingsError, match="exceeds the model's 64"):
        litert_export.export(
            litert_files["causal_lm"], tmp_path / "sm", tmp_path / "i.json", 65, [4]
        )
    assert not (tmp_path / "sm").exists()


def test_export_info_for_the_runtime(litert_files):
    info = json.loads((litert_files["dir"] / "litert_export.json").read_text())
    tokenizer = litert_files["causal_lm"].preprocessor.tokenizer
    assert info["architecture"] == "gpt2" and info["tokenizer_kind"] == "byte_level_bpe"
    assert info["cache_length"] == CACHE_LENGTH and info["prefill_lengths"] == [4, 16]
    assert info["start_token_id"] == tokenizer.start_token_id
    assert info["stop_token_ids"] == [tokenizer.end_token_id]
    assert info["vocabulary_size"] == tokenizer.vocabulary_size()
    assert info["num_layers"] == 2 and info["prefill_logits"] is False
    # A 37-id prompt would make LiteRT-LM pad its last chunk (prefill_4 at 36) past the cache.
    assert info["litert_lm_max_num_tokens"] == 37
    assert info["mask"]["hidden"] < -1e38 and np.isfinite(np.float32(info["mask"]["hidden"]))
