"""benchmarks.pipeline_defaults --baselines: the overrides make labels-only students under their own
names, and the summary compares the distilled mean with each baseline's."""

import pytest

from benchmarks.pipeline_defaults import BASELINES, baseline_summary
from components.common.config import config_from_dict
from components.distillation.losses import resolve_losses


def test_baseline_overrides_train_on_labels_alone_under_their_own_names():
    user = ["distill.losses={kl: 0.5, ce: 0.5}", "distill.augment_copies=2"]  # a user's, overridden
    names = set()
    for name, extra in BASELINES.items():
        cfg = config_from_dict({}, [*user, *extra])
        assert resolve_losses(cfg.distill.losses, cfg.distill.alpha) == {"ce": 1.0}
        assert cfg.distill.augment_copies == 0
        assert cfg.student.registered_name != config_from_dict({}).student.registered_name
        names.add(cfg.student.registered_name)
        assert cfg.student.init_weights == ("pretrained" if "pretrained" in name else "teacher")
    assert len(names) == 2


def test_summary_gives_per_seed_mean_sd_and_which_baselines_distillation_beats():
    def rows(*accs):
        return [{"seed": s, "student_accuracy": a} for s, a in enumerate(accs)]

    out = baseline_summary({"distilled": rows(0.9, 0.8, 0.85), "baseline_finetuned_init": rows(0.86, 0.86, 0.86),
                            "baseline_pretrained_init": rows(0.7, 0.72, 0.74)})
    assert out["distilled"]["per_seed"] == {"0": 0.9, "1": 0.8, "2": 0.85}
    assert out["distilled"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert out["distilled"]["accuracy"]["std"] == pytest.approx(0.05)
    assert out["baseline_pretrained_init"]["accuracy"]["std"] == pytest.approx(0.02)
    assert out["distillation_beats"] == {"finetuned_init": False, "pretrained_init": True}


def test_a_finished_piece_is_saved_and_a_rerun_reuses_it_instead_of_recomputing(tmp_path):
    from benchmarks.pipeline_defaults import _resumable
    from components.common.home import Home

    home = Home.resolve(tmp_path / "home").ensure()
    calls = []

    def compute():
        calls.append(1)
        return {"seed": 0, "student_accuracy": 0.9}

    assert _resumable(home, "run-seed0", ["a=1"], compute) == {"seed": 0, "student_accuracy": 0.9}
    assert _resumable(home, "run-seed0", ["a=1"], compute) == {"seed": 0, "student_accuracy": 0.9}
    assert len(calls) == 1
    _resumable(home, "run-seed0", ["a=2"], compute)  # other overrides: another piece
    assert len(calls) == 2
    assert not list((home.root / "pipeline_defaults").glob("*.tmp"))


def test_each_seed_registers_under_its_own_name_and_the_int8_figures_are_read(tmp_path, monkeypatch):
    """With several seeds no seed is gated against another seed's champion: each gets its own name.
    run_distill is replaced here (this checks the benchmark's bookkeeping, not the pipeline)."""
    import json

    import pipelines.local
    from benchmarks.pipeline_defaults import _run_seed_now
    from components.common.home import Home

    home = Home.resolve(tmp_path / "home").ensure()
    seen = []

    def fake_run(home_, cfg, data):
        seen.append(cfg.student.registered_name)
        report = tmp_path / f"gate{len(seen)}.json"
        report.write_text(json.dumps({
            "models": {"student": {"accuracy": 0.9, "parameters": 1}, "teacher": {"accuracy": 1.0, "parameters": 4}},
            "checks": [{"name": "student_speedup_over_int8_teacher", "value": 1.8}],
            "context": {}, "passed": True, "reasons": []}))
        return {"reports": {"gate_markdown": str(report.with_suffix(".md"))}, "gate": {"checks": {"speedup": 3.1}},
                "seconds_total": 1.0}

    monkeypatch.setattr(pipelines.local, "run_distill", fake_run)
    one = _run_seed_now(home, tmp_path / "d.jsonl", [], 1, own_name=True)
    two = _run_seed_now(home, tmp_path / "d.jsonl", ["student.registered_name=mine"], 2, own_name=True)
    alone = _run_seed_now(home, tmp_path / "d.jsonl", [], 0)
    assert seen == ["distillops-student-seed1", "mine-seed2", "distillops-student"]
    assert one["speedup_over_int8_teacher"] == 1.8 and one["int8_student_retention"] is None
    assert two["registered_name"] == "mine-seed2" and alone["retention"] == 0.9


def test_joined_data_takes_the_named_test_file_and_names_a_missing_one(tmp_path):
    import json

    from benchmarks.pipeline_defaults import joined_data

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(5)))
    (folder / "test.jsonl").write_text(json.dumps({"text": "title and body", "label": 1}) + "\n")
    (folder / "test_description_only.jsonl").write_text(json.dumps({"text": "body", "label": 1}) + "\n")
    out = joined_data(folder, tmp_path / "a.jsonl", train_rows=3, test_file="test_description_only.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and rows[-1] == {"text": "body", "label": "1"}
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        joined_data(folder, tmp_path / "b.jsonl", train_rows=0, test_file="missing.jsonl")
    assert not (tmp_path / "b.jsonl").exists()
