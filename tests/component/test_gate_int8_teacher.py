"""The gate's runner on a tiny setup measures the int8-quantized teacher (and, when asked, the int8
student) beside the student, and reports them (issue 16: beat what a user could have for free)."""

import json

from fakes import make_rows, write_jsonl

from components.benchmark_gate import runner as gate_step
from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict, config_hash
from components.train_student import runner as train_step
from components.version_data import runner as version_step

# Tiny models run in microseconds: their speed-ups are noise, so nothing here gates on speed or accuracy.
GATE = {"min_speedup": 0.0, "min_accuracy_retention": 0.5, "latency_samples": 2, "throughput_batches": 1,
        "robustness_perturbations": []}


def _gate(home, tmp_path, prepared, name, **gate):
    snap, outputs, student, teacher = prepared
    cfg = config_from_dict({"gate": {**GATE, **gate}})
    report = gate_step.run(str(home), str(snap), str(outputs), str(student), str(teacher), cfg,
                           str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.md"), str(tmp_path / f"{name}.html"))
    return report, json.loads((tmp_path / f"{name}.json").read_text()), (tmp_path / f"{name}.md").read_text()


def test_the_gate_reports_the_int8_teacher_beside_the_student(home, tmp_path, tiny_teacher):
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "distill": {"epochs": 1}})
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")), cfg, str(snap))
    outputs = tmp_path / "t.safetensors"
    cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(outputs))
    student = tmp_path / "student"
    train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg, v["data_version"], str(student),
                   config_hash(cfg))
    prepared = (snap, outputs, student, tiny_teacher)

    _, report, md = _gate(home, tmp_path, prepared, "default", quantized_student=True)
    int8 = report["models"]["teacher_int8"]
    teacher = report["models"]["teacher"]
    for key in ("accuracy", "macro_f1", "agreement", "latency_p50_ms", "throughput_rows_per_s"):
        assert isinstance(int8[key], float), key
    assert 0.0 <= int8["agreement"] <= 1.0 and int8["parameters"] == teacher["parameters"]
    check = next(c for c in report["checks"] if c["name"] == "student_speedup_over_int8_teacher")
    speedup = report["models"]["student"]["throughput_rows_per_s"] / int8["throughput_rows_per_s"]
    assert check["passed"] and check["threshold"] == 0.0 and abs(check["value"] - speedup) < 1e-3 * speedup
    assert "| metric | student | teacher | teacher_int8 | student_int8 |" in md
    assert "batch-32 throughput speed-up over the int8-quantized teacher" in md
    # the int8 student: measured like any candidate, informational only
    assert report["models"]["student_int8"]["parameters"] == report["models"]["student"]["parameters"]
    retention = next(c for c in report["checks"] if c["name"] == "student_int8_accuracy_retention")
    assert retention["informational"] and retention["message"] not in report["reasons"]

    _, off, md_off = _gate(home, tmp_path, prepared, "off", quantized_teacher=False)
    assert set(off["models"]) == {"student", "teacher"}
    assert "int8" not in md_off and not any("int8" in c["name"] for c in off["checks"])
