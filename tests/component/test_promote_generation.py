"""promote for a generative student (task: generation, issue 14): a tiny random Llama with the lineage
train_student writes and a generative gate report bound to it, promoted into the home's sqlite MLflow
registry with the same tags, alias, ledger and hash-chained audit as a classifier; the registered
version answers prompts through ``mlflow.pyfunc`` and a real ``mlflow models serve`` and exports as a
folder ``transformers.pipeline("text-generation")`` loads. A refused or mismatched report registers
nothing.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml
from fakes import make_tiny_teacher
from mlflow_serving import serve_model

from components.common import registry
from components.common.config import Config, config_from_dict, config_to_dict
from components.common.export import export_model
from components.common.hashing import model_digest
from components.common.home import Home
from components.common.lineage import LineageError, bound_context, student_task, write_lineage
from components.promote import audit
from components.promote import runner as promote_step
from tests.tiny_lm import make_tiny_llama

NAME = "distillops-student"
URI = f"models:/{NAME}@champion"
MAX_NEW = 4
PROMPTS = ["hello my card was declined", "where is my order"]


def _cfg() -> Config:
    return config_from_dict({"generation": {"max_new_tokens": MAX_NEW}})


def _student(home: Path, root: Path, seed: int = 1, **lineage) -> Path:
    """A causal-LM student saved as train_student saves one (save_pretrained + tokenizer + lineage),
    its lineage pointing at a real MLflow run."""
    client = registry.connect(Home.resolve(home))
    student = make_tiny_llama(root / f"lm-student-{seed}", seed=seed, layers=2)
    run = client.create_run(client.get_experiment_by_name(registry.EXPERIMENT).experiment_id,
                            run_name=f"train_student lm {seed}")
    client.set_terminated(run.info.run_id)
    plain = config_to_dict(_cfg())
    write_lineage(student, {"task": "generation", "data_version": "prompts1", "teacher_ref": "models:/lm@champion",
                            "teacher_version": "distillops-lm-teacher/v1+sha256:abc", "config_hash": "gcfg1",
                            "mlflow_run_id": run.info.run_id, "input_example": PROMPTS[:1],
                            "config": {**plain, "task": "generation"}, **lineage})
    return student


def _report(student: Path, path: Path, passed: bool = True, **context) -> Path:
    """A generative gate report (the keys lm_runner writes) bound to `student`."""
    card = {"rouge_l": 0.41, "exact_match": 0.0, "token_agreement": 0.62, "token_kl": 0.8, "teacher_nll": 2.1,
            "parameters": 1000, "size_bytes": 4000, "tokens_per_s_batch1": 300.0, "ttft_ms_batch1": 3.0,
            "tokens_per_s_batch8": 900.0, "ttft_ms_batch8": 5.0}
    teacher = {**card, "rouge_l": 1.0, "exact_match": 1.0, "token_agreement": 1.0, "parameters": 4000,
               "size_bytes": 16000, "tokens_per_s_batch1": 100.0, "tokens_per_s_batch8": 400.0}
    report = {"passed": passed, "reasons": [] if passed else ["lm_rouge_l 0.41 < 0.5"],
              "checks": [{"name": "lm_rouge_l", "passed": passed, "value": 0.41, "threshold": 0.25 if passed else 0.5,
                          "informational": False},
                         {"name": "lm_speedup_batch1", "passed": True, "value": 3.0, "threshold": 2.0,
                          "informational": False}],
              "models": {"teacher": teacher, "student": card},
              "compression": {"parameter_ratio": 0.25, "speedup_batch1": 3.0},
              "speed": [], "samples": [{"prompt": PROMPTS[0], "teacher": "yes", "student": "yes"}],
              "context": {"task": "generation", "prompts": 2, "max_new_tokens": MAX_NEW, "champion_version": "none",
                          "report_location": "runs:/x/gate/report.html", "teacher_cache_key": "sha256:feed",
                          **bound_context(student), **context}}
    path.write_text(json.dumps(report, indent=2))
    return path


def _greedy(model_dir: Path, prompt: str) -> str:
    """The student's own greedy answer to `prompt` in its chat template (transformers alone)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    enc = tokenizer(rendered, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def _nothing_registered() -> None:
    client = mlflow.MlflowClient()
    assert client.search_model_versions(f"name = '{NAME}'") == []
    assert registry.get_aliases(client, NAME) == {}
    assert not [r for _, r, _ in registry.read_ledger(client, NAME) if r.get("action") != "refuse"]


def test_a_generative_student_is_promoted_served_and_exported(home, tmp_path):
    from transformers import pipeline

    student = _student(home, tmp_path)
    assert student_task(student) == "generation"
    result = promote_step.run(str(home), str(student), str(_report(student, tmp_path / "gate.json")), _cfg(),
                              pipeline_run_id="pr-1")
    assert (result["action"], result["version"], result["outcome"]["status"], result["task"]) == (
        "register", "1", "applied", "generation")

    client = mlflow.MlflowClient()
    assert registry.get_aliases(client, NAME) == {"champion": "1"}
    tags = client.get_model_version(NAME, "1").tags
    assert tags["task"] == "generation" and tags["model_digest"] == model_digest(student)
    for key in ("data_version", "teacher_version", "teacher_ref", "config_hash", "git_commit", "mlflow_run_id",
                "gate_report", "gate_champion", "teacher_cache_key", "gate_passed", "gate_checks"):
        assert tags[key], key
    assert (tags["data_version"], tags["config_hash"], tags["pipeline_run_id"]) == ("prompts1", "gcfg1", "pr-1")
    assert tags["student_rouge_l"] == "0.4100" and tags["max_new_tokens"] == str(MAX_NEW)
    assert "student_accuracy" not in tags
    assert json.loads(tags["gate_metrics"])["student_token_agreement"] == 0.62
    description = client.get_model_version(NAME, "1").description
    assert "causal LM" in description and "ROUGE-L 0.4100" in description

    # ledger and hash-chained audit: one applied promotion, the chain verifies against the registry
    h = Home.resolve(home)
    entry = audit.show(h, NAME)[-1]
    assert entry["record"]["action"] == "promote" and entry["outcome"]["status"] == "applied"
    assert entry["record"]["lineage"]["task"] == "generation"
    assert entry["record"]["lineage"]["model_digest"] == model_digest(student)
    assert audit.verify(client, h, NAME) == []

    # logged as text-generation, with the chat template and the decoding defaults the gate used
    src = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path / "dl")))
    mlmodel = yaml.safe_load((src / "MLmodel").read_text())
    assert mlmodel["flavors"]["transformers"]["task"] == "text-generation"
    assert mlmodel["flavors"]["python_function"]["config"] == {
        "max_new_tokens": MAX_NEW, "do_sample": False, "return_full_text": False, "add_special_tokens": False}
    assert mlmodel["metadata"]["prompt_template"] == "<|user|> {prompt} <|assistant|> "
    assert json.loads((src / "input_example.json").read_text()) == PROMPTS[:1]
    card = (src / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "lm_rouge_l" in card

    # what `mlflow models serve` runs: a list of prompts in, a list of generated texts out
    answers = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(PROMPTS)
    assert isinstance(answers, list) and all(isinstance(a, str) for a in answers)
    # each prompt answered in the chat template, greedily, with at most MAX_NEW tokens, answer only
    expected = [_greedy(student, p) for p in PROMPTS]
    assert all(expected), expected  # this seed's tiny model says something (not EOS at once)
    assert [a.strip() for a in answers] == expected
    with serve_model(Home.resolve(home).tracking_uri, URI, tmp_path / "serve.log") as url:
        req = urllib.request.Request(f"{url}/invocations", json.dumps({"inputs": PROMPTS}).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert json.loads(resp.read()) == {"predictions": answers}

    # the plain Hugging Face folder: transformers' own text-generation pipeline loads and generates
    out = tmp_path / "export"
    exported = export_model(h, f"models:/{NAME}@champion", out)
    assert (exported["task"], exported["pipeline_task"], exported["labels"]) == ("generation", "text-generation", [])
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "LICENSE.txt"} <= set(exported["files"])
    generator = pipeline("text-generation", model=str(out))
    generated = generator([{"role": "user", "content": PROMPTS[0]}], max_new_tokens=MAX_NEW, do_sample=False)
    reply = generated[0]["generated_text"][-1]
    assert reply["role"] == "assistant" and reply["content"].strip()
    # the same greedy answer as the registered model gives through pyfunc
    assert reply["content"].strip() == answers[0].strip()


def test_a_refused_generation_report_registers_nothing(home, tmp_path):
    student = _student(home, tmp_path)
    gate = _report(student, tmp_path / "gate.json", passed=False)
    with pytest.raises(promote_step.PromotionRefused, match="lm_rouge_l"):
        promote_step.run(str(home), str(student), str(gate), _cfg())
    _nothing_registered()
    refusal = promote_step.record_gate_refusal(str(home), str(student), str(gate), _cfg())
    assert (refusal["action"], refusal["task"]) == ("refused", "generation")
    entry = audit.show(Home.resolve(home), NAME)[-1]
    assert entry["record"]["action"] == "refuse" and entry["record"]["lineage"]["task"] == "generation"
    _nothing_registered()


def test_a_report_of_the_other_task_or_student_is_rejected(home, tmp_path):
    student = _student(home, tmp_path)
    # a classification gate report (no context.task) for a causal-LM student
    classification = json.loads(_report(student, tmp_path / "c.json").read_text())
    del classification["context"]["task"]
    (tmp_path / "c.json").write_text(json.dumps(classification))
    with pytest.raises(promote_step.GateReportRejected, match="task: the gate report is the classification gate's, "
                                                              "the student is a generation model"):
        promote_step.run(str(home), str(student), str(tmp_path / "c.json"), _cfg())
    # a generative report for another student's weights
    other = _student(home, tmp_path, seed=2)
    with pytest.raises(promote_step.GateReportRejected, match="model_digest"):
        promote_step.run(str(home), str(student), str(_report(other, tmp_path / "o.json")), _cfg())
    _nothing_registered()


def test_lineage_that_contradicts_the_model_is_an_error(home, tmp_path):
    student = _student(home, tmp_path, task="classification")
    with pytest.raises(LineageError, match="lineage's task is 'classification'.*is a generation model"):
        promote_step.run(str(home), str(student), str(_report(student, tmp_path / "gate.json")), _cfg())
    _nothing_registered()


def test_a_generative_student_never_replaces_a_classifier_champion(home, tmp_path):
    """One registered model holds one task's students."""
    client = registry.connect(Home.resolve(home))
    classifier = make_tiny_teacher(tmp_path / "clf", layers=1, hidden=16, seed=3)
    run = client.create_run(client.get_experiment_by_name(registry.EXPERIMENT).experiment_id, run_name="clf")
    client.set_terminated(run.info.run_id)
    write_lineage(classifier, {"data_version": "d1", "teacher_version": "t/v1", "teacher_ref": "models:/t@champion",
                               "config_hash": "c1", "mlflow_run_id": run.info.run_id})
    gate = {"passed": True, "reasons": [], "checks": [], "models": {"student": {"accuracy": 0.9}},
            "context": {"champion_version": "none", "report_location": "runs:/x/r.html", **bound_context(classifier)}}
    (tmp_path / "clf.json").write_text(json.dumps(gate))
    assert promote_step.run(str(home), str(classifier), str(tmp_path / "clf.json"), Config())["version"] == "1"
    assert mlflow.MlflowClient().get_model_version(NAME, "1").tags["task"] == "classification"

    student = _student(home, tmp_path)
    with pytest.raises(promote_step.PromotionRefused, match="champion \\(version 1\\) is a classification model"):
        promote_step.run(str(home), str(student), str(_report(student, tmp_path / "g.json", champion_version="1")),
                         _cfg())
    assert registry.get_aliases(mlflow.MlflowClient(), NAME) == {"champion": "1"}
    assert len(mlflow.MlflowClient().search_model_versions(f"name = '{NAME}'")) == 1
