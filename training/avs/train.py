"""Train the robust AVS model (AVSBench-Robust: TPAVI + classifier-guided similarity gate + negatives).

Usage::

    python -m training.avs.train --config training/configs/avs-tiny.yaml [--set key=value ...] [--resume DIR]

Objective (paper Eq. 9): ``L = lambda1 * L_BCE + L_Seg + lambda2 * L_AVM`` over positive pairs and the
negative proportion (default 10 %) drawn by :class:`avs.negatives.NegativeAudioGenerator`:

* ``L_Seg``: BCE of the mask logits on the annotated frames (S4 train: frame 1, MS3: all five), against the
  ground truth for positives and EMPTY masks for negatives (which is what suppresses their masks);
* ``L_AVM``: the AVSBench audio-visual matching KL over the TPAVI stages, positive pairs only;
* ``L_BCE``: the gate's BCE, label 1 for positive and 0 for negative pairs (0 with ``gate: off``, the baseline).

The pieces are :mod:`avs.losses`' functions; they are composed here because ``total_loss`` has no way to
restrict ``L_Seg`` to the annotated frames. The model comes from the ``avs`` library's registry
(``model.config``: tiny / embedded / resnet50-vggish / pvt-v2-b5-vggish; ``model.overrides``: AVSConfig fields,
e.g. ``{gate: "off"}`` for the baseline), so ``model/`` of a run loads with ``AVSModel.from_pretrained`` and in
``avs_node`` (``model:=<run>/model``).

Evaluation (every ``eval.every`` steps and at the end): the AVSBench mIoU / F-score of positives and
AVSBench-Robust's G-mIoU, G-F, G-FPR and per-condition FPR (``perception_eval.metrics``), on the predictions
the node would publish: the mask only where the gate says "sounding" (the baseline publishes every mask).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avs import AVSModel, get_config
from avs.errors import AVSError
from avs.loading import load_model
from avs.losses import avm_loss, gate_bce_loss, segmentation_loss
from perception_eval.datasets import DatasetError
from perception_eval.metrics import RobustClip, avs_miou, evaluate_robust

from ..common.config import deep_merge
from ..common.errors import SetupError
from ..common.loop import COMMON_DEFAULTS, BatchKeys, Task
from ..common.loop import main as loop_main
from .data import FRAMES, AVSEvalData, AVSTrainData, collate

DEFAULTS: dict[str, Any] = deep_merge(
    COMMON_DEFAULTS,
    {
        "output_dir": "runs/avs",
        "model": {
            "config": "tiny",  # avs registry: tiny | embedded | resnet50-vggish | pvt-v2-b5-vggish
            "overrides": {},  # AVSConfig fields, e.g. {gate: "off"} (baseline) or {gate: "scaled_cosine"}
            # a model folder (save_pretrained) to start from instead of random weights; with it, overrides may only
            # change the gate's fields (e.g. a gated model started from an un-gated baseline: the gate starts fresh)
            "init_from": None,
            "backbone_weights": None,  # torchvision ResNet-50 / timm or official PVT-v2 weights (.pth/.safetensors)
            "audio_weights": None,  # torchvggish vggish-*.pth
            "pca_params": None,  # torchvggish PCA parameters (only with vggish_postprocess)
            "freeze_backbone": False,
            "freeze_audio_encoder": False,  # AVSBench freezes the pretrained VGGish
        },
        "data": {
            "s4_root": None,  # AVSBench S4 root (s4_meta_data.csv); null to skip
            "ms3_root": None,  # AVSBench MS3 root (ms3_meta_data.csv); null to skip
            "train_split": "train",
            "eval_split": "val",
            "audio": "any",  # reader rule for each clip's own audio: any | wav | log_mel
            "clip_length": 5,  # frames TPAVI attends over together: 5 (AVSBench) or 1 (as the node runs)
            "hflip": 0.0,
            "num_workers": 0,
            "negatives": {
                "proportion": 0.1,  # paper: 10 % negative pairs
                "kind_weights": {"silence": 1.0, "noise": 1.0, "offscreen": 1.0},
                "category_groups": "s4",  # off-screen audio from another major category: s4 | null | {label: group}
            },
            "mixed": {"proportion": 0.0, "snr_db": 0.0},  # positives with noise mixed in (stay positive)
            "visible_csv": None,  # CSV name,visible (on-screen categories, ";"-separated): off-screen audio avoids them
        },
        "loss": {
            "lambda_bce": 1.0,  # lambda1 (paper gives no value)
            "lambda_avm": 0.5,  # lambda2 (AVSBench MS3 --lambda_1 0.5)
            "avm_reduction": "sum",  # sum (AVSBench code) | batchmean
            "lambda_category": 0.0,  # auxiliary: clip category from pooled F_4 (training-only head); 0 = off
        },
        "optim": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8},
        "schedule": {"name": "constant", "warmup_steps": 0, "min_lr_ratio": 0.0},
        "train": {"steps": 1000, "batch_size": 4, "grad_clip": 0.0, "log_every": 10},
        "eval": {
            "every": 0,
            "max_clips": 64,
            "batch_size": 4,  # clips per forward pass
            "conditions": ["positive", "silence", "noise", "offscreen"],  # (+ mixed with a robust CSV that has it)
            "robust_root": None,  # AVSBench-Robust root (robust_<split>.csv); null: negatives generated
            "robust_subset": "s4",
            "best_metric": "G-mIoU",
            "best_mode": "max",
        },
    },
    strict=False,
)


class AVSTrainModule(nn.Module):
    """The model plus its loss: ``forward(batch) -> {"loss", "loss_seg", "loss_avm", "loss_bce", "loss_category"}``.

    Frozen parts (``freeze_*``) stay in eval mode, so their normalisation statistics do not drift.

    With ``loss.lambda_category > 0`` and ``num_categories`` classes, a linear head (``category_head``, training
    only: not exported) classifies each frame's clip category from the average-pooled last backbone stage F_4,
    the features the gate compares with the audio (cross-entropy, frames without a category ignored). Why: a
    backbone trained from scratch for segmentation does not encode which categories are on screen (measured on
    the generated world: a linear probe of the visible categories from pooled F_4 was at chance), so the gate's
    cosine has nothing to tell an off-screen sound from an on-screen one; the paper's backbones are pretrained
    on ImageNet and do.
    """

    def __init__(
        self,
        model: AVSModel,
        *,
        loss: dict[str, Any],
        clip_length: int,
        frozen: Sequence[str] = (),
        num_categories: int = 0,
    ):
        super().__init__()
        self.model = model
        self.loss_cfg = dict(loss)
        self.clip_length = int(clip_length)
        self.frozen = tuple(frozen)
        weight = float(self.loss_cfg.get("lambda_category", 0.0))
        self.category_head = (
            nn.Linear(model.backbone.channels[3], num_categories) if weight > 0 and num_categories > 1 else None
        )
        for name in self.frozen:
            getattr(model, name).requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen:
            getattr(self.model, name).eval()
        return self

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.model(batch["frames"], batch["audio"], clip_length=self.clip_length)
        has_gt = batch["has_gt"]
        seg = segmentation_loss(out.mask_logits[has_gt], batch["gt"][has_gt])
        positive = batch["label"] > 0.5
        avm = avm_loss(
            out.mask_logits, out.fused, out.audio_aligned, select=positive, reduction=self.loss_cfg["avm_reduction"]
        )
        if out.gate_logit is not None:
            bce = gate_bce_loss(out.gate_logit, batch["label"])
        else:
            bce = seg.new_zeros(())
        total = float(self.loss_cfg["lambda_bce"]) * bce + seg + float(self.loss_cfg["lambda_avm"]) * avm
        category = seg.new_zeros(())
        if self.category_head is not None and bool((known := batch["category"] >= 0).any()):
            logits = self.category_head(out.visual_pooled[known])
            category = F.cross_entropy(logits, batch["category"][known])
            total = total + float(self.loss_cfg["lambda_category"]) * category
        return {"loss": total, "loss_seg": seg, "loss_avm": avm, "loss_bce": bce, "loss_category": category}


class AVSTask(Task):
    name = "avs"
    plot_metrics = ("mIoU", "F", "G-mIoU", "G-F", "G-FPR", "gate_acc")

    def setup(self) -> None:
        cfg = self.config
        m, data = cfg["model"], cfg["data"]
        if int(data["clip_length"]) not in (1, FRAMES):
            raise SetupError(f"data.clip_length must be 1 or {FRAMES}, got {data['clip_length']}")
        for key in ("backbone_weights", "audio_weights", "pca_params"):
            if m.get(key) and not Path(m[key]).is_file():
                raise SetupError(f"model.{key} {str(m[key])!r} does not exist")
        if m.get("init_from"):
            folder = Path(m["init_from"])
            if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
                raise SetupError(
                    f"model.init_from {str(folder)!r} is not an AVS model folder (config.json + model.safetensors)"
                )
        try:
            self.model_config = (
                load_model(m["init_from"], gate_overrides=m.get("overrides")).config
                if m.get("init_from")
                else get_config(m["config"], **dict(m.get("overrides") or {}))
            )
        except AVSError as exc:
            raise SetupError(f"model: {exc}") from exc
        if self.model_config.num_classes != 1:
            raise SetupError(
                f"model has num_classes={self.model_config.num_classes} (a semantic AVSS model): this pipeline trains "
                "one-mask models (S4/MS3 imports, registered configurations)"
            )
        size = self.model_config.image_size
        try:
            self.train_data = AVSTrainData(data, image_size=size, seed=int(cfg["seed"]))
            self.eval_data = AVSEvalData(data, cfg["eval"], image_size=size, seed=int(cfg["seed"]))
        except DatasetError as exc:
            raise SetupError(f"dataset: {exc}") from exc
        if not len(self.eval_data):
            print(
                f"warning: no evaluation samples in split {data['eval_split']!r}; evaluation is skipped",
                file=sys.stderr,
            )

    def samples_per_epoch(self) -> int:
        return len(self.train_data)

    def build_module(self) -> nn.Module:
        m = self.config["model"]
        try:
            if m.get("init_from"):
                model = load_model(m["init_from"], gate_overrides=m.get("overrides"))
                for what, keys in model.gate_load_report.items():
                    if keys:
                        print(f"model.init_from: gate weights {what}: {', '.join(keys)}", file=sys.stderr)
            else:
                model = load_model(f"config:{m['config']}", config_overrides=m.get("overrides"))
            if m.get("backbone_weights"):
                model.load_backbone_weights(m["backbone_weights"])
            if m.get("audio_weights"):
                model.load_audio_weights(m["audio_weights"], pca_params=m.get("pca_params"))
        except AVSError as exc:
            raise SetupError(f"model: {exc}") from exc
        frozen = [
            name
            for name, flag in (("backbone", m["freeze_backbone"]), ("audio_encoder", m["freeze_audio_encoder"]))
            if flag
        ]
        module = AVSTrainModule(
            model,
            loss=self.config["loss"],
            clip_length=self.config["data"]["clip_length"],
            frozen=frozen,
            num_categories=len(self.train_data.categories),
        )
        if module.category_head is not None:
            print(
                f"auxiliary category loss: {len(self.train_data.categories)} categories "
                f"({', '.join(self.train_data.categories)}), lambda {self.config['loss']['lambda_category']}",
                file=sys.stderr,
            )
        elif float(self.config["loss"].get("lambda_category", 0.0)) > 0:
            print(
                "warning: loss.lambda_category > 0 but the training clips have < 2 categories: no category loss",
                file=sys.stderr,
            )
        return module.train()

    def micro_batches(self, start: int, *, rank: int, world: int, generator: torch.Generator) -> Iterator[Any]:
        data = self.config["data"]
        keys = BatchKeys(start, batch_size=int(self.config["train"]["batch_size"]), rank=rank, world=world)
        loader = torch.utils.data.DataLoader(
            self.train_data,
            batch_sampler=keys,
            collate_fn=collate,
            num_workers=int(data["num_workers"]),
            generator=generator,
            persistent_workers=False,
        )
        return iter(loader)

    @torch.no_grad()
    def evaluate(self, module: nn.Module, step: int) -> dict[str, float]:
        if not len(self.eval_data):
            return {}
        model: AVSModel = module.model
        device = next(model.parameters()).device
        clip_length = int(self.config["data"]["clip_length"])
        per_batch = max(1, int(self.config["eval"]["batch_size"]))
        items = self.eval_data.items
        clips: list[RobustClip] = []
        ungated: list[tuple[np.ndarray, np.ndarray]] = []
        correct = total = 0
        for i in range(0, len(items), per_batch):
            group = items[i : i + per_batch]
            frames = torch.cat([torch.from_numpy(it.frames).permute(0, 3, 1, 2).float() / 255.0 for it in group])
            audio = torch.cat([it.audio for it in group])
            out = model(frames.to(device), audio.to(device), clip_length=clip_length)
            prob = torch.sigmoid(out.mask_logits[:, 0].float()).cpu().numpy()
            sounding = out.sounding.cpu().numpy()
            for k, it in enumerate(group):
                p = prob[k * FRAMES : (k + 1) * FRAMES]
                s = sounding[k * FRAMES : (k + 1) * FRAMES]
                m = it.reference.shape[0]
                published = p * s[:, None, None]
                clips.append(RobustClip(it.condition, published[:m], it.reference, it.name))
                positive = it.condition in ("positive", "mixed")
                if it.condition == "positive":
                    ungated.append((p[:m], it.reference))
                correct += int(np.sum(s == positive))
                total += len(s)
        metrics: dict[str, float] = {}
        if ungated:
            metrics["mIoU_ungated"] = avs_miou([p for p, _ in ungated], [g for _, g in ungated])
        try:
            report = evaluate_robust(clips)
        except ValueError:  # no positives: nothing global to report
            return metrics
        metrics.update({"mIoU": report.positive["mIoU"], "F": report.positive["F"]})
        if report.overall:
            metrics.update({k: report.overall[k] for k in ("G-mIoU", "G-F", "G-FPR", "mIoU_N", "F_N")})
            for condition, block in report.per_condition.items():
                metrics[f"FPR_{condition}"] = block["FPR"]
        if report.mixed:
            metrics["mIoU_mixed"] = report.mixed["mIoU"]
        if self.model_config.gate != "off":
            metrics["gate_acc"] = correct / max(total, 1)
        return metrics

    def export(self, module: nn.Module, folder: Path) -> None:
        module.model.save_pretrained(folder)


def main(argv: Sequence[str] | None = None) -> int:
    return loop_main(
        argv,
        prog="python -m training.avs.train",
        description=__doc__,
        defaults=copy.deepcopy(DEFAULTS),
        task_cls=AVSTask,
    )


if __name__ == "__main__":
    raise SystemExit(main())
