"""The frame path's precision: ``fp32``, or ``bf16`` where the processor computes in bf16 natively.

Both models' per-frame work can run in bf16 on CPUs with AVX512-BF16 or AMX (Intel Xeon since Cooper Lake /
Sapphire Rapids, AMD Zen 4): there a bf16 matrix product runs several times faster than an fp32 one. Elsewhere bf16
is emulated and slower, so ``auto`` picks it only where :func:`cpu_has_bf16` holds. On CUDA ``auto`` keeps fp32
(the GPU path is not measured in bf16 yet). This setting is separate from the tracker's ``precision`` (the brain's
dtype).
"""

from __future__ import annotations

FRAME_PRECISIONS = ("auto", "fp32", "bf16")


class PrecisionError(ValueError):
    """A frame precision that is not one of :data:`FRAME_PRECISIONS`."""


def cpu_has_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX512-BF16 or AMX tiles), as PyTorch detects it."""
    import torch

    cpu = getattr(torch._C, "_cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_frame_precision(value: str, device: str) -> str:
    """``auto`` -> ``bf16`` on a CPU with native bf16, else ``fp32``; ``fp32`` / ``bf16`` as given.

    Raises:
        PrecisionError: ``value`` is not one of :data:`FRAME_PRECISIONS`.
    """
    value = (value or "auto").strip().lower()
    if value not in FRAME_PRECISIONS:
        raise PrecisionError(f"frame precision must be one of {', '.join(FRAME_PRECISIONS)}, got {value!r}")
    if value != "auto":
        return value
    return "bf16" if str(device).startswith("cpu") and cpu_has_bf16() else "fp32"
