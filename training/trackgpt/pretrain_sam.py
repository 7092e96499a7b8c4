"""Pre-train a SAM of any size on class-agnostic object masks: a point or a box in, the object's mask out.

Usage::

    python -m training.trackgpt.pretrain_sam --config training/configs/embedded/sam.yaml [--set key=value ...]
    python -m training.trackgpt.pretrain_sam --resume data/runs/sam-embedded

The full-size TrackGPT starts from an official SAM checkpoint (``sam_vit_h_4b8939.pth``), trained on SA-1B for
promptable segmentation. No checkpoint exists for a reduced SAM (the embedded model's ViT of embed 192, depth 4
at 256 px) and none can be downloaded here, so this script makes one the way SAM was made (Kirillov et al.
2023, Sec. 3): sample an object of a frame, prompt the model with a box or with points, train the mask. The data
are the object masks of any dataset in the Ref-YouTube-VOS / DAVIS layout (``<root>/<split>/JPEGImages``,
``Annotations`` with ids 1..K, 255 void), the generated instruction world by default; every annotated object
of every frame is a target, whatever the expressions say.

The result, ``<output_dir>/model/sam.pth``, is a plain state dict under the official names (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``) loaded with ``weights_only=True``, so TrackGPT takes it like the
official file: ``model.overrides: {sam: {checkpoint: .../sam.pth}}`` in a TrackGPT training config.

Simplifications of SAM's recipe: one mask output (mask token 0, the one TrackGPT decodes) instead of three for
ambiguous prompts, and no iterative point sampling from the error region. A micro-batch uses one prompt kind so
its prompts stack: a box (the mask's bounding box, each side moved by noise of ``box_noise`` x its length, at
most ``box_noise_max`` pixels, as SAM), or 1 to ``max_points`` points (the first inside the object, each other
one inside with probability ``positive_prob``, else outside it); ``box_prob`` picks the kind. Loss: the same
``2.0 x BCE + 0.5 x Dice`` as TrackGPT's mask loss (padding and void left out) plus the MSE of SAM's IoU head
against the mask's IoU (``lambda_iou``).

Evaluation (``eval.split``, a fixed sample of ``eval.max_items`` objects): mIoU from a box prompt
(``mIoU_box``) and from one point inside the object (``mIoU_point``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception_common.checkpoint import CheckpointError
from perception_eval.datasets import DatasetError, RefYouTubeVOS
from trackgpt.config import SAM_SIZES
from trackgpt.errors import TrackGPTError
from trackgpt.sam import SamParts, SamTransform, build_sam

from ..common.config import deep_merge
from ..common.errors import SetupError
from ..common.loop import COMMON_DEFAULTS, Task
from ..common.loop import main as loop_main
from ..common.state import item_rng
from .data import VOID, stream_batches
from .train import _resize_bool, mask_losses

DEFAULTS: dict[str, Any] = deep_merge(
    COMMON_DEFAULTS,
    {
        "output_dir": "runs/sam",
        "model": {
            "size": "small",  # a trackgpt.config.SAM_SIZES key (small = the embedded model's SAM)
            "overrides": {},  # SamConfig field changes
            "init_from": None,  # a SAM state dict (.pth) to start from
            "train_image_encoder": True,  # False: only the prompt encoder and the mask decoder learn
        },
        "data": {
            "root": "data/worlds/instruction",  # Ref-YouTube-VOS layout with index-mask annotations
            "split": "train",
            "min_area": 64,  # pixels: smaller visible objects are not chosen as targets
            "box_prob": 0.5,  # micro-batch prompt kind: box with this probability, else points
            "max_points": 3,
            "positive_prob": 0.7,  # points after the first: inside the object with this probability
            "box_noise": 0.1,  # box side noise, x its length (SAM: 10 %, at most 20 px)
            "box_noise_max": 20.0,
            "hflip": 0.5,
            "num_workers": 0,
        },
        "loss": {"bce_weight": 2.0, "dice_weight": 0.5, "lambda_iou": 1.0},
        "optim": {"name": "adamw", "lr": 4e-4, "weight_decay": 0.05, "betas": [0.9, 0.999], "eps": 1e-8},
        "schedule": {"name": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.05},
        "train": {"steps": 2000, "batch_size": 8, "grad_accum": 1, "grad_clip": 1.0, "log_every": 20},
        "eval": {"every": 0, "split": "val", "max_items": 64, "best_metric": "mIoU_box", "best_mode": "max"},
    },
    strict=False,
)


@dataclass
class ObjectSample:
    """One target: the padded network input, its mask at input resolution and both prompt kinds.

    Coordinates are in the network input's pixels (after ResizeLongestSide), as SAM's prompt encoder takes them.
    """

    number: int  # the sample number in the stream (the first of a micro-batch picks the prompt kind)
    image: torch.Tensor  # 3 x S x S, normalised and padded
    mask: np.ndarray  # S x S bool (target)
    valid: np.ndarray  # S x S bool (inside the frame and not void)
    box: np.ndarray  # 4 float32 (x0, y0, x1, y1)
    points: np.ndarray  # max_points x 2 float32
    labels: np.ndarray  # max_points int64 (1 inside, 0 outside)


class ObjectFrames:
    """Every (frame, object) of a Ref-YouTube-VOS-layout split as a deterministic stream of prompt samples."""

    def __init__(self, root: str | Path, split: str, *, transform: SamTransform, options: Mapping[str, Any], seed: int):
        try:
            reader = RefYouTubeVOS(root, split, require_masks=True)
        except DatasetError as exc:
            raise SetupError(f"data: {exc}") from exc
        self.frames = [(video, i) for video in reader for i in range(len(video))]
        if not self.frames:
            raise SetupError(f"data: {root}/{split} holds no annotated frame")
        self.transform = transform
        self.options = dict(options)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, number: int) -> ObjectSample:
        return self.sample(number, item_rng(self.seed, 30, number), augment=True)

    def sample(self, number: int, rng: np.random.Generator, *, augment: bool) -> ObjectSample:
        opt = self.options
        for _ in range(20):
            video, index = self.frames[int(rng.integers(len(self.frames)))]
            ids = video.load_mask(index)
            present, counts = np.unique(ids, return_counts=True)
            keep = (present != 0) & (present != VOID) & (counts >= int(opt["min_area"]))
            if keep.any():
                break
        else:
            raise DatasetError(f"no object of at least {opt['min_area']} pixels found in 20 frames of the data")
        obj = int(rng.choice(present[keep]))
        frame = video.load_frame(index)
        if augment and rng.random() < float(opt["hflip"]):
            frame, ids = frame[:, ::-1], ids[:, ::-1]
        x, (h, w) = self.transform.preprocess(np.ascontiguousarray(frame))
        size = self.transform.img_size
        mask = np.zeros((size, size), bool)
        valid = np.zeros((size, size), bool)
        mask[:h, :w] = _resize_bool(ids == obj, (h, w))
        valid[:h, :w] = ~_resize_bool(ids == VOID, (h, w))
        box, points, labels = self.prompts(mask, valid, rng, noisy=augment)
        return ObjectSample(number, x[0], mask, valid, box, points, labels)

    def prompts(self, mask: np.ndarray, valid: np.ndarray, rng: np.random.Generator, *, noisy: bool = True):
        """A (noisy) bounding box and ``max_points`` points with labels, from the target mask."""
        opt = self.options
        ys, xs = np.nonzero(mask)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        if noisy:
            side = np.array([box[2] - box[0], box[3] - box[1]] * 2, np.float32)
            limit = float(opt["box_noise_max"])
            shift = np.clip(rng.normal(0.0, float(opt["box_noise"]) * side), -limit, limit)
            box = box + shift.astype(np.float32)
            box = np.clip(box, 0, mask.shape[1])
            box[2:] = np.maximum(box[2:], box[:2] + 1)
        outside = np.flatnonzero(~mask & valid)
        n = int(opt["max_points"])
        points = np.zeros((n, 2), np.float32)
        labels = np.ones(n, np.int64)
        for k in range(n):
            positive = k == 0 or outside.size == 0 or rng.random() < float(opt["positive_prob"])
            if positive:
                j = int(rng.integers(len(xs)))
                points[k] = (xs[j] + 0.5, ys[j] + 0.5)
            else:
                j = int(outside[int(rng.integers(outside.size))])
                points[k] = (j % mask.shape[1] + 0.5, j // mask.shape[1] + 0.5)
                labels[k] = 0
        return box, points, labels


def collate(samples: Sequence[ObjectSample]) -> dict[str, Any]:
    return {
        "numbers": [s.number for s in samples],
        "image": torch.stack([s.image for s in samples]),
        "mask": torch.from_numpy(np.stack([s.mask for s in samples])),
        "valid": torch.from_numpy(np.stack([s.valid for s in samples])),
        "box": torch.from_numpy(np.stack([s.box for s in samples])),
        "points": torch.from_numpy(np.stack([s.points for s in samples])),
        "labels": torch.from_numpy(np.stack([s.labels for s in samples])),
    }


def predict(sam: SamParts, image: torch.Tensor, *, points=None, labels=None, box=None):
    """SAM's single-mask prediction for a batch: ``(B x 1 x S x S logits, B x 1 IoU estimates)``.

    ``points`` ``B x N x 2`` with ``labels`` ``B x N``, and/or ``box`` ``B x 4``, in input pixels.
    """
    emb = sam.image_encoder(image)
    sparse, dense = sam.prompt_encoder(points=None if points is None else (points, labels), boxes=box, masks=None)
    batch = emb.shape[0]
    out = sam.mask_decoder(
        image_embeddings=emb,
        image_pe=sam.image_pe(),
        prompt_tokens=sparse,
        purport_query=torch.ones(batch, emb.shape[1], device=emb.device, dtype=emb.dtype),  # SAM's own IoU token
        dense_prompt=dense,
    )
    size = sam.config.img_size
    logits = F.interpolate(out.mask_logits.float(), (size, size), mode="bilinear", align_corners=False)
    return logits, out.iou_prediction


class SamTrainModule(nn.Module):
    """SAM plus the loss: ``forward(batch) -> {"loss", "loss_bce", "loss_dice", "loss_iou", "iou"}``."""

    def __init__(self, sam: SamParts, *, loss: Mapping[str, Any], data: Mapping[str, Any], seed: int):
        super().__init__()
        self.sam = sam
        self.loss_cfg = dict(loss)
        self.data_cfg = dict(data)
        self.seed = int(seed)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        rng = item_rng(self.seed, 31, int(batch["numbers"][0]))
        if rng.random() < float(self.data_cfg["box_prob"]):
            logits, iou_pred = predict(self.sam, batch["image"], box=batch["box"])
        else:
            n = int(rng.integers(1, int(self.data_cfg["max_points"]) + 1))
            logits, iou_pred = predict(
                self.sam, batch["image"], points=batch["points"][:, :n], labels=batch["labels"][:, :n]
            )
        bces, dices, ious = [], [], []
        for b in range(logits.shape[0]):
            bce, dice, iou = mask_losses(logits[b, 0], batch["mask"][b], batch["valid"][b])
            bces.append(bce)
            dices.append(dice)
            ious.append(iou)
        bce, dice, iou = torch.stack(bces).mean(), torch.stack(dices).mean(), torch.stack(ious)
        loss_iou = F.mse_loss(iou_pred[:, 0].float(), iou)
        loss = (
            float(self.loss_cfg["bce_weight"]) * bce
            + float(self.loss_cfg["dice_weight"]) * dice
            + float(self.loss_cfg["lambda_iou"]) * loss_iou
        )
        return {"loss": loss, "loss_bce": bce, "loss_dice": dice, "loss_iou": loss_iou, "iou": iou.mean()}


class SamTask(Task):
    name = "sam"
    plot_metrics = ("mIoU_box", "mIoU_point")

    def setup(self) -> None:
        cfg = self.config
        m = cfg["model"]
        if m["size"] not in SAM_SIZES:
            raise SetupError(f"model.size {m['size']!r} is not one of {', '.join(SAM_SIZES)}")
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(m.get("overrides") or {}).items()}
        try:
            self.sam_config = dataclasses.replace(SAM_SIZES[m["size"]], **overrides, checkpoint=m.get("init_from"))
            self.sam_config.validate()
        except (TypeError, TrackGPTError) as exc:
            raise SetupError(f"model: {exc}") from exc
        if m.get("init_from") and not Path(m["init_from"]).is_file():
            raise SetupError(f"model.init_from {m['init_from']!r} does not exist")
        transform = SamTransform(config=self.sam_config)
        data = cfg["data"]
        self.stream = ObjectFrames(data["root"], data["split"], transform=transform, options=data, seed=cfg["seed"])
        self.eval_set = None
        if cfg["eval"].get("split"):
            self.eval_set = ObjectFrames(
                data["root"], cfg["eval"]["split"], transform=transform, options=data, seed=cfg["seed"]
            )

    def samples_per_epoch(self) -> int:
        return len(self.stream)

    def build_module(self) -> nn.Module:
        try:
            sam = build_sam(self.sam_config)
        except (TrackGPTError, CheckpointError) as exc:
            raise SetupError(f"model: {exc}") from exc
        # frozen: the decoder learns to prompt an encoder that another model owns (an object proposer beside
        # a trained TrackGPT perception); without gradients the encoder also runs without a backward pass
        sam.image_encoder.requires_grad_(bool(self.config["model"]["train_image_encoder"]))
        return SamTrainModule(sam, loss=self.config["loss"], data=self.config["data"], seed=self.config["seed"]).train()

    def micro_batches(self, start: int, *, rank: int, world: int, generator: torch.Generator) -> Iterator[Any]:
        return stream_batches(
            self.stream, start, self.config, rank=rank, world=world, collate_fn=collate, generator=generator
        )

    @torch.no_grad()
    def evaluate(self, module: nn.Module, step: int) -> dict[str, float]:
        if self.eval_set is None:
            return {}
        sam: SamParts = module.sam
        device = next(sam.parameters()).device
        n = min(int(self.config["eval"]["max_items"]), 10 * len(self.eval_set))
        box_ious, point_ious = [], []
        for i in range(n):
            s = self.eval_set.sample(i, item_rng(int(self.config["seed"]), 32, i), augment=False)
            image = s.image[None].to(device)
            mask = torch.from_numpy(s.mask).to(device)
            valid = torch.from_numpy(s.valid).to(device)
            logits, _ = predict(sam, image, box=torch.from_numpy(s.box)[None].to(device))
            box_ious.append(float(mask_losses(logits[0, 0], mask, valid)[2]))
            pts = torch.from_numpy(s.points[:1])[None].to(device)
            lab = torch.from_numpy(s.labels[:1])[None].to(device)
            logits, _ = predict(sam, image, points=pts, labels=lab)
            point_ious.append(float(mask_losses(logits[0, 0], mask, valid)[2]))
        return {"mIoU_box": float(np.mean(box_ious)), "mIoU_point": float(np.mean(point_ious))}

    def export(self, module: nn.Module, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in module.sam.state_dict().items()}
        torch.save(state, folder / "sam.pth")
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.sam_config).items()}
        config["checkpoint"] = None
        (folder / "sam_config.json").write_text(json.dumps({"size": self.config["model"]["size"], **config}, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return loop_main(
        argv,
        prog="python -m training.trackgpt.pretrain_sam",
        description=__doc__,
        defaults=copy.deepcopy(DEFAULTS),
        task_cls=SamTask,
    )


if __name__ == "__main__":
    raise SystemExit(main())
