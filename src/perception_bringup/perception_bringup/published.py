"""The published checkpoints nearest to this workspace's two systems: what they are, where they come from, what a
robot needs to run them, and whether this workspace imports them yet (``perception-models list``).

Memory figures are estimates from the parameter counts (2 bytes per parameter at fp16; 4-bit language model with
the vision parts at fp16 for int4), weights only: add activations (about 1-2 GB for LISA at 1024 px). Sizes are
the upstream files'. Nothing here downloads anything; ``perception-models fetch`` does, on a machine with internet,
for the entries on Hugging Face.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published checkpoint.

    Attributes:
        name: the name ``perception-models`` uses.
        system: ``trackgpt`` or ``avs``: the node that would run it.
        upstream: where it is published.
        hf_repo: the Hugging Face repository ``fetch`` downloads (None: download by hand from ``upstream``).
        parameters_b: parameters, billions (as run: with the parts the import adds).
        files: what the upstream download holds.
        licence: the upstream licence (code, and the weights' own where they differ).
        importer: ``perception-models import`` kind, or why there is none yet.
        fp16_gb, int4_gb: weight memory at fp16 and 4-bit (None where 4-bit does not apply).
    """

    name: str
    system: str
    upstream: str
    hf_repo: str | None
    parameters_b: float
    files: str
    licence: str
    importer: str
    fp16_gb: float
    int4_gb: float | None = None


_LISA_LICENCE = "code Apache-2.0; weights derive from LLaVA / LLaMA: the LLaMA licence applies"
_LISA2_LICENCE = "code Apache-2.0; weights derive from LLaVA / Llama 2: the Llama 2 Community licence applies"
_LISA_IMPORT = "lisa (with --clip: a clip-vit-large-patch14 folder)"

CATALOGUE: tuple[Published, ...] = (
    Published("lisa-7b-v1", "trackgpt", "https://huggingface.co/xinlai/LISA-7B-v1", "xinlai/LISA-7B-v1", 7.6,
              "sharded .bin (LLM bf16, SAM ViT-H fp32), sentencepiece tokenizer; no CLIP weights",
              _LISA_LICENCE, _LISA_IMPORT, 15.3, 5.3),
    Published("lisa-7b-v1-explanatory", "trackgpt", "https://huggingface.co/xinlai/LISA-7B-v1-explanatory",
              "xinlai/LISA-7B-v1-explanatory", 7.6, "as lisa-7b-v1", _LISA_LICENCE, _LISA_IMPORT, 15.3, 5.3),
    Published("lisa-13b-llama2-v1", "trackgpt", "https://huggingface.co/xinlai/LISA-13B-llama2-v1",
              "xinlai/LISA-13B-llama2-v1", 13.9, "as lisa-7b-v1 (Llama 2 13B)", _LISA2_LICENCE, _LISA_IMPORT,
              27.8, 8.4),
    Published("lisa-13b-llama2-v1-explanatory", "trackgpt",
              "https://huggingface.co/xinlai/LISA-13B-llama2-v1-explanatory", "xinlai/LISA-13B-llama2-v1-explanatory",
              13.9, "as lisa-13b-llama2-v1", _LISA2_LICENCE, _LISA_IMPORT, 27.8, 8.4),
    Published("clip-vit-large-patch14", "trackgpt", "https://huggingface.co/openai/clip-vit-large-patch14",
              "openai/clip-vit-large-patch14", 0.43,
              "CLIP ViT-L/14 (LISA's vision tower: its folders leave it out, its chat loads this by name)",
              "MIT", "part of the LISA import (its vision tower)", 0.86),
    Published("avsbench-avss-pvt", "avs", "https://github.com/OpenNLPLab/AVSBench (README: pretrained AVSS models, "
              "Google Drive; V2_pvt_miou_best.pth)", None, 0.17,
              "TPAVI PVT-v2-b5, 71-class head (.pth; the 72 M VGGish comes separately)", "Apache-2.0",
              "avsbench (with --vggish vggish-10086976.pth)", 0.35),
    Published("avsbench-s4-ms3", "avs", "https://github.com/OpenNLPLab/AVSBench (not published: upstream issues #9, "
              "#25; train with its avs_scripts/avs_s4|avs_ms3/train.py)", None, 0.17,
              "TPAVI ResNet-50 (0.14 B) or PVT-v2-b5, one mask; what train.py writes", "Apache-2.0",
              "avsbench (with --vggish vggish-10086976.pth)", 0.35),
    Published("torchvggish", "avs", "https://github.com/harritaylor/torchvggish/releases (vggish-10086976.pth)",
              None, 0.072, "VGGish audio network (AVSBench's audio encoder)", "Apache-2.0",
              "part of the AVSBench import (--vggish)", 0.14),
)


def find(name: str) -> Published:
    """The catalogue entry ``name`` (KeyError listing the known names)."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown checkpoint {name!r}; known: {', '.join(e.name for e in CATALOGUE)}")
