import pytest
import torch

from components.common.modeling import ModelError
from components.distillation.students import build_student_from_model


def test_pretrained_student_with_lora_trains_only_adapters_and_head(tiny_teacher):
    pytest.importorskip("peft")
    student = build_student_from_model(tiny_teacher, ["a", "b"], lora_r=2)
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert student.base_model.model.config.num_labels == 2
    merged = student.merge_and_unload()
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    out = merged(input_ids=torch.tensor([[2, 5, 3]]))
    assert out.logits.shape == (1, 2)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises((ModelError, OSError)):
        build_student_from_model(tmp_path / "nope", ["a"])
