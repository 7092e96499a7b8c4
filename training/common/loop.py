"""The resumable training loop both scripts share, and their command line.

A :class:`Task` (one per model: ``training/avs/train.py``, ``training/trackgpt/train.py``) says how to check
and read its data, build the training module, run one step, evaluate and export. :func:`run` does the rest:

1. ``task.setup`` checks every path and reads the datasets -- BEFORE the model is built, so a wrong path fails
   in seconds with a message naming it (:class:`~training.common.errors.SetupError`);
2. accelerate (multi-GPU with DDP or DeepSpeed, mixed precision; plain CPU needs no ``accelerate launch``);
3. optimizer and warm-up/decay schedule over the task's parameter groups;
4. resume: model (trainable part), optimizer, scheduler, random states and the data position from one
   checkpoint dict, so steps ``k+1..n`` after a resume are those of an uninterrupted run;
5. the loop: gradient accumulation, clipping, a tqdm bar, ``train_log.csv`` rows, periodic evaluation
   (``eval_log.csv``, ``best/`` export), periodic checkpoints, a checkpoint on Ctrl-C;
6. at the end: the final checkpoint, ``model/`` exported with the library's ``save_pretrained`` (loads in the
   nodes as their ``model`` parameter) with ``training_config.yaml`` beside it, and ``curves.png``.

Data position: micro-batch ``m`` of the run (``m = step * grad_accum + j``) always holds the samples number
``m * B * W + rank * B + i`` (``B`` batch per process, ``W`` processes) of the task's deterministic sample
stream, so resuming at step ``k`` just starts the stream at ``k * grad_accum``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CHECKPOINTS, find_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, apply_overrides, deep_merge, diff_keys, dump_config, load_config, read_yaml
from .errors import SetupError
from .logs import MetricsLog, plot_curves
from .state import capture_rng, restore_rng, seed_everything

#: Keys every run has (the tasks add ``model``, ``data``, ``loss`` and more).
COMMON_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output_dir": "runs/run",
    "progress": True,
    "threads": None,  # torch CPU threads (null = torch's default); 1 avoids OpenMP stalls on a busy 2-core machine
    "train": {
        "steps": 100,  # optimizer steps (ignored when epochs is set)
        "epochs": None,  # if set: steps = ceil(epochs * samples_per_epoch / (batch_size * processes * grad_accum))
        "batch_size": 2,  # samples per process per micro-batch
        "grad_accum": 1,  # micro-batches per optimizer step
        "grad_clip": 0.0,  # max gradient norm (0 = off)
        "log_every": 10,  # steps between train_log.csv rows
    },
    "optim": {"name": "adamw", "lr": 1e-4, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8},
    "schedule": {"name": "constant", "warmup_steps": 0, "min_lr_ratio": 0.0},
    "eval": {"every": 0, "best_metric": None, "best_mode": "max"},  # every: steps between evaluations (0 = end only)
    "checkpoint": {"every": 100, "keep_last": 2},
    "accelerate": {
        "mixed_precision": "no",  # no | fp16 | bf16
        "cpu": False,  # force CPU even when a GPU is there
        "deepspeed_config": None,  # path of a DeepSpeed JSON config (LVLM stages); needs deepspeed installed
        "find_unused_parameters": True,  # DDP: some heads are unused in some steps (e.g. image-only stage 1)
    },
}

#: Keys that may change when resuming (everything else must equal the checkpoint's config).
RESUME_MUTABLE = (
    "output_dir",
    "train.steps",
    "train.epochs",
    "train.log_every",
    "eval",
    "checkpoint",
    "progress",
    "data.num_workers",
    "accelerate.cpu",
    "threads",
)


class BatchKeys:
    """Infinite batch sampler, the data position rule above: micro-batch ``m`` holds samples ``m*B*W + rank*B + i``."""

    def __init__(self, start: int, *, batch_size: int, rank: int, world: int):
        self.start, self.batch_size, self.rank, self.world = int(start), int(batch_size), int(rank), int(world)

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        while True:
            base = m * self.batch_size * self.world + self.rank * self.batch_size
            yield list(range(base, base + self.batch_size))
            m += 1


class Task:
    """What a training script provides to :func:`run` (see the module docstring)."""

    name = "task"
    #: evaluation columns drawn in curves.png (None = all)
    plot_metrics: Sequence[str] | None = None

    def __init__(self, config: dict[str, Any]):
        self.config = config

    def setup(self) -> None:
        """Check every path and read the datasets; raise :class:`SetupError` naming what is wrong."""
        raise NotImplementedError

    def samples_per_epoch(self) -> int:
        raise NotImplementedError

    def build_module(self) -> nn.Module:
        """The training module: ``forward(batch) -> {"loss": total, "loss_<part>": ...}``."""
        raise NotImplementedError

    def param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        """Optimizer groups: ``{"params": [...], "lr_scale": 1.0, "weight_decay": ...}`` (trainable only)."""
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]

    def micro_batches(self, start: int, *, rank: int, world: int, generator: torch.Generator) -> Iterator[Any]:
        """Micro-batches ``start, start + 1, ...`` for this process (see the data-position rule)."""
        raise NotImplementedError

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return _to_device(batch, device)

    def evaluate(self, module: nn.Module, step: int) -> dict[str, float]:
        """Metrics of the current model (called in eval mode, under ``torch.no_grad``)."""
        return {}

    def export(self, module: nn.Module, folder: Path) -> None:
        """Save the model with its library's ``save_pretrained``."""
        raise NotImplementedError

    def model_state(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """What the checkpoint keeps of the module: trainable parameters and all buffers."""
        return trainable_state(module)

    def load_model_state(self, module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        load_trainable_state(module, state)


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters with ``requires_grad`` and every buffer, detached on CPU."""
    out = {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}
    out.update({f"buffer:{n}": b.detach().cpu().clone() for n, b in module.named_buffers()})
    return out


def load_trainable_state(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Inverse of :func:`trainable_state`; the set of names must match exactly."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    buffers = {f"buffer:{n}": b for n, b in module.named_buffers()}
    expected = set(params) | set(buffers)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise SetupError(
            "checkpoint does not fit the model: "
            + (f"missing {missing[:5]}{'...' if len(missing) > 5 else ''} " if missing else "")
            + (f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}" if unexpected else "")
        )
    with torch.no_grad():
        for name, tensor in state.items():
            target = params.get(name) if name in params else buffers[name]
            if target.shape != tensor.shape:
                raise SetupError(
                    f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, model {tuple(target.shape)}"
                )
            target.copy_(tensor.to(target.device, target.dtype))


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [_to_device(v, device) for v in batch]
    if isinstance(batch, tuple):
        return tuple(_to_device(v, device) for v in batch)
    return batch


# --------------------------------------------------------------------------- optimizer and schedule
def build_optimizer(groups: list[dict[str, Any]], optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over ``groups`` (each may carry ``lr_scale`` and its own ``weight_decay``)."""
    name = str(optim["name"]).lower()
    lr = float(optim["lr"])
    prepared = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad]
        if not params:
            continue
        g = {k: v for k, v in group.items() if k not in ("params", "lr_scale")}
        g.setdefault("weight_decay", float(optim.get("weight_decay", 0.0)))
        prepared.append({"params": params, "lr": lr * float(group.get("lr_scale", 1.0)), **g})
    if not prepared:
        raise SetupError("nothing to train: the model has no trainable parameters")
    betas = tuple(float(b) for b in optim.get("betas", (0.9, 0.999)))
    eps = float(optim.get("eps", 1e-8))
    if name == "adamw":
        return torch.optim.AdamW(prepared, lr=lr, betas=betas, eps=eps)
    if name == "adam":
        return torch.optim.Adam(prepared, lr=lr, betas=betas, eps=eps)
    if name == "sgd":
        return torch.optim.SGD(prepared, lr=lr, momentum=0.9)
    raise ConfigError(f"optim.name must be adamw, adam or sgd, got {optim['name']!r}")


def lr_factor(step: int, *, total: int, name: str, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the base learning rate before optimizer step ``step + 1`` (``step`` counts from 0)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    span = max(1, total - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    if name == "linear":
        return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)
    if name == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"schedule.name must be constant, linear or cosine, got {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any], total: int):
    name = str(schedule["name"]).lower()
    lr_factor(0, total=total, name=name, warmup_steps=0, min_lr_ratio=0.0)  # validates the name
    kwargs = dict(
        total=total,
        name=name,
        warmup_steps=int(schedule.get("warmup_steps", 0)),
        min_lr_ratio=float(schedule.get("min_lr_ratio", 0.0)),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, **kwargs))


# --------------------------------------------------------------------------- accelerate
def make_accelerator(cfg: Mapping[str, Any], *, grad_accum: int, batch_size: int, grad_clip: float):
    """An ``accelerate.Accelerator`` for the run (single CPU process needs no ``accelerate launch``)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    kwargs: dict[str, Any] = {
        "mixed_precision": str(cfg.get("mixed_precision", "no")),
        "cpu": bool(cfg.get("cpu", False)),
        "kwargs_handlers": [
            DistributedDataParallelKwargs(find_unused_parameters=bool(cfg.get("find_unused_parameters", True)))
        ],
    }
    ds_path = cfg.get("deepspeed_config")
    if ds_path:
        ds_file = Path(ds_path)
        if not ds_file.is_file():
            raise SetupError(f"accelerate.deepspeed_config {str(ds_file)!r} does not exist")
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise SetupError(
                "accelerate.deepspeed_config is set but the deepspeed package is not installed "
                "(pip install deepspeed on the GPU machine), or set accelerate.deepspeed_config=null"
            ) from None
        from accelerate import DeepSpeedPlugin

        plugin = DeepSpeedPlugin(hf_ds_config=str(ds_file))
        ds = plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = batch_size
        ds["gradient_accumulation_steps"] = grad_accum
        ds["gradient_clipping"] = grad_clip if grad_clip > 0 else ds.get("gradient_clipping", 1.0)
        kwargs["deepspeed_plugin"] = plugin
    try:
        return Accelerator(**kwargs)
    except (ValueError, RuntimeError) as exc:
        raise SetupError(f"accelerate: {exc}") from exc


# --------------------------------------------------------------------------- the loop
def total_steps(config: Mapping[str, Any], samples_per_epoch: int, world: int) -> int:
    train = config["train"]
    if train.get("epochs") is not None:
        per_step = int(train["batch_size"]) * world * int(train["grad_accum"])
        return max(1, math.ceil(float(train["epochs"]) * samples_per_epoch / per_step))
    return int(train["steps"])


def run(task: Task, *, resume: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train ``task`` (see the module docstring). Returns a summary (steps, last metrics, paths)."""
    return _TrainingRun(task, resume=resume, overwrite=overwrite).train()


class _TrainingRun:
    """One run of :func:`run`: set-up and resume (the constructor), the step loop (:meth:`train`), evaluation,
    checkpoints and the final export."""

    def __init__(self, task: Task, *, resume: str | Path | None, overwrite: bool) -> None:
        self.task = task
        self.cfg = cfg = task.config
        self.out = out = Path(cfg["output_dir"])
        train = cfg["train"]
        self.accum, self.batch_size = int(train["grad_accum"]), int(train["batch_size"])
        if self.accum < 1 or self.batch_size < 1:
            raise ConfigError("train.grad_accum and train.batch_size must be at least 1")
        state = None
        if resume is not None:
            state = load_checkpoint(find_checkpoint(resume))
        elif (out / CHECKPOINTS).is_dir() and any((out / CHECKPOINTS).iterdir()):
            if not overwrite:
                raise SetupError(
                    f"output_dir {str(out)!r} already holds checkpoints: resume with --resume {out}, "
                    "pick another output_dir, or pass --overwrite"
                )
            shutil.rmtree(out / CHECKPOINTS)

        if cfg.get("threads"):
            torch.set_num_threads(int(cfg["threads"]))
        task.setup()  # every path checked and every dataset read before anything heavy

        self.accelerator = accelerator = make_accelerator(
            cfg["accelerate"], grad_accum=self.accum, batch_size=self.batch_size, grad_clip=float(train["grad_clip"])
        )
        self.rank, self.world, self.main = (
            accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
        )
        self.steps = total_steps(cfg, task.samples_per_epoch(), self.world)
        seed_everything(int(cfg["seed"]))
        module = task.build_module()
        optimizer = build_optimizer(task.param_groups(module), cfg["optim"])
        self.scheduler = build_scheduler(optimizer, cfg["schedule"], self.steps)
        self.module, self.optimizer = accelerator.prepare(module, optimizer)
        self.raw = accelerator.unwrap_model(self.module)
        self.deepspeed = accelerator.state.deepspeed_plugin is not None

        self.start, self.best = 0, {"value": None, "step": None}
        if state is not None:
            self._restore(state, resume)
        if self.main:
            out.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, out / "config.yaml")
        keep = self.start if state is not None else None
        self.train_log = MetricsLog(out / "train_log.csv", keep_until=keep) if self.main else None
        self.eval_log = MetricsLog(out / "eval_log.csv", keep_until=keep) if self.main else None
        self.per_epoch = max(1, task.samples_per_epoch())
        self.samples_per_micro = self.batch_size * self.world

    def _restore(self, state: dict[str, Any], resume: str | Path) -> None:
        """Model, optimizer, scheduler, random states and the data position of a checkpoint."""
        if state.get("world") not in (None, self.world):
            print(
                f"warning: checkpoint was written with {state['world']} processes, now {self.world}: the data order "
                "after the resume differs from an uninterrupted run",
                file=sys.stderr,
            )
        if self.deepspeed:
            self.accelerator.load_state(str(find_checkpoint(resume) / "accelerate"))
        else:
            self.task.load_model_state(self.raw, state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        self.start = int(state["step"])
        self.best = dict(state.get("best") or self.best)
        restore_rng(state["rng"])

    def data_position(self, step: int) -> dict[str, Any]:
        samples = step * self.accum * self.samples_per_micro
        return {
            "micro_batches": step * self.accum,
            "samples": samples,
            "epoch": samples / self.per_epoch,
            "samples_per_epoch": self.per_epoch,
        }

    def checkpoint(self, step: int) -> None:
        out = self.out
        if self.deepspeed:
            self.accelerator.save_state(str(out / CHECKPOINTS / f".ds_{step}"))
            self.accelerator.wait_for_everyone()
        if not self.main:
            return
        payload = {
            "step": step,
            "epoch": self.data_position(step)["epoch"],
            "world": self.world,
            "model": {} if self.deepspeed else self.task.model_state(self.raw),
            "optimizer": {} if self.deepspeed else self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "rng": capture_rng(),
            "data": self.data_position(step),
            "best": self.best,
        }

        def move_ds(folder: Path) -> None:
            if self.deepspeed:
                (out / CHECKPOINTS / f".ds_{step}").rename(folder / "accelerate")

        keep_last = int(self.cfg["checkpoint"]["keep_last"])
        save_checkpoint(out, payload, self.cfg, keep_last=keep_last, extra_writer=move_ds)

    def evaluate(self, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.main:
            self.raw.eval()
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]), torch.no_grad():  # evaluation never moves the random states
                metrics = self.task.evaluate(self.raw, step)
            self.raw.train()
            if metrics:
                self.eval_log.append(
                    {
                        "step": step,
                        "epoch": round(self.data_position(step)["epoch"], 4),
                        **metrics,
                        "eval_seconds": round(time.perf_counter() - t0, 2),
                    }
                )
                self._keep_best(step, metrics)
        self.accelerator.wait_for_everyone()
        return metrics

    def _keep_best(self, step: int, metrics: dict[str, float]) -> None:
        key = self.cfg["eval"].get("best_metric")
        if not key or key not in metrics or not math.isfinite(metrics[key]):
            return
        best = self.best["value"]
        value = metrics[key]
        better = best is None or (value > best if self.cfg["eval"]["best_mode"] == "max" else value < best)
        if better:
            self.best.update(value=float(value), step=step)
            self.task.export(self.raw, self.out / "best")
            dump_config(self.cfg, self.out / "best" / "training_config.yaml")

    def _optimizer_step(self, batches: Iterator[Any], step: int) -> tuple[dict[str, float], float]:
        """``grad_accum`` micro-batches and one optimizer step; returns the mean losses and the learning rate."""
        accum, grad_clip = self.accum, float(self.cfg["train"]["grad_clip"])
        sums: dict[str, float] = {}
        for j in range(accum):
            batch = self.task.to_device(next(batches), self.accelerator.device)
            sync = self.accelerator.no_sync(self.module) if (j < accum - 1 and not self.deepspeed) else _null()
            with sync:
                losses = self.module(batch)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {float(loss)} at step {step + 1}; stopping")
                self.accelerator.backward(loss / accum if not self.deepspeed else loss)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
        if grad_clip > 0 and not self.deepspeed:
            self.accelerator.clip_grad_norm_(self.module.parameters(), grad_clip)
        self.optimizer.step()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums, lr

    def train(self) -> dict[str, Any]:
        cfg, steps = self.cfg, self.steps
        generator = torch.Generator().manual_seed(int(cfg["seed"]))
        batches = self.task.micro_batches(
            self.start * self.accum, rank=self.rank, world=self.world, generator=generator
        )
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps, initial=self.start, disable=not (self.main and cfg.get("progress", True)),
            desc=self.task.name, dynamic_ncols=True,
        )
        log_every, eval_every, ckpt_every = (
            int(cfg["train"]["log_every"]),
            int(cfg["eval"]["every"]),
            int(cfg["checkpoint"]["every"]),
        )
        window: dict[str, float] = {}
        window_steps, window_time = 0, 0.0
        last_metrics: dict[str, float] = {}
        step = self.start
        self.module.train()
        try:
            while step < steps:
                t0 = time.perf_counter()
                sums, lr = self._optimizer_step(batches, step)
                step += 1
                dt = time.perf_counter() - t0
                for k, v in sums.items():
                    window[k] = window.get(k, 0.0) + v
                window_steps += 1
                window_time += dt
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss']:.4f}", lr=f"{lr:.2e}")
                if self.main and (step % log_every == 0 or step == steps):
                    row = {"step": step, "epoch": round(self.data_position(step)["epoch"], 4), "lr": lr}
                    row.update({k: v / window_steps for k, v in window.items()})
                    row["sec_per_step"] = window_time / window_steps
                    row["samples_per_sec"] = self.accum * self.samples_per_micro * window_steps / max(window_time, 1e-9)
                    self.train_log.append(row)
                    window, window_steps, window_time = {}, 0, 0.0
                if eval_every > 0 and step % eval_every == 0 and step != steps:
                    last_metrics = self.evaluate(step) or last_metrics
                if ckpt_every > 0 and step % ckpt_every == 0 and step != steps:
                    self.checkpoint(step)
        except KeyboardInterrupt:
            bar.close()
            self.checkpoint(step)
            print(f"\ninterrupted: checkpoint of step {step} saved; continue with --resume {self.out}", file=sys.stderr)
            raise
        bar.close()
        last_metrics = self.evaluate(step) or last_metrics
        self.checkpoint(step)
        return self._finish(step, last_metrics)

    def _finish(self, step: int, last_metrics: dict[str, float]) -> dict[str, Any]:
        """The final export (``model/``, its config, ``curves.png``) and the run's summary."""
        out = self.out
        summary: dict[str, Any] = {"steps": step, "output_dir": str(out), "metrics": last_metrics, "best": self.best}
        if self.main:
            self.task.export(self.raw, out / "model")
            dump_config(self.cfg, out / "model" / "training_config.yaml")
            summary["model"] = str(out / "model")
            try:
                summary["curves"] = str(
                    plot_curves(
                        out / "train_log.csv",
                        out / "eval_log.csv",
                        out / "curves.png",
                        title=f"{self.task.name}: {out.name}",
                        metrics=self.task.plot_metrics,
                    )
                )
            except Exception as exc:  # a plotting problem must not lose a finished run
                print(f"warning: curves.png not written: {exc}", file=sys.stderr)
        self.accelerator.wait_for_everyone()
        return summary


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------- command line
def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML file of the run (training/configs/*.yaml); defaults otherwise")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (dotted, value parsed as YAML); repeatable",
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        help="continue a run exactly: its output folder (uses checkpoints/last) or a checkpoint "
        "folder; the config comes from the checkpoint (only run-control keys may be --set)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if output_dir already holds checkpoints (they are deleted)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def resolve_config(args: argparse.Namespace, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The run's config: defaults + file + --set, or, with --resume, the checkpoint's + run-control --set."""
    if args.resume:
        folder = find_checkpoint(args.resume)
        saved = deep_merge(defaults, read_yaml(folder / "config.yaml"))
        if args.config:
            raise ConfigError(
                "--resume takes the config from the checkpoint; drop --config (use --set for "
                f"{', '.join(RESUME_MUTABLE)})"
            )
        config = apply_overrides(saved, args.overrides, defaults)
        changed = [
            k for k in diff_keys(saved, config) if not any(k == m or k.startswith(m + ".") for m in RESUME_MUTABLE)
        ]
        if changed:
            raise ConfigError(f"cannot change {', '.join(changed)} when resuming (only {', '.join(RESUME_MUTABLE)})")
    else:
        config = load_config(args.config, defaults, args.overrides)
    if args.no_progress:
        config["progress"] = False
    return config


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None, *, prog: str, description: str, defaults: Mapping[str, Any], task_cls) -> int:
    """Parse the command line, run, print a summary; errors in setup print one line and return 2."""
    from perception_eval.datasets import DatasetError

    parser = build_parser(prog, description)
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a scheduler's pre-emption, `kill`, `timeout`) stops like Ctrl-C: the checkpoint is saved first
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        config = resolve_config(args, defaults)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(config, sort_keys=False), end="")
            return 0
        summary = run(task_cls(config), resume=args.resume, overwrite=args.overwrite)
    except (SetupError, ConfigError, DatasetError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"{prog}: {summary['steps']} steps; model: {summary.get('model')}; curves: {summary.get('curves')}")
    if summary.get("metrics"):
        print("  " + ", ".join(f"{k}={v:.4f}" for k, v in summary["metrics"].items() if isinstance(v, float)))
    return 0
