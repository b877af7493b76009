"""Hinton's loss as the registered terms compose it (distill.losses empty = {kl: alpha, ce: 1 - alpha})."""

import pytest
import torch
import torch.nn.functional as F

from components.distillation.losses import LossInputs, combined_loss, resolve_losses


def distillation_loss(s, t, y, temperature, alpha):
    loss, _ = combined_loss(resolve_losses({}, alpha), LossInputs(s, y, [t], temperature=temperature))
    return loss


def test_alpha_zero_is_cross_entropy():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert torch.allclose(distillation_loss(s, t, y, 2.0, 0.0), F.cross_entropy(s, y))


def test_soft_term_is_zero_when_student_equals_teacher():
    s, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert distillation_loss(s, s.clone(), y, 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_term_matches_kl_times_t_squared():
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.zeros(5, dtype=torch.long)
    T = 4.0
    p_t = F.softmax(t / T, -1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert distillation_loss(s, t, y, T, 1.0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_mix_is_alpha_soft_plus_one_minus_alpha_hard():
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    soft, hard = distillation_loss(s, t, y, 2.0, 1.0), distillation_loss(s, t, y, 2.0, 0.0)
    assert distillation_loss(s, t, y, 2.0, 0.3).item() == pytest.approx((0.3 * soft + 0.7 * hard).item(), rel=1e-5)


def test_gradients_reach_the_student():
    s = torch.randn(2, 3, requires_grad=True)
    distillation_loss(s, torch.randn(2, 3), torch.tensor([0, 1]), 2.0, 0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
