"""A champion loads anywhere, the same way everywhere, and describes itself (issue 17).

One tiny champion is made by the real steps (version_data -> cache_teacher_outputs -> train_student
-> benchmark_gate -> promote, against the home's sqlite MLflow and a DVC local remote). It is then
loaded four ways: `distillops export` + `transformers.pipeline`, `mlflow.pyfunc.load_model`,
`mlflow.transformers.load_model`, and a real `mlflow models serve --env-manager local` process on a
loopback port. Their predictions must agree with each other, with the student's own argmax and with
the gate's confusion matrix. The registered version must carry a description, an input example, a
model card with the base model's license, and its training data (the DVC md5 as the digest).
"""

from __future__ import annotations

import collections
import json
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from fakes import make_rows, write_jsonl
from mlflow_serving import serve_model

from components.benchmark_gate import runner as gate_step
from components.cache_teacher_outputs import runner as cache_step
from components.common import registry
from components.common.config import config_from_dict, config_hash
from components.common.dataset import read_snapshot
from components.common.export import export_model
from components.common.home import Home
from components.common.lineage import read_lineage
from components.common.modeling import label_names, load_classifier, predict_logits
from components.common.tracking import log_model, source_commit
from components.promote import runner as promote_step
from components.train_student import runner as train_step
from components.version_data import runner as version_step
from pipelines.cli import main

NAME = "distillops-student"
URI = f"models:/{NAME}@champion"
# Tiny models run in microseconds: speed and accuracy are noise here, so the gate gates on nothing.
GATE = {"min_speedup": 0.0, "min_accuracy_retention": 0.0, "latency_samples": 2, "throughput_batches": 1,
        "robustness_perturbations": [], "quantized_teacher": False}
TEACHER_CARD = "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# a tiny teacher\n"


@dataclass(frozen=True)
class Champion:
    home: Path
    student: Path
    gate: dict
    texts: list[str]  # the gate's test texts
    data_version: str


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_teacher):
    tmp = tmp_path_factory.mktemp("champion")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("DISTILLOPS_DVC_REMOTE", raising=False)
        home = tmp / "home"
        mp.setenv("DISTILLOPS_HOME", str(home))
        # A teacher whose card names its license, as a Hugging Face folder does.
        teacher = Path(shutil.copytree(tiny_teacher, tmp / "teacher"))
        (teacher / "README.md").write_text(TEACHER_CARD)
        # learns the topic words from the labels (the random teacher's logits would teach a constant)
        cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "gate": GATE,
                                "distill": {"epochs": 6, "alpha": 0.0, "learning_rate": 3e-3, "batch_size": 8}})
        snap, outputs, student = tmp / "s.jsonl", tmp / "t.safetensors", tmp / "student"
        v = version_step.run(str(home), str(write_jsonl(make_rows(90), tmp / "d.jsonl")), cfg, str(snap))
        cache_step.run(str(home), str(snap), str(teacher), cfg, str(outputs))
        train_step.run(str(home), str(snap), str(outputs), str(teacher), cfg, v["data_version"], str(student),
                       config_hash(cfg))
        report = gate_step.run(str(home), str(snap), str(outputs), str(student), str(teacher), cfg,
                               str(tmp / "gate.json"), str(tmp / "gate.md"))
        assert report["passed"], report["reasons"]
        result = promote_step.run(str(home), str(student), str(tmp / "gate.json"), cfg)
        assert (result["action"], result["version"]) == ("register", "1")
        snapshot = read_snapshot(snap)
        texts = [snapshot.texts[i] for i in snapshot.indices("test")]
        yield Champion(home, student, json.loads((tmp / "gate.json").read_text()), texts, v["data_version"])


def _own_argmax(student: Path, texts: list[str]) -> list[str]:
    model, tokenizer = load_classifier(student)
    names = label_names(model)
    return [names[i] for i in predict_logits(model, tokenizer, texts, 64).argmax(-1)]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.fixture
def served(champion, tmp_path):
    """`mlflow models serve` of the champion on a free loopback port; killed (its process group) after."""
    with serve_model(Home.resolve(champion.home).tracking_uri, URI, tmp_path / "serve.log") as url:
        yield url


def test_the_champion_predicts_the_same_four_ways(champion, served, tmp_path, capsys):
    from transformers import pipeline

    texts = champion.texts
    want = _own_argmax(champion.student, texts)
    assert len(set(want)) > 1, "a student predicting one label everywhere could not tell the loaders apart"

    out = tmp_path / "export"
    code = main(["export", "--home", str(champion.home), "--model", URI, "--out", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["model"] == f"models:/{NAME}/1"
    assert {"model.safetensors", "config.json", "README.md", "LICENSE.txt"} <= set(result["files"])
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in result["files"])
    config = json.loads((out / "config.json").read_text())
    assert set(config["label2id"]) == set(config["id2label"].values()) == {"money", "sports", "weather"}
    exported = [r["label"] for r in pipeline("text-classification", model=str(out))(texts)]

    pyfunc = mlflow.pyfunc.load_model(URI).predict(texts)["label"].tolist()
    flavor = [r["label"] for r in mlflow.transformers.load_model(URI)(texts)]
    answer = _post(f"{served}/invocations", {"inputs": texts})
    over_http = [r["label"] for r in answer["predictions"]]

    assert exported == pyfunc == flavor == over_http == want
    # the gate measured the same predictions: its confusion matrix's columns are their label counts
    cm = champion.gate["confusion_matrix"]
    gate_counts = {name: sum(row[j] for row in cm["student"]) for j, name in enumerate(cm["labels"])}
    assert gate_counts == {name: collections.Counter(exported)[name] for name in cm["labels"]}


def test_export_refuses_a_non_empty_folder_unless_forced(champion, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["export", "--home", str(champion.home), "--out", str(out)])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    code = main(["export", "--home", str(champion.home), "--out", str(out), "--force"])
    assert code == 0, capsys.readouterr().err
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging or download left beside it


def test_the_registered_version_describes_itself(champion, tmp_path):
    client = mlflow.MlflowClient()
    mv = client.get_model_version(NAME, "1")
    lineage = read_lineage(champion.student)
    # the description: the gate's summary
    for words in ("Gate PASSED", "fewer parameters", "speed-up over the teacher", "accuracy retention",
                  champion.data_version, "apache-2.0"):
        assert words in mv.description, (words, mv.description)
    retention = next(c["value"] for c in champion.gate["checks"] if c["name"] == "accuracy_retention")
    assert f"{100 * retention:.1f}% accuracy retention" in mv.description

    files = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path / "dl")))
    # an input example: the training texts the lineage recorded
    example = json.loads((files / "input_example.json").read_text())
    assert lineage["input_example"] and example == lineage["input_example"]
    assert yaml.safe_load((files / "MLmodel").read_text())["saved_input_example_info"]["type"]
    # the model card and the license of the base model, not MLflow's placeholder
    card = (files / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "apache-2.0" and front["pipeline_tag"] == "text-classification"
    for fact in (lineage["teacher_ref"], lineage["teacher_version"], champion.data_version, "accuracy_retention"):
        assert fact in card
    licence = (files / "LICENSE.txt").read_text()
    assert "apache-2.0" in licence and "Apache License, Version 2.0" in licence
    assert "A license file could not be found" not in licence  # MLflow's placeholder, naming a temp dir

    # the training run shows its data: the snapshot, with the DVC md5 as its digest
    run = client.get_run(lineage["mlflow_run_id"])
    datasets = run.inputs.dataset_inputs
    assert [d.dataset.digest for d in datasets] == [champion.data_version]
    assert {t.key: t.value for t in datasets[0].tags}["mlflow.data.context"] == "training"
    assert json.loads(datasets[0].dataset.profile)["num_rows"] == 90
    assert "dvc-remote" in datasets[0].dataset.source
    commit = source_commit()
    if commit:  # a git checkout (skipped silently otherwise)
        assert run.data.tags["mlflow.source.git.commit"] == commit
    assert registry.get_aliases(client, NAME) == {"champion": "1"}


def test_a_version_logged_without_a_card_is_exported_with_one_from_its_tags(home, tmp_path, tiny_teacher):
    """Versions registered before models carried a README.md still export a model card."""
    h = Home.resolve(home)
    client = registry.connect(h)
    run = client.create_run(client.get_experiment_by_name(registry.EXPERIMENT).experiment_id).info.run_id
    uri = log_model(h, tiny_teacher, run_id=run)
    gate_checks = json.dumps([{"name": "speedup", "passed": True, "value": 3.2, "threshold": 3.0}])
    registry.register(client, uri, "old-student", {"model_digest": "x", "teacher_ref": str(tiny_teacher),
                                                   "data_version": "d" * 32, "gate_checks": gate_checks,
                                                   "gate_passed": "True"})
    result = export_model(h, "models:/old-student/1", tmp_path / "out")
    assert "README.md" in result["files"] and result["labels"] == ["money", "sports", "weather"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| speedup | 3.2 | 3.0 | ok |" in card and "d" * 32 in card
    assert yaml.safe_load(card.split("---")[1])["license"] == "apache-2.0"  # the shipped MiniLM's (fallback)
