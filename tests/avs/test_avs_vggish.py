"""VGGish network: torchvggish key names load strictly; flatten order and PCA post-processing as published."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avs.errors import CheckpointError, InputError
from avs.vggish import VGGish, build_vggish, load_pca_params, load_vggish_state_dict

# The layout of harritaylor/torchvggish's vggish-10086976.pth, written out by hand.
TORCHVGGISH_SHAPES = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096),
    "embeddings.4.bias": (128,),
}


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.01 for k, s in shapes.items()}


@pytest.fixture(scope="module")
def full_vggish_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vggish") / "vggish-10086976.pth"
    state = random_state(TORCHVGGISH_SHAPES)
    torch.save(state, path)
    return path, state


def test_torchvggish_checkpoint_loads_strictly(full_vggish_file):
    path, state = full_vggish_file
    model = build_vggish("vggish")
    load_vggish_state_dict(model, path)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    out = model(torch.randn(2, 1, 96, 64))
    assert tuple(out.shape) == (2, 128)
    # with a post-processor the same file loads too (PCA parameters come separately)
    with_pca = build_vggish("vggish", postprocess=True)
    load_vggish_state_dict(with_pca, path)
    assert torch.equal(with_pca.embeddings[4].weight, state["embeddings.4.weight"])


def test_full_torchvggish_state_with_pproc_loads():
    donor = VGGish(conv_widths=(4, 8, 8, 8, 16, 16), fc_widths=(32, 32), postprocess=True)
    state = {k: torch.randn_like(v) for k, v in donor.state_dict().items()}
    state["pproc.pca_matrix"] = state.pop("pproc.pca_eigen_vectors")  # newer torchvggish key name
    model = VGGish(conv_widths=(4, 8, 8, 8, 16, 16), fc_widths=(32, 32), postprocess=True)
    load_vggish_state_dict(model, state)
    assert torch.equal(model.pproc.pca_eigen_vectors, state["pproc.pca_matrix"])
    assert torch.equal(model.pproc.pca_means, state["pproc.pca_means"])


def test_wrong_keys_are_named():
    small = build_vggish("vggish-tiny")
    good = {k: v.clone() for k, v in small.state_dict().items()}
    missing = dict(good)
    del missing["embeddings.2.bias"]
    with pytest.raises(CheckpointError, match=r"missing.*embeddings\.2\.bias"):
        load_vggish_state_dict(small, missing)
    extra = dict(good, **{"classifier.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected.*classifier\.weight"):
        load_vggish_state_dict(small, extra)
    shaped = dict(good, **{"features.0.weight": torch.zeros(5, 1, 3, 3)})
    with pytest.raises(CheckpointError, match=r"mismatched.*features\.0\.weight"):
        load_vggish_state_dict(small, shaped)


def test_forward_flattens_like_torchvggish():
    torch.manual_seed(0)
    model = build_vggish("vggish-tiny").eval()
    x = torch.randn(3, 1, 96, 64)
    feats = model.features(x)
    # torchvggish: transpose(1, 3), transpose(1, 2), view
    flat = torch.transpose(torch.transpose(feats, 1, 3), 1, 2).contiguous().view(3, -1)
    expected = model.embeddings(flat)
    torch.testing.assert_close(model(x), expected)
    assert tuple(model(x).shape) == (3, 128)
    assert (model(x) >= 0).all()  # final ReLU as in torchvggish


def test_pca_params_file_with_numpy_arrays(tmp_path):
    model = VGGish(conv_widths=(4, 8, 8, 8, 16, 16), fc_widths=(32, 32), postprocess=True).eval()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(128, 128)).astype(np.float32)
    means = rng.normal(size=(128,)).astype(np.float32)
    path = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save({"pca_eigen_vectors": vectors, "pca_means": means}, path)
    load_pca_params(model, path)
    x = torch.randn(2, 1, 96, 64)
    raw = model.embeddings(torch.flatten(model.features(x).permute(0, 2, 3, 1), 1)).detach().numpy()
    pca = (vectors @ (raw.T - means[:, None])).T
    expected = np.round((np.clip(pca, -2.0, 2.0) + 2.0) * (255.0 / 4.0))
    np.testing.assert_allclose(model(x).detach().numpy(), expected, atol=1.0)  # rounding at the edges
    assert model(x).min() >= 0 and model(x).max() <= 255
    assert "pproc.pca_eigen_vectors" in model.state_dict() and "pproc.pca_means" in model.state_dict()


def test_pca_errors(tmp_path):
    model = VGGish(conv_widths=(4, 8, 8, 8, 16, 16), fc_widths=(32, 32), postprocess=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pca_params(model, tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="pca_means"):
        load_pca_params(model, {"pca_eigen_vectors": np.eye(128)})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_pca_params(model, {"pca_eigen_vectors": np.eye(64), "pca_means": np.zeros(64)})
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pca_params(model, corrupt)


def test_bad_input_shape():
    model = build_vggish("vggish-tiny")
    with pytest.raises(InputError, match="B x 1 x 96 x 64"):
        model(torch.randn(2, 96, 64))
    with pytest.raises(InputError, match="got shape"):
        model(torch.randn(2, 1, 64, 96))


def test_small_bn_variant_normalises_the_embedding():
    """vggish-small-bn (the embedded model's audio net): BatchNorm convs, LayerNorm'd embedding without ReLU, so
    the embedding keeps a fixed scale and can point anywhere (the plain small net's grew ~500x and collapsed)."""
    torch.manual_seed(0)
    net = build_vggish("vggish-small-bn").train()
    x = torch.randn(6, 1, 96, 64) * 3 - 2
    y = net(x)
    assert y.shape == (6, 128)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.features)
    assert torch.allclose(y.mean(dim=1), torch.zeros(6), atol=1e-4)
    assert torch.allclose(y.std(dim=1, unbiased=False), torch.ones(6), atol=1e-2)
    assert (y < 0).any()  # no final ReLU

