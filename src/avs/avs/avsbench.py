"""Import AVSBench's TPAVI checkpoints (OpenNLPLab/AVSBench, ``avs_scripts/``) into :class:`avs.AVSModel`.

What upstream writes: ``train.py`` saves ``model.module.state_dict()`` of ``Pred_endecoder`` (a plain dict; a
``module.`` prefix is stripped all the same), without the audio network: VGGish runs outside the model, with the
official torchvggish weights (``vggish-10086976.pth``, no PCA post-processing: AVSBench's configs leave it off), so
the import takes that file too. Models:

* S4 / MS3, ResNet-50 (``ResNet_AVSModel.py``) or PVT-v2-b5 (``PVT_AVSModel.py``): one sounding-object mask;
* AVSS (``avss/model/PVT_AVSModel.py``, the weights the AVSBench project publishes): the same encoder-decoder with
  a ``NUM_CLASSES``-way ``output_conv`` (71: class 0 background); the sounding mask is every other class.

The mapping (every tensor placed, nothing left over, checked strictly):

* ``resnet.{conv1,bn1,layer1,layer2,layer3_1,layer4_1}`` -> ``backbone.{..., layer3, layer4}``; upstream builds a
  second branch ``layer3_2``/``layer4_2`` its forward never uses (``model/resnet.py``, ``B2_ResNet``): dropped;
* ``encoder_backbone.*`` (the official PVT-v2 layout) -> timm's layout through timm's ``checkpoint_filter_fn``;
* ``conv{K}.conv2d_list.{N}`` (``Classifier_Module``, the ASPP) -> ``aspp.{K-1}.branches.{N}``;
* ``tpavi_b{K}.{align_channel, theta, phi, g, W_z, norm_layer}`` (``model/TPAVI.py``) -> ``tpavi.{K-1}.*``
  (``norm_layer`` -> ``norm``); this project's ``mu`` (not in upstream: its residual adds V itself) becomes the
  identity, and AVSS's bias-free ``align_channel`` gets a zero bias;
* ``path{K}.resConfUnit{1,2}`` (``FeatureFusionBlock``) -> ``decoder.path{K}.{lateral, refine}``;
* ``output_conv.{0,2,4}`` -> ``decoder.{head_in, head_mid, head_out}``.

The model gets ``decoder_style="avsbench"`` (the two decoder details, see :mod:`avs.decoder`), ``gate="off"``
(AVSBench has no correspondence classifier: it is the un-gated baseline; training the gate on top is the
project's pipeline) and ``clip_frames=5`` (TPAVI attends over 5 frames one second apart, with their audio).
Checked against upstream's own forward pass on small random-weight instances: ``tests/avs/fixtures/avsbench``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from perception_common.checkpoint import load_pth_state_dict, load_strict

from .backbones import BACKBONES, build_backbone
from .config import AVSConfig
from .errors import CheckpointError
from .model import AVSModel

# what upstream hard-codes (PVT_AVSModel.py / ResNet_AVSModel.py / TPAVI.py); the rest is read from the tensors
UPSTREAM_FIXED = {
    "aspp_dilations": (3, 6, 12, 18),  # Classifier_Module([3, 6, 12, 18], ...)
    "tpavi_attention": "dot",  # TPAVIModule(mode='dot')
    "image_size": 224,  # the dataloaders resize to 224 x 224
    "decoder_style": "avsbench",
    "gate": "off",
    "clip_frames": 5,  # reshape(-1, 5, ...): five frames, one per second of video
    "clip_stride_s": 1.0,
    "vggish_postprocess": False,  # config: cfg.TRAIN.PREPROCESS_AUDIO_TO_LOG_MEL, no PCA
}


def read_checkpoint(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An AVSBench checkpoint (a ``.pth`` path or a state dict), ``module.`` prefixes stripped."""
    state = load_pth_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    if state and all(k.startswith("module.") for k in state):  # saved from the DataParallel wrapper itself
        state = {k[len("module."):]: v for k, v in state.items()}
    if not any(k.startswith(("resnet.", "encoder_backbone.")) for k in state) or "output_conv.4.weight" not in state:
        raise CheckpointError(
            f"{source if isinstance(source, (str, Path)) else 'state dict'} is not an AVSBench TPAVI checkpoint "
            "(no resnet.* / encoder_backbone.* and output_conv.4.weight keys)"
        )
    return state


def _backbone_state(state: Mapping[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """The backbone's tensors in this project's backbone naming (before the ``backbone.`` prefix)."""
    if kind == "resnet":
        out = {}
        for key, value in state.items():
            if not key.startswith("resnet."):
                continue
            key = key[len("resnet."):]
            if key.startswith(("layer3_2.", "layer4_2.")):  # the unused second branch
                continue
            out[key.replace("layer3_1.", "layer3.").replace("layer4_1.", "layer4.")] = value
        return out
    from timm.models.pvt_v2 import checkpoint_filter_fn

    official = {k[len("encoder_backbone."):]: v for k, v in state.items() if k.startswith("encoder_backbone.")}
    return {f"model.{k}": v for k, v in checkpoint_filter_fn(official, None).items()}


def _match_backbone(state: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """The registered backbone whose tensors (names and shapes) are exactly the checkpoint's."""
    kind = "resnet" if any(k.startswith("resnet.") for k in state) else "pvt_v2"
    mapped = _backbone_state(state, kind)
    shapes = {k: tuple(v.shape) for k, v in mapped.items()}
    for name, spec in BACKBONES.items():
        if spec["kind"] != kind:
            continue
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            candidate = build_backbone(name)
        own = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if not k.endswith("num_batches_tracked")}
        if own == {k: s for k, s in shapes.items() if not k.endswith("num_batches_tracked")}:
            return name, mapped
    raise CheckpointError(
        f"the checkpoint's {kind} backbone matches none of the known ones "
        f"({', '.join(n for n, s in BACKBONES.items() if s['kind'] == kind)})"
    )


def infer_config(state: Mapping[str, torch.Tensor], *, audio_encoder: str = "vggish") -> AVSConfig:
    """The :class:`AVSConfig` of an AVSBench checkpoint (sizes from its tensors, the rest as upstream fixes it)."""
    backbone, _ = _match_backbone(state)
    stages = sorted({int(m[1]) - 1 for k in state if (m := re.match(r"tpavi_b(\d)\.", k))})
    try:
        channels = int(state["conv1.conv2d_list.0.weight"].shape[0])
        head = (int(state["output_conv.0.weight"].shape[0]), int(state["output_conv.2.weight"].shape[0]))
        num_classes = int(state["output_conv.4.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"AVSBench checkpoint lacks {exc.args[0]}") from None
    return AVSConfig(
        backbone=backbone,
        audio_encoder=audio_encoder,
        channels=channels,
        tpavi_stages=tuple(stages),
        decoder_head_channels=head,
        num_classes=num_classes,
        **UPSTREAM_FIXED,
    )


def convert_state_dict(state: Mapping[str, torch.Tensor], config: AVSConfig) -> dict[str, torch.Tensor]:
    """Upstream's tensors under this project's names (without the audio network); unplaced keys are an error."""
    _, backbone = _match_backbone(state)
    out = {f"backbone.{k}": v for k, v in backbone.items()}
    unplaced = []
    head_names = {"0": "head_in", "2": "head_mid", "4": "head_out"}
    for key, value in state.items():
        if key.startswith(("resnet.", "encoder_backbone.")):
            continue
        if m := re.match(r"conv(\d)\.conv2d_list\.(\d+)\.(weight|bias)$", key):
            out[f"aspp.{int(m[1]) - 1}.branches.{m[2]}.{m[3]}"] = value
        elif m := re.match(r"path(\d)\.resConfUnit([12])\.(conv[12]\.(?:weight|bias))$", key):
            out[f"decoder.path{m[1]}.{'lateral' if m[2] == '1' else 'refine'}.{m[3]}"] = value
        elif m := re.match(r"tpavi_b(\d)\.(.+)$", key):
            out[f"tpavi.{int(m[1]) - 1}.{m[2].replace('norm_layer.', 'norm.')}"] = value
        elif m := re.match(r"output_conv\.([024])\.(weight|bias)$", key):
            out[f"decoder.{head_names[m[1]]}.{m[2]}"] = value
        else:
            unplaced.append(key)
    if unplaced:
        raise CheckpointError(f"AVSBench checkpoint has {len(unplaced)} unknown tensor(s): {', '.join(unplaced[:5])}")
    c = config.channels
    for stage in config.tpavi_stages:
        out[f"tpavi.{stage}.mu.weight"] = torch.eye(c).view(c, c, 1, 1, 1)
        out[f"tpavi.{stage}.mu.bias"] = torch.zeros(c)
        out.setdefault(f"tpavi.{stage}.align_channel.bias", torch.zeros(c))  # AVSS: Linear(128, C, bias=False)
    return out


def import_avsbench(
    checkpoint: str | Path | Mapping[str, torch.Tensor],
    vggish: str | Path | Mapping[str, torch.Tensor],
    *,
    audio_encoder: str = "vggish",
) -> AVSModel:
    """An AVSBench TPAVI checkpoint and the torchvggish weights -> a ready :class:`AVSModel` (eval mode, CPU).

    Args:
        checkpoint: the ``.pth`` upstream's ``train.py`` wrote (or its state dict).
        vggish: torchvggish ``vggish-10086976.pth`` (or its state dict): AVSBench's audio network.
        audio_encoder: the VGGish size (``vggish``; the small sizes exist for tests).

    Raises:
        CheckpointError: a tensor that does not fit, an unknown backbone, a missing file (named).
    """
    state = read_checkpoint(checkpoint)
    config = infer_config(state, audio_encoder=audio_encoder)
    model = AVSModel(config=config)
    converted = convert_state_dict(state, config)
    converted.update({f"audio_encoder.{k}": v for k, v in model.audio_encoder.state_dict().items()})
    own = model.state_dict()
    for key, value in own.items():  # old torchvision files lack BatchNorm's counters
        if key.endswith("num_batches_tracked") and key not in converted:
            converted[key] = torch.zeros_like(value)
    load_strict(model, converted, str(checkpoint) if isinstance(checkpoint, (str, Path)) else "AVSBench state dict")
    model.load_audio_weights(vggish)
    return model.eval()


__all__ = ["UPSTREAM_FIXED", "convert_state_dict", "import_avsbench", "infer_config", "read_checkpoint"]
