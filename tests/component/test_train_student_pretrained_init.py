"""train_student with student.init_weights=pretrained: the budget's student shape, built from the
pretrained model's weights, trained on the labels alone, its init recorded in the lineage; a
pretrained model that does not fit the teacher is refused before any training."""

import json

import pytest
from fakes import make_tiny_teacher
from test_train_student_losses import version_and_cache

from components.common.config import config_from_dict
from components.common.modeling import ModelError, load_classifier
from components.train_student import runner as train_step


def test_pretrained_init_trains_the_same_shape_and_records_it(home, tmp_path, tiny_teacher):
    pretrained = make_tiny_teacher(tmp_path / "pretrained", seed=3)
    labels_only = {"epochs": 1, "alpha": 0.0, "max_length": 24}
    budget = {"max_parameter_fraction": 0.8, "min_speedup": 0.0}
    cfg = config_from_dict({"student": {**budget, "init_weights": "pretrained", "pretrained_model": str(pretrained)},
                            "distill": labels_only})
    snap, outputs, v, _ = version_and_cache(home, tmp_path, tiny_teacher, cfg)
    out = tmp_path / "student"
    result = train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg, v["data_version"],
                            str(out), "hash-pre")
    lineage = json.loads((out / "distillops.json").read_text())
    assert lineage["init_weights"] == "pretrained" and lineage["pretrained_model"] == str(pretrained)
    assert result["init_weights"] == "pretrained"

    twin_cfg = config_from_dict({"student": budget, "distill": labels_only})
    twin_out = tmp_path / "twin"
    train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), twin_cfg, v["data_version"],
                   str(twin_out), "hash-twin")
    assert json.loads((twin_out / "distillops.json").read_text())["init_weights"] == "teacher"
    student, s_tok = load_classifier(out)
    twin, t_tok = load_classifier(twin_out)
    shape_of = lambda m: {k: v for k, v in m.config.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert shape_of(student) == shape_of(twin) and s_tok.get_vocab() == t_tok.get_vocab()
    assert student.config.num_hidden_layers < 4 or student.config.vocab_size < len(load_classifier(tiny_teacher)[1])
    assert {k: v.shape for k, v in student.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}

    narrow = make_tiny_teacher(tmp_path / "narrow", hidden=16)
    bad = config_from_dict({"student": {**budget, "init_weights": "pretrained", "pretrained_model": str(narrow)},
                            "distill": labels_only})
    with pytest.raises(ModelError, match=r"student.pretrained_model .*narrow: does not match the teacher.*"
                                         r"hidden_size 16 vs the teacher's 32"):
        train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), bad, v["data_version"],
                       str(tmp_path / "bad"), "hash-bad")
    assert not (tmp_path / "bad").exists()
