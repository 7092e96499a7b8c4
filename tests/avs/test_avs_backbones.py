"""Backbone checkpoints in their official formats load strictly (full-size, built once each)."""

from __future__ import annotations

import re

import pytest
import torch

from avs.backbones import build_backbone, load_backbone_state_dict
from avs.errors import CheckpointError


def randomised(state, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        out[k] = v.clone() if not v.is_floating_point() else torch.randn(v.shape, generator=g) * 0.02
    return out


def to_official_pvt(timm_key: str) -> str:
    """timm key -> official PVT-v2 key (whai362/PVT, the pvt_v2_b5.pth that AVSBench loads)."""
    k = timm_key.replace("patch_embed.", "patch_embed1.")
    k = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"patch_embed{int(m.group(1)) + 1}.", k)
    k = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}.", k)
    k = re.sub(r"^stages\.(\d+)\.norm\.", lambda m: f"norm{int(m.group(1)) + 1}.", k)
    return k.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")


def test_resnet50_torchvision_checkpoint_loads_strictly(tmp_path):
    import torchvision

    reference = randomised(torchvision.models.resnet50(weights=None).state_dict())
    assert "fc.weight" in reference and "layer4.2.conv3.weight" in reference
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(reference, path)
    backbone = build_backbone("resnet50")
    load_backbone_state_dict(backbone, path)
    own = backbone.state_dict()
    assert set(own) == set(reference) - {"fc.weight", "fc.bias"}
    for k in ("conv1.weight", "layer3.5.bn2.running_var", "layer4.2.conv3.weight"):
        assert torch.equal(own[k], reference[k])
    feats = backbone.eval()(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    # older files without num_batches_tracked also load
    old = {k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    load_backbone_state_dict(backbone, old, source="old resnet50")
    # a missing conv is named
    broken = dict(reference)
    del broken["layer2.1.conv2.weight"]
    with pytest.raises(CheckpointError, match=r"layer2\.1\.conv2\.weight"):
        load_backbone_state_dict(backbone, broken, source="broken")


@pytest.fixture(scope="module")
def pvt_b5_reference():
    import timm

    ref = timm.create_model("pvt_v2_b5", pretrained=False)
    return randomised(ref.state_dict())


def test_pvt_v2_b5_timm_and_official_checkpoints_load_strictly(tmp_path, pvt_b5_reference):
    timm_state = pvt_b5_reference
    assert "head.weight" in timm_state
    backbone = build_backbone("pvt_v2_b5")
    path = tmp_path / "pvt_v2_b5_timm.pth"
    torch.save(timm_state, path)
    load_backbone_state_dict(backbone, path)
    key = "stages.2.blocks.39.mlp.fc2.weight"
    assert torch.equal(backbone.state_dict()[f"model.{key}"], timm_state[key])

    official = {to_official_pvt(k): v for k, v in timm_state.items()}
    for known in ("patch_embed1.proj.weight", "patch_embed4.norm.bias", "block3.39.mlp.dwconv.dwconv.weight",
                  "block1.2.attn.sr.weight", "block4.2.attn.kv.weight", "norm4.weight", "head.weight"):
        assert known in official, known
    fresh = build_backbone("pvt_v2_b5")
    load_backbone_state_dict(fresh, official, source="pvt_v2_b5.pth")
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, backbone.state_dict()[k]), k
    feats = fresh.eval()(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 16), (128, 8, 8), (320, 4, 4), (512, 2, 2)]

    del official["block2.5.attn.q.weight"]
    with pytest.raises(CheckpointError, match=r"stages\.1\.blocks\.5\.attn\.q\.weight"):
        load_backbone_state_dict(fresh, official, source="broken pvt")


def test_small_backbones_give_four_stages():
    for name, channels in (("pvt_v2_tiny", (8, 16, 24, 32)), ("pvt_v2_b0", (32, 64, 160, 256))):
        bb = build_backbone(name).eval()
        assert bb.channels == channels
        feats = bb(torch.rand(2, 3, 96, 64))
        assert [tuple(f.shape) for f in feats] == [
            (2, c, 96 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32), strict=True)
        ]


def test_corrupt_backbone_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_backbone_state_dict(build_backbone("pvt_v2_tiny"), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone_state_dict(build_backbone("pvt_v2_tiny"), tmp_path / "missing.pth")
