"""Reliability checklist B12 (docs/reliability.md), the loss side: a teacher token of zero probability
never gives log(0), and the losses and their gradients stay finite on extreme teacher logits.

Non-finite teacher values never reach a loss: the store refuses and quarantines them, and the
TeacherOutputs check refuses them before training (tests/component/test_reliability_cache.py).
"""

import pytest
import torch

from components.distillation.losses import LOSSES, LossInputs, combined_loss

RESPONSE_LOSSES = ["kl", "reverse_kl", "js"]


def _teacher_with_zero_probability_tokens():
    t = torch.tensor([[8.0, 0.0, -float("inf"), 1.0],     # a token the teacher rules out entirely
                      [1e4, -1e4, 0.0, -1e4],             # probabilities that underflow to exactly 0
                      [0.0, 0.0, 0.0, 0.0]])
    assert (torch.softmax(t, -1) == 0).any()
    return t


@pytest.mark.parametrize("key", RESPONSE_LOSSES)
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_zero_probability_teacher_tokens_give_finite_loss_and_gradients(key, temperature):
    student = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
    inputs = LossInputs(student, torch.tensor([0, 1, 2]), [_teacher_with_zero_probability_tokens()], [1.0],
                        temperature)
    loss = LOSSES.get(key)(inputs)
    loss.backward()
    assert torch.isfinite(loss) and loss >= -1e-6
    assert torch.isfinite(student.grad).all()


def test_combined_loss_stays_finite_with_a_saturated_student():
    student = torch.tensor([[50.0, -50.0, -50.0, -50.0]] * 3, requires_grad=True)
    total, parts = combined_loss({"kl": 0.5, "ce": 0.5}, LossInputs(
        student, torch.tensor([1, 2, 3]), [_teacher_with_zero_probability_tokens()], [1.0], 2.0))
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(torch.tensor(v)) for v in parts.values())
    assert torch.isfinite(student.grad).all()
