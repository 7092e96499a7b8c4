#!/usr/bin/env python3
"""GPU check (issue 27, item 7): speed and memory of the full-size models with random weights, as JSON.

Sections, each at every precision asked for (``--precisions``, default bf16,fp16):

* ``trackgpt_frame_path``: the per-frame perception of ``llava-7b-sam-vit-h`` (SAM ViT-H encode + referring decode +
  propagation, NOT the brain) on 640x480 frames, timed two ways: ``encode_decode`` is ``trackgpt-bench``'s loop
  (``TrackGPT.encode_frame`` + ``TrackGPT.decode`` with random queries, the online query propagated frame to frame),
  ``tracker_step`` is ``OnlineTracker.step`` (the node's call) after one synchronous brain answer, with tau = 0 so
  no rethink happens. The model comes from ``trackgpt.loading.load_model`` with a TrackGPTConfig: the registered
  configuration with no SAM checkpoint (random weights), the perception precision set, and the ``tiny`` random brain
  in place of the LLaVA folder (a brain is needed to build a TrackGPT through the loader; it is not on the frame
  path, except for the one untimed answer before ``tracker_step``).
* ``brain_reasoning``: latency from instruction to answer of a LLaVA-1.5-7B-sized brain with random weights: the
  ``llava-7b-sam-vit-h`` configuration with the brain source ``tiny`` given LLaVA-1.5-7B's sizes (LLaMA 4096 x 32
  layers, 32 heads, MLP 11008, vocabulary 32064; CLIP ViT-L/14 at 336 px), built directly on the device by the
  loader (``torch.device`` context: random fp32 initialisation on the GPU, then cast to the precision by the
  loader). One warm-up instruction, then ``--instructions`` timed ones, each ``TrackGPTBrain.answer`` (greedy
  generation of up to ``--max-new-tokens``, then the teacher-forced pass that reads the <TK>/<PO> states) + phi:
  what ``TrackGPT.reason`` runs. Random weights rarely emit EOS or <PO>, so nearly every answer runs the whole
  ``--max-new-tokens`` (the JSON counts the tokens generated). int4 (bitsandbytes nf4) is tried only when
  bitsandbytes imports and the device is CUDA: the random brain is saved as a Hugging Face LLaVA folder and loaded
  back through the loader's folder path, the only one that quantises.
* ``avs``: ``avs.loading.load_model('config:pvt-v2-b5-vggish')`` (random weights) under ``torch.autocast`` at the
  precision (the AVS library has no precision setting of its own; fp32 = no autocast): ``forward`` is the model on
  one 224x224 frame + its 0.975 s log-mel example, ``predict`` is ``AVSModel.predict`` on a 640x480 frame and a
  44.1 kHz audio window (resampling, log-mel, resizing, gate: what ``avs_node`` runs per frame).
* ``environment``: torch / CUDA / GPU / package versions.

Each timed part runs warm-up iterations, then timed ones (``torch.cuda.synchronize`` around each on CUDA,
``time.perf_counter`` in both cases), and reports frames/s, p50 / p99 / mean / max ms
(``perception_common.timing.frame_time_stats``). On CUDA the peak of ``torch.cuda.max_memory_allocated`` is reset
before each part and reported in MiB, once including the model's build (``peak_mib``) and once over the timed
iterations only (``timed_peak_mib``).

Time budget (``--budget-s``, default 420): before each part the clock is checked against an estimate of the part
(the previous precision's measured time when there is one) and a part that would not fit is recorded as skipped
with the reason; timing loops also stop early at the budget (``truncated``). The JSON is rewritten after every
part, so a run killed from outside leaves what it measured (``complete: false``).

``--tiny`` runs the same code with the ``tiny`` registered configurations of both libraries, a tiny brain and small
frames: every path on a CPU in well under a minute (the test). Exit status: 0 when every part ran or was skipped
with a reason, 1 when a part failed (its ``error`` is in the JSON), 2 on bad arguments or a missing device.

Examples::

    python scripts/gpu_check.py --out results/gpu_check.json                # on a GPU machine
    python scripts/gpu_check.py --tiny --device cpu --out /tmp/check.json   # every path, on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The libraries from the source tree when they are not installed (a bare GPU machine without `make setup`);
# appended, so an installed workspace (scripts/env.sh) keeps precedence.
for _pkg in ("perception_common", "trackgpt", "avs"):
    if str(REPO / "src" / _pkg) not in sys.path:
        sys.path.append(str(REPO / "src" / _pkg))

PROG = "scripts/gpu_check.py"
SECTIONS = ("trackgpt", "brain", "avs")
FLOAT_PRECISIONS = ("fp32", "bf16", "fp16")

#: LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf): Vicuna-7B (LLaMA) text model, CLIP ViT-L/14 at 336 px.
LLAVA_7B_TEXT = dict(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
    max_position_embeddings=4096, rms_norm_eps=1e-5, vocab_size=32064,
)
LLAVA_7B_VISION = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
    patch_size=14, projection_dim=768,
)
WARMUP_INSTRUCTION = "track the object"
INSTRUCTIONS = (
    "track the thing I could cut bread with",
    "follow the person who is about to win the race",
    "track the red ball on the left",
    "find the one that is moving",
    "track the cat",
)
#: Seconds a part is expected to take before one precision of it has been measured (full size on an H100, with
#: margin; int4 includes writing and reading back a 14 GB folder).
FULL_ESTIMATES = {"trackgpt": 45.0, "avs": 30.0, "brain": 75.0, "brain_int4": 180.0}
TINY_ESTIMATES = {"trackgpt": 5.0, "avs": 5.0, "brain": 5.0, "brain_int4": 10.0}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Full-size TrackGPT / LLaVA-7B / AVS PVT-v2-b5 speed and GPU memory with random weights (JSON).",
        epilog="Issue 27, item 7. See the module docstring for what each section builds and times.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--tiny", action="store_true",
                   help="tiny registered configurations of both libraries, a tiny brain and small frames (CPU test)")
    p.add_argument("--device", default="cuda", help="torch device: cuda, cuda:N or cpu")
    p.add_argument("--out", type=Path, default=REPO / "results" / "gpu_check.json", help="JSON file to write")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="time budget in seconds; parts that would not fit are skipped with the reason")
    p.add_argument("--precisions", default="bf16,fp16",
                   help=f"comma-separated float precisions to try, of {', '.join(FLOAT_PRECISIONS)}")
    p.add_argument("--int4", choices=("auto", "off"), default="auto",
                   help="brain at int4 (bitsandbytes nf4): auto = when bitsandbytes imports and the device is CUDA")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--size", default=None, help="frame WIDTHxHEIGHT (default 640x480; --tiny: 160x120)")
    p.add_argument("--frames", type=int, default=None, help="timed frames per frame-path part (default 50; --tiny: 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed frames first (default 5; --tiny: 2)")
    p.add_argument("--instructions", type=int, default=3, help=f"timed brain instructions (1-{len(INSTRUCTIONS)})")
    p.add_argument("--max-new-tokens", type=int, default=32, help="brain answer length limit")
    p.add_argument("--brain-layers", type=int, default=None,
                   help="LLaMA layers of the 7B-sized brain (default 32; fewer only for dry runs on small machines)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return p


# ------------------------------------------------------------------------------------------------------ helpers
class Context:
    """Settings and state shared by the parts."""

    def __init__(self, args: argparse.Namespace, precisions: list[str], sections: list[str],
                 size: tuple[int, int] | None = None) -> None:
        import torch

        self.args = args
        self.tiny = bool(args.tiny)
        self.device = args.device
        self.cuda = args.device.startswith("cuda")
        self.precisions = precisions
        self.sections = sections
        self.size = size or ((160, 120) if self.tiny else (640, 480))
        self.frames = args.frames if args.frames is not None else (5 if self.tiny else 50)
        self.warmup = args.warmup if args.warmup is not None else (2 if self.tiny else 5)
        self.budget_s = float(args.budget_s)
        self.started = time.monotonic()
        self.deadline = self.started + self.budget_s
        self.estimates = dict(TINY_ESTIMATES if self.tiny else FULL_ESTIMATES)
        self.torch = torch

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        if not self.cuda:
            return None
        return round(self.torch.cuda.max_memory_allocated() / 2**20, 1)

    def release(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()


def _size(text: str, parser: argparse.ArgumentParser) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 640x480, got {text!r}")
    if w < 32 or h < 32:
        parser.error(f"--size must be at least 32x32, got {text!r}")
    return w, h


def _dtype(ctx: Context, precision: str):
    return {"fp32": ctx.torch.float32, "bf16": ctx.torch.bfloat16, "fp16": ctx.torch.float16}[precision]


def time_calls(ctx: Context, call: Callable[[int], Any], *, warmup: int, count: int, stop_at: float) -> dict[str, Any]:
    """``warmup`` untimed then ``count`` timed calls of ``call(i)``; stops early (after one timed call) at
    ``stop_at`` (time.monotonic). Returns frame_time_stats plus ``warmup``, ``asked`` and ``truncated``."""
    from perception_common.timing import frame_time_stats

    for i in range(warmup):
        call(i)
    ctx.sync()
    if ctx.cuda:
        ctx.torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    for i in range(count):
        if times and time.monotonic() > stop_at:
            break
        ctx.sync()
        t0 = time.perf_counter()
        call(warmup + i)
        ctx.sync()
        times.append(time.perf_counter() - t0)
    return {
        **frame_time_stats(times),
        "warmup": warmup,
        "asked": count,
        "truncated": len(times) < count,
        "timed_peak_mib": ctx.peak_mib(),
    }


def _parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _error(exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": "".join(tb)[-3000:]}


def run_part(ctx: Context, report: dict, section: str, key: str, estimate_key: str,
             fn: Callable[[float], dict[str, Any]]) -> None:
    """Run one part (a section at one precision) if it fits the budget; record its result or why not."""
    results = report["sections"][section]["results"]
    estimate = ctx.estimates[estimate_key]
    left = ctx.left()
    if left < estimate:
        results[key] = {"skipped": f"time budget: {max(left, 0):.0f} s left of {ctx.budget_s:.0f} s, "
                                   f"this part needs about {estimate:.0f} s"}
        print(f"gpu_check: {section} {key}: skipped ({results[key]['skipped']})", flush=True)
        write_report(ctx, report)
        return
    print(f"gpu_check: {section} {key} ...", flush=True)
    ctx.release()
    ctx.reset_peak()
    t0 = time.monotonic()
    stop_at = min(ctx.deadline, t0 + 2 * estimate)
    try:
        result = fn(stop_at)
        failed = False
    except Exception as exc:  # one part failing (out of memory, an API change) must not lose the others
        result = _error(exc)
        failed = True
    wall = time.monotonic() - t0
    result["wall_s"] = round(wall, 2)
    result.setdefault("peak_mib", ctx.peak_mib())
    results[key] = result
    ctx.release()
    if not failed:
        ctx.estimates[estimate_key] = max(wall * 1.2, 1.0)
    print(f"gpu_check: {section} {key}: {_summary(result)}", flush=True)
    write_report(ctx, report)


def _summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"]
    parts = []
    for name, value in result.items():
        if isinstance(value, dict) and value.get("fps"):
            parts.append(f"{name} {value['fps']:.2f}/s p50 {value['p50_ms']:.1f} ms p99 {value['p99_ms']:.1f} ms")
    if result.get("mean_latency_ms"):
        parts.append(f"latency mean {result['mean_latency_ms']:.0f} ms")
    parts.append(f"peak {result.get('peak_mib')} MiB, {result['wall_s']} s")
    return "; ".join(parts)


def write_report(ctx: Context, report: dict) -> None:
    report["elapsed_s"] = round(time.monotonic() - ctx.started, 2)
    out: Path = ctx.args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, out)


# ------------------------------------------------------------------------------------------------- environment
def environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "device": device,
    }
    for name in ("transformers", "peft", "timm", "torchaudio", "segment_anything", "tokenizers", "bitsandbytes"):
        try:
            module = importlib.import_module(name)
            env[name] = getattr(module, "__version__", "installed")
        except Exception as exc:  # bitsandbytes may fail on import for many reasons (no CUDA, a bad build)
            env[name] = f"not importable: {type(exc).__name__}: {exc}"[:300]
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        env["gpu"] = {
            "name": props.name,
            "total_memory_mib": round(props.total_memory / 2**20),
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "count": torch.cuda.device_count(),
        }
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20,
            )
            env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            env["nvidia_smi"] = f"not run: {exc}"
    return env


def int4_unavailable(ctx: Context) -> str | None:
    """Why the brain cannot run at int4 here (None when it can)."""
    why = []
    try:
        importlib.import_module("bitsandbytes")
    except Exception as exc:
        why.append(f"bitsandbytes does not import ({type(exc).__name__}: {exc})"[:300])
    if not ctx.cuda:
        why.append(f"the device is {ctx.device}, not CUDA")
    elif not ctx.torch.cuda.is_available():
        why.append("CUDA is not available")
    return "; ".join(why) or None


# ------------------------------------------------------------------------------------------ TrackGPT frame path
def perception_config(ctx: Context, precision: str):
    """The configuration the frame path is built from: perception at ``precision``, the tiny random brain."""
    from trackgpt.config import TINY_TEXT, TINY_VISION, get_config

    if ctx.tiny:
        return get_config("tiny", precision=precision)
    tiny_brain = {
        "source": "tiny", "path": None, "precision": "fp32", "vision": dict(TINY_VISION), "text": dict(TINY_TEXT),
        "max_new_tokens": 8, "lora_r": 4,
    }
    return get_config("llava-7b-sam-vit-h", sam={"checkpoint": None}, precision=precision, brain=tiny_brain)


def trackgpt_part(ctx: Context, precision: str, stop_at: float) -> dict[str, Any]:
    import numpy as np

    from trackgpt.loading import load_model
    from trackgpt.tracker import OnlineTracker, TrackState

    torch = ctx.torch
    config = perception_config(ctx, precision)
    t0 = time.monotonic()
    model = load_model(config, device=ctx.device)
    ctx.sync()
    build_s = time.monotonic() - t0
    w, h = ctx.size
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    dim = config.sam.prompt_embed_dim
    gen = torch.Generator().manual_seed(0)
    q_r = torch.randn(1, dim, generator=gen).to(ctx.device)
    q_p = torch.randn(1, dim, generator=gen).to(ctx.device)
    state = {"q_t": q_r}

    def encode_decode(i: int) -> None:
        decoded = model.decode(model.encode_frame(pool[i % len(pool)]), referring_query=q_r,
                               online_query=state["q_t"], purport_query=q_p)
        state["q_t"] = decoded.next_query

    with torch.inference_mode():
        bare = time_calls(ctx, encode_decode, warmup=ctx.warmup, count=ctx.frames, stop_at=stop_at)
    states: dict[str, int] = {}
    with OnlineTracker(perception=model, tau=0.0, synchronous=True) as tracker:
        tracker.set_instruction(WARMUP_INSTRUCTION)
        first = tracker.step(pool[0])  # the brain answers this frame (untimed), then it is decoded
        if first.state not in (TrackState.TRACKING, TrackState.LOST) or first.error:
            raise RuntimeError(f"the tracker did not start tracking: state {first.state}, error {first.error}")

        def tracker_step(i: int) -> None:
            step = tracker.step(pool[i % len(pool)])
            states[step.state.value] = states.get(step.state.value, 0) + 1

        stepped = time_calls(ctx, tracker_step, warmup=ctx.warmup, count=ctx.frames, stop_at=stop_at)
        stepped["rethinks"] = tracker.rethink_count
    stepped["states"] = states
    return {
        "built": (
            f"trackgpt.loading.load_model(TrackGPTConfig '{config.name}' with sam.checkpoint=None, "
            f"precision={precision}, brain source 'tiny' (random, off the frame path)) on {ctx.device}"
        ),
        "sam": {
            "img_size": config.sam.img_size, "encoder_embed_dim": config.sam.encoder_embed_dim,
            "encoder_depth": config.sam.encoder_depth, "encoder_num_heads": config.sam.encoder_num_heads,
        },
        "perception_parameters": _parameters(model.perception),
        "perception_dtype": str(model.perception.dtype).replace("torch.", ""),
        "frame_size": {"width": w, "height": h},
        "build_s": round(build_s, 2),
        "encode_decode": bare,
        "tracker_step": stepped,
    }


# ------------------------------------------------------------------------------------------------------ brain
def brain_config(ctx: Context, precision: str):
    """A TrackGPT whose brain is built from sizes (source ``tiny``): LLaVA-1.5-7B's, or the tiny one."""
    from trackgpt.config import get_config

    perception = precision if precision in FLOAT_PRECISIONS else "bf16"
    if ctx.tiny:
        brain = {"precision": precision, "max_new_tokens": ctx.args.max_new_tokens}
        return get_config("tiny", precision=perception, brain=brain)
    text = dict(LLAVA_7B_TEXT)
    if ctx.args.brain_layers:
        text["num_hidden_layers"] = ctx.args.brain_layers
    brain = {
        "source": "tiny", "path": None, "precision": precision, "vision": dict(LLAVA_7B_VISION), "text": text,
        "max_new_tokens": ctx.args.max_new_tokens,
    }
    return get_config("llava-7b-sam-vit-h", sam={"checkpoint": None}, precision=perception, brain=brain)


def _load_on_device(ctx: Context, config):
    """``trackgpt.loading.load_model`` with the random initialisation done on the device itself."""
    from trackgpt.loading import load_model

    with ctx.torch.device(ctx.device):
        return load_model(config, device=ctx.device)


def time_brain(ctx: Context, model, stop_at: float) -> dict[str, Any]:
    """One warm-up and ``--instructions`` timed answers (TrackGPTBrain.answer + phi, as TrackGPT.reason)."""
    import numpy as np

    from perception_common.timing import frame_time_stats

    torch = ctx.torch
    brain = model.brain
    w, h = ctx.size
    frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    limit = brain.config.max_new_tokens

    finite = {"all": True}

    def reason(text: str) -> tuple[float, int]:
        ctx.sync()
        t0 = time.perf_counter()
        answer = brain.answer(frame, text)
        q_r, q_p = model.queries(answer.track_state, answer.purport_state)
        ctx.sync()
        seconds = time.perf_counter() - t0
        finite["all"] &= bool(torch.isfinite(q_r).all() and torch.isfinite(q_p).all())
        return seconds, len(answer.token_ids)

    with torch.inference_mode():
        warm_s, _ = reason(WARMUP_INSTRUCTION)
        ctx.sync()
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats()
        times, tokens, prompts = [], [], []
        for text in INSTRUCTIONS[: ctx.args.instructions]:
            if times and time.monotonic() > stop_at:
                break
            seconds, generated = reason(text)
            times.append(seconds)
            tokens.append(generated)
            prompts.append(len(brain.prompt_ids(text)))
    stats = frame_time_stats(times)
    return {
        "latency_ms": [round(t * 1000, 1) for t in times],
        "mean_latency_ms": stats["mean_ms"],
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "instructions_per_s": stats["fps"],
        "warmup_latency_ms": round(warm_s * 1000, 1),
        "generated_tokens": tokens,
        "max_new_tokens": limit,
        "stopped_early": sum(1 for n in tokens if n < limit),
        "ms_per_generated_token": round(sum(times) * 1000 / max(sum(tokens), 1), 2),
        "prompt_tokens": prompts,
        "image_tokens": brain.num_image_tokens,
        "truncated": len(times) < ctx.args.instructions,
        "queries_finite": finite["all"],
        "timed_peak_mib": ctx.peak_mib(),
    }


def _brain_facts(model) -> dict[str, Any]:
    brain = model.brain
    text = brain.text_config
    vision = brain.model.config.vision_config
    return {
        "brain_parameters": _parameters(brain.model),
        "brain_dtype": str(brain.dtype).replace("torch.", ""),
        "text": {"hidden": text.hidden_size, "layers": text.num_hidden_layers, "heads": text.num_attention_heads,
                 "intermediate": text.intermediate_size, "vocab": text.vocab_size},
        "vision": {"hidden": vision.hidden_size, "layers": vision.num_hidden_layers, "image_size": vision.image_size,
                   "patch_size": vision.patch_size},
        "tokenizer": f"the tiny byte-level BPE of the 'tiny' brain source ({len(brain.tokenizer)} tokens), not "
                     "LLaMA's: text prompts tokenise to a different length (the image tokens dominate)",
    }


def brain_part(ctx: Context, precision: str, stop_at: float) -> dict[str, Any]:
    config = brain_config(ctx, precision)
    t0 = time.monotonic()
    model = _load_on_device(ctx, config)
    ctx.sync()
    build_s = time.monotonic() - t0
    build_peak = ctx.peak_mib()
    sizes = "the tiny configuration's sizes" if ctx.tiny else "LLaVA-1.5-7B sizes"
    if ctx.args.brain_layers and not ctx.tiny:
        sizes += f" but {ctx.args.brain_layers} LLaMA layers (--brain-layers: a dry run, not the 7B brain)"
    result = {
        "built": (
            f"trackgpt.loading.load_model(TrackGPTConfig '{config.name}' with sam.checkpoint=None, brain source "
            f"'tiny' at {sizes}, brain precision {precision}) inside torch.device('{ctx.device}'): "
            "random fp32 initialisation on the device, then cast by the loader; whole model (brain + phi + SAM "
            f"perception at {config.precision})"
        ),
        **_brain_facts(model),
        "model_parameters": _parameters(model),
        "build_s": round(build_s, 2),
        "build_peak_mib": build_peak,
    }
    result.update(time_brain(ctx, model, stop_at))
    return result


def brain_int4_part(ctx: Context, stop_at: float, precision: str = "int4") -> dict[str, Any]:
    """The same random brain at int4: written as a LLaVA folder at bf16, loaded back quantised by the loader
    (``precision`` exists for trying the folder round trip without bitsandbytes)."""
    from trackgpt.loading import load_model

    bf16 = brain_config(ctx, "bf16")
    with tempfile.TemporaryDirectory(prefix="gpu_check_llava_") as tmp:
        t0 = time.monotonic()
        model = _load_on_device(ctx, bf16)
        model.brain.model.save_pretrained(tmp)
        model.brain.tokenizer.save_pretrained(tmp)
        del model
        ctx.release()
        save_s = time.monotonic() - t0
        ctx.reset_peak()
        config = bf16.replace(brain={"source": "folder", "path": tmp, "precision": precision})
        t0 = time.monotonic()
        model = load_model(config, device=ctx.device)
        ctx.sync()
        build_s = time.monotonic() - t0
        result = {
            "built": (
                "the bf16 random brain of the bf16 part written with save_pretrained to a temporary LLaVA folder, "
                f"then trackgpt.loading.load_model(brain source 'folder', precision {precision}); int4 = bitsandbytes "
                "nf4, vision tower and lm_head not quantised (trackgpt.llava.resolve_precision)"
            ),
            **_brain_facts(model),
            "write_folder_s": round(save_s, 2),
            "build_s": round(build_s, 2),
            "build_peak_mib": ctx.peak_mib(),
        }
        result.update(time_brain(ctx, model, stop_at))
        del model
    return result


# ---------------------------------------------------------------------------------------------------------- AVS
def avs_part(ctx: Context, precision: str, stop_at: float) -> dict[str, Any]:
    import numpy as np

    from avs.audio import WINDOW_SAMPLES, window_to_example
    from avs.loading import load_model

    torch = ctx.torch
    name = "tiny" if ctx.tiny else "pvt-v2-b5-vggish"
    t0 = time.monotonic()
    torch.manual_seed(0)
    model = load_model(f"config:{name}", device=ctx.device)
    ctx.sync()
    build_s = time.monotonic() - t0
    w, h = ctx.size
    rate = 44100
    rng = np.random.default_rng(0)
    window = int(np.ceil(WINDOW_SAMPLES * rate / 16000)) + rate // 100  # + 10 ms of filter context, as avs-bench
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    audio = [rng.uniform(-0.5, 0.5, window).astype(np.float32) for _ in range(4)]
    inputs = [(model.preprocess_frame(f), window_to_example(a, rate).examples.to(ctx.device)) for f, a in
              zip(frames, audio)]
    device_type = "cuda" if ctx.cuda else "cpu"

    def autocast():
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=_dtype(ctx, precision))

    def forward(i: int) -> None:
        x, example = inputs[i % len(inputs)]
        with autocast():
            model(x, example)

    sounding = {"count": 0}

    def predict(i: int) -> None:
        with autocast():
            pred = model.predict(frames[i % len(frames)], audio[i % len(audio)], rate)
        sounding["count"] += int(pred.sounding)

    with torch.inference_mode():
        fwd = time_calls(ctx, forward, warmup=ctx.warmup, count=ctx.frames, stop_at=stop_at)
        pred = time_calls(ctx, predict, warmup=ctx.warmup, count=ctx.frames, stop_at=stop_at)
    return {
        "built": (
            f"avs.loading.load_model('config:{name}') on {ctx.device} (random weights, fp32 parameters); "
            + ("no autocast" if precision == "fp32" else f"run under torch.autocast({device_type}, {precision})")
        ),
        "parameters": model.num_parameters(),
        "image_size": model.config.image_size,
        "build_s": round(build_s, 2),
        "forward": {**fwd, "input": f"1 x 3 x {model.config.image_size} x {model.config.image_size} frame + "
                                     "1 x 1 x 96 x 64 log-mel (preprocessed, on the device)"},
        "predict": {**pred, "input": f"{w}x{h} uint8 frame + {window} samples at {rate} Hz (front end included)",
                    "sounding_frames": sounding["count"]},
    }


# ---------------------------------------------------------------------------------------------------------- main
def _parse_list(text: str, allowed: tuple[str, ...], what: str, parser: argparse.ArgumentParser) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        parser.error(f"{what} must be a comma-separated list of {', '.join(allowed)}, got {text!r}")
    return list(dict.fromkeys(items))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    precisions = _parse_list(args.precisions, FLOAT_PRECISIONS, "--precisions", parser)
    sections = _parse_list(args.sections, SECTIONS, "--sections", parser)
    size = _size(args.size, parser) if args.size else None
    if (args.frames is not None and args.frames < 1) or (args.warmup is not None and args.warmup < 0):
        parser.error("--frames must be >= 1 and --warmup >= 0")
    if not 1 <= args.instructions <= len(INSTRUCTIONS) or args.max_new_tokens < 1 or args.budget_s <= 0:
        parser.error(f"--instructions must be 1-{len(INSTRUCTIONS)}, --max-new-tokens and --budget-s positive")
    if args.brain_layers is not None and args.brain_layers < 1:
        parser.error("--brain-layers must be >= 1")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context(args, precisions, sections, size)
    report: dict[str, Any] = {
        "check": "gpu_check (issue 27, item 7): full-size configurations with random weights",
        "mode": "tiny" if ctx.tiny else "full",
        "device": args.device,
        "budget_s": ctx.budget_s,
        "precisions": precisions,
        "complete": False,
        "environment": environment(args.device),
        "sections": {},
    }
    if ctx.cuda and not torch.cuda.is_available():
        report["error"] = f"device {args.device!r} asked for, but CUDA is not available here"
        write_report(ctx, report)
        print(f"{PROG}: error: {report['error']}", file=sys.stderr)
        return 2
    if ctx.cuda:
        torch.cuda.set_device(torch.device(args.device))

    def _stop(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    memory_note = ("torch.cuda.max_memory_allocated, reset before each part: peak_mib includes the build, "
                   "timed_peak_mib the timed iterations only" if ctx.cuda else "CPU: no GPU memory counter (null)")
    status = 0
    try:
        if "trackgpt" in sections:
            report["sections"]["trackgpt_frame_path"] = {
                "what": "SAM encode + referring decode + propagation per frame (brain excluded)",
                "memory": memory_note, "results": {},
            }
            for precision in precisions:
                run_part(ctx, report, "trackgpt_frame_path", precision, "trackgpt",
                         lambda stop, p=precision: trackgpt_part(ctx, p, stop))
        if "avs" in sections:
            report["sections"]["avs"] = {
                "what": "AVS per frame with its audio: model forward, and predict (front end included)",
                "memory": memory_note, "results": {},
            }
            for precision in precisions:
                run_part(ctx, report, "avs", precision, "avs", lambda stop, p=precision: avs_part(ctx, p, stop))
        if "brain" in sections:
            report["sections"]["brain_reasoning"] = {
                "what": "instruction -> answer latency of the brain (generation + state pass + phi), random weights",
                "note": "random weights almost never emit EOS or <PO>: answers run to max_new_tokens "
                        "(generated_tokens, stopped_early say so)",
                "memory": memory_note, "results": {},
            }
            for precision in precisions:
                run_part(ctx, report, "brain_reasoning", precision, "brain",
                         lambda stop, p=precision: brain_part(ctx, p, stop))
            why = "switched off (--int4 off)" if args.int4 == "off" else int4_unavailable(ctx)
            if why:
                report["sections"]["brain_reasoning"]["results"]["int4"] = {"skipped": f"int4: {why}"}
            else:
                run_part(ctx, report, "brain_reasoning", "int4", "brain_int4",
                         lambda stop: brain_int4_part(ctx, stop))
        report["complete"] = True
    except (KeyboardInterrupt, SystemExit) as exc:
        report["stopped"] = str(exc) or type(exc).__name__
        status = 1
    finally:
        failed = [f"{s}.{k}" for s, sec in report["sections"].items() for k, r in sec["results"].items()
                  if "error" in r]
        report["failed_parts"] = failed
        write_report(ctx, report)
    if failed:
        status = 1
    print(f"gpu_check: wrote {args.out} in {report['elapsed_s']:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
