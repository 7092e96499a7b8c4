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


def split_evenly(total: int, parts: int, *, least: int = 1) -> list[int]:
    """``total`` frames shared as evenly as possible over at most ``parts`` windows of at least ``least`` each (one
    window when ``total`` is smaller): how the benches alternate what they compare in turns."""
    n = max(1, min(parts, total // max(1, least)))
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def matmul_rate(dtype_name: str = "fp32", *, size: int = 1024, seconds: float = 0.5) -> float:
    """GFLOP/s of a ``size`` x ``size`` matrix product in ``fp32`` or ``bf16`` on this CPU (torch's thread count).

    The roofline the benches compare their frame paths with: the best rate a dense product reaches here. The
    median of repeated products over about ``seconds``.
    """
    import time

    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(size, size).to(dtype)
    for _ in range(3):
        a @ a
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2.0 * size**3 / float(np.median(times)) / 1e9


def roofline(gflop_per_frame: float, fps: float, rate: float | None) -> dict[str, float]:
    """``gflops`` reached at ``fps`` frames/s, and ``of_matmul_rate``: its fraction of ``rate`` (this machine's
    :func:`matmul_rate`, left out when unknown)."""
    gflops = gflop_per_frame * fps
    return {"gflops": gflops, **({"of_matmul_rate": gflops / rate} if rate else {})}


def roofline_text(figures: dict[str, float]) -> str:
    """``"83 GFLOP/s, 15 % of the matmul rate"`` for :func:`roofline`'s figures."""
    share = f", {100 * figures['of_matmul_rate']:.0f} % of the matmul rate" if "of_matmul_rate" in figures else ""
    return f"{figures['gflops']:.0f} GFLOP/s{share}"
