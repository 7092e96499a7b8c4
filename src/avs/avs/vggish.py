"""VGGish audio network with the torchvggish state-dict layout.

The key names are exactly those of the public ``vggish-10086976.pth``
(harritaylor/torchvggish, used by AVSBench):

* ``features.{0,3,6,8,11,13}.{weight,bias}``: the conv stack
  ``64 M 128 M 256 256 M 512 512 M`` (3 x 3 convs, ReLU, 2 x 2 max-pools);
* ``embeddings.{0,2,4}.{weight,bias}``: ``Linear(512*4*6, 4096) ReLU
  Linear(4096, 4096) ReLU Linear(4096, 128) ReLU``;
* optional ``pproc.pca_eigen_vectors`` (128 x 128) and ``pproc.pca_means``
  (128 x 1): the AudioSet PCA/whitening + 8-bit quantisation, loaded from
  ``vggish_pca_params-*.pth`` (keys ``pca_eigen_vectors``, ``pca_means``).

Sizes are data (:data:`VGGISH_SIZES`): the small variants keep the same layout
and key names with narrower layers, for tests and the embedded model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perception_common.checkpoint import CheckpointError, load_pth_state_dict, load_strict

from .audio import EXAMPLE_FRAMES, NUM_MEL_BANDS
from .errors import ConfigError, InputError

EMBEDDING_DIM = 128
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = 2.0

#: conv widths follow the pattern ``w0 M w1 M w2 w3 M w4 w5 M``; ``fc_widths`` are the two hidden layers.
VGGISH_SIZES: dict[str, dict] = {
    "vggish": {"conv_widths": (64, 128, 256, 256, 512, 512), "fc_widths": (4096, 4096)},
    "vggish-small": {"conv_widths": (16, 32, 64, 64, 128, 128), "fc_widths": (512, 512)},
    "vggish-tiny": {"conv_widths": (4, 8, 8, 8, 16, 16), "fc_widths": (32, 32)},
    # the embedded model's audio net, trained from scratch: BatchNorm after every conv, LayerNorm on the embedding
    # (no final ReLU). Without normalisation the small net's embedding grew ~500x during training and collapsed to one
    # direction (mean pairwise cosine 0.91), so the similarity gate could not tell positives from negatives.
    "vggish-small-bn": {
        "conv_widths": (16, 32, 64, 64, 128, 128),
        "fc_widths": (512, 512),
        "conv_batch_norm": True,
        "final_relu": False,
        "embedding_layer_norm": True,
    },
}


class Postprocessor(nn.Module):
    """AudioSet PCA (with whitening) and 8-bit quantisation of VGGish embeddings.

    Output values are integers in ``[0, 255]`` (as floats); rounding has no gradient.
    """

    def __init__(self, *, dim: int = EMBEDDING_DIM):
        super().__init__()
        self.register_buffer("pca_eigen_vectors", torch.eye(dim))
        self.register_buffer("pca_means", torch.zeros(dim, 1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``B x 128`` raw embeddings -> ``B x 128`` quantised PCA embeddings."""
        pca = (self.pca_eigen_vectors @ (embeddings.t() - self.pca_means)).t()
        clipped = pca.clamp(QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL)
        return torch.round((clipped - QUANTIZE_MIN_VAL) * (255.0 / (QUANTIZE_MAX_VAL - QUANTIZE_MIN_VAL)))


class VGGish(nn.Module):
    """VGGish: log-mel examples ``B x 1 x 96 x 64`` -> embeddings ``B x 128``.

    Args:
        conv_widths: six conv widths in the pattern ``w0 M w1 M w2 w3 M w4 w5 M``
            (published: 64, 128, 256, 256, 512, 512).
        fc_widths: the two hidden fully connected widths (published: 4096, 4096).
        embedding_dim: output size (published: 128).
        final_relu: keep the ReLU after the last linear layer, as torchvggish does.
        conv_batch_norm: BatchNorm after every conv (not in torchvggish; for small nets trained from scratch).
        embedding_layer_norm: LayerNorm on the embedding (``embedding_norm.*`` keys; not in torchvggish).
        postprocess: add the PCA + quantisation post-processor (``pproc.*`` keys).
            AVSBench trains without it (``POSTPROCESS_LOG_MEL_WITH_PCA=False``).
    """

    def __init__(
        self,
        *,
        conv_widths: Sequence[int] = VGGISH_SIZES["vggish"]["conv_widths"],
        fc_widths: Sequence[int] = VGGISH_SIZES["vggish"]["fc_widths"],
        embedding_dim: int = EMBEDDING_DIM,
        final_relu: bool = True,
        conv_batch_norm: bool = False,
        embedding_layer_norm: bool = False,
        postprocess: bool = False,
    ):
        super().__init__()
        conv_widths = tuple(int(w) for w in conv_widths)
        fc_widths = tuple(int(w) for w in fc_widths)
        if len(conv_widths) != 6 or len(fc_widths) != 2 or min(conv_widths + fc_widths) < 1:
            raise ConfigError(f"VGGish needs 6 positive conv widths and 2 fc widths, got {conv_widths}, {fc_widths}")
        pattern = (conv_widths[0], "M", conv_widths[1], "M", conv_widths[2], conv_widths[3], "M")
        pattern += (conv_widths[4], conv_widths[5], "M")
        layers: list[nn.Module] = []
        in_ch = 1
        for item in pattern:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.Conv2d(in_ch, item, kernel_size=3, padding=1))
                if conv_batch_norm:
                    layers.append(nn.BatchNorm2d(item))
                layers.append(nn.ReLU(inplace=True))
                in_ch = item
        self.features = nn.Sequential(*layers)
        flat = conv_widths[5] * (EXAMPLE_FRAMES // 16) * (NUM_MEL_BANDS // 16)
        head: list[nn.Module] = [
            nn.Linear(flat, fc_widths[0]),
            nn.ReLU(inplace=True),
            nn.Linear(fc_widths[0], fc_widths[1]),
            nn.ReLU(inplace=True),
            nn.Linear(fc_widths[1], embedding_dim),
        ]
        if final_relu:
            head.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*head)
        self.embedding_norm = nn.LayerNorm(embedding_dim) if embedding_layer_norm else None
        self.embedding_dim = embedding_dim
        self.pproc = Postprocessor(dim=embedding_dim) if postprocess else None

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """``B x 1 x 96 x 64`` log-mel -> ``B x embedding_dim``."""
        if examples.ndim != 4 or tuple(examples.shape[1:]) != (1, EXAMPLE_FRAMES, NUM_MEL_BANDS):
            raise InputError(
                f"VGGish takes log-mel examples B x 1 x {EXAMPLE_FRAMES} x {NUM_MEL_BANDS}, "
                f"got shape {tuple(examples.shape)}"
            )
        x = self.features(examples)  # B x C x 6 x 4
        # torchvggish flattens in (H, W, C) order to stay compatible with the TF weights
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        x = self.embeddings(x)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        if self.pproc is not None:
            x = self.pproc(x)
        return x


def build_vggish(size: str = "vggish", **overrides) -> VGGish:
    """Build a VGGish of a registered size (:data:`VGGISH_SIZES`)."""
    if size not in VGGISH_SIZES:
        raise ConfigError(f"unknown VGGish size {size!r}; known: {', '.join(VGGISH_SIZES)}")
    return VGGish(**{**VGGISH_SIZES[size], **overrides})


def load_vggish_state_dict(model: VGGish, state: Mapping[str, torch.Tensor] | str | Path, *, source: str = "") -> None:
    """Load a torchvggish state dict (``vggish-*.pth`` or a dict) strictly into ``model``.

    ``pproc.pca_matrix`` (newer torchvggish) is read as ``pproc.pca_eigen_vectors``
    (AVSBench's copy). A checkpoint without ``pproc.*`` keys loads into a model with a
    post-processor (the PCA parameters come from :func:`load_pca_params`); any
    other missing, unexpected or mis-shaped key is an error naming it.
    """
    if isinstance(state, (str, Path)):
        source = source or str(state)
        state = load_pth_state_dict(state)
    source = source or "VGGish state dict"
    state = dict(state)
    if "pproc.pca_matrix" in state:  # newer harritaylor/torchvggish name of the same matrix
        state["pproc.pca_eigen_vectors"] = state.pop("pproc.pca_matrix")
    if model.pproc is not None and not any(k.startswith("pproc.") for k in state):
        own = model.pproc.state_dict()
        state.update({f"pproc.{k}": v for k, v in own.items()})
    load_strict(model, state, source)


def load_pca_params(model: VGGish, params: Mapping | str | Path) -> None:
    """Load the AudioSet PCA parameters (``vggish_pca_params-*.pth``: ``pca_eigen_vectors``, ``pca_means``)."""
    if model.pproc is None:
        raise ConfigError("this VGGish was built with postprocess=False; it has no PCA parameters to load")
    source = str(params) if isinstance(params, (str, Path)) else "PCA parameters"
    if isinstance(params, (str, Path)):
        params = _load_pca_file(Path(params))
    try:
        vectors = torch.as_tensor(np.asarray(params["pca_eigen_vectors"]), dtype=torch.float32)
        means = torch.as_tensor(np.asarray(params["pca_means"]), dtype=torch.float32).reshape(-1, 1)
    except KeyError as exc:
        raise CheckpointError(f"{source} lacks {exc}; expected keys 'pca_eigen_vectors' and 'pca_means'") from None
    dim = model.embedding_dim
    if tuple(vectors.shape) != (dim, dim) or tuple(means.shape) != (dim, 1):
        raise CheckpointError(
            f"{source}: pca_eigen_vectors {tuple(vectors.shape)} / pca_means {tuple(means.shape)} "
            f"do not fit a {dim}-d embedding"
        )
    model.pproc.pca_eigen_vectors.copy_(vectors)
    model.pproc.pca_means.copy_(means)


def _load_pca_file(path: Path) -> dict:
    """The PCA file may hold tensors or NumPy arrays; load it with ``weights_only=True`` either way."""
    if not path.is_file():
        raise CheckpointError(f"PCA parameter file {path} does not exist")
    safe = [np.ndarray, np.dtype, np.float32, np.float64]
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    safe.append(_reconstruct)
    safe += [type(np.dtype(np.float32)), type(np.dtype(np.float64))]
    try:
        with torch.serialization.safe_globals(safe):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read PCA parameter file {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"PCA parameter file {path} does not hold a dict")
    return obj
