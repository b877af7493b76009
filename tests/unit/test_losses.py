import math

import pytest
import torch
import torch.nn.functional as F

from components.common.keyed import KeyRegistry, RegistryKeyError
from components.distillation.losses import (
    LOSSES,
    LossConfigError,
    LossInputs,
    combined_loss,
    masked_mean,
    resolve_losses,
)


def _logits(seed=0, b=5, c=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g), torch.randn(b, c, generator=g)


def _kl(p, q):
    return (p * (p.log() - q.log())).sum(-1).mean()


def test_registry_unknown_and_duplicate_keys_are_named():
    reg = KeyRegistry("thing")
    reg.register("a")(1)
    with pytest.raises(RegistryKeyError, match="duplicate thing key 'a'"):
        reg.register("a")(2)
    with pytest.raises(RegistryKeyError, match="unknown thing key 'b'; known: a"):
        reg.get("b")
    with pytest.raises(RegistryKeyError, match="unknown loss key 'klx'"):
        resolve_losses({"klx": 1.0}, 0.5)
    with pytest.raises(RegistryKeyError, match="duplicate loss key 'kl'"):
        LOSSES.register("kl")(lambda inputs: None)


def test_empty_losses_mean_hinton_mix_and_zero_weights_drop():
    assert resolve_losses({}, 0.3) == {"kl": 0.3, "ce": pytest.approx(0.7)}
    assert resolve_losses({}, 0.0) == {"ce": 1.0}
    with pytest.raises(LossConfigError, match="distill.losses.kl: weight must be >= 0"):
        resolve_losses({"kl": -1}, 0.5)


@pytest.mark.parametrize("t", [1.0, 3.0])
def test_forward_kl_reverse_kl_and_js_formulas(t):
    s, z = _logits()
    inputs = LossInputs(student_logits=s, labels=None, teacher_logits=[z], temperature=t)
    p_t, p_s = F.softmax(z / t, -1), F.softmax(s / t, -1)
    m = (p_t + p_s) / 2
    assert LOSSES.get("kl")(inputs).item() == pytest.approx((_kl(p_t, p_s) * t * t).item(), rel=1e-5)
    assert LOSSES.get("reverse_kl")(inputs).item() == pytest.approx((_kl(p_s, p_t) * t * t).item(), rel=1e-5)
    js = 0.5 * _kl(p_t, m) + 0.5 * _kl(p_s, m)
    assert LOSSES.get("js")(inputs).item() == pytest.approx((js * t * t).item(), rel=1e-5)
    assert 0 <= js.item() <= math.log(2)


def test_divergences_vanish_when_student_equals_teacher():
    s, _ = _logits()
    inputs = LossInputs(student_logits=s, labels=None, teacher_logits=[s.clone()], temperature=2.0)
    for key in ("kl", "reverse_kl", "js"):
        assert LOSSES.get(key)(inputs).item() == pytest.approx(0.0, abs=1e-6)


def test_multi_teacher_mixes_distributions_by_weight():
    s, z1 = _logits(0)
    _, z2 = _logits(1)
    inputs = LossInputs(student_logits=s, labels=None, teacher_logits=[z1, z2], teacher_weights=[3.0, 1.0])
    p = 0.75 * F.softmax(z1, -1) + 0.25 * F.softmax(z2, -1)
    assert LOSSES.get("kl")(inputs).item() == pytest.approx(_kl(p, F.softmax(s, -1)).item(), rel=1e-5)


def test_combined_loss_is_the_weighted_sum():
    s, z = _logits()
    y = torch.tensor([0, 1, 2, 3, 0])
    inputs = LossInputs(student_logits=s, labels=y, teacher_logits=[z], temperature=2.0)
    total, parts = combined_loss({"kl": 0.25, "ce": 0.75}, inputs)
    assert set(parts) == {"kl", "ce"}
    assert total.item() == pytest.approx(0.25 * parts["kl"] + 0.75 * parts["ce"], rel=1e-6)
    assert parts["ce"] == pytest.approx(F.cross_entropy(s, y).item())


def test_hidden_mse_uses_projection_and_mask_and_refuses_width_mismatch():
    torch.manual_seed(0)
    hs, ht = torch.randn(2, 3, 4), torch.randn(2, 3, 6)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    proj = torch.nn.Linear(4, 6)
    inputs = LossInputs(student_logits=None, labels=None, attention_mask=mask, layer_map=[(1, 2)],
                        student_hidden={1: hs}, teacher_hidden={2: ht}, projections={"1": proj})
    err = (proj(hs) - ht).pow(2).mean(-1)
    expected = (err * mask).sum() / mask.sum()
    assert LOSSES.get("hidden_mse")(inputs).item() == pytest.approx(expected.item(), rel=1e-5)
    inputs.projections = {}
    with pytest.raises(LossConfigError, match="width 4 but its teacher layer has 6 and no projection"):
        LOSSES.get("hidden_mse")(inputs)


def test_pooled_mse_matches_mask_means():
    torch.manual_seed(0)
    hs, pt = torch.randn(2, 3, 4), torch.randn(2, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    inputs = LossInputs(student_logits=None, labels=None, attention_mask=mask, layer_map=[(2, 5)],
                        student_hidden={2: hs}, teacher_hidden={5: pt})
    pooled = torch.stack([hs[0, :2].mean(0), hs[1].mean(0)])
    assert torch.allclose(masked_mean(hs, mask), pooled)
    assert LOSSES.get("pooled_mse")(inputs).item() == pytest.approx(F.mse_loss(pooled, pt).item(), rel=1e-5)


def test_attention_mse_averages_heads():
    a_s = torch.softmax(torch.randn(2, 2, 3, 3), -1)
    a_t = torch.softmax(torch.randn(2, 4, 3, 3), -1)
    inputs = LossInputs(student_logits=None, labels=None, layer_map=[(1, 3)], student_attention={1: a_s},
                        teacher_attention={3: a_t})
    expected = F.mse_loss(a_s.mean(1), a_t.mean(1))
    assert LOSSES.get("attention_mse")(inputs).item() == pytest.approx(expected.item(), rel=1e-5)


def test_relation_losses_ignore_width_and_scale_but_see_structure():
    torch.manual_seed(0)
    t = torch.randn(6, 8)
    rot = torch.linalg.qr(torch.randn(8, 8))[0]
    same_shape = 3.0 * t @ rot  # distances scaled, angles kept
    other = torch.randn(6, 5)
    for key in ("rkd_distance", "rkd_angle"):
        fn = LOSSES.get(key)
        assert fn(LossInputs(None, None, student_embedding=same_shape, teacher_embedding=t)).item() < 1e-6
        assert fn(LossInputs(None, None, student_embedding=other, teacher_embedding=t)).item() > 1e-3
    # SP: the row-normalised Gram matrix is invariant to a rotation and a global scale
    sp = LOSSES.get("sp")
    assert sp(LossInputs(None, None, student_embedding=same_shape, teacher_embedding=t)).item() < 1e-6
    g_s = F.normalize(other @ other.T, dim=1)
    g_t = F.normalize(t @ t.T, dim=1)
    expected = (g_s - g_t).pow(2).sum() / 36
    assert sp(LossInputs(None, None, student_embedding=other, teacher_embedding=t)).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_embedding_losses_and_missing_inputs():
    s, t = torch.randn(4, 3), torch.randn(4, 5)
    proj = torch.nn.Linear(3, 5)
    inputs = LossInputs(None, None, student_embedding=s, teacher_embedding=t, projections={"embedding": proj})
    assert LOSSES.get("embedding_mse")(inputs).item() == pytest.approx(F.mse_loss(proj(s), t).item(), rel=1e-5)
    cos = (1 - F.cosine_similarity(proj(s), t, dim=-1)).mean()
    assert LOSSES.get("embedding_cosine")(inputs).item() == pytest.approx(cos.item(), rel=1e-5)
    with pytest.raises(LossConfigError, match="needs student and teacher sentence embeddings"):
        LOSSES.get("sp")(LossInputs(None, None))
    with pytest.raises(LossConfigError, match="needs teacher logits"):
        LOSSES.get("kl")(LossInputs(torch.randn(2, 3), None))
