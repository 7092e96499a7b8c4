"""Teach a trained TrackGPT to name its target from a listing of the frame's objects (``brain.naming: scene``).

Usage::

    python -m training.trackgpt.train_namer --config training/configs/embedded/trackgpt-namer.yaml [--set key=value ...]
    python -m training.trackgpt.train_namer --resume data/runs/trackgpt-namer

The run starts from a trained TrackGPT folder (``model.init_from``) and changes none of its weights: its brain's
LoRA, phi and perception read the teacher-forced answer as they were trained to. It adds what
:mod:`trackgpt.scene` needs and saves the whole model:

* the object proposer: the prompt encoder and mask decoder of a SAM state dict (``model.object_proposer_from``,
  e.g. a ``pretrain_sam.py`` run on the model's own image encoder, frozen), loaded, not trained;
* the object namer (:class:`trackgpt.scene.ObjectNamer`), trained on the masked crops of the world's true objects
  (``data.crops_per_sample`` per sample, any frame of the video), cross-entropy on colour and on category, its
  category branch reading copies whose colours are scrambled (:func:`scramble_colours`);
* the namer's LoRA adapter of the language model, trained on the listing (:func:`trackgpt.scene.scene_text`) of the
  world's true objects in the instruction's reference frame (the first, as the world decides its instructions
  there) and the instruction, with the target's name as the answer (text loss). Each object other than the target
  leaves the listing with probability ``data.drop_prob`` (a proposer misses some): in the world's rules that never
  changes which object an instruction means (the target stays the only one of its kind, or the extreme of its set).

``loss.lambda_text`` / ``loss.lambda_names`` weigh the two; at 0 that part is neither run nor trained, so a run can
train the adapter alone and a second run, from its model (which keeps its adapter), the object namer alone
(``trackgpt-namer.yaml``, then ``trackgpt-object-namer.yaml``). The vocabulary is every colour and category of the
training split's objects. Evaluation (``eval.split`` of ``eval.root``, the first ``eval.max_items`` instructions): the
object namer's accuracy on that split's objects of frame 0 (``colour_acc``, ``category_acc``), and the namer's
answer against the target's name with the listing of the true objects named by the object namer (``named``) and by
the world's labels (``named_labels``). The whole path with proposed objects is ``scripts/eval_embedded.py
--naming-only``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception_common.checkpoint import CheckpointError
from perception_common.models import ModelSpecError
from perception_eval.datasets import DatasetError, InsTrack
from trackgpt.brain import NAMER_ADAPTER
from trackgpt.errors import TrackGPTError
from trackgpt.loading import load_model
from trackgpt.model import TrackGPT
from trackgpt.objects import index_mask_ids, object_crop
from trackgpt.scene import SceneObject, scene_objects, scene_text

from ..common.config import deep_merge
from ..common.errors import SetupError
from ..common.loop import COMMON_DEFAULTS, Task
from ..common.loop import main as loop_main
from ..common.state import item_rng
from .data import stream_batches, target_name, world_object_labels

DEFAULTS: dict[str, Any] = deep_merge(
    COMMON_DEFAULTS,
    {
        "output_dir": "runs/trackgpt-namer",
        "model": {
            "init_from": None,  # a trained TrackGPT folder (save_pretrained)
            "object_proposer_from": None,  # a SAM state dict (.pth) whose prompt encoder + mask decoder propose
        },
        "data": {
            "root": "data/worlds/instruction",  # a generated instruction world
            "split": "train",
            "min_pixels": 30,  # smaller visible objects are left out of listings and crops
            "drop_prob": 0.15,  # each non-target object leaves the listing with this probability
            "crops_per_sample": 4,
            "num_workers": 0,
        },
        "loss": {"lambda_text": 1.0, "lambda_names": 1.0},
        "optim": {"name": "adamw", "lr": 5e-4, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8},
        "schedule": {"name": "cosine", "warmup_steps": 20, "min_lr_ratio": 0.1},
        "train": {"steps": 400, "batch_size": 32, "grad_accum": 1, "grad_clip": 1.0, "log_every": 10},
        # root: the world to evaluate on (null: data.root)
        "eval": {
            "every": 0, "root": None, "split": "val", "max_items": 100, "best_metric": "named", "best_mode": "max",
        },
    },
    strict=False,
)


@dataclass
class NamerSample:
    """One instruction with the listing of its frame, and crops of the video's objects with their labels."""

    scene: str
    instruction: str
    name: str
    crops: np.ndarray  # k x 4 x CROP x CROP float32
    scrambled: np.ndarray  # the same crops with their colours scrambled (the category branch reads these)
    colours: list[str]
    categories: list[str]


@dataclass
class _Frame0:
    video: Any
    objects: list[SceneObject]  # the true objects of frame 0, named by the world's labels
    ids: list[int]  # their object ids, in the same order


class NamerWorld:
    """A generated instruction world's split as a numbered stream of :class:`NamerSample` (one per instruction)."""

    def __init__(self, root: str | Path, split: str, *, options: Mapping[str, Any], seed: int):
        try:
            reader = InsTrack(root, split, require_masks=True)
        except DatasetError as exc:
            raise SetupError(f"data: {exc}") from exc
        self.min_pixels = int(options["min_pixels"])
        self.drop_prob = float(options["drop_prob"])
        self.crops_per_sample = int(options["crops_per_sample"])
        self.seed = int(seed)
        self.frames: list[_Frame0] = []
        self.items: list[tuple[int, Any]] = []  # (frame index, expression)
        for video in reader:
            labels = world_object_labels(video)
            if not labels:
                continue
            ids = video.load_mask(0)
            kept = [i for i in index_mask_ids(ids, min_pixels=self.min_pixels) if i in labels]
            objects = scene_objects([ids == i for i in kept], [labels[i] for i in kept])
            for expression in video.expressions:
                if int(expression.obj_id) in kept:
                    self.items.append((len(self.frames), expression))
            self.frames.append(_Frame0(video, objects, kept))
        if not self.items:
            raise SetupError(f"data: {root}/{split} holds no instruction whose target the world names (colour and "
                             "category of a generated instruction world's objects)")  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def vocabulary(self) -> tuple[list[str], list[str]]:
        """Every colour and category of the split's objects (sorted)."""
        labels = [label for f in self.frames for label in world_object_labels(f.video).values()]
        return sorted({c for c, _ in labels}), sorted({k for _, k in labels})

    def listing(self, index: int, rng: np.random.Generator | None) -> str:
        """The listing of instruction ``index``'s frame (non-targets dropped by ``rng``; all when None)."""
        frame_index, expression = self.items[index]
        frame = self.frames[frame_index]
        target = int(expression.obj_id)
        kept = [o for o, i in zip(frame.objects, frame.ids)
                if i == target or rng is None or rng.random() >= self.drop_prob]  # fmt: skip
        return scene_text(kept)

    def __getitem__(self, n: int) -> NamerSample:
        rng = item_rng(self.seed, 40, n)
        index = int(rng.integers(len(self.items)))
        frame_index, expression = self.items[index]
        video = self.frames[frame_index].video
        labels = world_object_labels(video)
        t = int(rng.integers(len(video)))
        ids = video.load_mask(t)
        present = [i for i in index_mask_ids(ids, min_pixels=self.min_pixels) if i in labels]
        chosen = rng.permutation(present)[: self.crops_per_sample] if present else []
        rgb = video.load_frame(t)
        flip = bool(rng.random() < 0.5)  # colour and category do not change in a mirror
        if flip:
            rgb, ids = rgb[:, ::-1], ids[:, ::-1]
        crops = np.stack([object_crop(rgb, ids == i) for i in chosen]) if len(chosen) else np.zeros((0, 4, 16, 16))
        colour, category = expression.extra.get("colour"), expression.extra.get("category")
        return NamerSample(
            scene=self.listing(index, rng), instruction=expression.instruction, name=target_name(colour, category),
            crops=crops.astype(np.float32), scrambled=scramble_colours(crops, rng),
            colours=[labels[int(i)][0] for i in chosen],
            categories=[labels[int(i)][1] for i in chosen],
        )


def scramble_colours(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each crop's RGB channels in a random order, each scaled by a random gain in [0.6, 1.4] (the background stays
    0, the mask channel as it is): the object's shape with colours it may never have had, so that the object namer's
    category branch learns shapes, not the world's colour / category pairs."""
    out = np.array(crops, dtype=np.float32, copy=True)
    for k in range(len(out)):
        out[k, :3] = out[k, rng.permutation(3)] * rng.uniform(0.6, 1.4, size=(3, 1, 1)).astype(np.float32)
    return out


def collate(samples: Sequence[NamerSample]) -> list[NamerSample]:
    return list(samples)


class NamerTrainModule(nn.Module):
    """The model and its losses: the namer adapter's text loss and the object namer's two cross-entropies."""

    def __init__(self, model: TrackGPT, loss: Mapping[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.lambda_text, self.lambda_names = float(loss["lambda_text"]), float(loss["lambda_names"])

    def forward(self, batch: Sequence[NamerSample]) -> dict[str, torch.Tensor]:
        losses = self._text_loss(batch) if self.lambda_text > 0 else {}
        if self.lambda_names > 0:
            losses.update(self._names_loss(batch))
        losses["loss"] = sum(
            weight * losses[key] for key, weight in (("loss_text", self.lambda_text), ("loss_names", self.lambda_names))
            if key in losses
        )  # fmt: skip
        return losses

    def _text_loss(self, batch: Sequence[NamerSample]) -> dict[str, torch.Tensor]:
        brain = self.model.brain
        device = brain.device
        rows = [brain.namer_example(s.scene, s.instruction, s.name) for s in batch]
        width = max(len(ids) for ids, _ in rows)
        pad = brain.tokenizer.pad_token_id if brain.tokenizer.pad_token_id is not None else 0
        # padded on the left, so that every answer ends the row: the logits of the last `keep` positions are all the
        # loss reads (the language model's head over its 49k words for every prompt token was a fifth of a step)
        ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for b, (i, lab) in enumerate(rows):
            ids[b, width - len(i) :], labels[b, width - len(lab) :] = torch.tensor(i), torch.tensor(lab)
            attention[b, width - len(i) :] = 1
        keep = 1 + max(sum(t != -100 for t in lab) for _, lab in rows)
        with brain.namer_active():
            out = brain.model(input_ids=ids.to(device), attention_mask=attention.to(device), logits_to_keep=keep)
        logits = out.logits[:, :-1].float()  # position t predicts token t + 1
        wanted = labels[:, width - keep + 1 :].reshape(-1).to(device)
        return {"loss_text": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), wanted, ignore_index=-100)}

    def _names_loss(self, batch: Sequence[NamerSample]) -> dict[str, torch.Tensor]:
        namer = self.model.object_namer
        device = namer.colour_head.weight.device
        crops = [torch.from_numpy(s.crops) for s in batch if len(s.crops)]
        if not crops:
            zero = namer.colour_head.weight.sum() * 0
            return {"loss_names": zero, "loss_colour": zero, "loss_category": zero}
        scrambled = torch.cat([torch.from_numpy(s.scrambled) for s in batch if len(s.crops)]).to(device)
        colour, category = namer(torch.cat(crops).to(device), scrambled)
        want_colour = torch.tensor([namer.colours.index(c) for s in batch for c in s.colours], device=device)
        want_category = torch.tensor([namer.categories.index(c) for s in batch for c in s.categories], device=device)
        out = {"loss_colour": F.cross_entropy(colour.float(), want_colour),
               "loss_category": F.cross_entropy(category.float(), want_category)}  # fmt: skip
        out["loss_names"] = out["loss_colour"] + out["loss_category"]
        return out


class NamerTask(Task):
    name = "trackgpt-namer"
    plot_metrics = ("named", "named_labels", "colour_acc", "category_acc")

    def setup(self) -> None:
        cfg = self.config
        m = cfg["model"]
        for key in ("init_from", "object_proposer_from"):
            if not m.get(key) or not Path(m[key]).exists():
                raise SetupError(f"model.{key} {m.get(key)!r} does not exist")
        if float(cfg["loss"]["lambda_text"]) <= 0 and float(cfg["loss"]["lambda_names"]) <= 0:
            raise SetupError("loss.lambda_text and loss.lambda_names are both 0: nothing would learn")
        data = cfg["data"]
        self.stream = NamerWorld(data["root"], data["split"], options=data, seed=cfg["seed"])
        self.colours, self.categories = self.stream.vocabulary()
        self.eval_set = None
        if cfg["eval"].get("split"):
            root = cfg["eval"].get("root") or data["root"]
            self.eval_set = NamerWorld(root, cfg["eval"]["split"], options=data, seed=cfg["seed"])

    def samples_per_epoch(self) -> int:
        return len(self.stream)

    def build_module(self) -> nn.Module:
        m = self.config["model"]
        try:
            model = load_model(
                m["init_from"], naming="scene", namer_colours=tuple(self.colours),
                namer_categories=tuple(self.categories),
            )  # fmt: skip
            proposer = model.perception.object_proposer
            proposer.load_sam_state_dict(m["object_proposer_from"], "model.object_proposer_from")
            if not model.brain.has_namer:  # a model that names already goes on with its own adapter
                model.brain.add_namer()
        except (TrackGPTError, CheckpointError, ModelSpecError) as exc:
            raise SetupError(f"model: {exc}") from exc
        model.requires_grad_(False)
        loss = self.config["loss"]
        for name, p in model.named_parameters():
            if (name.startswith("object_namer.") and float(loss["lambda_names"]) > 0) or (
                f".{NAMER_ADAPTER}." in name and float(loss["lambda_text"]) > 0
            ):
                p.requires_grad_(True)
        return NamerTrainModule(model, self.config["loss"]).train()

    def micro_batches(self, start: int, *, rank: int, world: int, generator: torch.Generator) -> Iterator[Any]:
        return stream_batches(
            self.stream, start, self.config, rank=rank, world=world, collate_fn=collate, generator=generator
        )

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch  # the module moves what it builds

    @torch.no_grad()
    def evaluate(self, module: nn.Module, step: int) -> dict[str, float]:
        if self.eval_set is None:
            return {}
        model: TrackGPT = module.model
        namer = model.object_namer
        n = min(int(self.config["eval"]["max_items"]), len(self.eval_set))
        colour_ok, category_ok, named, named_labels = [], [], [], []
        for index in range(n):
            frame_index, expression = self.eval_set.items[index]
            frame = self.eval_set.frames[frame_index]
            rgb, ids = frame.video.load_frame(0), frame.video.load_mask(0)
            masks = [ids == i for i in frame.ids]
            names = namer.name(rgb, masks)
            if index == 0 or frame_index != self.eval_set.items[index - 1][0]:  # each frame's objects once
                colour_ok += [a[0] == o.colour for a, o in zip(names, frame.objects)]
                category_ok += [a[1] == o.category for a, o in zip(names, frame.objects)]
            want = target_name(expression.extra.get("colour"), expression.extra.get("category"))
            listing = scene_text(scene_objects(masks, names))
            named.append(model.brain.name_target(listing, expression.instruction) == want)
            named_labels.append(model.brain.name_target(self.eval_set.listing(index, None), expression.instruction)
                                == want)  # fmt: skip
        return {"colour_acc": float(np.mean(colour_ok)), "category_acc": float(np.mean(category_ok)),
                "named": float(np.mean(named)), "named_labels": float(np.mean(named_labels))}  # fmt: skip

    def export(self, module: nn.Module, folder: Path) -> None:
        module.model.save_pretrained(folder)



def main(argv: Sequence[str] | None = None) -> int:
    return loop_main(
        argv,
        prog="python -m training.trackgpt.train_namer",
        description=__doc__,
        defaults=copy.deepcopy(DEFAULTS),
        task_cls=NamerTask,
    )


if __name__ == "__main__":
    raise SystemExit(main())
