import pytest
import torch

from components.common.modeling import ModelError, load_classifier, predict_logits
from components.distillation.measure import count_parameters
from components.distillation.students import build_student_from_config, build_student_from_teacher_layers


def test_student_from_teacher_layers_copies_the_chosen_layers(tiny_teacher):
    teacher, _ = load_classifier(tiny_teacher)
    student = build_student_from_teacher_layers(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), student.state_dict()
    q = "bert.encoder.layer.{}.attention.self.query.weight"
    assert torch.equal(s[q.format(1)], t[q.format(3)])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert count_parameters(student) < count_parameters(teacher)


def test_layer_out_of_range_is_a_clear_error(tiny_teacher):
    teacher, _ = load_classifier(tiny_teacher)
    with pytest.raises(ModelError, match=r"index 7 out of range for a teacher with 4 layers"):
        build_student_from_teacher_layers(teacher, [0, 7])


def test_student_from_config(tiny_teacher):
    teacher, _ = load_classifier(tiny_teacher)
    student = build_student_from_config(teacher, {"num_hidden_layers": 1, "intermediate_size": 16})
    assert student.config.num_hidden_layers == 1
    with pytest.raises(ModelError, match="unknown key"):
        build_student_from_config(teacher, {"num_layerz": 1})
    with pytest.raises(ModelError, match="not divisible"):
        build_student_from_config(teacher, {"hidden_size": 33})


def test_predict_logits_keeps_row_order(tiny_teacher):
    model, tok = load_classifier(tiny_teacher)
    texts = ["goal", "the big storm was very cold today", "bank"]
    together = predict_logits(model, tok, texts, 32, batch_size=2)
    alone = [predict_logits(model, tok, [t], 32)[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)


def test_missing_model_directory(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_classifier(tmp_path)
