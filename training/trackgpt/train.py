"""Train TrackGPT, one stage per run (paper Sec. 3.5 and 4.1).

Usage::

    python -m training.trackgpt.train --config training/configs/trackgpt-tiny-stage2.yaml [--set key=value ...]
    python -m training.trackgpt.train --resume runs/trackgpt-tiny-stage2

Stages (``training/trackgpt/data.py`` for the datasets): 1 image pre-training, 2 Ref-YouTube-VOS, 3 InsTrack
instruction tuning; stage ``k + 1`` starts from stage ``k``'s ``model/`` folder (``model.init_from``).

What is trained (paper Sec. 3.5): the mask decoder, the purport head, the cross-frame propagation and phi (the
MLP projection); LoRA (peft) on the brain's language model (``q_proj`` / ``v_proj``, the model config's r /
alpha / dropout); the ``<TK>`` / ``<PO>`` embedding rows; the LLaVA projector when the model config says
``train_vision_projector``, its vision tower when it says ``train_vision_tower`` (the embedded brain's tower has
no pretrained weights). Frozen: the SAM image encoder (``model.train_image_encoder: false``, the paper),
the prompt encoder, the brain's base weights and (by default) vision tower. ``loss.lambda_mask`` and
``loss.lambda_po`` both 0 make a text-only stage: the perception and phi are neither run nor trained. A trained
image encoder (``train_image_encoder: true``, its learning rate scaled by ``image_encoder_lr_scale``) is saved in
the exported folder, which then references no SAM checkpoint. ``model.freeze_brain: true`` trains no brain
weight at all (LoRA, token rows, projector and tower stay as loaded; ``lora`` and ``train_token_rows`` must be
false) and runs the brain without gradients: a cheaper stage that teaches phi and the perception to read a brain
that already answers well (``L_text`` is then logged, not trained).

``model.train_perception`` lists which of phi (``projection``), ``mask_decoder``, ``purport_head`` and
``propagation`` train (all four by default, the paper); ``[propagation]`` with three-frame clips (I_0, I_t,
I_{t+1}) teaches only the cross-frame propagation, leaving every frame-0 mask as it was.

Joint loss (Eq. 4), every lambda 1 by default:

* ``L_text``: the auto-regressive cross-entropy of the answer tokens ("Sure, I track the object. <TK>, <PO>" and
  EOS; VQA answers), averaged over the batch's answer tokens;
* ``L_mask = 2.0 * BCE + 0.5 * Dice`` of each frame's mask logits (upsampled to SAM's input, padding and void
  pixels left out), averaged over the masks;
* ``L_po``: MSE between the purport score S_p and its target, the IoU of the predicted mask (logit > 0) with the
  ground truth (the paper: "we employ the IoU score as our purport score"), computed per frame, detached; 1 when
  both are empty.

A clip's frames are decoded in order with the propagation: Q_0 = Q_R (as the tracker does after reasoning) and
Q_{t+1} from the decoder, so the loss of later frames trains the propagation (back-propagation through the
clip). The brain reads the reference frame (the first of the clip) with the instruction; the states that predict
``<TK>`` and ``<PO>`` (LISA's rule) go through phi to Q_R and Q_p.

Implementation note: the library has no training forward that also takes rows without ``<TK>`` (VQA), so the
step is composed here from the brain's language model, ``TrackGPT.queries`` and ``Perception.forward``. The
``<TK>``/``<PO>`` rows are trained as two small parameters swapped into the embedding and output layers by
forward hooks (the checkpoint format keeps only these rows of the embeddings, so the rest must not change);
they are written into the brain before ``save_pretrained``.

Evaluation (``eval.datasets``, every ``eval.every`` steps and at the end): videos are tracked as the online
tracker does (reason on frame 0, decode every frame with propagation, optional rethinking below
``tau x`` the first S_p) and scored with the DAVIS J&F (``perception_eval.metrics``); images with gIoU / cIoU.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception_common.checkpoint import CheckpointError, load_strict
from perception_eval.datasets import DatasetError
from perception_eval.metrics import summarize_davis
from perception_eval.tracking import dataset_instruction, evaluate_video
from trackgpt import TrackGPT, get_config
from trackgpt.errors import InstructionError, TrackGPTError
from trackgpt.loading import load_model
from trackgpt.model import build_projection
from trackgpt.objects import index_mask_ids, slot_order

from ..common.config import deep_merge
from ..common.errors import SetupError
from ..common.loop import COMMON_DEFAULTS, Task
from ..common.loop import main as loop_main
from ..common.state import item_rng
from .data import (
    VIDEO_TYPES,
    MixedStream,
    Sample,
    TrainingDataset,
    build_dataset,
    collate,
    object_vocabulary,
    stream_batches,
)

#: What of phi and the perception ``model.train_perception`` may name (all of them train by default).
PERCEPTION_PARTS: tuple[str, ...] = ("projection", "mask_decoder", "purport_head", "propagation")

DEFAULTS: dict[str, Any] = deep_merge(
    COMMON_DEFAULTS,
    {
        "output_dir": "runs/trackgpt",
        "stage": 2,  # 1 images, 2 referring videos, 3 instruction tuning (informational; the datasets decide)
        "model": {
            "config": "tiny",  # trackgpt registry: tiny | embedded | llava-7b-sam-vit-h | llava-13b-sam-vit-h
            "overrides": {},  # TrackGPTConfig changes, e.g. {brain: {path: /data/llava-1.5-7b-hf}}
            # the previous stage's model folder (save_pretrained); overrides may then set brain / projection_input_norm
            "init_from": None,
            # a model folder whose phi and perception replace the loaded ones (same shapes): a reader stage for a
            # changed brain starts from a reader that learnt a similar brain instead of from init_from's own
            "perception_from": None,
            # a SAM state dict (.pth, official names) whose prompt encoder and mask decoder become the object
            # proposer of a brain with brain.vision_source objects (training/trackgpt/pretrain_sam.py makes one)
            "object_proposer_from": None,
            "lora": True,  # LoRA on the brain (peft); false trains no brain weights except the token rows
            "train_image_encoder": False,  # the paper freezes SAM's encoder (true only without pretrained SAM)
            "image_encoder_lr_scale": 1.0,  # its learning rate x this (a pre-trained encoder fine-tuned gently)
            "train_prompt_encoder": False,
            "train_token_rows": True,  # the <TK>/<PO> embedding rows
            "freeze_brain": False,  # true: no brain weight trains (its pass runs without gradients, ~2x faster)
            # which of phi and the perception train (all, the paper); e.g. [propagation] for a propagation stage
            "train_perception": list(PERCEPTION_PARTS),
        },
        "data": {
            "datasets": [],  # [{name, type, root/json/..., split, ratio}]; see training/trackgpt/data.py
            "frames_per_clip": 3,  # video samples: I_0, I_t, I_{t+1} (paper); images are one-frame clips
            "reference_frame": "random",  # random (paper: a random I_0) | first (instructions decided on frame 0)
            "num_workers": 0,
        },
        # lambda_objects: a brain whose tokens are the frame's objects (brain.vision_source objects) also learns, on
        # each object token, the object's colour and category (cross-entropy of two linear heads that exist only in
        # training; a generated world's labels), so the tokens carry what the answers must name
        "loss": {"lambda_text": 1.0, "lambda_mask": 1.0, "lambda_po": 1.0, "bce_weight": 2.0, "dice_weight": 0.5,
                 "lambda_objects": 0.0},
        "optim": {"name": "adamw", "lr": 3e-4, "weight_decay": 0.0, "betas": [0.9, 0.95], "eps": 1e-8},
        "schedule": {"name": "linear", "warmup_steps": 100, "min_lr_ratio": 0.0},
        "train": {"steps": 5000, "batch_size": 2, "grad_accum": 1, "grad_clip": 1.0, "log_every": 10},
        "eval": {
            "every": 0,
            "datasets": [],  # same entries as data.datasets (video types: J&F; image types: gIoU/cIoU)
            "max_items": 16,  # (video, expression) pairs or images per evaluation dataset
            "max_frames": 0,  # frames per video (0 = all)
            "rethink": True,  # paper Alg. 1: reason again when S_p < tau * S_p of the first frame
            "tau": 0.5,
            "best_metric": "J&F",
            "best_mode": "max",
        },
    },
    strict=False,
)


# ----------------------------------------------------------------------------- losses
def mask_losses(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """BCE (mean over valid pixels), Dice (smooth 1) and the hard IoU of one ``H x W`` mask.

    Returns ``(bce, dice, iou)``; ``iou`` is detached (the purport target) and 1 when both masks are empty.
    """
    logits, target, valid = logits.float(), target.float(), valid.float()
    n = valid.sum().clamp_min(1.0)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid).sum() / n
    prob = torch.sigmoid(logits) * valid
    dice = 1.0 - (2.0 * (prob * target).sum() + 1.0) / (prob.sum() + (target * valid).sum() + 1.0)
    with torch.no_grad():
        pred = (logits > 0).float() * valid
        inter = (pred * target).sum()
        union = ((pred + target * valid) > 0).float().sum()
        iou = inter / union if union > 0 else torch.ones((), device=logits.device)
    return bce, dice, iou


# ----------------------------------------------------------------------------- token rows
class AddedTokenRows(nn.Module):
    """Trainable ``<TK>`` / ``<PO>`` rows of the brain's input embedding and output layer.

    Forward hooks put ``input`` in place of the embedding of those ids and ``output`` in place of their two
    logit columns, so gradients reach only these rows. With tied embeddings one parameter serves both.
    """

    def __init__(self, brain) -> None:
        super().__init__()
        self.brain = [brain]  # not a submodule (the brain belongs to the model)
        rows = brain.added_token_rows()
        self.ids = torch.tensor([brain.track_token_id, brain.purport_token_id])
        emb = brain.model.get_input_embeddings()
        out = brain.model.get_output_embeddings()
        self.tied = out is not None and out.weight is emb.weight
        self.input = nn.Parameter(rows["input"].float().clone())
        self.output = None if (out is None or self.tied) else nn.Parameter(rows["output"].float().clone())
        self._handles = [emb.register_forward_hook(self._embed_hook)]
        if out is not None:
            self._handles.append(out.register_forward_hook(self._logits_hook))

    def _embed_hook(self, module, args, output):
        ids = args[0]
        for k in range(2):
            where = (ids == int(self.ids[k])).unsqueeze(-1)
            if where.any():
                output = torch.where(where, self.input[k].to(output.dtype), output)
        return output

    def _logits_hook(self, module, args, output):
        rows = self.input if self.tied else self.output
        hidden = args[0]
        cols = hidden @ rows.to(hidden.dtype).t()
        bias = getattr(module, "bias", None)
        if bias is not None:
            cols = cols + bias[self.ids.to(bias.device)].to(cols.dtype)
        return output.index_copy(-1, self.ids.to(output.device), cols.to(output.dtype))

    def write_back(self) -> None:
        """Copy the trained rows into the brain's embedding matrices (before saving)."""
        rows = {"input": self.input.detach()}
        if self.tied:
            rows["output"] = self.input.detach()
        elif self.output is not None:
            rows["output"] = self.output.detach()
        self.brain[0].set_added_token_rows(rows)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


# ----------------------------------------------------------------------------- the training module
class TrackGPTTrainModule(nn.Module):
    """TrackGPT plus its joint loss: ``forward(list of Sample) -> {"loss", "loss_text", "loss_mask", ...}``."""

    def __init__(
        self, model: TrackGPT, *, loss: Mapping[str, Any], options: Mapping[str, Any],
        object_vocabulary: tuple[Sequence[str], Sequence[str]] = ((), ()),
    ):  # fmt: skip
        super().__init__()
        if model.brain is None:
            raise SetupError("TrackGPT training needs a model with a brain")
        self.model = model
        self.loss_cfg = dict(loss)
        self._frozen_parts: list[nn.Module] = []
        self.freeze_brain = bool(options["freeze_brain"])
        if self.freeze_brain and (options["lora"] or options["train_token_rows"]):
            raise SetupError("model.freeze_brain trains nothing of the brain: set model.lora and "
                             "model.train_token_rows to false")  # fmt: skip
        self.token_rows = AddedTokenRows(model.brain) if options["train_token_rows"] else None
        model.requires_grad_(False)
        brain = model.brain
        if options["lora"]:
            if not brain.has_lora:
                brain.add_lora()
            for name, p in brain.model.named_parameters():
                p.requires_grad_("lora_" in name)
        trained_parts = []
        if not self.freeze_brain:
            if model.config.brain.train_vision_projector:
                trained_parts.append("multi_modal_projector.")
            if model.config.brain.train_vision_tower:
                trained_parts.append("vision_tower.")
        for name, p in brain.model.named_parameters():
            if any(part in name for part in trained_parts):
                p.requires_grad_(True)
        # L_text alone (lambda_mask = lambda_po = 0): the perception is neither run nor trained
        self.text_only = not float(loss["lambda_mask"]) and not float(loss["lambda_po"])
        if self.text_only and self.freeze_brain:
            raise SetupError("loss.lambda_mask and loss.lambda_po are 0 and the brain is frozen: nothing would train")
        perception = model.perception
        if model.config.brain.style != "trackgpt" or perception.purport_head is None or perception.propagation is None:
            raise SetupError(
                "this model was imported from LISA (brain.style 'lisa', no purport head or propagation): "
                "this pipeline cannot train it yet"
            )
        self.train_image_encoder = bool(options["train_image_encoder"]) and not self.text_only
        parts = list(options["train_perception"])
        unknown = sorted(set(parts) - set(PERCEPTION_PARTS))
        if unknown:
            raise SetupError(f"model.train_perception: unknown part(s) {unknown}; choose from {list(PERCEPTION_PARTS)}")
        if not self.text_only:
            modules = {
                "projection": model.projection,
                "mask_decoder": perception.sam.mask_decoder,
                "purport_head": perception.purport_head,
                "propagation": perception.propagation,
            }
            for name in parts:
                modules[name].requires_grad_(True)
            # kept in eval mode whatever the loop sets: phi's running input statistics must not move either
            self._frozen_parts = [m for name, m in modules.items() if name not in parts]
            perception.sam.prompt_encoder.requires_grad_(bool(options["train_prompt_encoder"]))
            perception.sam.image_encoder.requires_grad_(self.train_image_encoder)
        self.truncated_instructions = 0
        self.object_heads = None
        if float(loss.get("lambda_objects", 0.0)):
            colours, categories = (list(v) for v in object_vocabulary)
            if model.config.brain.vision_source != "objects" or self.freeze_brain:
                raise SetupError("loss.lambda_objects trains the object tokens of a brain with brain.vision_source "
                                 "'objects' that is not frozen")  # fmt: skip
            if not colours or not categories:
                raise SetupError("loss.lambda_objects needs datasets that list their objects' colour and category "
                                 "(a generated instruction world)")  # fmt: skip
            width = int(model.config.brain.vision["hidden_size"])
            self.object_names = (colours, categories)
            self.object_heads = nn.ModuleList([nn.Linear(width, len(colours)), nn.Linear(width, len(categories))])

    def train(self, mode: bool = True) -> TrackGPTTrainModule:
        super().train(mode)
        for part in self._frozen_parts:
            part.eval()
        return self

    # ------------------------------------------------------------------ text
    def _conversation(self, sample: Sample) -> tuple[list[int], list[int]]:
        """Token ids and labels of a VQA conversation (``USER: q ASSISTANT: a</s>`` per turn)."""
        brain = self.model.brain
        tok = brain.tokenizer
        eos = tok.eos_token_id
        ids: list[int] = []
        labels: list[int] = []
        limit = brain.context_length
        for turn, (question, answer) in enumerate(sample.conversation):
            q = ("USER: <image>\n" if turn == 0 else "USER: ") + question + " ASSISTANT:"
            q_ids = list(tok(q, add_special_tokens=turn == 0).input_ids)
            if turn == 0:
                q_ids = _expand_image(q_ids, brain.image_token_id, brain.num_image_tokens)
            a_ids = list(tok(" " + answer, add_special_tokens=False).input_ids) + (
                [int(eos)] if eos is not None else []
            )
            room = limit - len(ids) - len(q_ids)
            if room < 2:
                break
            a_ids = a_ids[:room]
            ids += q_ids + a_ids
            labels += [-100] * len(q_ids) + a_ids
        if not ids:
            raise InstructionError("the conversation's first question does not fit the brain's context")
        return ids, labels

    def _instruction(self, sample: Sample) -> tuple[list[int], list[int]]:
        brain = self.model.brain
        text = sample.text
        words = text.split()
        while True:
            try:
                return brain.training_example(text, target=sample.target)
            except InstructionError:
                if len(words) <= 1:
                    raise
                words = words[: max(1, len(words) * 3 // 4)]
                text = " ".join(words)
                if not self.truncated_instructions:
                    print(
                        f"warning: an instruction longer than the brain's context was cut to {text!r}", file=sys.stderr
                    )
                self.truncated_instructions += 1

    def _text_batch(self, samples: Sequence[Sample], device: torch.device):
        brain = self.model.brain
        rows = [self._instruction(s) if s.kind == "mask" else self._conversation(s) for s in samples]
        width = max(len(ids) for ids, _ in rows)
        pad = brain.tokenizer.pad_token_id
        pad = int(pad if pad is not None else (brain.tokenizer.eos_token_id or 0))
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for b, (ids, lab) in enumerate(rows):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            labels[b, : len(lab)] = torch.tensor(lab)
            attention[b, : len(ids)] = 1
        pixels = torch.cat(
            [brain.preprocess_image(np.ascontiguousarray(s.frames[0]), objects=s.objects) for s in samples]
        )
        return input_ids.to(device), labels.to(device), attention.to(device), pixels.to(device)

    # ------------------------------------------------------------------ step
    def forward(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        model, brain = self.model, self.model.brain
        device = brain.device
        input_ids, labels, attention, pixels = self._text_batch(samples, device)
        # the output layer runs only where a label follows (the answers): the prompt's and the image's positions
        # would otherwise cost most of the vocabulary projection and its softmax, and count for nothing
        predicts = torch.zeros_like(labels, dtype=torch.bool)
        predicts[:, :-1] = labels[:, 1:] != -100
        tokens: list[torch.Tensor] = []
        hook = None
        if self.object_heads is not None:  # the object tokens, as the vision tower gives them to the projector
            tower = brain.submodule("vision_tower")
            hook = tower.register_forward_hook(lambda mod, args, out: tokens.append(out.hidden_states[-1][:, 1:]))
        try:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_brain):
                out = brain.model(
                    input_ids=input_ids,
                    pixel_values=pixels.to(brain.dtype),
                    attention_mask=attention,
                    output_hidden_states=True,
                    logits_to_keep=predicts,
                )
        finally:
            if hook is not None:
                hook.remove()
        loss_text = F.cross_entropy(out.logits.float(), labels[:, 1:][predicts[:, :-1]])
        zero = loss_text.new_zeros(())
        loss_objects = self._object_loss(samples, tokens[0]) if tokens else zero
        lo = float(self.loss_cfg.get("lambda_objects", 0.0)) * loss_objects
        mask_rows = [b for b, s in enumerate(samples) if s.kind == "mask" and not self.text_only]
        if not mask_rows:
            lt = float(self.loss_cfg["lambda_text"]) * loss_text + lo
            return {
                "loss": lt,
                "loss_text": loss_text,
                "loss_objects": loss_objects,
                "loss_mask": zero,
                "loss_bce": zero,
                "loss_dice": zero,
                "loss_po": zero,
                "iou": zero,
            }
        rows = torch.tensor(mask_rows, device=device)
        states = [
            brain.states_before(out.hidden_states, input_ids, token, rows=rows)
            for token in (brain.track_token_id, brain.purport_token_id)
        ]
        q_r, q_p = model.queries(*states)
        bce, dice, po, ious = self._perception([samples[b] for b in mask_rows], q_r, q_p)
        loss_mask = float(self.loss_cfg["bce_weight"]) * bce + float(self.loss_cfg["dice_weight"]) * dice
        total = (
            float(self.loss_cfg["lambda_text"]) * loss_text
            + float(self.loss_cfg["lambda_mask"]) * loss_mask
            + float(self.loss_cfg["lambda_po"]) * po
            + lo
        )
        return {
            "loss": total,
            "loss_text": loss_text,
            "loss_objects": loss_objects,
            "loss_mask": loss_mask,
            "loss_bce": bce,
            "loss_dice": dice,
            "loss_po": po,
            "iou": ious,
        }

    def _object_loss(self, samples: Sequence[Sample], tokens: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the colour and the category of every labelled object in its slot's token
        (``B x slots x width``): the slots are filled as :func:`trackgpt.objects.describe_objects` fills them."""
        colours, categories = (dict(zip(names, range(len(names)))) for names in self.object_names)
        min_pixels = self.model.perception.object_proposer.min_pixels
        rows, colour_ids, category_ids = [], [], []
        for b, s in enumerate(samples):
            if s.objects is None or not s.object_labels:
                continue
            ids = index_mask_ids(s.objects, min_pixels=min_pixels)
            order = slot_order([s.objects == i for i in ids], tokens.shape[1])
            for slot, j in enumerate(order):
                colour, category = s.object_labels.get(ids[j], (None, None))
                if colour in colours and category in categories:
                    rows.append((b, slot))
                    colour_ids.append(colours[colour])
                    category_ids.append(categories[category])
        if not rows:
            return tokens.new_zeros((), dtype=torch.float32)
        picked = tokens[[b for b, _ in rows], [k for _, k in rows]].float()
        heads = self.object_heads
        target = [torch.tensor(v, device=picked.device) for v in (colour_ids, category_ids)]
        return (F.cross_entropy(heads[0](picked), target[0]) + F.cross_entropy(heads[1](picked), target[1])) / 2

    def _perception(self, samples: Sequence[Sample], q_r: torch.Tensor, q_p: torch.Tensor):
        perception = self.model.perception
        transform = perception.transform
        size = transform.img_size
        q_t = q_r
        bces, dices, pos, ious = [], [], [], []
        frames = max(len(s.frames) for s in samples)
        for k in range(frames):
            active = [b for b, s in enumerate(samples) if k < len(s.frames)]
            xs, sizes = [], []
            for b in active:
                x, input_size = transform.preprocess(np.ascontiguousarray(samples[b].frames[k]))
                xs.append(x)
                sizes.append(input_size)
            x = torch.cat(xs).to(perception.device, perception.dtype)
            with torch.set_grad_enabled(self.train_image_encoder and torch.is_grad_enabled()):
                emb = perception.sam.image_encoder(x)
            idx = torch.tensor(active, device=q_r.device)
            low, scores, _, next_q = perception(emb, q_r[idx], q_t[idx], q_p[idx])
            q_t = q_t.index_copy(0, idx, next_q.to(q_t.dtype)) if len(active) < len(samples) else next_q.to(q_t.dtype)
            up = F.interpolate(low.float(), (size, size), mode="bilinear", align_corners=False)
            for j, b in enumerate(active):
                h, w = sizes[j]
                gt = _resize_bool(samples[b].masks[k], (h, w))
                ignore = samples[b].ignore[k] if samples[b].ignore else None
                valid = np.ones((h, w), bool) if ignore is None else ~_resize_bool(ignore, (h, w))
                bce, dice, iou = mask_losses(
                    up[j, 0, :h, :w], torch.from_numpy(gt).to(up.device), torch.from_numpy(valid).to(up.device)
                )
                bces.append(bce)
                dices.append(dice)
                pos.append((scores[j].float() - iou) ** 2)
                ious.append(iou)
        return torch.stack(bces).mean(), torch.stack(dices).mean(), torch.stack(pos).mean(), torch.stack(ious).mean()

    def export(self, folder: Path) -> None:
        if self.token_rows is not None:
            self.token_rows.write_back()
        if self.train_image_encoder and self.model.config.sam.checkpoint:
            # the trained encoder is no longer the SAM checkpoint's: the folder keeps it and references no file
            self.model.config = self.model.config.replace(sam={"checkpoint": None})
        self.model.save_pretrained(folder)


def _expand_image(ids: list[int], image_id: int, count: int) -> list[int]:
    if ids.count(image_id) != 1:
        raise InstructionError(f"a conversation holds {ids.count(image_id)} image tokens; expected exactly one")
    i = ids.index(image_id)
    return ids[:i] + [image_id] * count + ids[i + 1 :]


def _resize_bool(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = size
    if mask.shape == (h, w):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


# ----------------------------------------------------------------------------- the task
def take_perception(model: TrackGPT, folder: Path) -> None:
    """Load phi and the perception (``projection.*``, ``perception.*``) of the model saved in ``folder`` into
    ``model`` (``model.perception_from``); every such tensor must be there with the shape ``model`` has, or a
    :class:`SetupError` names what is not (:func:`perception_common.checkpoint.load_strict`). SAM's image encoder
    comes too: for a brain that sees through it (``brain.vision_source: sam``) the donor's must be the encoder that
    brain learnt on. A donor without an object proposer leaves the model's own in place."""
    from safetensors.torch import load_file

    path = folder / "model.safetensors"
    donor = {k: v for k, v in load_file(str(path)).items() if k.startswith(("projection.", "perception."))}
    view = nn.Module()  # phi and the perception under the names model.safetensors gives them
    view.projection, view.perception = model.projection, model.perception
    if model.perception.object_proposer is not None and not any("object_proposer." in k for k in donor):
        # a donor whose brain did not read objects has no proposer: the model keeps its own (object_proposer_from)
        view.perception = nn.Module()
        for name, child in model.perception.named_children():
            if name != "object_proposer":
                view.perception.add_module(name, child)
    try:
        load_strict(view, donor, f"model.perception_from {str(path)!r}")
    except CheckpointError as exc:
        raise SetupError(str(exc)) from None


def take_object_proposer(model: TrackGPT, path: Path) -> None:
    """Load the prompt encoder and mask decoder of the SAM state dict at ``path`` into the model's object proposer
    (``model.object_proposer_from``); a model without one, or tensors that do not fit, raise :class:`SetupError`."""
    proposer = model.perception.object_proposer
    if proposer is None:
        raise SetupError("model.object_proposer_from is set, but the model's brain.vision_source is not 'objects'")
    try:
        proposer.load_sam_state_dict(path, f"model.object_proposer_from {str(path)!r}")
    except CheckpointError as exc:
        raise SetupError(str(exc)) from None


class TrackGPTTask(Task):
    name = "trackgpt"
    plot_metrics = ("J&F", "J", "F", "gIoU", "cIoU", "purport")

    def setup(self) -> None:
        cfg = self.config
        m, data = cfg["model"], cfg["data"]
        if m.get("perception_from") and not (Path(m["perception_from"]) / "model.safetensors").is_file():
            raise SetupError(
                f"model.perception_from {str(m['perception_from'])!r} is not a TrackGPT model folder "
                "(no model.safetensors)"
            )
        if m.get("init_from"):
            folder = Path(m["init_from"])
            if not (folder / "config.json").is_file():
                raise SetupError(f"model.init_from {str(folder)!r} is not a TrackGPT model folder (no config.json)")
            extra = set(m.get("overrides") or {}) - {"brain", "projection_input_norm"}
            if extra:
                raise SetupError(
                    f"model.overrides cannot change {sorted(extra)} of a model loaded with model.init_from "
                    "(only brain fields, e.g. brain.answer_template, and projection_input_norm)"
                )
        else:
            try:
                self.model_config = get_config(m["config"], **dict(m.get("overrides") or {}))
            except TrackGPTError as exc:
                raise SetupError(f"model: {exc}") from exc
            # a saved model resolves relative base-weight paths against its own folder: store absolute ones
            brain, sam = self.model_config.brain, self.model_config.sam
            changes: dict[str, Any] = {}
            if brain.path and not Path(brain.path).is_absolute():
                changes["brain"] = {"path": str(Path(brain.path).expanduser().resolve())}
            if sam.checkpoint and not Path(sam.checkpoint).is_absolute():
                changes["sam"] = {"checkpoint": str(Path(sam.checkpoint).expanduser().resolve())}
            if changes:
                self.model_config = self.model_config.replace(**changes)
            brain = self.model_config.brain
            if brain.source == "folder" and not (Path(brain.path) / "config.json").is_file():
                raise SetupError(
                    f"model brain folder {brain.path!r} does not exist or has no config.json "
                    "(set model.overrides.brain.path)"
                )
            sam = self.model_config.sam
            if sam.checkpoint and not Path(sam.checkpoint).is_file():
                raise SetupError(
                    f"SAM checkpoint {sam.checkpoint!r} does not exist (set model.overrides.sam.checkpoint)"
                )
        specs = list(data.get("datasets") or [])
        if not specs:
            raise SetupError("data.datasets is empty: list the stage's datasets (see training/trackgpt/data.py)")
        kwargs = dict(frames_per_clip=int(data["frames_per_clip"]), reference_frame=str(data["reference_frame"]))
        datasets: list[TrainingDataset] = [build_dataset(spec, **kwargs) for spec in specs]
        self.stream = MixedStream(datasets, [spec.get("ratio", 1.0) for spec in specs], seed=int(cfg["seed"]))
        self.eval_sets = []
        for spec in cfg["eval"].get("datasets") or []:
            ds = build_dataset(spec, frames_per_clip=1, reference_frame="first")
            self.eval_sets.append((spec, ds))

    def samples_per_epoch(self) -> int:
        return len(self.stream)

    def build_module(self) -> nn.Module:
        m = self.config["model"]
        try:
            if m.get("init_from"):
                overrides = dict(m.get("overrides") or {})
                model = load_model(m["init_from"], **dict(overrides.get("brain") or {}))
                norm = overrides.get("projection_input_norm")
                if norm is not None and bool(norm) != model.config.projection_input_norm:
                    # phi of another input: a fresh one (the loaded phi read unstandardised states)
                    model.config = model.config.replace(projection_input_norm=bool(norm))
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(model.config.seed)
                        phi = build_projection(model.config, model.brain.hidden_size)
                    model.projection = phi.to(model.perception.dtype)
            else:
                model = load_model(self.model_config)
        except TrackGPTError as exc:
            raise SetupError(f"model: {exc}") from exc
        if m.get("perception_from"):
            take_perception(model, Path(m["perception_from"]))
        if m.get("object_proposer_from"):
            take_object_proposer(model, Path(m["object_proposer_from"]))
        self.model_config = model.config
        objects = float(self.config["loss"]["lambda_objects"])
        vocabulary = object_vocabulary(self.stream.datasets) if objects else ((), ())
        return TrackGPTTrainModule(model, loss=self.config["loss"], options=m, object_vocabulary=vocabulary).train()

    def param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        encoder = "model.perception.sam.image_encoder."
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        rows = [p for n, p in named if n.startswith("token_rows.")]
        image = [p for n, p in named if n.startswith(encoder)]
        rest = [p for n, p in named if not n.startswith(("token_rows.", encoder))]
        groups = [{"params": rest}]
        if image:
            groups.append({"params": image, "lr_scale": float(self.config["model"]["image_encoder_lr_scale"])})
        if rows:
            groups.append({"params": rows, "weight_decay": 0.0})
        return groups

    def micro_batches(self, start: int, *, rank: int, world: int, generator: torch.Generator) -> Iterator[Any]:
        return stream_batches(
            self.stream, start, self.config, rank=rank, world=world, collate_fn=collate, generator=generator
        )

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch  # samples are pre-processed on the model's device inside the module

    @torch.no_grad()
    def evaluate(self, module: nn.Module, step: int) -> dict[str, float]:
        if not self.eval_sets:
            return {}
        model: TrackGPT = module.model
        ev = self.config["eval"]
        metrics: dict[str, float] = {}
        for spec, ds in self.eval_sets:
            name = str(spec.get("name") or spec["type"])
            prefix = "" if len(self.eval_sets) == 1 else f"{name}/"
            limit = min(len(ds), int(ev["max_items"]) or len(ds))
            if spec["type"] in VIDEO_TYPES:
                scores, purport = [], []
                for i in range(limit):
                    video, expression = ds.items[i]
                    score, run = evaluate_video(
                        model,
                        video,
                        expression,
                        max_frames=int(ev["max_frames"]),
                        rethink=bool(ev["rethink"]),
                        tau=float(ev["tau"]),
                    )
                    scores.append(score)
                    purport.append(run.mean_purport)
                summary = summarize_davis(scores).overall
                metrics.update(
                    {
                        f"{prefix}J&F": summary["J&F-Mean"],
                        f"{prefix}J": summary["J-Mean"],
                        f"{prefix}F": summary["F-Mean"],
                        f"{prefix}purport": float(np.mean(purport)),
                    }
                )
            else:
                inter = union = 0.0
                ious = []
                for i in range(limit):
                    sample = ds.sample(i, item_rng(int(self.config["seed"]), 20, i))
                    if sample.kind != "mask":
                        continue
                    pred = predict_image(model, sample.frames[0], sample.text)
                    gt = sample.masks[0]
                    valid = np.ones_like(gt) if sample.ignore[0] is None else ~sample.ignore[0]
                    a, b = float(np.sum(pred & gt & valid)), float(np.sum((pred | gt) & valid))
                    inter, union = inter + a, union + b
                    ious.append(a / b if b > 0 else 1.0)
                if ious:
                    metrics.update({f"{prefix}gIoU": float(np.mean(ious)), f"{prefix}cIoU": inter / max(union, 1.0)})
        return metrics

    def export(self, module: nn.Module, folder: Path) -> None:
        module.export(folder)


def predict_image(model: TrackGPT, frame: np.ndarray, text: str) -> np.ndarray:
    """The mask TrackGPT decodes for ``text`` on one image (reason, then decode with Q_t = Q_R)."""
    reasoning = model.reason(frame, dataset_instruction(text, model))
    features = model.encode_frame(frame)
    q = reasoning.referring_query
    return model.decode(features, referring_query=q, online_query=q, purport_query=reasoning.purport_query).mask


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return loop_main(
            argv,
            prog="python -m training.trackgpt.train",
            description=__doc__,
            defaults=copy.deepcopy(DEFAULTS),
            task_cls=TrackGPTTask,
        )
    except DatasetError as exc:  # a file that went missing during training
        print(f"python -m training.trackgpt.train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
