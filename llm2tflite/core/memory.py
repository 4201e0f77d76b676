"""This process's memory, as the stages report it: resident now, and its high-water mark.

Linux's ``/proc/self/status`` gives both per process image (``VmRSS``, ``VmHWM``), which is what
a benchmark worker or a conversion should report: ``ru_maxrss`` may include a forking parent's
pages, so it is only the fallback where ``/proc`` is missing. Figures are MiB.
"""

from __future__ import annotations

import resource


def _status_mib(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (kB there), in MiB."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """This process's resident memory now."""
    value = _status_mib("VmRSS")
    if value is None:
        import psutil

        value = psutil.Process().memory_info().rss / 2**20
    return value


def peak_rss_mb() -> float:
    """The high-water mark of this process's resident memory (this process image only)."""
    value = _status_mib("VmHWM")
    if value is None:
        # ru_maxrss is in KiB on Linux.
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return value
