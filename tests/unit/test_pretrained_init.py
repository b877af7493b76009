"""student.init_weights=pretrained: the very same student shape (layers, pruned feed-forward neurons,
trimmed vocabulary) holding the pretrained model's weights and a fresh, seeded head; a pretrained
model that cannot fill that shape is refused naming both values."""

import pytest
import torch
from fakes import make_rows, make_tiny_teacher

from components.common.config import ConfigError, config_from_dict
from components.common.modeling import ModelError, load_classifier
from components.distillation.shaping import Shape, build_shaped
from components.distillation.students import (
    build_student,
    build_student_from_pretrained,
    build_student_from_teacher_layers,
    check_pretrained_fits,
    load_pretrained,
    pretrained_model_path,
    prune_intermediate,
)


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return load_classifier(tiny_teacher)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Another tiny BERT of the teacher's architecture (other weights), saved as a base model."""
    from transformers import AutoModelForSequenceClassification

    path = make_tiny_teacher(tmp_path_factory.mktemp("pre") / "cls", seed=7)
    base = tmp_path_factory.mktemp("pre") / "base"
    AutoModelForSequenceClassification.from_pretrained(path).bert.save_pretrained(base)
    return load_pretrained(base)


def layer(model, i):
    return model.base_model.encoder.layer[i]


def test_pretrained_student_has_the_pretrained_layers_and_a_fresh_seeded_head(teacher, pretrained):
    model, _ = teacher
    # (seed 5: the tiny teacher itself is a random init under seed 0, head included)
    student = build_student_from_pretrained(model, pretrained, [0, 3], seed=5)
    twin = build_student_from_teacher_layers(model, [0, 3])
    assert {k: v.shape for k, v in student.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}
    for s_idx, p_idx in ((0, 0), (1, 3)):
        for a, b in zip(layer(student, s_idx).parameters(), layer(pretrained, p_idx).parameters(), strict=True):
            assert torch.equal(a, b)
        assert not torch.equal(layer(student, s_idx).attention.self.query.weight,
                               layer(model, p_idx).attention.self.query.weight)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, pretrained.embeddings.word_embeddings.weight)
    assert torch.equal(student.bert.pooler.dense.weight, pretrained.pooler.dense.weight)
    assert student.config.id2label == model.config.id2label
    # the head is fresh: not the fine-tuned teacher's; the same seed gives the same head, another seed another
    assert not torch.equal(student.classifier.weight, model.classifier.weight)
    again = build_student_from_pretrained(model, pretrained, [0, 3], seed=5)
    other = build_student_from_pretrained(model, pretrained, [0, 3], seed=6)
    assert torch.equal(student.classifier.weight, again.classifier.weight)
    assert not torch.equal(student.classifier.weight, other.classifier.weight)


def test_pruning_keeps_the_neurons_the_fine_tuned_teacher_ranks_highest(teacher, pretrained):
    model, _ = teacher
    student = build_student_from_pretrained(model, pretrained, [1, 2], intermediate_size=16, seed=0)
    teacher_pruned = prune_intermediate(build_student_from_teacher_layers(model, [1, 2]), 16)
    assert student.config.intermediate_size == 16
    for s_idx, t_idx in ((0, 1), (1, 2)):
        t_w = layer(model, t_idx).intermediate.dense.weight
        kept_by_teacher = [next(j for j in range(t_w.shape[0]) if torch.equal(t_w[j], row))
                           for row in layer(teacher_pruned, s_idx).intermediate.dense.weight]
        p_w = layer(pretrained, t_idx).intermediate.dense.weight
        assert torch.equal(layer(student, s_idx).intermediate.dense.weight, p_w[kept_by_teacher])
        assert torch.equal(layer(student, s_idx).output.dense.weight,
                           layer(pretrained, t_idx).output.dense.weight[:, kept_by_teacher])
    # the pretrained model's own ranking would keep other neurons: the choice is the teacher's
    own = prune_intermediate(build_student_from_teacher_layers(
        build_student_from_pretrained(model, pretrained, [0, 1, 2, 3]), [1, 2]), 16)
    assert not torch.equal(layer(own, 0).intermediate.dense.weight, layer(student, 0).intermediate.dense.weight)


def test_shaped_pretrained_student_is_the_same_architecture_and_vocabulary(teacher, pretrained):
    model, tok = teacher
    texts = [r["text"] for r in make_rows(40)]
    shape = Shape((0, 3), 16)
    fine, fine_tok = build_shaped(model, tok, shape, texts, 32, 40_000)
    pre, pre_tok = build_shaped(model, tok, shape, texts, 32, 40_000, pretrained=pretrained, seed=0)
    assert pre_tok.get_vocab() == fine_tok.get_vocab() and len(pre_tok.get_vocab()) < len(tok.get_vocab())
    assert pre.config.to_dict() == fine.config.to_dict()
    assert {k: v.shape for k, v in pre.state_dict().items()} == {k: v.shape for k, v in fine.state_dict().items()}
    original = tok.get_vocab()
    kept = [original[t] for t, _ in sorted(pre_tok.get_vocab().items(), key=lambda kv: kv[1])]
    assert torch.equal(pre.bert.embeddings.word_embeddings.weight, pretrained.embeddings.word_embeddings.weight[kept])
    assert torch.equal(pre.bert.embeddings.position_embeddings.weight,
                       pretrained.embeddings.position_embeddings.weight[:32])


def test_build_student_manual_path_uses_the_pretrained_weights(teacher, pretrained):
    model, tok = teacher
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 2], "prune_intermediate": 32,
                                        "init_weights": "pretrained"}})
    student = build_student(model, cfg.student, tok, pretrained=pretrained, seed=3)
    assert student.config.intermediate_size == 32 and student.config.num_hidden_layers == 2
    assert torch.equal(layer(student, 1).attention.self.key.weight, layer(pretrained, 2).attention.self.key.weight)


def test_a_pretrained_model_that_does_not_fit_is_refused_naming_both_values(tmp_path, teacher):
    from transformers import BertConfig, BertModel

    model, _ = teacher
    narrow = load_pretrained(make_tiny_teacher(tmp_path / "narrow", hidden=16))
    with pytest.raises(ModelError, match=r"hidden_size 16 vs the teacher's 32.*intermediate_size 32 vs the teacher's 64"):
        build_student_from_pretrained(model, narrow, [0, 1])
    shallow = load_pretrained(make_tiny_teacher(tmp_path / "shallow", layers=2))
    check_pretrained_fits(model, shallow, [0, 1])  # enough layers for these
    with pytest.raises(ModelError, match=r"num_hidden_layers 2, too few for the student's layers \[0, 3\] "
                                         r"\(the teacher has 4\)"):
        build_student_from_pretrained(model, shallow, [0, 3])
    config = BertConfig(**{**model.config.to_dict(), "vocab_size": model.config.vocab_size + 5})
    other_vocab = BertModel(config)
    with pytest.raises(ModelError, match=rf"vocab_size {model.config.vocab_size + 5} vs the teacher's "
                                         rf"{model.config.vocab_size}"):
        check_pretrained_fits(model, other_vocab, [0], "/models/x")
    with pytest.raises(ModelError, match="student.pretrained_model .*cannot be loaded"):
        load_pretrained(tmp_path / "missing-model")


def test_config_init_weights():
    assert config_from_dict({}).student.init_weights == "teacher"
    with pytest.raises(ConfigError, match="student.init_weights: expected 'teacher' or 'pretrained', got 'random'"):
        config_from_dict({"student": {"init_weights": "random"}})
    with pytest.raises(ConfigError, match="pretrained applies to student.init=teacher_layers, got student.init='config'"):
        config_from_dict({"student": {"init_weights": "pretrained", "init": "config"}})
    cfg = config_from_dict({"student": {"init_weights": "pretrained"}, "teacher": {"base": "/b"}})
    assert pretrained_model_path(cfg) == "/b"
    assert pretrained_model_path(config_from_dict({"student": {"pretrained_model": "/p"}, "teacher": {"base": "/b"}})) == "/p"
    assert pretrained_model_path(config_from_dict({})).endswith("model")  # the shipped MiniLM


def test_the_train_student_slice_carries_teacher_base_as_the_pretrained_model():
    import json

    from pipelines.parameters import step_config_json

    cfg = config_from_dict({"student": {"init_weights": "pretrained"}, "teacher": {"base": "/models/base"}})
    train = json.loads(step_config_json(cfg, "train_student"))
    assert "teacher" not in train and train["student"]["pretrained_model"] == "/models/base"
    own = config_from_dict({"student": {"init_weights": "pretrained", "pretrained_model": "/p"}, "teacher": {"base": "/b"}})
    assert json.loads(step_config_json(own, "train_student"))["student"]["pretrained_model"] == "/p"
    plain = config_from_dict({"teacher": {"base": "/b"}})
    assert json.loads(step_config_json(plain, "train_student"))["student"]["pretrained_model"] == ""
