"""The trainer with tiny random models: composed losses, pre-training errors, resume, embeddings."""

import numpy as np
import pytest
import torch
from fakes import make_rows, make_tiny_teacher

from components.common.keyed import RegistryKeyError
from components.common.modeling import ModelError, check_same_tokenizer, load_classifier, teacher_features
from components.distillation.classifier import train_classifier
from components.distillation.embedder import embed, embedding_fidelity, train_embedder
from components.distillation.losses import LossConfigError
from components.distillation.students import build_student_from_config, principal_directions
from components.distillation.trainer import TrainSettings

NARROW = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "num_hidden_layers": 2}


@pytest.fixture(scope="module")
def setup(tiny_teacher):
    teacher, tokenizer = load_classifier(tiny_teacher)
    rows = make_rows(40, seed=3)
    names = sorted({r["label"] for r in rows})
    texts = [r["text"] for r in rows]
    labels = [names.index(r["label"]) for r in rows]
    return teacher, tokenizer, texts, labels


def _settings(**kw):
    base = dict(epochs=2, batch_size=8, learning_rate=1e-3, max_length=16, temperature=2.0, seed=0, log_every=1)
    return TrainSettings(**{**base, **kw})


def test_narrow_student_embeddings_are_the_teachers_projected_on_principal_directions(setup):
    teacher, *_ = setup
    student = build_student_from_config(teacher, NARROW)
    t_w = teacher.bert.embeddings.word_embeddings.weight
    v = principal_directions(t_w, 16)
    assert torch.allclose(student.bert.embeddings.word_embeddings.weight, t_w @ v, atol=1e-5)
    assert torch.allclose(v.T @ v, torch.eye(16), atol=1e-4)  # orthonormal directions
    t_pos = teacher.bert.embeddings.position_embeddings.weight
    assert torch.allclose(student.bert.embeddings.position_embeddings.weight, t_pos @ v, atol=1e-5)


def test_every_loss_family_trains_together(setup):
    teacher, tokenizer, texts, labels = setup
    torch.manual_seed(0)
    student = build_student_from_config(teacher, NARROW)
    feats = teacher_features(teacher, tokenizer, texts, 16, pooled_layers=[2, 4])
    logged = []
    s = _settings(losses={"ce": 1, "kl": 1, "js": 0.5, "reverse_kl": 0.5, "hidden_mse": 1, "attention_mse": 1,
                          "pooled_mse": 1, "sp": 1, "rkd_distance": 1, "rkd_angle": 1},
                  layer_map=((1, 2), (2, 4)), grad_accumulation=2, schedule="cosine")
    result = train_classifier(student, tokenizer, texts, labels, s, teacher_logits=[feats["logits"]] * 2,
                              teacher_weights=[1, 2], teacher_model=teacher, val_texts=texts[:8],
                              val_label_ids=labels[:8], on_metrics=lambda m, step: logged.append((step, m)))
    assert result.steps == 2 * 3  # ceil(40 / 8) = 5 micro-batches -> 3 optimizer steps per epoch
    step_logs = [m for _, m in logged if "step_loss" in m]
    assert {"loss_hidden_mse", "loss_attention_mse", "loss_sp", "loss_rkd_angle"} <= set(step_logs[0])
    assert all(np.isfinite(m["step_loss"]) for m in step_logs)
    assert set(result.projections) == {"proj_1", "proj_2"}  # 16 -> 32 regressors for the mapped layers


def test_cached_pooled_features_train_without_a_live_teacher(setup):
    teacher, tokenizer, texts, labels = setup
    student = build_student_from_config(teacher, NARROW)
    feats = teacher_features(teacher, tokenizer, texts, 16, pooled_layers=[3, 4])
    s = _settings(epochs=1, losses={"kl": 1, "pooled_mse": 1, "sp": 1}, layer_map=((2, 3),))
    result = train_classifier(student, tokenizer, texts, labels, s, teacher_logits=feats["logits"],
                              teacher_features={k: v for k, v in feats.items() if k != "logits"},
                              teacher_num_layers=4)
    assert result.steps == 5


def test_clear_errors_before_training(setup, tmp_path):
    teacher, tokenizer, texts, labels = setup
    student = build_student_from_config(teacher, NARROW)
    logits = teacher_features(teacher, tokenizer, texts, 16)["logits"]

    def train(**kw):
        extra = {k: kw.pop(k) for k in ("teacher_logits", "teacher_model") if k in kw}
        return train_classifier(student, tokenizer, texts, labels, _settings(**kw),
                                **{"teacher_logits": logits, **extra})

    with pytest.raises(RegistryKeyError, match="unknown loss key 'kld'"):
        train(losses={"kld": 1})
    with pytest.raises(LossConfigError, match="student layer 3 out of range; the student has 2 layers"):
        train(losses={"hidden_mse": 1}, layer_map=((3, 1),), teacher_model=teacher)
    with pytest.raises(LossConfigError, match="teacher layer 9 out of range; the teacher has 4 layers"):
        train(losses={"hidden_mse": 1}, layer_map=((1, 9),), teacher_model=teacher)
    with pytest.raises(LossConfigError, match="width 16 differs from the teacher's 32 and distill.projection is"):
        train(losses={"hidden_mse": 1}, layer_map=((1, 2),), teacher_model=teacher, projection=False)
    with pytest.raises(LossConfigError, match="need distill.layer_map"):
        train(losses={"hidden_mse": 1}, teacher_model=teacher)
    with pytest.raises(LossConfigError, match="need teacher \\['hidden'\\]"):
        train(losses={"hidden_mse": 1}, layer_map=((1, 2),))
    with pytest.raises(LossConfigError, match="teacher 0 has 4 labels but the student has 3"):
        train(teacher_logits=np.zeros((len(texts), 4), np.float32), losses={"kl": 1})
    other = make_tiny_teacher(tmp_path / "other")
    _, other_tok = load_classifier(other)
    check_same_tokenizer(tokenizer, other_tok)  # same vocabulary: fine
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"]
    with pytest.raises(ModelError, match="tokenizer does not match the teacher's"):
        check_same_tokenizer(tokenizer, BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}))


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights(setup, tmp_path):
    teacher, tokenizer, texts, labels = setup
    feats = teacher_features(teacher, tokenizer, texts, 16)
    kw = dict(losses={"kl": 0.5, "ce": 0.5}, epochs=3)

    def run(checkpoint_dir="", kill_at=None):
        torch.manual_seed(0)
        student = build_student_from_config(teacher, NARROW)

        def on_metrics(m, step):
            if kill_at is not None and step == kill_at:
                raise Killed

        result = train_classifier(student, tokenizer, texts, labels,
                                  _settings(checkpoint_dir=checkpoint_dir, checkpoint_every=2, **kw),
                                  teacher_logits=feats["logits"], val_texts=texts[:8], val_label_ids=labels[:8],
                                  on_metrics=on_metrics)
        return student, result

    reference, ref_result = run()
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(Killed):
        run(ckpt, kill_at=7)  # mid-epoch 2 (5 steps per epoch); the last checkpoint is step 6
    resumed, result = run(ckpt)
    assert result.resumed_from_step == 6
    assert result.steps == ref_result.steps == 15
    ref_state, new_state = reference.state_dict(), resumed.state_dict()
    for key in ref_state:
        assert torch.equal(ref_state[key], new_state[key]), key
    assert [h["train_loss"] for h in result.history] == pytest.approx([h["train_loss"] for h in ref_result.history])


def test_embedding_task_improves_fidelity_to_the_teacher(setup):
    from transformers import AutoModel

    teacher, tokenizer, texts, _ = setup
    config = teacher.config.__class__.from_dict({**teacher.config.to_dict(), **NARROW})
    torch.manual_seed(0)
    student = AutoModel.from_config(config)
    target = embed(teacher, tokenizer, texts, 16)
    s = _settings(epochs=6, learning_rate=5e-3, losses={"embedding_mse": 1, "sp": 0.5})
    before = embedding_fidelity(embed(student, tokenizer, texts, 16), target)  # widths differ: NN only
    assert "cosine_fidelity" not in before
    result = train_embedder(student, tokenizer, texts, target, s, val_texts=texts, val_teacher_embeddings=target)
    proj = result.projections["embedding"]
    after = embedding_fidelity(embed(student, tokenizer, texts, 16, projection=proj), target)
    assert after["cosine_fidelity"] > 0.5
    assert result.best_validation_accuracy == pytest.approx(after["cosine_fidelity"], abs=1e-5)
    assert 0 <= after["nn1_agreement"] <= 1
    with pytest.raises(LossConfigError, match="do not apply to the embedding task"):
        train_embedder(student, tokenizer, texts, target, _settings(losses={"ce": 1}))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_schedule_is_transformers_but_warms_up_from_the_first_step(kind):
    """Why the trainer keeps its own schedule function instead of transformers.get_scheduler: the
    library's warmup starts at lr 0, which would spend the first optimizer step on nothing (and
    change every result). After warmup the two are the same schedule; during warmup ours is the
    library's one step later."""
    from transformers import get_scheduler

    from components.distillation.trainer import _schedule

    total, warmup = 40, 6
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    library = get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=total).lr_lambdas[0]
    assert library(0) == 0.0 and _schedule(0, total, warmup, kind) == 1 / warmup
    for step in range(warmup):
        assert _schedule(step, total, warmup, kind) == pytest.approx(library(step + 1), abs=1e-12)
    for step in range(warmup, total + 1):
        assert _schedule(step, total, warmup, kind) == pytest.approx(library(step), abs=1e-12)
