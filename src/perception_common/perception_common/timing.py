"""Per-frame timing statistics, computed one way for every benchmark of the workspace."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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


def time_in_turns(
    paths: Sequence[str],
    frames: int,
    rounds: int,
    warmup: int,
    *,
    switch: Callable[[str], None],
    run: Callable[[str, int], None],
    desc: str = "",
) -> tuple[dict[str, list[float]], int]:
    """Seconds per ``run(path, i)`` for each path, the paths taking turns in ``rounds`` rounds (``frames`` per path
    in all, :func:`split_evenly`), ``switch(path)`` before each turn; ``warmup`` untimed runs before each path's
    first turn, one before each later one. A machine whose speed drifts while the benches run (this project's
    2-core VM swings by 1.5x from one second to the next) so biases none of the paths. Returns the times and the
    number of rounds run."""
    from tqdm import tqdm

    sizes = split_evenly(frames, rounds)
    times: dict[str, list[float]] = {path: [] for path in paths}
    with tqdm(total=(warmup + frames + len(sizes) - 1) * len(paths), desc=desc, unit="frame", leave=False) as bar:
        for r, size in enumerate(sizes):
            for path in paths:
                switch(path)
                untimed = warmup if r == 0 else 1  # the first run after a switch is not timed
                for i in range(untimed + size):
                    start = time.perf_counter()
                    run(path, i)
                    if i >= untimed:
                        times[path].append(time.perf_counter() - start)
                    bar.update()
    return times, len(sizes)


def turn_figures(
    times: dict[str, list[float]], rounds: int, gflop_per_frame: float, rate_of: Callable[[str], float | None]
) -> dict[str, dict]:
    """Per path (in ``times``' order): :func:`frame_time_stats`, :func:`roofline` against ``rate_of(path)``,
    ``rounds`` and ``speedup``: its frames/s over the first path's."""
    figures: dict[str, dict] = {}
    for path, seconds in times.items():
        stats = frame_time_stats(seconds)
        figures[path] = {**stats, **roofline(gflop_per_frame, stats["fps"], rate_of(path)), "rounds": rounds}
    first = next(iter(figures.values()))["fps"]
    for entry in figures.values():
        entry["speedup"] = entry["fps"] / first if entry["fps"] and first else None
    return figures


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
