"""What every real-scale twin test checks and prints once its DAG has run (``test_*_twin.py``):
the codelab route's fidelity and benchmark record, the LiteRT route's files (builtins only, their
conversion figures and sizes), and the LiteRT files' greedy decoding against KerasHub's with
their decode-step times. Each test adds what is its family's own (tokenizer, parameter count,
cache shapes)."""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

LITERT_VARIANTS = ("fp32", "int8", "int4")


def litert_file(results: str, variant: str, ext: str) -> str:
    """<results>/litert/<variant>.<ext>: "tflite" or "conversion.json"."""
    return f"{results}/litert/{variant}.{ext}"


def litert_greedy(path, info, prompt_ids, max_length):
    """Greedy ids of a prefill/decode loop (test_litert_route.Session) and its step times."""
    from test_litert_route import Session

    session = Session(path, info)
    session.interpreter = type(session.interpreter)(model_path=str(path), num_threads=2)
    ids, steps = list(prompt_ids), []
    session.prefill(ids[:-1])
    while len(ids) < max_length:
        started = time.perf_counter()
        logits = session.decode(ids[-1])
        steps.append(time.perf_counter() - started)
        token = int(np.argmax(logits))
        if token in info["stop_token_ids"]:
            break
        ids.append(token)
    return ids, steps


def check_codelab_record(run_dir, fidelity_path: str, bench_path: str) -> None:
    """Print the codelab fp32 fidelity and the benchmark record; every entry generated
    deterministically."""
    from llm2tflite.evaluate.bench import format_record

    fidelity = json.loads((run_dir / fidelity_path).read_text())
    print(f"fidelity fp32: {json.dumps(fidelity)[:400]}")
    record = json.loads((run_dir / bench_path).read_text())
    print(format_record(record))
    for entry in record["entries"]:
        assert entry["new_tokens"] >= 1 and entry["deterministic"]


def check_litert_files(run_dir, results: str, int8_of_fp32: float, int4_of_int8: float) -> None:
    """Each LiteRT file is builtins only; print its conversion figures; int8 and int4 are at
    most these fractions of fp32 and int8 in bytes."""
    from llm2tflite.litert import convert as litert_convert

    sizes = {}
    for variant in LITERT_VARIANTS:
        report = json.loads(
            (run_dir / litert_file(results, variant, "conversion.json")).read_text()
        )
        seconds = report.get("convert_seconds", report.get("quantize_seconds"))
        sizes[variant] = report["size_bytes"]
        print(
            f"litert {variant}: {seconds} s, peak RSS {report['peak_rss_mb']} MiB, "
            f"{report['size_bytes'] / 1e6:.1f} MB"
        )
        litert_convert.check_builtins_only(
            litert_convert.read_model(
                (run_dir / litert_file(results, variant, "tflite")).read_bytes()
            )
        )
    assert sizes["int8"] < int8_of_fp32 * sizes["fp32"], sizes
    assert sizes["int4"] < int4_of_int8 * sizes["int8"], sizes


def check_litert_greedy_equals_keras(
    run_dir, results: str, preset: str, info, prompt: str, check_keras=None
):
    """KerasHub's greedy ids of ``prompt`` (the preset, within the LiteRT cache) are the LiteRT
    fp32 file's; print every LiteRT variant's decode-step times. ``check_keras(causal_lm)``:
    the family's own checks of the loaded preset."""
    from llm2tflite.inputs.sources import load_causal_lm

    causal_lm = load_causal_lm(str(run_dir / preset))
    if check_keras is not None:
        check_keras(causal_lm)
    packed = causal_lm.preprocessor.generate_preprocess(
        [prompt], sequence_length=info["cache_length"]
    )
    generated = causal_lm.generate_step(packed, stop_token_ids=info["stop_token_ids"])
    keras_ids = np.asarray(generated["token_ids"][0])[
        np.asarray(generated["padding_mask"][0], bool)
    ].tolist()
    prompt_ids = np.asarray(packed["token_ids"][0])[
        np.asarray(packed["padding_mask"][0], bool)
    ].tolist()
    del causal_lm  # its weights out of memory before the LiteRT files are loaded
    for variant in LITERT_VARIANTS:
        ids, steps = litert_greedy(
            run_dir / litert_file(results, variant, "tflite"),
            info,
            prompt_ids,
            info["cache_length"],
        )
        print(
            f"litert decode {variant}: median {1000 * statistics.median(steps[1:]):.1f} ms/token "
            f"(min {1000 * min(steps[1:]):.1f}, first step {1000 * steps[0]:.0f} ms, "
            f"{len(steps)} steps, Python signature-runner loop, 2 threads)"
        )
        if variant == "fp32":
            assert ids == [i for i in keras_ids if i not in info["stop_token_ids"]]
