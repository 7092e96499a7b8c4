"""The LVLM reasoning brain (paper Sec. 3.3): LLaVA with the added ``<TK>`` and ``<PO>`` tokens.

:class:`TrackGPTBrain` wraps a ``LlavaForConditionalGeneration`` (any model
with LLaVA's interface: ``get_image_features`` and an image placeholder
token) and its tokenizer. It

* adds ``<TK>`` (referring) and ``<PO>`` (purport) as special tokens and grows
  the input and output embeddings; the new rows start at the mean of the old
  rows (deterministic; training moves them);
* answers an instruction about a frame (:meth:`TrackGPTBrain.answer`) and
  returns the last-layer hidden states that predict ``<TK>`` and ``<PO>``:
  following LISA, the state at the position just *before* each token (or the
  mean of the ``BrainConfig.state_window`` states of layer ``state_layer`` before it);
* gives the same states under teacher forcing for training
  (:meth:`TrackGPTBrain.forward`, :meth:`TrackGPTBrain.training_example`);
* adds LoRA (peft) to the language model's ``q_proj`` / ``v_proj`` only
  (never the vision tower), saved and loaded in peft's own format.

Choices the paper leaves open, written down here:

* after free generation (greedy, stopping at EOS or ``<PO>``), the answer is
  run once more through the model with teacher forcing to read the states, so
  inference and training read them the same way. When the brain did not
  produce ``<TK>`` / ``<PO>`` (an untuned base model), they are appended to
  its answer and the states are read there (``BrainAnswer.forced`` is True);
* the image is padded to a square with the mean colour and resized to the
  vision tower's size (LLaVA-1.5's "pad" mode), bicubic;
* instructions longer than the context are rejected (:class:`InstructionError`),
  never silently truncated, since a cut instruction may name another target.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn

from .config import BrainConfig
from .errors import BrainError, CheckpointError, InstructionError, PrecisionError, ReasoningCancelled
from .llava import DTYPES, IMAGE_TOKEN, build_tiny_llava, load_llava_folder, use_sam_tokens
from .objects import use_object_tokens

TRACK_TOKEN = "<TK>"
PURPORT_TOKEN = "<PO>"
RESERVED_STRINGS = (IMAGE_TOKEN, TRACK_TOKEN, PURPORT_TOKEN)
#: LISA's referring token and image delimiters (``brain.style="lisa"``)
LISA_SEG_TOKEN = "[SEG]"
#: the namer's LoRA adapter (``BrainConfig.naming == "scene"``) and the length of its answers
NAMER_ADAPTER = "namer"
NAMER_MAX_TOKENS = 8
LISA_RESERVED = (LISA_SEG_TOKEN, "<im_start>", "<im_end>")


@dataclass
class BrainAnswer:
    """What the brain returns for one (frame, instruction).

    Attributes:
        answer: the text feedback T (special tokens removed, with the separator they leave at the end:
            "Sure, I track the red cup. <TK>, <PO>" reads "Sure, I track the red cup.").
        track_state: ``1 x H`` last-layer hidden state predicting ``<TK>``.
        purport_state: ``1 x H`` last-layer hidden state predicting ``<PO>``.
        forced: True when ``<TK>`` / ``<PO>`` were appended because the brain did not generate them.
        token_ids: the generated token ids (before any appending).
    """

    answer: str
    track_state: torch.Tensor
    purport_state: torch.Tensor
    forced: bool
    token_ids: list[int]


@dataclass
class BrainForward:
    """Teacher-forced pass (:meth:`TrackGPTBrain.forward`).

    Attributes:
        logits: ``B x L x V``.
        loss: text cross-entropy when labels were given, else None.
        track_states: ``B x H`` states predicting the last ``<TK>`` of each sequence.
        purport_states: ``B x H`` states predicting the last ``<PO>`` of each sequence.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None
    track_states: torch.Tensor
    purport_states: torch.Tensor


def tidy_answer(text: str) -> str:
    """The answer as a person reads it: whitespace and the commas / semicolons / colons that separated the removed
    ``<TK>`` and ``<PO>`` are stripped from its end ("Sure, I track the red cup. ," -> "Sure, I track the red cup.")."""
    return re.sub(r"[\s,;:]+$", "", text.strip())


def validate_instruction(text: str | bytes) -> str:
    """Check an instruction and return it as stripped ``str``.

    Raises:
        InstructionError: not str/bytes, bytes that are not UTF-8, text that cannot be encoded as
            UTF-8 (lone surrogates), empty or whitespace-only text, text with no visible character (only
            format or control characters such as zero-width spaces), text with a NUL or another control
            character than tab and newline, or text containing the reserved token strings ``<image>``,
            ``<TK>``, ``<PO>``.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InstructionError(f"instruction is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(text, str):
        raise InstructionError(f"instruction must be str or UTF-8 bytes, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InstructionError(f"instruction is not valid UTF-8 text ({exc.reason} at index {exc.start})") from None
    text = text.strip()
    if not text:
        raise InstructionError("instruction is empty or whitespace only")
    control = next((c for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
    if control is not None:
        raise InstructionError(f"instruction contains the control character U+{ord(control):04X}")
    if not any(unicodedata.category(c)[0] in "LNPS" for c in text):
        raise InstructionError("instruction has no visible character (only spaces, format or control characters)")
    for reserved in RESERVED_STRINGS:
        if reserved in text:
            raise InstructionError(f"instruction must not contain the reserved token {reserved!r}")
    return text


def clip_resize_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """CLIP's image preprocessing before normalisation, as transformers' ``CLIPImageProcessor`` does it (LISA's
    brain): the shortest edge resized to ``size`` (PIL bicubic, the long edge ``int(size * long / short)``), then
    the centre ``size x size`` cropped (top/left offsets rounded down). ``H x W x 3`` uint8 -> ``size x size x 3``."""
    from PIL import Image

    h, w = rgb.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    if short != size:
        new_short, new_long = size, int(size * long / short)
        new_h, new_w = (new_long, new_short) if w <= h else (new_short, new_long)
        rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), resample=Image.BICUBIC))
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    if top < 0 or left < 0:
        raise BrainError(f"image of {h} x {w} is smaller than the {size} x {size} crop")
    return rgb[top : top + size, left : left + size]


class _CancelCriteria:
    """A generation stopping criterion that fires when ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TrackGPTBrain(nn.Module):
    """LLaVA + tokenizer with the ``<TK>`` / ``<PO>`` tokens.

    Args:
        model: a ``LlavaForConditionalGeneration`` (or a model with its interface).
        tokenizer: its tokenizer; must map ``<image>`` to the model's image token id.
        config: prompt, generation and LoRA settings.
        image_mean, image_std: normalisation of the vision tower (0..1 scale); ``config``'s by default.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        tokenizer: Any,
        config: BrainConfig,
        image_mean: tuple[float, float, float] | None = None,
        image_std: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        mcfg = getattr(model, "config", None)
        if not hasattr(model, "get_image_features") or getattr(mcfg, "vision_config", None) is None:
            raise BrainError(f"{type(model).__name__} is not a LLaVA-style model (no vision tower)")
        image_id = getattr(mcfg, "image_token_id", None)
        if image_id is None:
            image_id = getattr(mcfg, "image_token_index", None)
        if image_id is None:
            raise BrainError("the brain's config names no image token id")
        tok_image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if tok_image_id != image_id:
            raise BrainError(
                f"tokenizer maps {IMAGE_TOKEN!r} to {tok_image_id}, but the model's image token id is {image_id}"
            )
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.image_token_id = int(image_id)
        self.image_mean = np.asarray(image_mean or config.image_mean, np.float32)
        self.image_std = np.asarray(image_std or config.image_std, np.float32)
        self.lisa = config.style == "lisa"
        self.track_token = LISA_SEG_TOKEN if self.lisa else TRACK_TOKEN
        if self.lisa and self.track_token not in tokenizer.get_vocab():
            raise BrainError(f"a LISA brain's tokenizer has no {LISA_SEG_TOKEN} token")
        self._add_tokens()
        self.track_token_id = int(tokenizer.convert_tokens_to_ids(self.track_token))
        self.purport_token_id = int(tokenizer.convert_tokens_to_ids(PURPORT_TOKEN))
        # vision_source "sam": the frame's SAM image embedding is the brain's image, pooled to its token grid
        self._image_encoder: Callable[[np.ndarray], torch.Tensor] | None = None
        # vision_source "objects": the frame's objects, described by the model (trackgpt.objects)
        self._object_reader: Callable[..., torch.Tensor] | None = None
        if config.vision_source == "sam":
            use_sam_tokens(model)
        elif config.vision_source == "objects":
            use_object_tokens(model)

    def submodule(self, suffix: str) -> nn.Module:
        """The part of the LLaVA model whose name ends in ``suffix`` (``"vision_tower"``,
        ``"multi_modal_projector"``), wherever a peft wrapper put it."""
        for name, module in self.model.named_modules():
            if name.endswith(suffix):
                return module
        raise BrainError(f"the brain has no {suffix} module")

    def attach_image_encoder(self, encode: Callable[[np.ndarray], torch.Tensor]) -> None:
        """``vision_source == "sam"``: ``encode(frame_rgb8)`` gives the frame's ``1 x C x h x w`` SAM image
        embedding (the perception's ``encode_frame``), which :meth:`preprocess_image` hands to the brain."""
        self._image_encoder = encode

    def attach_object_reader(self, read: Callable[..., torch.Tensor]) -> None:
        """``vision_source == "objects"``: ``read(frame_rgb8, objects=None)`` gives the frame's ``1 x slots x D``
        object descriptors (:func:`trackgpt.objects.describe_objects`), of the given index mask's objects or of the
        proposed ones (the model's ``_object_descriptors``)."""
        self._object_reader = read

    # ------------------------------------------------------------------ sizes
    @property
    def text_config(self) -> Any:
        return self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else (
            self.model.config.text_config
        )

    @property
    def hidden_size(self) -> int:
        """H, the language model's hidden size."""
        return int(self.text_config.hidden_size)

    @property
    def context_length(self) -> int:
        """Maximum tokens (prompt with image tokens + answer) the language model takes."""
        return int(self.text_config.max_position_embeddings)

    @property
    def vision_image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def num_image_tokens(self) -> int:
        """Image tokens that replace ``<image>`` (patches, plus CLS with the "full" strategy)."""
        vc = self.model.config.vision_config
        n = (int(vc.image_size) // int(vc.patch_size)) ** 2
        if getattr(self.model.config, "vision_feature_select_strategy", "default") == "full":
            n += 1
        return n

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    # ----------------------------------------------------------------- tokens
    def _add_tokens(self) -> None:
        """Add ``<TK>`` / ``<PO>`` to the tokenizer and make sure the embeddings have rows for them.

        Rows that are new (the matrix grew) or that belong to a token just added (some checkpoints,
        e.g. llava-hf's, pad the vocabulary and have unused rows) start at the mean of the rows of the
        tokenizer's previous vocabulary.
        """
        tok = self.tokenizer
        vocab_before = len(tok)
        missing = [t for t in (self.track_token, PURPORT_TOKEN) if t not in tok.get_vocab()]
        if missing:
            tok.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
        rows = self.model.get_input_embeddings().weight.shape[0]
        fresh = set(range(rows, len(tok))) | {int(tok.convert_tokens_to_ids(t)) for t in missing}
        if not fresh:
            return
        known = min(vocab_before, rows)
        means = [m.weight.detach()[:known].float().mean(0) if m is not None else None
                 for m in (self.model.get_input_embeddings(), self.model.get_output_embeddings())]
        if len(tok) > rows:
            self.model.resize_token_embeddings(len(tok), mean_resizing=False)
        ids = sorted(fresh)
        with torch.no_grad():
            for module, mean in zip((self.model.get_input_embeddings(), self.model.get_output_embeddings()), means):
                if module is not None and mean is not None:
                    module.weight[ids] = mean.to(module.weight.dtype)

    def added_token_rows(self) -> dict[str, torch.Tensor]:
        """The input/output embedding rows of ``<TK>`` and ``<PO>`` (``2 x H`` each), for saving."""
        ids = [self.track_token_id, self.purport_token_id]
        rows = {"input": self.model.get_input_embeddings().weight[ids].detach().clone()}
        out = self.model.get_output_embeddings()
        if out is not None:
            rows["output"] = out.weight[ids].detach().clone()
        return rows

    def set_added_token_rows(self, rows: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`added_token_rows`."""
        ids = [self.track_token_id, self.purport_token_id]
        with torch.no_grad():
            emb = self.model.get_input_embeddings().weight
            emb[ids] = rows["input"].to(emb.dtype)
            out = self.model.get_output_embeddings()
            if out is not None and "output" in rows:
                out.weight[ids] = rows["output"].to(out.weight.dtype)

    # ------------------------------------------------------------------ input
    def preprocess_image(self, frame_rgb8: np.ndarray, objects: np.ndarray | None = None) -> torch.Tensor:
        """``H x W x 3`` uint8 RGB -> ``1 x 3 x S x S`` pixel values in the brain's dtype (pad to square, resize;
        a LISA brain: CLIP's shortest-edge resize and centre crop; ``vision_source == "sam"``: the frame's SAM image
        embedding, ``1 x C x h x w``, from the attached image encoder, without gradient; ``"objects"``: the
        ``1 x slots x D`` descriptors of the frame's objects: those of ``objects``, an ``H x W`` index mask (0
        background, 255 void; training on a world's labels), else the proposed ones). Other sources ignore
        ``objects``."""
        if self.config.vision_source == "objects":
            if self._object_reader is None:
                raise BrainError("brain.vision_source 'objects' reads the perception's objects, and none is attached")
            with torch.no_grad():
                return self._object_reader(frame_rgb8, objects=objects).to(self.device, self.dtype)
        if self.config.vision_source == "sam":
            if self._image_encoder is None:
                raise BrainError("brain.vision_source 'sam' reads the perception's image encoder, and none is attached")
            with torch.no_grad():
                return self._image_encoder(frame_rgb8).to(self.device, self.dtype)
        if self.lisa:
            x = clip_resize_crop(frame_rgb8, self.vision_image_size)
            x = (x.astype(np.float32) / 255.0 - self.image_mean) / self.image_std
            return torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0).to(self.device, self.dtype)
        h, w = frame_rgb8.shape[:2]
        side = max(h, w)
        fill = tuple(int(round(float(m) * 255)) for m in self.image_mean)
        square = np.empty((side, side, 3), np.uint8)
        square[:] = fill
        y0, x0 = (side - h) // 2, (side - w) // 2
        square[y0 : y0 + h, x0 : x0 + w] = frame_rgb8
        size = self.vision_image_size
        resized = cv2.resize(square, (size, size), interpolation=cv2.INTER_CUBIC)
        x = (resized.astype(np.float32) / 255.0 - self.image_mean) / self.image_std
        return torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0).to(self.device, self.dtype)

    def _expand_image_token(self, ids: list[int]) -> list[int]:
        count = ids.count(self.image_token_id)
        if count != 1:
            raise BrainError(f"the prompt holds {count} image tokens after tokenisation; expected exactly one")
        i = ids.index(self.image_token_id)
        return ids[:i] + [self.image_token_id] * self.num_image_tokens + ids[i + 1 :]

    def prompt_ids(self, instruction: str | bytes) -> list[int]:
        """Token ids of the prompt for ``instruction``, with ``<image>`` expanded to the image tokens.

        Raises:
            InstructionError: see :func:`validate_instruction`; or the prompt plus ``max_new_tokens`` (and two
                tokens for a forced ``<TK>, <PO>``) would not fit the brain's context.
        """
        text = validate_instruction(instruction)
        if self.lisa:
            reserved = next((r for r in LISA_RESERVED if r in text), None)
            if reserved is not None:
                raise InstructionError(f"instruction must not contain the reserved token {reserved!r}")
        prompt = self.config.prompt_template.replace("{instruction}", text)
        ids = self._expand_image_token(list(self.tokenizer(prompt).input_ids))
        need = len(ids) + self.config.max_new_tokens + 2
        if need > self.context_length:
            raise InstructionError(
                f"instruction is too long: the prompt takes {len(ids)} tokens ({self.num_image_tokens} of them image "
                f"tokens) and the answer up to {self.config.max_new_tokens + 2}, but the brain's context is "
                f"{self.context_length} tokens"
            )
        return ids

    def check_instruction(self, instruction: str | bytes) -> str:
        """Validate ``instruction`` (text and length) without running the model; returns the cleaned text."""
        self.prompt_ids(instruction)
        return validate_instruction(instruction)

    def training_example(
        self, instruction: str | bytes, answer: str | None = None, *, target: str | None = None
    ) -> tuple[list[int], list[int]]:
        """Teacher-forcing ids and labels for one example.

        Args:
            instruction: the user's text (the paper: the referring description).
            answer: the answer text with ``<TK>`` and ``<PO>``; ``config.answer_template`` by default.
            target: the referred object's name, put in place of ``{target}`` in the template ("object" when
                None or empty).

        Returns:
            ``(input_ids, labels)``; labels are -100 over the prompt (including image tokens).
        """
        prompt = self.prompt_ids(instruction)
        if answer is None:
            answer = self.config.answer_template.replace("{target}", (target or "").strip() or "object")
        ans = list(self.tokenizer(answer, add_special_tokens=False).input_ids)
        eos = self.tokenizer.eos_token_id
        if eos is not None:
            ans.append(int(eos))
        return prompt + ans, [-100] * len(prompt) + ans

    # -------------------------------------------------------------- reasoning
    def states_before(
        self,
        hidden_states: Sequence[torch.Tensor],
        ids: torch.Tensor,
        token_id: int,
        *,
        rows: torch.Tensor | None = None,
        first: bool = False,
    ) -> torch.Tensor:
        """States ``B x H`` read for the last ``token_id`` of each row (training and inference use this rule;
        ``first``: the first one, as LISA reads its first ``[SEG]``).

        The mean of the ``config.state_window`` states of layer ``config.state_layer`` (an index into the
        model's ``hidden_states``: -1 the last layer, 0 the embeddings) just before that token. The defaults
        (last layer, 1 state) are LISA's rule: the one state that predicts the token. ``rows``: read only these
        batch rows (the others may hold no such token).
        """
        layer = int(self.config.state_layer)
        if not -len(hidden_states) <= layer < len(hidden_states):
            raise BrainError(f"brain.state_layer {layer} is outside the model's {len(hidden_states)} hidden states")
        hidden = hidden_states[layer]
        if rows is not None:
            hidden, ids = hidden[rows], ids[rows]
        window = int(self.config.state_window)
        rows = []
        for b in range(ids.shape[0]):
            pos = (ids[b] == token_id).nonzero().flatten()
            end = int(pos[0] if first else pos[-1]) if pos.numel() else 0
            if end == 0:
                raise BrainError(f"sequence {b} holds no {self.tokenizer.convert_ids_to_tokens(token_id)} token")
            rows.append(hidden[b, max(0, end - window) : end].mean(dim=0))
        return torch.stack(rows)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> BrainForward:
        """Teacher-forced pass (training and state reading).

        Args:
            input_ids: ``B x L`` with the image tokens expanded and a ``<TK>`` and ``<PO>`` in each row.
            pixel_values: ``B x 3 x S x S``.
            attention_mask: ``B x L`` (1 = token, 0 = padding) or None.
            labels: ``B x L`` for the text loss (-100 = ignored) or None.
        """
        out = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values.to(self.dtype),
            attention_mask=attention_mask,
            labels=labels,
            output_hidden_states=True,
        )
        track = self.states_before(out.hidden_states, input_ids, self.track_token_id, first=self.lisa)
        return BrainForward(
            logits=out.logits,
            loss=out.loss,
            track_states=track,
            # LISA has no purport token: its purport comes from SAM's IoU prediction (TrackGPTConfig.purport_source)
            purport_states=track if self.lisa else self.states_before(
                out.hidden_states, input_ids, self.purport_token_id),
        )

    @torch.no_grad()
    def answer(
        self, frame_rgb8: np.ndarray, instruction: str | bytes, *, cancel_event: threading.Event | None = None
    ) -> BrainAnswer:
        """Answer ``instruction`` about a frame; return the text and the ``<TK>`` / ``<PO>`` states.

        Args:
            frame_rgb8: ``H x W x 3`` uint8 RGB.
            instruction: the user's instruction.
            cancel_event: when set (by another thread), generation stops and :class:`ReasoningCancelled` is raised.
        """
        if self.lisa:
            return self._answer_lisa(frame_rgb8, instruction, cancel_event)
        ids = self.prompt_ids(instruction)
        pixel_values = self.preprocess_image(frame_rgb8)
        eos = self.tokenizer.eos_token_id
        stop_ids = [self.purport_token_id] + ([int(eos)] if eos is not None else [])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stop_ids[-1]
        generated = self._generate(ids, pixel_values, cancel_event, eos_token_id=stop_ids, pad_token_id=pad)
        kept: list[int] = []
        for t in generated:
            if eos is not None and t == eos:
                break
            kept.append(t)
            if t == self.purport_token_id:
                break
        full = list(kept)
        forced = False
        for token in (self.track_token_id, self.purport_token_id):
            if token not in full:
                full.append(token)
                forced = True
        seq_ids = torch.tensor([ids + full], dtype=torch.long, device=self.device)
        result = self.forward(seq_ids, pixel_values, attention_mask=torch.ones_like(seq_ids))
        text = tidy_answer(self.tokenizer.decode(kept, skip_special_tokens=True))
        return BrainAnswer(text, result.track_states, result.purport_states, forced, generated)

    def _generate(
        self, ids: list[int], pixel_values: torch.Tensor | None, cancel_event, *, max_new_tokens: int | None = None,
        **stop: Any,
    ) -> list[int]:
        """Greedy generation after the prompt ``ids`` (``pixel_values`` None: text only; ``max_new_tokens`` None:
        the config's; ``stop``: ``eos_token_id``, ``pad_token_id`` and other ``generate`` options); the generated
        ids. Raises :class:`ReasoningCancelled` when ``cancel_event`` is set."""
        from transformers import StoppingCriteriaList

        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        criteria = StoppingCriteriaList([_CancelCriteria(cancel_event)]) if cancel_event is not None else None
        if pixel_values is not None:  # (LLaVA runs its vision tower on pixel_values=None)
            stop["pixel_values"] = pixel_values
        seq = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=self.config.max_new_tokens if max_new_tokens is None else max_new_tokens,
            do_sample=False,
            stopping_criteria=criteria,
            **stop,
        )
        if cancel_event is not None and cancel_event.is_set():
            raise ReasoningCancelled("reasoning superseded by a newer instruction")
        return [int(t) for t in seq[0, len(ids) :]]

    def _answer_lisa(self, frame_rgb8: np.ndarray, instruction: str | bytes, cancel_event) -> BrainAnswer:
        """LISA's inference (``chat.py`` / ``LISAForCausalLM.evaluate``): greedy, stops at EOS only; the referring
        state is the last layer's state before the first ``[SEG]``; an answer without ``[SEG]`` names no target."""
        ids = self.prompt_ids(instruction)
        pixel_values = self.preprocess_image(frame_rgb8)
        eos = int(self.tokenizer.eos_token_id)
        generated = self._generate(
            ids, pixel_values, cancel_event, eos_token_id=eos, pad_token_id=int(self.tokenizer.pad_token_id),
            # rows LISA does not have (the image token, <PO>) can never be its answer
            suppress_tokens=[self.image_token_id, self.purport_token_id],
        )
        kept = generated[: generated.index(eos)] if eos in generated else generated
        text = self.tokenizer.decode(kept, skip_special_tokens=True).replace("\n", "").replace("  ", " ").strip()
        if self.track_token_id not in kept:
            raise BrainError(f"the answer names no target (no {LISA_SEG_TOKEN}): {text!r}")
        seq_ids = torch.tensor([ids + kept], dtype=torch.long, device=self.device)
        result = self.forward(seq_ids, pixel_values, attention_mask=torch.ones_like(seq_ids))
        return BrainAnswer(text, result.track_states, result.purport_states, False, generated)

    @torch.no_grad()
    def answer_naming(self, frame_rgb8: np.ndarray, instruction: str | bytes, target: str) -> BrainAnswer:
        """The states of the answer that names ``target``, teacher-forced instead of generated.

        An evaluation ablation (the "oracle answer"): it measures what the perception makes of a brain that
        always names the right object. The answer is ``config.answer_template`` with ``{target}`` filled in, as
        training teaches it; a template without ``{target}`` gives the same answer for every target.
        """
        ids, labels = self.training_example(instruction, target=target)
        pixel_values = self.preprocess_image(frame_rgb8)
        seq_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        result = self.forward(seq_ids, pixel_values, attention_mask=torch.ones_like(seq_ids))
        answer_ids = [t for t in labels if t != -100]  # the labels mask the prompt out
        text = tidy_answer(self.tokenizer.decode(answer_ids, skip_special_tokens=True))
        return BrainAnswer(text, result.track_states, result.purport_states, False, answer_ids)

    # ------------------------------------------------------------------- LoRA
    @property
    def has_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def add_lora(self) -> None:
        """Wrap the language model's ``q_proj`` / ``v_proj`` with LoRA (config's r, alpha, dropout)."""
        from peft import LoraConfig, get_peft_model

        if self.has_lora:
            raise BrainError("the brain already has a LoRA adapter")
        names = "|".join(self.config.lora_target_modules)
        lora = LoraConfig(
            r=self.config.lora_r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=rf".*language_model.*\.({names})",
            bias="none",
        )
        self.model = get_peft_model(self.model, lora)
        self.model.train(self.training)  # new LoRA dropout layers start in training mode

    def save_adapter(self, folder: str | Path) -> None:
        """Save the LoRA adapter in peft's format (embeddings are not saved here; see :meth:`added_token_rows`)."""
        if not self.has_lora:
            raise BrainError("the brain has no LoRA adapter to save")
        # the brain's adapter only (peft would write a namer adapter into a sub-folder too: it has its own)
        self.model.save_pretrained(str(folder), selected_adapters=["default"], save_embedding_layers=False)

    def load_adapter(self, folder: str | Path) -> None:
        """Load a peft LoRA adapter saved by :meth:`save_adapter`."""
        from peft import PeftModel

        folder = Path(folder)
        if not (folder / "adapter_config.json").is_file():
            raise CheckpointError(f"LoRA adapter folder {folder} has no adapter_config.json")
        if self.has_lora:
            raise BrainError("the brain already has a LoRA adapter")
        try:
            self.model = PeftModel.from_pretrained(self.model, str(folder), is_trainable=False)
        except SafetensorError as exc:  # a truncated or corrupt adapter_model.safetensors
            raise CheckpointError(f"LoRA adapter {folder / 'adapter_model.safetensors'} is unreadable: {exc}") from None
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise CheckpointError(f"LoRA adapter {folder} does not fit the brain: {exc}") from exc
        self.model.train(self.training)

    # ------------------------------------------------------------------ namer
    @property
    def has_namer(self) -> bool:
        return NAMER_ADAPTER in getattr(self.model, "peft_config", {})

    def add_namer(self) -> None:
        """Give the language model a fresh LoRA adapter for naming from a listing (``config.naming == "scene"``,
        :mod:`trackgpt.scene`); the brain must have its own LoRA already. Training makes it the active adapter."""
        from peft import LoraConfig

        if not self.has_lora:
            raise BrainError("the namer's adapter goes beside the brain's LoRA, and the brain has none")
        if self.has_namer:
            raise BrainError("the brain already has a namer adapter")
        names = "|".join(self.config.namer_lora_target_modules)
        lora = LoraConfig(
            r=self.config.namer_lora_r, lora_alpha=self.config.namer_lora_alpha, lora_dropout=self.config.lora_dropout,
            target_modules=rf".*language_model.*\.({names})", bias="none",
        )  # fmt: skip
        self.model.add_adapter(NAMER_ADAPTER, lora)
        self.model.train(self.training)  # its new dropout layers start in training mode

    def save_namer(self, folder: str | Path) -> None:
        """Save the namer's adapter in peft's format under ``folder``."""
        if not self.has_namer:
            raise BrainError("the brain has no namer adapter to save")
        with tempfile.TemporaryDirectory() as tmp:  # peft writes a non-default adapter into <folder>/<name>/
            self.model.save_pretrained(tmp, selected_adapters=[NAMER_ADAPTER], save_embedding_layers=False)
            shutil.copytree(Path(tmp) / NAMER_ADAPTER, folder, dirs_exist_ok=True)

    def load_namer(self, folder: str | Path) -> None:
        """Load a namer adapter saved by :meth:`save_namer` beside the brain's LoRA."""
        folder = Path(folder)
        if not (folder / "adapter_config.json").is_file():
            raise CheckpointError(f"namer adapter folder {folder} has no adapter_config.json")
        if not self.has_lora or self.has_namer:
            raise BrainError("the namer's adapter goes beside the brain's LoRA, once")
        try:
            self.model.load_adapter(str(folder), adapter_name=NAMER_ADAPTER, is_trainable=False)
        except SafetensorError as exc:
            raise CheckpointError(
                f"namer adapter {folder / 'adapter_model.safetensors'} is unreadable: {exc}"
            ) from None
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise CheckpointError(f"namer adapter {folder} does not fit the brain: {exc}") from exc
        self.model.set_adapter("default")
        self.model.train(self.training)

    @contextmanager
    def namer_active(self) -> Iterator[None]:
        """While open, the language model runs with the namer's adapter instead of the brain's (training: the
        namer's weights are the trainable ones)."""
        if not self.has_namer:
            raise BrainError("the brain has no namer adapter (brain.naming 'scene' needs a trained namer)")
        flags = {p: p.requires_grad for p in self.model.parameters()}
        self.model.set_adapter(NAMER_ADAPTER)
        try:
            yield
        finally:
            self.model.set_adapter("default")
            for p, flag in flags.items():  # set_adapter marks the active adapter trainable: put the flags back
                p.requires_grad_(flag)

    def namer_example(self, scene: str, instruction: str, name: str) -> tuple[list[int], list[int]]:
        """Teacher-forcing ids and labels of the namer: the prompt (:func:`trackgpt.scene.namer_prompt`) and the
        target's name, then end of text; labels are -100 over the prompt."""
        from .scene import namer_prompt

        prompt = list(self.tokenizer(namer_prompt(scene, instruction)).input_ids)
        ans = list(self.tokenizer(name, add_special_tokens=False).input_ids)
        eos = self.tokenizer.eos_token_id
        if eos is not None:
            ans.append(int(eos))
        return prompt + ans, [-100] * len(prompt) + ans

    @torch.no_grad()
    def name_target(self, scene: str, instruction: str | bytes, *, cancel_event: threading.Event | None = None) -> str:
        """The name of the object ``instruction`` means, read by the namer from ``scene`` (a listing of the frame's
        objects, :func:`trackgpt.scene.scene_text`); greedy, text only."""
        from .scene import namer_prompt

        ids = list(self.tokenizer(namer_prompt(scene, validate_instruction(instruction))).input_ids)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with self.namer_active():
            generated = self._generate(ids, None, cancel_event, max_new_tokens=NAMER_MAX_TOKENS, eos_token_id=eos,
                                       pad_token_id=pad)  # fmt: skip
        return self.tokenizer.decode(generated, skip_special_tokens=True).strip().rstrip(".")


def load_brain(
    config: BrainConfig, *, base_dir: str | Path | None = None, tokenizer_folder: str | Path | None = None
) -> TrackGPTBrain:
    """Build or load the brain that ``config`` describes.

    Args:
        config: the brain configuration.
        base_dir: folder against which a relative ``config.path`` is resolved.
        tokenizer_folder: a tokenizer to use instead of the brain folder's (a saved TrackGPT's, with the tokens).
    """
    config.validate()
    if config.source == "tiny":
        if config.precision not in DTYPES:
            raise PrecisionError(f"precision {config.precision!r} applies to folder brains only; use fp32/bf16/fp16")
        model, tokenizer = build_tiny_llava(config)
        if tokenizer_folder is not None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
        model = model.to(DTYPES[config.precision])
        return TrackGPTBrain(model=model, tokenizer=tokenizer, config=config)
    if config.source == "smollm2":
        from .embedded import ensure_embedded_brain

        folder = ensure_embedded_brain(config)
    else:
        folder = Path(config.path)
        if not folder.is_absolute() and base_dir is not None:
            folder = Path(base_dir) / folder
    model, tokenizer, (mean, std) = load_llava_folder(
        folder, precision=config.precision, tokenizer_folder=tokenizer_folder
    )
    return TrackGPTBrain(model=model, tokenizer=tokenizer, config=config, image_mean=mean, image_std=std)
