"""Teacher-labelled rows are not gold (issue 18): label provenance through the data, and a gate that
measures accuracy on gold rows only, fidelity on teacher-labelled rows, and (drift runs) the
triggering batch."""

import csv
import json

import numpy as np
import pytest
from fakes import make_rows, write_jsonl

from components.benchmark_gate.core import (
    evaluate_gate,
    label_provenance,
    provenance_scores,
    render_markdown,
    trigger_check,
)
from components.benchmark_gate.report_html import render_html
from components.common.config import ConfigError, GateConfig, config_from_dict
from components.common.dataset import DatasetError, Snapshot, build_snapshot, read_snapshot, write_snapshot
from components.prepare_redistill.core import merge_rows

# --- the data: an optional label_source column ------------------------------------------------------------


def _rows_with_sources(n: int = 60) -> list[dict]:
    return [{**r, "label_source": "teacher" if i % 3 == 0 else "gold"} for i, r in enumerate(make_rows(n))]


def test_label_source_survives_the_snapshot_round_trip(tmp_path):
    rows = _rows_with_sources()
    snap = build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"))
    assert snap.label_sources == [r["label_source"] for r in rows]
    write_snapshot(snap, tmp_path / "s.jsonl")
    again = read_snapshot(tmp_path / "s.jsonl")
    assert again == snap
    test = again.indices("test")
    assert again.is_gold(test) == [rows[i]["label_source"] == "gold" for i in test]
    assert {json.loads(line)["label_source"] for line in (tmp_path / "s.jsonl").read_text().splitlines()} == \
        {"gold", "teacher"}


def test_teacher_labelled_training_rows_are_repeated_and_gold_ones_are_not(tmp_path):
    rows = _rows_with_sources()
    snap = build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"))
    train = snap.indices("train")
    weighted = snap.weighted(train, 3)
    teacher = [i for i in train if rows[i]["label_source"] == "teacher"]
    assert teacher and len(weighted) == len(train) + 2 * len(teacher)
    assert all(weighted.count(i) == (3 if rows[i]["label_source"] == "teacher" else 1) for i in train)
    assert snap.weighted(train, 1) == train
    with pytest.raises(ValueError, match="teacher_repeat must be >= 1, got 0"):
        snap.weighted(train, 0)
    with pytest.raises(ConfigError, match="distill.teacher_labelled_repeat: must be >= 1, got 0"):
        config_from_dict({"distill": {"teacher_labelled_repeat": 0}})


def test_no_column_or_all_gold_is_the_snapshot_it_always_was(tmp_path):
    rows = make_rows(40)
    plain = build_snapshot(write_jsonl(rows, tmp_path / "plain.jsonl"))
    gold = build_snapshot(write_jsonl([{**r, "label_source": "gold"} for r in rows], tmp_path / "gold.jsonl"))
    assert plain.label_sources is None and gold.label_sources is None
    write_snapshot(plain, tmp_path / "a.jsonl")
    write_snapshot(gold, tmp_path / "b.jsonl")
    # Same bytes: the DVC md5 (the data version) of existing data does not move.
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert "label_source" not in (tmp_path / "a.jsonl").read_text()
    assert read_snapshot(tmp_path / "a.jsonl").is_gold([0, 1]) == [True, True]


def test_a_csv_label_source_column_is_read(tmp_path):
    path = tmp_path / "d.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "label_source"])
        writer.writeheader()
        writer.writerows(_rows_with_sources(40))
    assert build_snapshot(path).label_sources.count("teacher") == 14


@pytest.mark.parametrize("bad, shown", [("human", "'human'"), ("", "''"), (None, "None"), ("missing", "missing")])
def test_a_bad_label_source_is_refused_naming_row_and_value(tmp_path, bad, shown):
    rows = _rows_with_sources(20)
    if bad == "missing":
        del rows[4]["label_source"]
    else:
        rows[4]["label_source"] = bad
    with pytest.raises(DatasetError, match=rf"d\.jsonl line 5: column 'label_source' is {shown}; expected one of "
                                           r"gold, teacher"):
        build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"))


def test_a_snapshot_with_an_unknown_label_source_is_refused(tmp_path):
    (tmp_path / "s.jsonl").write_text(json.dumps({"text": "a", "label": "x", "split": "test",
                                                  "label_source": "guess"}) + "\n")
    with pytest.raises(DatasetError, match=r"s\.jsonl line 1: label_source 'guess'; expected one of gold, teacher"):
        read_snapshot(tmp_path / "s.jsonl")


def test_redistill_merge_keeps_reference_provenance_and_marks_production_rows_teacher():
    merged = merge_rows([("a", "x"), ("b", "y")], [("c", "x")], 5, reference_sources=["gold", "teacher"])
    assert [r["label_source"] for r in merged.rows] == ["gold", "teacher", "teacher"]
    with pytest.raises(ValueError, match="1 provenances for 2 reference rows"):
        merge_rows([("a", "x"), ("b", "y")], [], 5, reference_sources=["gold"])
    with pytest.raises(ValueError, match=r"unknown label source\(s\) \['human'\]"):
        merge_rows([("a", "x")], [], 5, reference_sources=["human"])


# --- the gate: gold rows for accuracy, teacher-labelled rows for agreement ------------------------------


def test_scores_use_gold_rows_for_accuracy_and_teacher_rows_for_agreement():
    names = ["a", "b"]
    # rows 0-3 gold, rows 4-7 labelled by the teacher (their label is the teacher's prediction)
    is_gold = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    teacher = np.array([0, 0, 1, 0, 1, 1, 0, 0])
    gold = np.array([0, 1, 1, 0, 1, 1, 0, 0])  # the teacher is wrong on gold row 1 only
    student = np.array([0, 1, 1, 1, 1, 0, 0, 1])
    t = provenance_scores(teacher, teacher, gold, is_gold, names)
    s = provenance_scores(student, teacher, gold, is_gold, names)
    # Over all 8 rows the teacher would score 7/8 (its own labels count as right): on gold it is 3/4.
    assert t["accuracy"] == pytest.approx(0.75) and s["accuracy"] == pytest.approx(0.75)
    assert s["agreement_teacher_labelled"] == pytest.approx(0.5)  # rows 5 and 7 disagree
    assert s["agreement"] == pytest.approx(4 / 8)
    assert sum(v["support"] for v in s["labels"].values()) == 4
    p = label_provenance(is_gold, t, s, None)
    assert p == {"gold_rows": 4, "teacher_labelled_rows": 4, "teacher_accuracy_gold": 0.75,
                 "student_accuracy_gold": 0.75, "student_teacher_agreement_teacher_labelled": 0.5}


def _card(acc, agree=0.9, taught=None, f1=None):
    card = {"accuracy": acc, "macro_f1": acc if f1 is None else f1, "agreement": agree,
            "throughput_rows_per_s": 100.0, "latency_p50_ms": 1.0, "parameters": 10, "size_bytes": 100}
    if taught is not None:
        card["agreement_teacher_labelled"] = taught
    return card


def test_retention_is_measured_on_gold_rows_and_teacher_rows_by_agreement():
    policy = GateConfig(min_speedup=0.0, min_agreement=0.8)
    prov = {"gold_rows": 40, "teacher_labelled_rows": 20}
    result = evaluate_gate(_card(0.78, taught=0.7), _card(0.8, 1.0), None, policy, provenance=prov)
    checks = {c.name: c for c in result.checks}
    assert checks["accuracy_retention"].passed and "on the 40 gold-labelled test rows" in \
        checks["accuracy_retention"].message
    assert checks["gold_test_rows"].passed
    fidelity = checks["teacher_labelled_agreement"]
    assert not fidelity.passed and fidelity.value == 0.7 and "20 teacher-labelled test rows" in fidelity.message
    assert not result.passed and result.reasons == [fidelity.message]


def test_no_gold_test_rows_refuses_explicitly_instead_of_passing():
    policy = GateConfig(min_speedup=0.0, min_accuracy=0.5, min_label_f1=0.5)
    prov = {"gold_rows": 0, "teacher_labelled_rows": 30}
    nan = float("nan")
    result = evaluate_gate(_card(nan, taught=1.0), _card(nan, 1.0), _card(nan, taught=0.9), policy,
                           provenance=prov)
    names = [c.name for c in result.checks]
    for gold_check in ("accuracy_retention", "champion_regression", "min_accuracy", "champion_f1_regression"):
        assert gold_check not in names
    assert not result.passed
    assert result.reasons[0].startswith("gold-labelled test rows: 0 of 30 (required >= 1) FAILED")
    assert "teacher_labelled_agreement" in names
    # Nothing to plot on an accuracy axis: the page still renders and says why it refused.
    page = render_html(result, {"test_rows": 30}, provenance={**prov, "teacher_accuracy_gold": None,
                                                              "student_accuracy_gold": None,
                                                              "student_teacher_agreement_teacher_labelled": 1.0})
    assert "gold-labelled test rows: 0 of 30" in page
    assert "## Checks" in render_markdown(result, {"test_rows": 30})


def test_an_all_gold_split_reports_as_before():
    policy = GateConfig(min_speedup=0.0)
    before = evaluate_gate(_card(0.9), _card(0.9, 1.0), None, policy)
    after = evaluate_gate(_card(0.9), _card(0.9, 1.0), None, policy,
                          provenance={"gold_rows": 50, "teacher_labelled_rows": 0})
    assert [c.name for c in before.checks] == [c.name for c in after.checks]
    assert [c.message for c in before.checks] == [c.message for c in after.checks]


# --- the triggering batch (drift runs) -----------------------------------------------------------------


def _trigger(student, champion):
    return {"production": "prod.jsonl", "rows": 50, "batch_rows": 60, "student_disagreement": student,
            "champion_disagreement": champion}


def test_trigger_check_passes_when_the_student_agrees_more_than_the_champion():
    check = trigger_check(_trigger(0.04, 0.30), GateConfig())
    assert check.passed and check.value == 0.04 and check.threshold == 0.10
    assert check.message.endswith("(required <= 0.1 and below the champion's) ok")


@pytest.mark.parametrize("student, champion, why", [
    (0.20, 0.30, "FAILED: above 0.1"),
    (0.08, 0.05, "FAILED: not below the champion's"),
    (0.08, 0.08, "FAILED: not below the champion's"),
    (0.40, 0.30, "FAILED: above 0.1 and not below the champion's"),
])
def test_trigger_check_refuses_with_the_numbers(student, champion, why):
    check = trigger_check(_trigger(student, champion), GateConfig())
    assert not check.passed
    assert f"student {student:.4f}, champion {champion:.4f}" in check.message and check.message.endswith(why)
    result = evaluate_gate(_card(0.9), _card(0.9, 1.0), None, GateConfig(min_speedup=0.0),
                           trigger=_trigger(student, champion))
    assert not result.passed and result.reasons == [check.message]


def test_trigger_check_edges():
    assert trigger_check(_trigger(0.0, 0.0), GateConfig()).passed  # nothing left to improve
    alone = trigger_check(_trigger(0.05, None), GateConfig())
    assert alone.passed and "no champion to compare" in alone.message
    off = trigger_check(_trigger(0.5, 0.1), GateConfig(max_trigger_disagreement=0.0))
    assert off.informational and off.message.endswith("(reported, not gated)")


def test_a_normal_run_has_no_trigger_check():
    result = evaluate_gate(_card(0.9), _card(0.9, 1.0), None, GateConfig(min_speedup=0.0))
    assert "trigger_disagreement" not in [c.name for c in result.checks]


def test_reports_show_gold_and_teacher_rows_apart_and_the_batch():
    policy = GateConfig(min_speedup=0.0)
    names = ["a", "b"]
    is_gold = np.array([1, 1, 0, 0], dtype=bool)
    teacher = np.array([0, 1, 0, 1])
    s = provenance_scores(np.array([0, 1, 1, 1]), teacher, np.array([0, 1, 0, 1]), is_gold, names)
    t = provenance_scores(teacher, teacher, np.array([0, 1, 0, 1]), is_gold, names)
    speed = {"throughput_rows_per_s": 100.0, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "parameters": 10,
             "size_bytes": 100}
    s.update(speed)
    t.update(speed)
    prov = label_provenance(is_gold, t, s, None)
    trig = _trigger(0.02, 0.2)
    result = evaluate_gate(s, t, None, policy, provenance=prov, trigger=trig)
    md = render_markdown(result, {"test_rows": 4}, prov, trig)
    assert "| gold | 2 | accuracy: teacher 1.0000, student 1.0000 |" in md
    assert "| teacher-labelled | 2 | agreement with the teacher: student 0.5000" in md
    assert "`prod.jsonl`: 50 distinct texts scored (of 60 rows)" in md
    page = render_html(result, {"test_rows": 4}, provenance=prov, trigger_batch=trig)
    assert "Label provenance (test split)" in page and "teacher-labelled (agreement with the teacher)" in page
    assert "Triggering production batch" in page and "<code>trigger_disagreement</code>" in page


def test_gate_provenance_config_is_validated():
    cfg = config_from_dict({"gate": {"max_trigger_disagreement": 0.2, "trigger_sample": 50,
                                     "min_gold_test_rows": 10}})
    assert (cfg.gate.max_trigger_disagreement, cfg.gate.trigger_sample, cfg.gate.min_gold_test_rows) == (0.2, 50, 10)
    with pytest.raises(ConfigError, match=r"gate.max_trigger_disagreement: expected a share in \[0, 1\].*got 1.5"):
        config_from_dict({"gate": {"max_trigger_disagreement": 1.5}})
    with pytest.raises(ConfigError, match="gate.trigger_sample: must be >= 1, got 0"):
        config_from_dict({"gate": {"trigger_sample": 0}})
    with pytest.raises(ConfigError, match="gate.min_gold_test_rows: must be >= 1"):
        config_from_dict({"gate": {"min_gold_test_rows": 0}})


def test_snapshot_constructor_defaults_to_all_gold():
    snap = Snapshot(["a", "b"], ["x", "y"], ["train", "test"])
    assert snap.label_sources is None and snap.is_gold([0, 1]) == [True, True]
