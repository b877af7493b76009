"""The real gate on teacher-labelled data and on a drift trigger (issue 18): accuracy on gold rows
only, and a drift-triggered student gated on the production batch that triggered it.

The models are tiny random BERTs built here; two of them are made to agree with the teacher exactly
or never: a copy of the teacher (disagreement 0) and the teacher's very weights with its label
names rotated (every prediction maps to another label: disagreement 1)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fakes import TOPICS, make_rows, make_tiny_teacher, write_jsonl

from components.benchmark_gate import runner as gate_step
from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict, config_hash
from components.common.dataset import DatasetError, read_snapshot
from components.common.lineage import bound_context
from components.common.teacher_outputs import read_teacher_outputs
from components.promote import runner as promote_step
from components.train_student import runner as train_step
from components.version_data import runner as version_step

GATE = {"min_speedup": 0.0, "min_accuracy_retention": 0.0, "max_champion_regression": 1.0,
        "max_champion_f1_regression": 1.0, "latency_samples": 2, "throughput_batches": 1,
        "robustness_perturbations": [], "quantized_teacher": False, "past_champions": 0,
        "max_trigger_disagreement": 0.1, "trigger_sample": 25}


def _with_lineage(model_dir, lineage_from):
    shutil.copy(lineage_from / "distillops.json", model_dir / "distillops.json")
    return model_dir


def _promote(home, tmp_path, model_dir) -> str:
    gate = tmp_path / "champion-gate.json"
    gate.write_text(json.dumps({
        "passed": True, "reasons": [], "models": {"student": {"accuracy": 0.9}},
        "checks": [{"name": "accuracy_retention", "passed": True, "value": 0.99, "threshold": 0.97}],
        "context": {"champion_version": "none", "report_location": "runs:/x/gate/report.html",
                    "teacher_cache_key": "sha256:feed", **bound_context(model_dir)}}))
    return promote_step.run(str(home), str(model_dir), str(gate), config_from_dict({}))["version"]


def _gate(home, tmp_path, name, snap, outputs, student, teacher, cfg, trigger=""):
    out = tmp_path / name
    gate_step.run(str(home), str(snap), str(outputs), str(student), str(teacher), cfg, str(out.with_suffix(".json")),
                  str(out.with_suffix(".md")), str(out.with_suffix(".html")), trigger=trigger)
    report = json.loads(out.with_suffix(".json").read_text())
    return report, {c["name"]: c for c in report["checks"]}, out.with_suffix(".html").read_text()


def test_gate_scores_gold_rows_and_gates_on_the_triggering_batch(home, tmp_path, tiny_teacher):
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "distill": {"epochs": 1},
                            "gate": GATE})
    rows = [{**r, "label_source": "teacher" if i % 3 == 0 else "gold"} for i, r in enumerate(make_rows(90))]
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(rows, tmp_path / "d.jsonl")), cfg, str(snap))
    assert v["step_report"]["teacher_labelled_rows"] == 30
    outputs = tmp_path / "t.safetensors"
    cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(outputs))
    trained = tmp_path / "student"
    train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg, v["data_version"], str(trained),
                   config_hash(cfg))

    # A normal run: provenance reported apart, accuracy on gold rows only, no trigger check at all.
    report, checks, page = _gate(home, tmp_path, "normal", snap, outputs, trained, tiny_teacher, cfg)
    s, cached = read_snapshot(snap), read_teacher_outputs(outputs)
    test = s.indices("test")
    gold_rows = [i for i in test if s.label_source(i) == "gold"]
    expected = float(np.mean([cached.label_names[cached.logits[i].argmax()] == s.labels[i] for i in gold_rows]))
    prov = report["label_provenance"]
    assert (prov["gold_rows"], prov["teacher_labelled_rows"]) == (len(gold_rows), len(test) - len(gold_rows))
    assert prov["teacher_labelled_rows"] > 0
    assert prov["teacher_accuracy_gold"] == report["models"]["teacher"]["accuracy"] == expected
    assert checks["gold_test_rows"]["passed"] and "teacher_labelled_agreement" in checks
    assert "trigger_disagreement" not in checks and "trigger_batch" not in report
    assert "Label provenance (test split)" in page and "Triggering production batch" not in page

    production = write_jsonl([{"text": r["text"]} for r in make_rows(40, seed=7)], tmp_path / "production.jsonl")
    trigger = json.dumps({"kind": "drift", "production": str(production), "text_column": "text"})
    agrees = _with_lineage(shutil.copytree(tiny_teacher, tmp_path / "teacher-copy"), trained)
    labels = sorted(TOPICS)
    never = _with_lineage(make_tiny_teacher(tmp_path / "rotated", labels=tuple(labels[1:] + labels[:1])), trained)
    assert _promote(home, tmp_path, never) == "1"

    # The new student agrees with the teacher on the batch; the champion never does: passes.
    report, checks, page = _gate(home, tmp_path, "helped", snap, outputs, agrees, tiny_teacher, cfg, trigger)
    batch = report["trigger_batch"]
    assert (batch["rows"], batch["batch_rows"]) == (25, 40)
    assert (batch["student_disagreement"], batch["champion_disagreement"]) == (0.0, 1.0)
    assert checks["trigger_disagreement"]["passed"], checks["trigger_disagreement"]["message"]
    assert "Triggering production batch" in page

    # The new student is no better than the champion on the batch: refused, with the numbers.
    report, checks, _ = _gate(home, tmp_path, "not-helped", snap, outputs, never, tiny_teacher, cfg, trigger)
    check = checks["trigger_disagreement"]
    assert not check["passed"] and not report["passed"]
    assert check["message"] in report["reasons"]
    assert "student 1.0000, champion 1.0000" in check["message"]
    assert check["message"].endswith("FAILED: above 0.1 and not below the champion's")

    # A trigger that cannot be read fails the step, naming what is wrong: never a pass without the check.
    with pytest.raises(ValueError, match=r"trigger: not JSON"):
        _gate(home, tmp_path, "bad", snap, outputs, agrees, tiny_teacher, cfg, "{production: x")
    with pytest.raises(ValueError, match=r"a JSON object with \"production\""):
        _gate(home, tmp_path, "bad", snap, outputs, agrees, tiny_teacher, cfg, json.dumps({"kind": "drift"}))
    gone = json.dumps({"kind": "drift", "production": str(tmp_path / "gone.jsonl")})
    with pytest.raises(DatasetError, match=r"gone\.jsonl: data file not found"):
        _gate(home, tmp_path, "bad", snap, outputs, agrees, tiny_teacher, cfg, gone)
