"""Models on a GPU: inference reads inputs on the model's device, and the teacher fine-tunes there.

The CUDA tests run only where a GPU is (`pytest -m gpu`); CI has none. The device test runs everywhere.
"""

from __future__ import annotations

import pytest
import torch
from fakes import make_rows, make_tiny_teacher, write_jsonl

from components.common.modeling import encode_for, model_device, predict_logits, teacher_features

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tiny(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = make_tiny_teacher(tmp_path / "teacher")
    return AutoModelForSequenceClassification.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), path


def test_inputs_follow_the_model_to_its_device(tmp_path):
    model, tokenizer, _ = _tiny(tmp_path)
    assert model_device(model) == torch.device("cpu")
    model.to("meta")  # any device other than the CPU the tokenizer writes to
    enc = encode_for(model, tokenizer, ["stocks rose", "the team won"], 16)
    assert {v.device.type for v in enc.values()} == {"meta"}
    assert model_device(torch.nn.Module()) == torch.device("cpu")  # no weights: read on the CPU


@pytest.mark.gpu
@cuda
def test_logits_and_features_of_a_model_on_the_gpu_match_the_cpu(tmp_path):
    model, tokenizer, _ = _tiny(tmp_path)
    texts = [r["text"] for r in make_rows(40)]
    on_cpu = teacher_features(model, tokenizer, texts, 32, pooled_layers=[0, 2])
    model.to("cuda")
    on_gpu = teacher_features(model, tokenizer, texts, 32, pooled_layers=[0, 2])
    for key in on_cpu:
        assert on_gpu[key].shape == on_cpu[key].shape
        assert abs(on_gpu[key] - on_cpu[key]).max() < 1e-3, key
    logits = predict_logits(model, tokenizer, texts, 32)
    assert abs(logits - on_cpu["logits"]).max() < 1e-3


@pytest.mark.gpu
@cuda
def test_a_student_trains_and_validates_on_the_gpu(tmp_path):
    from components.distillation.classifier import train_classifier
    from components.distillation.trainer import TrainSettings

    model, tokenizer, _ = _tiny(tmp_path)
    rows = make_rows(64)
    names = sorted({r["label"] for r in rows})
    ids = [names.index(r["label"]) for r in rows]
    model.to("cuda")
    result = train_classifier(model, tokenizer, [r["text"] for r in rows], ids,
                              TrainSettings(epochs=2, batch_size=16, learning_rate=1e-3, max_length=32),
                              val_texts=[r["text"] for r in rows[:16]], val_label_ids=ids[:16])
    assert len([h for h in result.history if "validation_accuracy" in h]) == 2
    assert model_device(model).type == "cuda"


@pytest.mark.gpu
@cuda
def test_the_teacher_fine_tunes_on_the_gpu(tmp_path):
    from components.common.config import load_config
    from components.common.dataset import snapshot_from_config
    from components.teacher.runner import finetune

    _, _, base = _tiny(tmp_path)
    cfg = load_config(None, ["teacher.epochs=1", "teacher.learning_rates=[1e-3]"])
    snapshot, _ = snapshot_from_config(write_jsonl(make_rows(120), tmp_path / "data.jsonl"), cfg.data)
    model, _, result, test_acc, sweep = finetune(str(base), snapshot, snapshot.label_names, cfg)
    assert model_device(model).type == "cuda"
    assert 0.0 <= test_acc <= 1.0 and sweep[0]["chosen"]
