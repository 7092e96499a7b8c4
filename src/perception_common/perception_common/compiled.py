"""Inference through ahead-of-time compiled packages (AOTInductor), built once per machine and cached on disk.

:class:`Traced` removes Python from between a module's kernels; a compiled package also fuses them: inductor
generates C++ for the element-wise work around the products (layer norms, GELU, additions, copies between layouts),
and with freezing it folds the weights into the package and pre-packs them for oneDNN's products. On this project's
2-core Xeon that took the embedded TrackGPT's bf16 image encoder from about 10.3 to 7.5 ms per frame.

Building costs about a minute of a 2-core CPU and needs a C++ compiler (g++), so packages are cached in
:func:`cache_dir` under a key made of everything the generated code depends on: the module's classes' source files,
its parameters and buffers, the input signature, the PyTorch version and the CPU (model name and instruction-set
flags). A second start with the same model on the same machine loads the package in milliseconds. Nothing here is
downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from .tracing import signature

#: environment variable naming the cache folder (default ``$XDG_CACHE_HOME/perception/compiled``).
CACHE_ENV = "PERCEPTION_COMPILED_CACHE"


class CompileError(RuntimeError):
    """A package could not be built (no C++ compiler, an operation inductor cannot export, ...)."""


def cache_dir() -> Path:
    """Where packages are kept: ``$PERCEPTION_COMPILED_CACHE``, else ``$XDG_CACHE_HOME/perception/compiled``, else
    ``~/.cache/perception/compiled``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "perception" / "compiled"


def _cpu_identity() -> str:
    """The CPU model and its flags (a package built for AMX must not run on a CPU without it)."""
    text = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
        text = "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
    except OSError:
        pass
    return f"{platform.machine()}\n{platform.processor()}\n{text}"


def package_key(module: nn.Module, tensors: tuple[torch.Tensor, ...], threads: int) -> str:
    """A hex digest of everything a package of ``module`` for these inputs and ``threads`` depends on (see the
    module docstring)."""
    h = hashlib.sha256()
    h.update(f"{torch.__version__}\n{sys.version_info[:2]}\n{_cpu_identity()}\nthreads {threads}\n".encode())
    sources = sorted({inspect.getfile(type(m)) for m in module.modules()})
    for path in sources:
        h.update(path.encode())
        h.update(Path(path).read_bytes())
    for t in tensors:
        h.update(f"{tuple(t.shape)} {t.dtype} {t.device}\n".encode())
    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    for sub_name, sub in module.named_modules():
        for name, value in sorted(vars(sub).items()):
            if not name.startswith("_"):  # plain attributes holding tensors (weights outside the state)
                state.update(_tensors_in(value, f"{sub_name}.attr.{name}"))
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"{name} {tuple(t.shape)} {t.dtype}\n".encode())
        h.update(t.contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _tensors_in(value, prefix: str) -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    out: dict[str, torch.Tensor] = {}
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out.update(_tensors_in(v, f"{prefix}.{i}"))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.update(_tensors_in(v, f"{prefix}.{k}"))
    elif hasattr(value, "__dict__") and not isinstance(value, (nn.Module, type)):
        for k, v in sorted(vars(value).items()):
            out.update(_tensors_in(v, f"{prefix}.{k}"))
    return out


class Compiled:
    """``module(*tensors)`` through an AOTInductor package built for the input signature of ``example``.

    Build or load with :meth:`build` (a second :class:`Compiled` of the same module and inputs on this machine
    loads the cached package). Outputs are the module's computed by other kernels: equal to float rounding in fp32,
    to bf16 rounding in bf16 (tested). Only for modules that :class:`perception_common.tracing.Traced` accepts
    (work fixed by the input shapes); inputs of another signature than the example's go to ``fallback``.

    Args:
        module: the module (inference only; it is exported without gradients).
        example: inputs with the signature the package serves.
        fallback: called for other signatures (None: they are refused with ``ValueError``).
        directory: the cache folder (default :func:`cache_dir`).
        threads: the CPU threads the package's loops run on (fixed when it is built: inductor writes them into its
            OpenMP pragmas); default ``torch.get_num_threads()``. Build for the threads of the thread that will call
            it: a package built for 2 threads and run by a frame thread pinned to one core runs 2 threads there.
    """

    def __init__(self, module: nn.Module, example: tuple[torch.Tensor, ...], *, fallback=None,
                 directory: Path | None = None, threads: int | None = None):
        self.module = module
        self.fallback = fallback
        self.threads = int(threads or torch.get_num_threads())
        self.signature = signature(example)
        self.key = package_key(module, example, self.threads)
        self.path = (directory or cache_dir()) / f"{type(module).__name__}-{self.key}.pt2"
        self._example = example
        self._runner = None
        #: True when :meth:`build` loaded a cached package, False when it compiled one, None before.
        self.cached: bool | None = None
        #: seconds :meth:`build` took.
        self.seconds = 0.0

    def build(self) -> Compiled:
        """Load the cached package, or export and compile it (about a minute on 2 cores) and cache it.

        Raises:
            CompileError: exporting or compiling failed (the message names the first cause).
        """
        t0 = time.monotonic()
        self.cached = self.path.is_file()
        if not self.cached:
            self._compile()
        try:
            self._runner = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:  # a corrupt or foreign file: build again once
            if not self.cached:
                raise CompileError(f"cannot load the package just built ({self.path}): {exc}") from exc
            self.path.unlink(missing_ok=True)
            self.cached = False
            self._compile()
            try:
                self._runner = torch._inductor.aoti_load_package(str(self.path))
            except Exception as again:
                raise CompileError(f"cannot load the package just built ({self.path}): {again}") from again
        self.seconds = time.monotonic() - t0
        return self

    def _compile(self) -> None:
        import logging

        import torch._inductor.config as inductor_config

        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPU machines
        partial = self.path.with_name(f".partial-{os.getpid()}-{self.path.name}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable cache is a CompileError too
            with torch.no_grad():
                program = torch.export.export(self.module, self._example, strict=False)
                # freezing: weights folded in and pre-packed; one compile thread: no worker processes to outlive us
                with inductor_config.patch({"freezing": True, "compile_threads": 1, "cpp.threads": self.threads}):
                    torch._inductor.aoti_compile_and_package(program, package_path=str(partial))
            os.replace(partial, self.path)  # whole files only, even with two builders at once
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CompileError(f"cannot compile {type(self.module).__name__}: {type(exc).__name__}: {first}") from exc
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

    def __call__(self, *tensors: torch.Tensor):
        if self._runner is None:
            raise RuntimeError("Compiled: call build() first")
        if signature(tensors) != self.signature:
            if self.fallback is not None:
                return self.fallback(*tensors)
            raise ValueError(f"Compiled {type(self.module).__name__} was built for {self.signature}, "
                             f"got {signature(tensors)}")
        return self._runner(*tensors)  # the module's output structure (the package keeps it)


#: a frame path's compile modes: ``auto`` = the cached package when this machine has one, ``on`` = build it if
#: missing, ``off`` = the traces.
FRAME_COMPILE = ("auto", "on", "off")


def use_compiled(mode: str, device: str, compile_path, *, hint: str) -> str:
    """Apply a frame-compile ``mode`` (:data:`FRAME_COMPILE`) through ``compile_path(build) -> Compiled | None``
    (e.g. :meth:`trackgpt.model.Perception.compile_frame_path`); returns a few words for the log. Packages are
    built and measured on CPUs only: on other devices the traces stay.

    Args:
        hint: the command that builds the package, named in the log when ``auto`` finds none.

    Raises:
        ValueError: ``mode`` is not one of :data:`FRAME_COMPILE`.
        CompileError: ``on`` and building failed.
    """
    mode = (mode or "auto").strip().lower()
    if mode not in FRAME_COMPILE:
        raise ValueError(f"frame_compile must be one of {', '.join(FRAME_COMPILE)}, got {mode!r}")
    if mode == "off":
        return "traced"
    if not str(device).startswith("cpu"):
        return f"traced (compiled frame paths are built for CPUs only, not {device})"
    compiled = compile_path(build=mode == "on")
    if compiled is None:
        return f"traced (no compiled encoder for this model on this machine: `{hint}` builds one)"
    return f"compiled ({'cached' if compiled.cached else f'built in {compiled.seconds:.0f} s'})"
