"""The gate's runner on a tiny setup measures the int8-quantized teacher (and, when asked, the int8
student) beside the student, and reports them (issue 16: beat what a user could have for free); with
gate.emit_quantized_student, promote logs the int8 student the gate measured beside the fp32 one."""

import json
from pathlib import Path

import mlflow
import pytest
import torch
from fakes import factorizing_fraction, make_rows, make_tiny_teacher, write_jsonl

from components.benchmark_gate import runner as gate_step
from components.cache_teacher_outputs import runner as cache_step
from components.common import registry
from components.common.config import config_from_dict, config_hash
from components.common.home import Home
from components.common.modeling import load_classifier
from components.distillation.quantize import load_int8_classifier, quantize_dynamic_int8
from components.promote import runner as promote_step
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


def _prepare(home, tmp_path, tiny_teacher):
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "distill": {"epochs": 1}})
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")), cfg, str(snap))
    outputs = tmp_path / "t.safetensors"
    cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(outputs))
    student = tmp_path / "student"
    train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg, v["data_version"], str(student),
                   config_hash(cfg))
    return snap, outputs, student, tiny_teacher


def test_the_gate_reports_the_int8_teacher_beside_the_student(home, tmp_path, tiny_teacher):
    prepared = _prepare(home, tmp_path, tiny_teacher)
    _, report, md = _gate(home, tmp_path, prepared, "default", quantized_student=True)
    int8 = report["models"]["teacher_int8"]
    teacher = report["models"]["teacher"]
    for key in ("accuracy", "macro_f1", "agreement", "latency_p50_ms", "throughput_rows_per_s"):
        assert isinstance(int8[key], float), key
    assert 0.0 <= int8["agreement"] <= 1.0 and int8["parameters"] == teacher["parameters"]
    check = next(c for c in report["checks"] if c["name"] == "student_speedup_over_int8_teacher")
    speedup = report["models"]["student"]["throughput_rows_per_s"] / int8["throughput_rows_per_s"]
    assert check["passed"] and check["threshold"] == 0.0 and abs(check["value"] - speedup) < 1e-3 * speedup
    assert report["context"]["speed_timing"].startswith("wall clock, ")
    assert set(report["speed"]) == {"load_average", "cores", "threads"}
    assert "| metric | student | teacher | teacher_int8 | student_int8 |" in md
    assert "batch-32 throughput speed-up over the int8-quantized teacher" in md
    # the int8 student: measured like any candidate, informational only
    assert report["models"]["student_int8"]["parameters"] == report["models"]["student"]["parameters"]
    retention = next(c for c in report["checks"] if c["name"] == "student_int8_accuracy_retention")
    assert retention["informational"] and retention["message"] not in report["reasons"]

    _, off, md_off = _gate(home, tmp_path, prepared, "off", quantized_teacher=False)
    assert set(off["models"]) == {"student", "teacher"}
    assert "int8" not in md_off and not any("int8" in c["name"] for c in off["checks"])


def test_promote_emits_the_int8_student_the_gate_measured(home, tmp_path, tiny_teacher):
    snap, outputs, student, teacher = _prepare(home, tmp_path, tiny_teacher)
    gate_cfg = {**GATE, "min_accuracy_retention": 0.0, "quantized_student": True, "emit_quantized_student": True}
    _, report, _ = _gate(home, tmp_path, (snap, outputs, student, teacher), "emit", **gate_cfg)
    assert report["passed"], report["reasons"]
    cfg = config_from_dict({"gate": gate_cfg})
    result = promote_step.run(str(home), str(student), str(tmp_path / "emit.json"), cfg)
    assert result["action"] == "register" and result["int8"]["emit"], result
    uri = result["int8"]["uri"]
    client = registry.connect(Home.resolve(home))
    tags = client.get_model_version(cfg.student.registered_name, result["version"]).tags
    assert tags["int8_emitted"] == "true" and tags["int8_model_uri"] == uri
    assert abs(float(tags["int8_accuracy"]) - report["models"]["student_int8"]["accuracy"]) < 1e-5

    # What was logged is the gate's int8 student: the same logits as quantizing the gated weights.
    got = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "int8")))
    assert not list(got.glob("*.bin")) and not (got / "model.safetensors").exists()
    meta = json.loads((got / "quantization.json").read_text())
    assert meta["source_model_digest"] == report["context"]["model_digest"]
    int8, tok = load_int8_classifier(got)
    fp32, fp32_tok = load_classifier(student)
    texts = ["what is the capital of france", "how many legs does a spider have"]
    with torch.inference_mode():
        want = quantize_dynamic_int8(fp32)(**fp32_tok(texts, padding=True, return_tensors="pt")).logits
        torch.testing.assert_close(int8(**tok(texts, padding=True, return_tensors="pt")).logits, want,
                                   rtol=0, atol=0)

    # `distillops export --int8` writes that folder; a version without an int8 student says why.
    from components.common.export import ExportError, export_model

    ref = f"models:/{cfg.student.registered_name}/{result['version']}"
    exported = export_model(Home.resolve(home), ref, tmp_path / "export", int8=True)
    assert exported["int8"] == uri and exported["labels"] and "model_int8.safetensors" in exported["files"]
    again, again_tok = load_int8_classifier(tmp_path / "export")
    with torch.inference_mode():
        torch.testing.assert_close(again(**again_tok(texts, padding=True, return_tensors="pt")).logits, want,
                                   rtol=0, atol=0)
    client.delete_model_version_tag(cfg.student.registered_name, result["version"], "int8_model_uri")
    client.set_model_version_tag(cfg.student.registered_name, result["version"], "int8_reason", "kept below 0.97")
    with pytest.raises(ExportError, match="no int8 student was emitted for this version \\(kept below 0.97\\)"):
        export_model(Home.resolve(home), ref, tmp_path / "none", int8=True)
    assert not (tmp_path / "none").exists()


def test_a_factored_student_is_gated_promoted_and_exported(home, tmp_path):
    """An ALBERT student (student.factorize_embeddings) goes through the gate (fp32 and int8), promote
    (MLflow's flavor, the registry) and export like any student, and comes back with the same logits."""
    from components.common.export import export_model

    wide = make_tiny_teacher(tmp_path / "wide", hidden=64)
    texts = [r["text"] for r in make_rows(60)]
    gate_cfg = {**GATE, "min_accuracy_retention": 0.0, "quantized_student": True, "emit_quantized_student": True}
    cfg = config_from_dict({
        "student": {"shape": "manual", "layers": [0, 3], "trim_vocabulary": True, "factorize_embeddings": True,
                    "max_parameter_fraction": factorizing_fraction(wide, texts, [0, 3], 24)},
        "distill": {"epochs": 1, "max_length": 24, "augment_copies": 0}, "gate": gate_cfg})
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")), cfg, str(snap))
    outputs, student = tmp_path / "t.safetensors", tmp_path / "student"
    cache_step.run(str(home), str(snap), str(wide), cfg, str(outputs))
    train_step.run(str(home), str(snap), str(outputs), str(wide), cfg, v["data_version"], str(student),
                   config_hash(cfg))
    _, report, _ = _gate(home, tmp_path, (snap, outputs, student, wide), "fx", **gate_cfg)
    assert report["passed"], report["reasons"]
    assert report["models"]["student_int8"]["parameters"] == report["models"]["student"]["parameters"]
    rank = json.loads((student / "distillops.json").read_text())["embedding_rank"]
    assert rank >= 32 and f"embeddings factored at rank {rank}" in report["context"]["student_shape"]
    result = promote_step.run(str(home), str(student), str(tmp_path / "fx.json"), cfg)
    assert result["action"] == "register" and result["int8"]["emit"], result
    exported = export_model(Home.resolve(home), f"models:/{cfg.student.registered_name}/{result['version']}",
                            tmp_path / "export")
    assert exported["labels"]
    again, again_tok = load_classifier(tmp_path / "export")
    fp32, fp32_tok = load_classifier(student)
    assert type(again).__name__ == "AlbertForSequenceClassification"
    with torch.inference_mode():
        torch.testing.assert_close(again(**again_tok(texts[:4], padding=True, return_tensors="pt")).logits,
                                   fp32(**fp32_tok(texts[:4], padding=True, return_tensors="pt")).logits)


def test_an_int8_directory_that_does_not_fit_its_config_is_refused(tmp_path, tiny_teacher):
    from components.distillation.quantize import INT8_WEIGHTS, save_int8_classifier

    out = save_int8_classifier(tiny_teacher, tmp_path / "int8")
    with pytest.raises(FileExistsError, match="already exists"):
        save_int8_classifier(tiny_teacher, tmp_path / "int8")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "intermediate_size": config["intermediate_size"] + 1}))
    with pytest.raises(ValueError, match="intermediate.dense.weight.int8 has shape"):
        load_int8_classifier(out)
    (out / INT8_WEIGHTS).unlink()
    with pytest.raises(ValueError, match="no model_int8.safetensors"):
        load_int8_classifier(out)
