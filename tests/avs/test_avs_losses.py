"""Losses of Eq. 5-9 against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avs.errors import InputError
from avs.losses import avm_loss, gate_bce_loss, segmentation_loss, total_loss
from avs.model import build_model


def test_segmentation_and_gate_bce_match_the_formula():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    gt = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    p = torch.sigmoid(logits)
    manual = -(gt * p.log() + (1 - gt) * (1 - p).log()).mean()
    torch.testing.assert_close(segmentation_loss(logits, gt), manual)
    torch.testing.assert_close(segmentation_loss(logits, gt[:, 0]), manual)
    s = torch.tensor([0.9, -0.2, 0.1])
    y = torch.tensor([1.0, 0.0, 0.0])
    sig = torch.sigmoid(s)
    torch.testing.assert_close(gate_bce_loss(s, y), -(y * sig.log() + (1 - y) * (1 - sig).log()).mean())
    with pytest.raises(InputError, match="do not match"):
        segmentation_loss(logits, torch.zeros(1, 1, 3, 3))
    with pytest.raises(InputError, match="do not match"):
        gate_bce_loss(s, y[:2])


def reference_avm(mask_logits, z, a):
    """AVSBench kl_flag loss for one stage in NumPy: sum over the batch of KL(softmax(a_n) || softmax(v_n))."""
    m = mask_logits.numpy()[:, 0]
    z, a = z.numpy().astype(np.float64), a.numpy().astype(np.float64)
    b, _, h, w = z.shape
    fh, fw = m.shape[1] // h, m.shape[2] // w
    total = 0.0
    for n in range(b):
        pooled = m[n].reshape(h, fh, w, fw).mean(axis=(1, 3))
        weight = 1.0 / (1.0 + np.exp(-pooled))
        v = (z[n] * weight[None]).mean(axis=(1, 2))
        v /= np.linalg.norm(v)
        an = a[n] / np.linalg.norm(a[n])
        p = np.exp(an) / np.exp(an).sum()
        q = np.exp(v) / np.exp(v).sum()
        total += float((p * (np.log(p) - np.log(q))).sum())
    return total


def test_avm_matches_reference_and_selects_positives():
    torch.manual_seed(0)
    mask = torch.randn(3, 1, 8, 8)
    z1, a1 = torch.randn(3, 5, 4, 4), torch.randn(3, 5)
    z2, a2 = torch.randn(3, 5, 2, 2), torch.randn(3, 5)
    got = avm_loss(mask, [z1, z2, torch.randn(3, 5, 1, 1)], [a1, a2, None])
    expected = (reference_avm(mask, z1, a1) + reference_avm(mask, z2, a2)) / 2  # mean over stages with TPAVI
    assert abs(float(got) - expected) < 1e-4
    batchmean = avm_loss(mask, [z1, z2], [a1, a2], reduction="batchmean")
    assert abs(float(batchmean) - expected / 3) < 1e-4
    select = torch.tensor([True, False, True])
    only = avm_loss(mask, [z1], [a1], select=select)
    z1_changed = z1.clone()
    z1_changed[1] += 5.0
    torch.testing.assert_close(only, avm_loss(mask, [z1_changed], [a1], select=select))
    assert abs(float(only) - reference_avm(mask[select], z1[select], a1[select])) < 1e-4


def test_total_loss_combines_terms_and_baseline_has_no_gate_term():
    torch.manual_seed(0)
    frames, audio = torch.rand(4, 3, 64, 64), torch.randn(4, 1, 96, 64)
    gt = torch.zeros(4, 1, 64, 64)
    gt[0, :, 10:30, 10:30] = 1
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    out = build_model("tiny")(frames, audio)
    terms = total_loss(out, gt, labels, lambda_bce=2.0, lambda_avm=0.3)
    torch.testing.assert_close(terms.total, 2.0 * terms.bce + terms.seg + 0.3 * terms.avm)
    assert float(terms.bce.detach()) > 0 and float(terms.avm.detach()) > 0
    terms.total.backward()
    base = build_model("tiny", gate="off")(frames, audio)
    bterms = total_loss(base, gt, labels)
    assert float(bterms.bce.detach()) == 0.0
    torch.testing.assert_close(bterms.total, bterms.seg + 0.5 * bterms.avm)
    with pytest.raises(InputError, match="pair_labels"):
        total_loss(out, gt, labels[:3])
