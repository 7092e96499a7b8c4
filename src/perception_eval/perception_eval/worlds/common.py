"""Plumbing shared by the world generators: seeded per-item random generators, output folders, JSON, and
running per-item jobs on a few processes with a tqdm progress bar.

Reproducibility: every video/clip gets its own ``numpy.random.Generator`` seeded from
``SeedSequence([seed, world_code, split_code, index])``, so what an item contains depends only on the seed,
the split and its index -- not on the number of workers, the order jobs finish, or the other splits' sizes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["SPLITS", "item_rng", "prepare_output", "run_jobs", "write_json"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def item_rng(seed: int, world_code: int, split: str, index: int) -> np.random.Generator:
    """The random generator of item ``index`` of ``split`` in the world numbered ``world_code``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(world_code), _SPLIT_CODES[split], int(index)]))


def prepare_output(root: Path, owned: Sequence[str], overwrite: bool) -> None:
    """Make ``root`` ready for a new world.

    ``owned`` are the entries (relative paths) a generator writes. If any already exists, either remove
    exactly those entries (``overwrite=True``) or raise ``FileExistsError`` -- nothing else under ``root``
    is touched.
    """
    root.mkdir(parents=True, exist_ok=True)
    existing = [name for name in owned if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{root} already holds a generated world ({', '.join(existing)}); pass overwrite=True / --overwrite"
        )
    for name in existing:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as UTF-8 JSON (indent 1, key order as built) followed by a newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def run_jobs(
    func: Callable,
    jobs: Sequence,
    *,
    workers: int = 1,
    desc: str = "",
    progress: bool = True,
) -> Iterable:
    """Yield ``func(job)`` for each job, in job order, on ``workers`` processes (1: in this process)."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="item", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield func(job)
                bar.update(1)
        else:
            chunk = max(1, min(8, len(jobs) // (workers * 8)))
            # "spawn": forking a process whose OpenCV/BLAS thread pools are running can deadlock the child.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, mp_context=ctx) as pool:
                for result in pool.map(func, jobs, chunksize=chunk):
                    yield result
                    bar.update(1)
    finally:
        bar.close()


def default_workers() -> int:
    """Number of worker processes to use by default: the CPUs this process may run on, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))
