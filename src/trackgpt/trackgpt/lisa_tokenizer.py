"""LISA's tokenizer as LISA runs it: LLaMA's sentencepiece model through transformers 4.31's slow ``LlamaTokenizer``
with ``legacy=True``, plus LISA's added tokens, and LLaVA's ``tokenizer_image_token``.

Newer transformers tokenise the same text differently (different ids for the same prompt), so the LISA import
keeps the sentencepiece model and this class reproduces 4.31's rules (tested against ids 4.31 produced):

* the text is split at added tokens (``[SEG]``, ``<im_start>``, ``<im_end>``, ...) and at ``<s>``, ``</s>``,
  ``<unk>``; the text on both sides of an added token loses its whitespace (4.31 ``PreTrainedTokenizer.tokenize``:
  plain-string added tokens "strip left and right by default"; ``<s>``/``</s>``/``<unk>`` are ``AddedToken``s
  without stripping), so ``<im_end>\\nWhat`` loses its newline and ``is [SEG]`` its space;
* every remaining piece is encoded by sentencepiece on its own (``legacy=True``: ``_tokenize`` is
  ``sp_model.encode(piece)``), so each starts with sentencepiece's dummy-prefix ``▁``;
* ``<s>`` is put first (``add_bos_token``), no ``</s>``;
* ``<image>`` (LLaVA's ``tokenizer_image_token``, ``model/llava/mm_utils.py``): the prompt is split at
  ``<image>``, each chunk tokenised as above, the chunks' own ``<s>`` dropped after the first, and the image
  token put between them (here a real vocabulary id, where LLaVA uses the sentinel -200);
* decoding (4.31 ``_decode`` with ``spaces_between_special_tokens=True``, no clean-up): runs of sentencepiece ids
  are decoded by sentencepiece, added tokens are kept as their text, the parts joined with one space.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BrainError

MARKER = "trackgpt_tokenizer.json"
KIND = "lisa-llama-slow-4.31"
IMAGE_TOKEN = "<image>"


@dataclass
class Encoding:
    input_ids: list[int]


class LisaTokenizer:
    """LLaMA sentencepiece + added tokens, tokenised as transformers 4.31's slow tokenizer does (module docstring).

    Args:
        model_file: LLaMA's ``tokenizer.model``.
        added_tokens: added token -> id (``added_tokens.json``; ids continue the sentencepiece vocabulary).
        special: the added tokens that count as special (skipped by ``decode(skip_special_tokens=True)``).
    """

    def __init__(self, model_file: str | Path, added_tokens: dict[str, int], special: set[str] | None = None):
        import sentencepiece

        self.model_file = Path(model_file)
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        except (OSError, RuntimeError) as exc:
            raise BrainError(f"cannot read the sentencepiece model {self.model_file}: {exc}") from None
        self.base_size = int(self.sp.get_piece_size())
        self.added = {str(k): int(v) for k, v in added_tokens.items()}
        expected = list(range(self.base_size, self.base_size + len(self.added)))
        if sorted(self.added.values()) != expected:
            raise BrainError(
                f"added token ids {sorted(self.added.values())} do not continue the sentencepiece vocabulary of "
                f"{self.base_size}"
            )
        self.special_added = set(special or ())
        self.bos_token_id = int(self.sp.bos_id())
        self.eos_token_id = int(self.sp.eos_id())
        self.unk_token_id = int(self.sp.unk_id())
        self.pad_token_id = self.unk_token_id  # chat.py: tokenizer.pad_token = tokenizer.unk_token
        self.bos_token, self.eos_token, self.unk_token = (self.sp.id_to_piece(i) for i in (
            self.bos_token_id, self.eos_token_id, self.unk_token_id))
        self._compile()

    def _compile(self) -> None:
        self._id_to_added = {v: k for k, v in self.added.items()}
        splitters = sorted([*self.added, self.bos_token, self.eos_token, self.unk_token], key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in splitters) + ")")

    # ----------------------------------------------------------------- folders
    @classmethod
    def from_folder(cls, folder: str | Path) -> LisaTokenizer:
        """A LISA tokenizer folder (``tokenizer.model`` + ``added_tokens.json``) or one this class saved."""
        folder = Path(folder)
        model, added = folder / "tokenizer.model", folder / "added_tokens.json"
        if not model.is_file():
            raise BrainError(f"tokenizer folder {folder} has no tokenizer.model (LLaMA's sentencepiece model)")
        try:
            tokens = json.loads(added.read_text()) if added.is_file() else {}
            marker = json.loads((folder / MARKER).read_text()) if (folder / MARKER).is_file() else {}
        except (OSError, ValueError) as exc:
            raise BrainError(f"tokenizer folder {folder}: unreadable JSON: {exc}") from None
        if not isinstance(tokens, dict) or not all(isinstance(v, int) for v in tokens.values()):
            raise BrainError(f"{added} must map token strings to ids")
        return cls(model, tokens, set(marker.get("special", [])))

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.model_file.resolve() != (folder / "tokenizer.model").resolve():
            shutil.copyfile(self.model_file, folder / "tokenizer.model")
        (folder / "added_tokens.json").write_text(json.dumps(self.added, indent=1, sort_keys=True))
        (folder / MARKER).write_text(json.dumps({"kind": KIND, "special": sorted(self.special_added)}, indent=1))

    # ------------------------------------------------------------ vocabulary
    def __len__(self) -> int:
        return self.base_size + len(self.added)

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp.id_to_piece(i): i for i in range(self.base_size)}
        vocab.update(self.added)
        return vocab

    def convert_tokens_to_ids(self, token: str | list[str]):
        if isinstance(token, list):
            return [self.convert_tokens_to_ids(t) for t in token]
        if token in self.added:
            return self.added[token]
        piece = self.sp.piece_to_id(token)
        return int(piece)

    def convert_ids_to_tokens(self, ids: int | list[int]):
        if isinstance(ids, list):
            return [self.convert_ids_to_tokens(i) for i in ids]
        ids = int(ids)
        return self._id_to_added[ids] if ids in self._id_to_added else self.sp.id_to_piece(ids)

    def add_special_tokens(self, tokens: dict[str, list[str]], **_: Any) -> int:
        """Add special tokens at the end of the vocabulary (the brain adds ``<TK>`` / ``<PO>`` this way)."""
        return self.add_tokens(tokens.get("extra_special_tokens", []), special_tokens=True)

    def add_tokens(self, tokens: list[str], special_tokens: bool = False) -> int:
        """Add tokens LISA's way (``[SEG]``, ``<im_start>``, ``<im_end>``; the import adds ``<image>``), the ones not
        there yet, at the end of the vocabulary; ``special_tokens``: skipped by ``decode(skip_special_tokens=True)``."""
        count = 0
        for token in tokens:
            if token not in self.added:
                self.added[token] = len(self)
                if special_tokens:
                    self.special_added.add(token)
                count += 1
        self._compile()
        return count

    # -------------------------------------------------------------- encoding
    def _encode_text(self, text: str, add_bos: bool) -> list[int]:
        parts = [p for p in self._split.split(text)]
        # whitespace next to an added token goes (4.31: plain-string added tokens strip both neighbours)
        for i, part in enumerate(parts):
            if part in self.added:
                if i > 0:
                    parts[i - 1] = parts[i - 1].rstrip()
                if i + 1 < len(parts):
                    parts[i + 1] = parts[i + 1].lstrip()
        ids = [self.bos_token_id] if add_bos else []
        for part in parts:
            if not part:
                continue
            if part in self.added:
                ids.append(self.added[part])
            elif part in (self.bos_token, self.eos_token, self.unk_token):
                ids.append(int(self.sp.piece_to_id(part)))
            else:
                ids.extend(int(i) for i in self.sp.encode(part))
        return ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids; ``<image>`` (when it is a token of this tokenizer) as LLaVA's ``tokenizer_image_token``."""
        if IMAGE_TOKEN not in self.added or IMAGE_TOKEN not in text:
            return self._encode_text(text, add_special_tokens)
        chunks = [self._encode_text(chunk, add_special_tokens) for chunk in text.split(IMAGE_TOKEN)]
        ids = list(chunks[0])
        skip = 1 if add_special_tokens else 0  # later chunks' own <s> is dropped
        for chunk in chunks[1:]:
            ids.append(self.added[IMAGE_TOKEN])
            ids.extend(chunk[skip:])
        return ids

    def __call__(self, text: str, add_special_tokens: bool = True, **_: Any) -> Encoding:
        return Encoding(self.encode(text, add_special_tokens))

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text for ``ids`` as 4.31's slow ``decode`` gives it (module docstring)."""
        skip = {self.bos_token_id, self.eos_token_id, self.unk_token_id}
        skip |= {self.added[t] for t in self.special_added if t in self.added}
        parts: list[str] = []
        run: list[int] = []
        for i in (int(x) for x in ids):
            if skip_special_tokens and i in skip:
                continue
            if i in self._id_to_added:
                if run:
                    parts.append(self._decode_run(run))
                    run = []
                parts.append(self._id_to_added[i])
            else:
                run.append(i)
        if run:
            parts.append(self._decode_run(run))
        return " ".join(parts)

    def _decode_run(self, ids: list[int]) -> str:
        """4.31 ``LlamaTokenizer.convert_tokens_to_string``: ``<s>``/``</s>``/``<unk>`` are written as text (a space
        before one that follows ordinary pieces), the pieces between them decoded by sentencepiece."""
        specials = {self.bos_token_id, self.eos_token_id, self.unk_token_id}
        out, pending, prev_special = "", [], False
        for k, i in enumerate(ids):
            if i in specials:
                if not prev_special and k != 0:
                    out += " "
                out += self.sp.decode(pending) + self.sp.id_to_piece(i)
                pending, prev_special = [], True
            else:
                pending.append(i)
                prev_special = False
        return out + self.sp.decode(pending)


def is_lisa_tokenizer_folder(folder: str | Path) -> bool:
    """A tokenizer folder this class saved (``trackgpt_tokenizer.json`` names its kind)."""
    path = Path(folder) / MARKER
    try:
        return path.is_file() and json.loads(path.read_text()).get("kind") == KIND
    except (OSError, ValueError):
        return False
