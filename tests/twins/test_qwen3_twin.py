"""The real-scale Qwen 3 path: the twin of qwen3_0.6b_en through the whole DAG, both routes; the
checks of tests/twins/test_qwen_twin.py (``check_qwen_twin``).

Its fp32 files are above 2 GB (596M parameters): the LiteRT route writes their weights after
the flatbuffer (``llm2tflite.litert.convert.write_model``), and every reader of the DAG (the
quantizer, fidelity, benchmark, LiteRT-LM) takes them. Slow (about 35 minutes on 2 cores, 5 Dec
2026; the codelab fp32 conversion peaks at 17.5 GB), so CI skips it; run it with ``python -m
pytest -m slow tests/twins/test_qwen3_twin.py -s``.

Every path it reads is named below (``paths_read``): tests/workflow/test_slow_test_paths.py
checks, in CI, that a dry run of the same command declares each of them as an output.
"""

from __future__ import annotations

import pytest
from test_qwen_twin import check_qwen_twin, qwen_twin_paths

MODEL = "qwen3_0_6b_twin"
# The workflow's options after --cores (the dry run of the fast check uses the same).
SNAKEMAKE_ARGS = ("--configfile", "config/qwen3_0_6b_twin.yaml")


def paths_read() -> list[str]:
    """Every path the test reads, relative to the run's directory."""
    return qwen_twin_paths(MODEL)


@pytest.mark.slow
def test_qwen3_twin_dag_runs_to_completion(tmp_path):
    check_qwen_twin(
        tmp_path,
        MODEL,
        SNAKEMAKE_ARGS,
        family="qwen3",
        preset="qwen3_0.6b_en",
        parameters=596_049_920,
        layers=[{"kv_heads": 8, "head_dim": 128}] * 28,
        stop_token="<|im_end|>",
    )
