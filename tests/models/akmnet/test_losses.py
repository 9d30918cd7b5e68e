"""The GS-MMM loss (Eqs. 10-12) on hand-made β vectors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mestream.models.akmnet.losses import akmnet_loss, gs_loss, mmm_loss  # noqa: E402


def _key(beta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = (beta * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
    return (beta >= mean) & mask


def test_gs_is_zero_for_one_key_frame_and_counts_the_extra_ones() -> None:
    gate = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert gs_loss(gate).tolist() == [0.0, 2.0, 0.0]  # max(0, sum(B) - 1)


def test_mmm_is_c_minus_the_gap_between_key_and_other_means() -> None:
    beta = torch.tensor([[0.9, 0.1, 0.2, 0.8]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    key = _key(beta, mask)
    assert key.tolist() == [[True, False, False, True]]
    expected = 2.0 - ((0.9 + 0.8) / 2 - (0.1 + 0.2) / 2)
    assert mmm_loss(beta, key, mask).item() == pytest.approx(expected)
    # a wider gap between the two groups lowers the loss
    wider = torch.tensor([[1.0, -0.5, -0.4, 0.9]])
    assert mmm_loss(wider, _key(wider, mask), mask).item() < mmm_loss(beta, key, mask).item()
    # C shifts it
    assert mmm_loss(beta, key, mask, margin=3.0).item() == pytest.approx(expected + 1.0)


def test_mmm_ignores_padding_and_survives_all_key_clips() -> None:
    beta = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    key = _key(beta, mask)
    out = mmm_loss(beta, key, mask)
    assert out[0].item() == pytest.approx(2.0 - (0.9 - 0.1))
    assert out[1].item() == pytest.approx(2.0 - 0.5)  # no non-key frame: its mean counts as 0
    assert torch.isfinite(out).all()


def test_total_weights_the_terms_and_pushes_beta_apart() -> None:
    beta = torch.tensor([[0.9, 0.1, 0.2, 0.8]], requires_grad=True)
    mask = torch.ones(1, 4, dtype=torch.bool)
    key = _key(beta.detach(), mask)
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    losses = akmnet_loss(
        logits, torch.tensor([0]), beta, key, mask, lambda_gs=0.1, lambda_mmm=1.0, margin=2.0
    )
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    assert losses.sparsity.item() == pytest.approx(1.0)
    assert losses.total.item() == pytest.approx(ce.item() + 0.1 * 1.0 + losses.margin.item())
    losses.total.backward()
    g = beta.grad[0]
    # key frames: -1/2 from MMM (raise them) + 0.1 from GS (fewer key frames); others: +1/2 (lower them)
    assert g.tolist() == pytest.approx([-0.5 + 0.1, 0.5, 0.5, -0.5 + 0.1])
