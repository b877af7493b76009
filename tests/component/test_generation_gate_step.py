"""benchmark_gate's step for task generation (runner.run -> run_generation), as the KFP component
calls it: the prompt snapshot, the cached generations and a trained generative student from the real
version_data / cache_teacher_outputs / train_student runners (tiny random Llama teacher), a real
sqlite MLflow registry. A causal-LM champion of student.registered_name is measured beside the
student; a classifier registered under that name is a clear error before anything is measured."""

from __future__ import annotations

import json

import pytest
from fakes import make_tiny_teacher

from components.benchmark_gate import runner as gate_step
from components.cache_teacher_outputs import runner as cache_step
from components.common import registry, signing
from components.common.config import config_from_dict
from components.common.home import Home
from components.common.lineage import bound_context
from components.common.modeling import ModelError
from components.common.teachers import load_teacher
from components.distillation.lm_students import layer_subset_student
from components.promote import runner as promote_step
from components.teacher.runner import prepare_lm_teacher
from components.train_student import runner as train_step
from components.version_data import runner as version_step
from tests.tiny_lm import WORDS, make_tiny_llama

LOOSE = {"lm_min_rouge_l": 0.0, "lm_min_token_agreement": 0.0, "lm_max_nll_excess": 0.0, "lm_min_speedup": 0.0,
         "lm_max_parameter_fraction": 0.0, "lm_max_champion_regression": 1.0, "lm_speed_new_tokens": 2,
         "lm_speed_repeats": 1, "lm_report_samples": 2}


def _cfg(name: str, **gate):
    return config_from_dict({"task": "generation", "student": {"registered_name": name},
                             "generation": {"max_new_tokens": 5, "top_k": 4, "batch_size": 8, "max_length": 40,
                                            "student_layers": [0, 3], "epochs": 1, "train_batch_size": 8},
                             "cache": {"fidelity_sample": 2},
                             "gate": {**LOOSE, **gate}})


@pytest.fixture
def trained(home, tmp_path):
    """(teacher dir, snapshot, generations, student dir, cfg) of one generation run up to train_student."""
    teacher = make_tiny_llama(tmp_path / "teacher", layers=4)
    rows = [{"prompt": " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(3 + i % 3)) + f" {i}",
             **({"response": "yes thanks"} if i % 4 == 0 else {})} for i in range(30)]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg("lm-student")
    snap, gens, student = tmp_path / "snap.jsonl", tmp_path / "gens.safetensors", tmp_path / "student"
    v = version_step.run(str(home), str(data), cfg, str(snap))
    c = cache_step.run(str(home), str(snap), str(teacher), cfg, str(gens))
    train_step.run(str(home), str(snap), str(gens), str(teacher), cfg, v["data_version"], str(student), "cfghash",
                   c["teacher_version"])
    return teacher, snap, gens, student, cfg


def test_generative_gate_step_with_a_causal_lm_champion(home, tmp_path, trained, monkeypatch):
    teacher, snap, gens, student, cfg = trained
    monkeypatch.setenv(signing.KEY_ENV, "generation-gate-step-key-0123456789")
    # The serving champion: a 3-layer subset of the teacher, registered as a causal LM under the student's name.
    loaded = load_teacher(teacher)
    champion = tmp_path / "champion"
    layer_subset_student(loaded.model, [0, 1, 3]).save_pretrained(champion)
    loaded.tokenizer.save_pretrained(champion)
    # (registered the way `distillops teacher --task generation` registers a causal LM: log_lm_model)
    prepare_lm_teacher(Home.resolve(home), config_from_dict({"generation": {"teacher_registered_name": "lm-student"}}),
                       base=str(champion))

    out = {k: tmp_path / f"gate.{k}" for k in ("json", "md", "html")}
    report = gate_step.run(str(home), str(snap), str(gens), str(student), str(teacher), cfg, str(out["json"]),
                           str(out["md"]), str(out["html"]))
    assert report["passed"] is True, report["reasons"]
    assert set(report["models"]) == {"teacher", "student", "champion"}
    assert "lm_champion_regression" in {c["name"] for c in report["checks"]}
    ctx = report["context"]
    assert ctx["task"] == "generation" and ctx["champion_version"] == "1" and ctx["champion"] == "version 1"
    assert {k: ctx[k] for k in bound_context(student)} == bound_context(student)  # bound to what was measured
    written = json.loads(out["json"].read_text())
    assert signing.verify_report(written, b"generation-gate-step-key-0123456789") == []
    assert "champion" in out["md"].read_text() and out["html"].read_text().lower().startswith("<!doctype html")
    assert report["step_report"]["passed"] is True and report["step_report"]["test_rows"] == ctx["prompts"]
    # published like the classification gate's: a copy under reports/, numbers on the training run
    assert list((home / "reports").glob("gate-*.json"))
    client = registry.connect(Home.resolve(home))
    metrics = client.get_run(written["context"]["report_location"].split("/")[1]).data.metrics
    assert "gate_student_rouge_l" in metrics and "gate_check_lm_rouge_l" in metrics


def test_a_classifier_champion_under_the_name_is_a_clear_error(home, tmp_path, trained):
    teacher, snap, gens, student, _ = trained
    # a classifier promoted as champion of "mixed" through the real promote step
    client = registry.connect(Home.resolve(home))
    clf = make_tiny_teacher(tmp_path / "clf", layers=1, hidden=16, seed=3)
    run = client.create_run(client.get_experiment_by_name(registry.EXPERIMENT).experiment_id, run_name="fake")
    client.set_terminated(run.info.run_id)
    (clf / "distillops.json").write_text(json.dumps({
        "data_version": "d", "teacher_version": "t/v1+sha256:abc", "teacher_ref": "models:/t@champion",
        "config_hash": "c", "mlflow_run_id": run.info.run_id}))
    gate = tmp_path / "clf-gate.json"
    gate.write_text(json.dumps({"passed": True, "reasons": [], "models": {"student": {"accuracy": 0.9}},
                                "checks": [], "context": {"champion_version": "none", **bound_context(clf)}}))
    promote_step.run(str(home), str(clf), str(gate), config_from_dict({"student": {"registered_name": "mixed"}}))

    out = tmp_path / "gate.json"
    with pytest.raises(ModelError, match=r"models:/mixed@champion \(version 1\) is not a causal LM.*"
                                         r"student.registered_name"):
        gate_step.run(str(home), str(snap), str(gens), str(student), str(teacher), _cfg("mixed"), str(out),
                      str(tmp_path / "gate.md"))
    assert not out.exists()  # nothing half-written


def test_a_drift_trigger_scores_the_triggering_prompts_from_the_cache(home, tmp_path, trained):
    teacher, snap, gens, student, cfg = trained
    prompts = [json.loads(line)["prompt"] for line in snap.read_text().splitlines()]
    batch = tmp_path / "batch.jsonl"  # 12 prompts of the snapshot (one twice) and one it never saw
    batch.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in [*prompts[:12], prompts[0], "never seen"]))
    trigger = json.dumps({"production": str(batch), "drift_verdict": "v.json", "text_column": "prompt"})
    cfg = _cfg("lm-student", lm_trigger_sample=10)
    report = gate_step.run(str(home), str(snap), str(gens), str(student), str(teacher), cfg, str(tmp_path / "g.json"),
                           str(tmp_path / "g.md"), trigger=trigger)
    t = report["trigger_batch"]
    assert t["rows"] == 10 and t["batch_rows"] == 14 and t["production"] == str(batch)
    assert 0.0 <= t["student_disagreement"] <= 1.0 and t["champion_disagreement"] is None
    check = {c["name"]: c for c in report["checks"]}["trigger_disagreement"]
    assert check["threshold"] == 1.0 and check["passed"] is True  # no champion: the threshold alone
    assert report["context"]["trigger"] == "drift"

    # a batch none of whose prompts the student was trained on: a clear error before any measuring
    stranger = tmp_path / "stranger.jsonl"
    stranger.write_text(json.dumps({"prompt": "nobody asked this"}) + "\n")
    out = tmp_path / "g2.json"
    with pytest.raises(ValueError, match="none of the 1 prompts of the triggering batch"):
        gate_step.run(str(home), str(snap), str(gens), str(student), str(teacher), cfg, str(out),
                      str(tmp_path / "g2.md"), trigger=json.dumps({"production": str(stranger)}))
    assert not out.exists()
