"""benchmarks.accelerated_defaults: its stages run the library calls of the pipeline's steps end to end
(probe, teacher, each variant's student, summary) on a tiny teacher, with no MLflow, DVC or kfp."""

import json

import pytest
from fakes import make_rows, make_tiny_teacher, write_jsonl

from benchmarks import accelerated_defaults as acc


@pytest.fixture
def folder(tmp_path):
    rows = make_rows(160, seed=3)
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(rows[:120], data / "train.jsonl")
    write_jsonl(rows[120:], data / "test.jsonl")
    return data


def test_stages_distil_and_compare_with_the_baselines(tmp_path, folder, capsys):
    base = make_tiny_teacher(tmp_path / "base")
    # a rate a tiny random BERT learns the topic words at (it must beat the majority label)
    common = ["--data", str(folder), "--set", f"teacher.base={base}", "--set", "teacher.epochs=8",
              "--set", "teacher.train_batch_size=8", "--set", "teacher.early_stopping_patience=0",
              "--set", "teacher.learning_rates=[3e-3]", "--set", "distill.epochs=1",
              "--set", "student.max_parameter_fraction=0.9", "--set", "student.min_speedup=0"]
    shape, work = tmp_path / "shape.json", tmp_path / "work"
    assert acc.main(["probe", *common, "--out", str(shape)]) == 0
    assert json.loads(shape.read_text())["parameter_fraction"] <= 0.9
    assert acc.main(["teacher", *common, "--work", str(work)]) == 0
    teacher = json.loads((work / "teacher.json").read_text())
    assert teacher["rows"]["test"] > 0 and teacher["learning_rate"] == 3e-3
    for variant in acc.VARIANTS:
        assert acc.main(["student", "--work", str(work), "--shape", str(shape), "--seed", "0",
                         "--variant", variant]) == 0
    # an idea tried beside the defaults: its own --set on top, under its own name
    assert acc.main(["student", "--work", str(work), "--shape", str(shape), "--seed", "0", "--name", "t2",
                     "--set", "distill.augment_copies=0"]) == 0
    runs = {p.stem: json.loads(p.read_text()) for p in (work / "runs").glob("*.json")}
    assert set(runs) == {f"{v}-seed0" for v in acc.VARIANTS} | {"t2-seed0"}
    assert runs["t2-seed0"]["overrides"] == ["distill.augment_copies=0"] and runs["t2-seed0"]["augment_copies"] == 0
    # the distilled student trains on the augmented transfer set, the labels-only baselines on the rows alone
    assert runs["distilled-seed0"]["augment_copies"] > 0
    assert runs["distilled-seed0"]["train_rows"] > runs["baseline_finetuned_init-seed0"]["train_rows"]
    assert {r["augment_copies"] for k, r in runs.items() if k.startswith("baseline")} == {0}
    assert len({r["parameter_fraction"] for r in runs.values()}) == 1  # one shape for all three
    capsys.readouterr()
    assert acc.main(["summary", "--work", str(work)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["distillation_beats"]) == set(out["t2_beats"]) == {"finetuned_init", "pretrained_init"}
    assert out["distilled"]["student_accuracy"]["mean"] == runs["distilled-seed0"]["student_accuracy"]


def test_a_stage_names_the_arguments_it_lacks(capsys):
    with pytest.raises(SystemExit):
        acc.main(["student", "--work", "w"])
    assert "student needs --shape" in capsys.readouterr().err


def test_a_run_name_that_is_not_a_path_segment_is_refused_before_any_work(tmp_path):
    from components.common.paths import UnsafeNameError

    work = tmp_path / "work"
    work.mkdir()
    (work / "arguments.json").write_text(json.dumps({"data": "d", "test_file": "test.jsonl", "train_rows": 0,
                                                     "overrides": []}))
    with pytest.raises(UnsafeNameError, match="--name"):
        acc.main(["student", "--work", str(work), "--shape", "s.json", "--name", "../escape"])
    assert not (work / "runs").exists()
