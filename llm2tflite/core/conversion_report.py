"""A converter's outputs: the model file and its report, and the report's one-line summary."""

from __future__ import annotations

import os

from llm2tflite.core import atomic


def write(
    model_path: str | os.PathLike, flatbuffer: bytes, report_path: str | os.PathLike, report: dict
) -> None:
    """The model file, then its report (a report never describes a model that is not in place)."""
    atomic.write_bytes(model_path, flatbuffer)
    atomic.write_json(report_path, report)


def summary(report: dict) -> str:
    """Size, time and peak memory, as each converter's log line ends."""
    return (
        f"{report['size_bytes'] / 1e6:.1f} MB in {report['convert_seconds']} s, "
        f"peak RSS {report['peak_rss_mb']} MB"
    )
