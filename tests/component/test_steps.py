"""Each step's runner called directly (no KFP), against a real sqlite MLflow and a DVC local remote."""

import json

import pytest
from fakes import make_rows, write_jsonl

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import Config, config_from_dict
from components.common.dataset import DatasetError
from components.common.home import Home
from components.common.teacher_outputs import read_teacher_outputs
from components.version_data import runner as version_step


def test_version_then_cache_is_incremental_by_row(home, tmp_path, tiny_teacher):
    cfg = Config()
    rows = make_rows(80)
    snap1 = tmp_path / "s1.jsonl"
    v1 = version_step.run(str(home), str(write_jsonl(rows, tmp_path / "d1.jsonl")), cfg,
                          str(snap1))
    out1 = cache_step.run(str(home), str(snap1), str(tiny_teacher), cfg,
                          str(tmp_path / "t1.safetensors"))
    assert out1["teacher_forward_passes"] == 80

    again = cache_step.run(str(home), str(snap1), str(tiny_teacher), cfg,
                           str(tmp_path / "t1b.safetensors"))
    assert again["teacher_forward_passes"] == 0

    snap2 = tmp_path / "s2.jsonl"
    v2 = version_step.run(str(home), str(write_jsonl(rows + make_rows(8, seed=5), tmp_path / "d2.jsonl")),
                          cfg, str(snap2))
    assert v2["data_version"] != v1["data_version"]
    out2 = cache_step.run(str(home), str(snap2), str(tiny_teacher), cfg,
                          str(tmp_path / "t2.safetensors"))
    assert out2["teacher_forward_passes"] == 8  # only the appended rows reach the teacher
    t1, t2 = read_teacher_outputs(tmp_path / "t1.safetensors"), read_teacher_outputs(tmp_path / "t2.safetensors")
    assert (t2.logits[:80] == t1.logits).all()


def test_labels_unknown_to_the_teacher_are_refused(home, tmp_path, tiny_teacher):
    rows = make_rows(40) + [{"text": "a new kind of question", "label": "travel"}] * 3
    snap = tmp_path / "s.jsonl"
    cfg = Config()
    version_step.run(str(home), str(write_jsonl(rows, tmp_path / "d.jsonl")), cfg,
                     str(snap))
    with pytest.raises(DatasetError, match=r"label\(s\) \['travel'\] are not among the teacher's labels"):
        cache_step.run(str(home), str(snap), str(tiny_teacher), cfg,
                       str(tmp_path / "t.safetensors"))
    assert not (tmp_path / "t.safetensors").exists()


def test_teacher_prepare_registers_a_loadable_model(home, data_file, tiny_teacher):
    """`distillops teacher`: fine-tune, log with the transformers flavor, register, alias; load with
    transformers alone from the registry (safetensors, id2label, tokenizer; no pickle)."""
    import mlflow
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from components.teacher.runner import prepare_teacher

    # a rate a tiny random BERT learns the topic words at (it must beat the majority label to be registered)
    cfg = config_from_dict({"teacher": {"epochs": 8, "train_batch_size": 8, "learning_rates": [3e-3, 1e-3],
                                        "early_stopping_patience": 0}})
    result = prepare_teacher(Home.resolve(home), str(data_file), cfg, base=str(tiny_teacher))
    assert result["ref"] == "models:/distillops-teacher@champion"
    assert [e["learning_rate"] for e in result["learning_rate_sweep"]] == [3e-3, 1e-3]
    assert sum(e["chosen"] for e in result["learning_rate_sweep"]) == 1
    assert result["validation_accuracy"] > result["majority_validation_accuracy"]
    path = mlflow.artifacts.download_artifacts("models:/distillops-teacher@champion")
    files = {p.name for p in __import__("pathlib").Path(path).rglob("*")}
    assert "model.safetensors" in files and not any(f.endswith((".pkl", ".pt", ".bin")) for f in files)
    model = AutoModelForSequenceClassification.from_pretrained(f"{path}/model")
    AutoTokenizer.from_pretrained(f"{path}/components/tokenizer")
    assert sorted(model.config.id2label.values()) == ["money", "sports", "weather"]
    steps = [json.loads(line)["step"] for line in Home.resolve(home).step_log.read_text().splitlines()]
    assert steps == ["teacher"]
