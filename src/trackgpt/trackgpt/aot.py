"""``trackgpt-compile``: build the frame path's compiled image encoder for this machine, ahead of time.

The tracker node (``frame_compile: auto``) and ``trackgpt-track --frame-compile auto`` run the image encoder through
an AOTInductor package when this machine has one for the model (:meth:`trackgpt.model.Perception.compile_frame_path`,
cached under :func:`perception_common.compiled.cache_dir`); building one takes about a minute of a 2-core CPU and a
C++ compiler, so it is done once, here (or by the node with ``frame_compile: on``). Run it with the model, frame
precision and frame threads the node will use (the node's start-up line names the command when it finds none); it
prints where the package is. Packages are for CPUs (the node's ``device`` cpu, or ``auto`` on a machine without
CUDA). Exit status 0 when the package exists afterwards, 1 when it could not be built (the reason in one line), 2
for bad arguments.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from perception_common.compiled import CompileError, cache_dir, use_compiled
from perception_common.models import ModelSpecError
from perception_common.precision import FRAME_PRECISIONS, PrecisionError

from .errors import CheckpointError, TrackGPTError

PROG = "trackgpt-compile"


def compile_command(model: str | Path = "", frame_precision: str = "auto", threads: int = 1) -> str:
    """The ``trackgpt-compile`` command line that builds the package for these settings (defaults left out, quoted
    for a shell)."""
    return shlex.join([PROG, *(["--model", str(model)] if model else []),
                     *(["--frame-precision", frame_precision] if frame_precision != "auto" else []),
                     *(["--threads", str(threads)] if threads != 1 else [])])


def use_frame_compile(model, mode: str, device: str, *, spec: str, frame_precision: str, threads: int,
                      warn: Callable[[str], None]) -> str:
    """Apply a frame-compile ``mode`` (auto | on | off) to ``model.perception`` for a frame thread of ``threads``
    torch threads, as the tracker node, ``trackgpt-track`` and ``replay-eval --direct`` do; returns a few words for
    their logs. A package that cannot be built is ``warn(one line)`` and the traced encoder runs.

    Args:
        spec: the model as the user named it ('' = the shipped one), for the ``trackgpt-compile`` command named
            when ``auto`` finds no package.
        frame_precision: as the user gave it (the command repeats it).

    Raises:
        ValueError: ``mode`` is not one of auto, on, off.
    """
    try:
        return use_compiled(mode, device, functools.partial(model.perception.compile_frame_path, threads=threads),
                            hint=compile_command(spec, frame_precision, threads))
    except CompileError as exc:
        warn(f"frame compile {mode}: {exc}; the traced encoder runs")
        return "traced"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Build the TrackGPT frame path's compiled image encoder "
                                "(AOTInductor) for this machine and cache it.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="", help="model folder or config:NAME (default: the shipped embedded model)")
    p.add_argument("--frame-precision", choices=FRAME_PRECISIONS, default="auto",
                   help="the frame path's image encoder, as tracker_node's frame_precision")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the thread that will encode frames, as tracker_node's frame_threads (the "
                        "package runs on as many as it is built for)")
    p.add_argument("--cache", type=Path, default=None, help=f"cache folder (default {cache_dir()})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"{PROG}: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    from .loading import load_model

    try:
        model = load_model(args.model, device="cpu", with_brain=False)
        model.perception.set_frame_precision(args.frame_precision)
    except (ModelSpecError, CheckpointError, TrackGPTError, PrecisionError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        compiled = model.perception.compile_frame_path(directory=args.cache, threads=args.threads)
    except CompileError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    how = "already built (loaded" if compiled.cached else "built"
    print(f"{PROG}: image encoder ({model.perception.frame_precision}, {compiled.threads} thread"
          f"{'s' if compiled.threads > 1 else ''}) {how} in {compiled.seconds:.1f} s"
          f"{')' if compiled.cached else ''}: {compiled.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
