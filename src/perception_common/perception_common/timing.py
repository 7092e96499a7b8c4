"""Per-frame timing statistics, computed one way for every benchmark of the workspace."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def frame_time_stats(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """``frames``, ``fps`` (frames / total time), ``p50_ms``, ``p99_ms``, ``mean_ms``, ``max_ms`` of per-frame times.

    Percentiles use NumPy's linear interpolation; with fewer than 100 frames p99 lies between the two slowest.
    Empty input gives None for every figure but ``frames``.
    """
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"frames": 0, "fps": None, "p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    total = float(ms.sum()) / 1000.0
    return {
        "frames": int(ms.size),
        "fps": float(ms.size / total) if total > 0 else None,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }
