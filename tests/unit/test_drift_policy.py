"""The drift policy (components/monitor_drift/policy.py): what is seen vs what is acted on, cooldown,
budget, the moving reference, and the history that the decisions read and the report draws."""

import json
import threading

import pytest

from components.common.config import ConfigError, config_from_dict
from components.common.home import Home
from components.monitor_drift import history
from components.monitor_drift.policy import (
    ActionPolicy,
    decide_action,
    history_entry,
    moving_input_drift,
    production_window,
)
from components.monitor_drift.report_html import history_svg, render_signals_section

HOUR = 3600.0
NOW = 1_000_000.0
LEGACY = ActionPolicy(trigger_on=("any",), cooldown_minutes=0, cooldown_runs=0, max_redistills=0)


def verdict(signals=(), grew=False, window_input=None):
    """A combined verdict as monitor_drift writes it: seen signals, the disagreement, the moving reference."""
    v = {"drifted": bool(signals), "signals": list(signals),
         "disagreement": {"production": 0.40 if grew else 0.05, "reference": 0.04, "threshold": 0.10,
                          "increase": 0.36 if grew else 0.01, "n_production": 200},
         "column_scores": {"length": 0.001, "word_count": 0.3}, "drifted_columns": ["length"],
         "embedding": {"score": 0.9, "threshold": 0.55}}
    if window_input is not None:
        v["moving_reference"] = {"window_rows": 200, "input_drifted": window_input}
    return v


def run_sequence(policy, verdicts, start=NOW, step_minutes=5.0, acts=True):
    """Feed verdicts through decide_action as successive monitor runs; return the actions."""
    past, actions = [], []
    for i, v in enumerate(verdicts):
        now = start + i * step_minutes * 60
        d = decide_action(v, past, policy, now, acts=acts)
        past.append(history_entry(v, d, now, "student", "1"))
        actions.append(d["action"])
    return actions


INPUT = ["descriptors_or_labels", "embeddings"]
DISAGREE = ["descriptors_or_labels", "teacher_student_disagreement"]


# --- trigger selection ------------------------------------------------------------------------


def test_disagreement_triggers_and_input_drift_alone_does_not():
    policy = ActionPolicy()
    d = decide_action(verdict(DISAGREE, grew=True), [], policy, NOW)
    assert (d["action"], d["redistill"], d["triggers"]) == ("redistill", True, ["disagreement"])
    assert any("increase +36.0%, allowed 10.0%" in r for r in d["action_reasons"])
    d = decide_action(verdict(INPUT), [], policy, NOW)
    assert (d["action"], d["redistill"], d["triggers"]) == ("none", False, [])
    assert any("1 consecutive run(s), fewer than the 3 needed" in r for r in d["action_reasons"])


def test_input_drift_persisting_against_the_moving_reference_triggers_after_persistent_runs():
    policy = ActionPolicy(trigger_on=("persistent_input",), cooldown_runs=0, cooldown_minutes=0)
    assert run_sequence(policy, [verdict(INPUT, window_input=True)] * 4) == ["none", "none", "redistill", "none"]
    # a run without input drift breaks the streak
    seq = [verdict(INPUT, window_input=True), verdict(), verdict(INPUT, window_input=True),
           verdict(INPUT, window_input=True)]
    assert run_sequence(policy, seq) == ["none"] * 4


def test_input_drift_that_the_moving_reference_explains_never_triggers():
    # Seen against the training data (drifted) but not against the window the champion learned.
    actions = run_sequence(ActionPolicy(), [verdict(INPUT, window_input=False)] * 6)
    assert actions == ["none"] * 6


def test_legacy_any_redistils_on_every_drifted_batch_as_before():
    seq = [verdict(INPUT), verdict(DISAGREE, grew=True), verdict(), verdict(["not_evaluated"]), verdict(INPUT)]
    assert run_sequence(LEGACY, seq, step_minutes=0.0) == ["redistill", "redistill", "none", "redistill",
                                                             "redistill"]


def test_the_new_policy_on_a_replayed_shift_settles():
    # Batch 1: disagreement; the redistilled champion then imitates its teacher on the new traffic.
    seq = [verdict(DISAGREE, grew=True)] + [verdict(INPUT, window_input=False)] * 9
    actions = run_sequence(ActionPolicy(), seq, step_minutes=120)
    assert actions.count("redistill") == 1 and actions[0] == "redistill"
    assert run_sequence(LEGACY, seq, step_minutes=120).count("redistill") == 10


# --- cooldown and budget ----------------------------------------------------------------------


def test_cooldown_in_minutes_skips_and_says_so_with_numbers():
    policy = ActionPolicy(cooldown_minutes=60, cooldown_runs=0)
    actions = run_sequence(policy, [verdict(DISAGREE, grew=True)] * 4, step_minutes=25)
    assert actions == ["redistill", "skipped_cooldown", "skipped_cooldown", "redistill"]
    past = [history_entry(verdict(DISAGREE, grew=True), {"action": "redistill", "redistill": True,
                                                         "triggers": [], "action_reasons": []}, NOW, "s", "1")]
    d = decide_action(verdict(DISAGREE, grew=True), past, policy, NOW + 12 * 60)
    assert d["action"] == "skipped_cooldown" and not d["redistill"]
    assert "the last redistillation was 12.0 minutes ago (cooldown 60 minutes)" in d["action_reasons"][-1]


def test_cooldown_in_runs():
    policy = ActionPolicy(cooldown_minutes=0, cooldown_runs=2)
    actions = run_sequence(policy, [verdict(DISAGREE, grew=True)] * 5)
    assert actions == ["redistill", "skipped_cooldown", "skipped_cooldown", "redistill", "skipped_cooldown"]


def test_budget_caps_redistillations_per_period_and_frees_up_after_it():
    policy = ActionPolicy(cooldown_minutes=0, cooldown_runs=0, max_redistills=2, budget_period_hours=1)
    actions = run_sequence(policy, [verdict(DISAGREE, grew=True)] * 7, step_minutes=15)
    # runs at 0, 15, 30, 45, 60, 75, 90 minutes: two per sliding hour
    assert actions == ["redistill", "redistill", "skipped_budget", "skipped_budget", "redistill", "redistill",
                       "skipped_budget"]
    past = [history_entry(verdict(DISAGREE, grew=True), {"action": "redistill", "redistill": True, "triggers": [],
                                                         "action_reasons": []}, NOW - m * 60, "s", "1")
            for m in (50, 40)]
    d = decide_action(verdict(DISAGREE, grew=True), past, policy, NOW)
    assert d["action"] == "skipped_budget"
    assert "2 redistillations in the last 1 hour (at most 2)" in d["action_reasons"][-1]


def test_a_triggered_redistillation_waits_until_enough_rows_are_gathered():
    policy = ActionPolicy(cooldown_minutes=0, cooldown_runs=1, max_redistills=3, min_rows=500)
    past, actions = [], []
    for i, gathered in enumerate([200, 400, 600, 200, 400]):  # the backlog grows by a 200-row batch a run
        d = decide_action(verdict(DISAGREE, grew=True), past, policy, NOW + i * 60, gathered_rows=gathered)
        past.append(history_entry(verdict(DISAGREE, grew=True), d, NOW + i * 60, "student", "1"))
        actions.append(d["action"])
    # gathering spends no budget and starts no cooldown; the run after a redistillation is in cooldown
    assert actions == ["skipped_gathering", "skipped_gathering", "redistill", "skipped_cooldown", "skipped_gathering"]
    d = decide_action(verdict(DISAGREE, grew=True), [], policy, NOW, gathered_rows=200)
    assert d["action_reasons"][-1] == ("skipped: gathering, 200 production texts since the champion (this batch "
                                       "and the backlog), a redistillation needs 500 (drift.redistill_min_rows)")
    assert not d["redistill"]
    # nothing triggered: nothing to gather for; 0 (or no pool) switches gathering off
    assert decide_action(verdict(INPUT), [], policy, NOW, gathered_rows=10)["action"] == "none"
    assert decide_action(verdict(DISAGREE, grew=True), [], ActionPolicy(min_rows=0), NOW,
                         gathered_rows=10)["action"] == "redistill"
    no_pool = config_from_dict(None, ["drift.redistill_pool=false"]).drift
    assert ActionPolicy.from_config(no_pool).min_rows == 0
    assert ActionPolicy.from_config(config_from_dict(None).drift).min_rows == 500
    with pytest.raises(ConfigError, match=r"drift.redistill_min_rows: 600 is more than drift.redistill_max_rows"):
        config_from_dict(None, ["drift.redistill_min_rows=600", "drift.redistill_max_rows=500"])


def test_watch_only_says_would_redistill_and_spends_no_budget():
    policy = ActionPolicy(cooldown_minutes=0, cooldown_runs=0, max_redistills=1)
    actions = run_sequence(policy, [verdict(DISAGREE, grew=True)] * 3, acts=False)
    assert actions == ["would_redistill"] * 3


def test_nothing_seen_is_none():
    d = decide_action(verdict(), [], ActionPolicy(), NOW)
    assert d["action"] == "none" and d["action_reasons"][-1] == "no redistillation: no configured trigger fired"


# --- the moving reference ---------------------------------------------------------------------


def test_production_window_prefers_label_source_then_the_data_version_diff():
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "label": "x"},
            {"text": "d", "label": "y"}]
    assert production_window(rows, {"a", "b"}, 10) == ["c", "d"]
    assert production_window(rows, {"a", "b"}, 1) == ["d"]  # the most recent
    assert production_window(rows, None, 10) == []  # a champion trained on gold data only
    assert production_window(rows, {"a"}, 0) == []
    marked = [{**r, "label_source": "teacher" if r["text"] in "bd" else "gold"} for r in rows]
    assert production_window(marked, {"a", "b", "c", "d"}, 10) == ["b", "d"]


def test_moving_input_drift_needs_drift_from_both_references():
    assert moving_input_drift(INPUT, None) is True  # no window: the training data alone
    assert moving_input_drift(INPUT, INPUT) is True
    assert moving_input_drift(INPUT, []) is False  # looks like traffic the champion learned
    assert moving_input_drift(["teacher_student_disagreement"], INPUT) is False


def test_a_learned_shift_stops_reading_as_drift_with_evidently_on_descriptors():
    """Real Evidently tests on text descriptors: a shifted stream drifts from the training data; with
    the batch the champion was redistilled on as the window, the next batch of that stream does not
    count as input drift, and a second, different shift still does."""
    from components.monitor_drift.core import DriftPolicy, decide_drift, text_descriptors
    from components.monitor_drift.evidently_report import build_drift_report
    from pipelines.quickstart import generate, generate_production

    def signals(ref, prod):
        _, columns, _ = build_drift_report(text_descriptors(ref), text_descriptors(prod), None, DriftPolicy())
        return decide_drift(columns, None, DriftPolicy(), len(ref), len(prod)).signals

    training = [r["text"] for r in generate()]
    stream = [r["text"] for r in generate_production(600, seed=3)]
    learned, next_batch = stream[:300], stream[300:]
    second_shift = [f"{t.upper()} #{i} 12345 !!!" for i, t in enumerate(training[:300])]
    assert moving_input_drift(signals(training, next_batch), None) is True
    assert moving_input_drift(signals(training, next_batch), signals(learned, next_batch)) is False
    assert moving_input_drift(signals(training, second_shift), signals(learned, second_shift)) is True


# --- config -----------------------------------------------------------------------------------


def test_policy_config_is_validated_with_the_key_and_value():
    cfg = config_from_dict({"drift": {"trigger_on": ["any"], "cooldown_runs": 0}})
    assert ActionPolicy.from_config(cfg.drift).trigger_on == ("any",)
    with pytest.raises(ConfigError, match=r"drift.trigger_on: expected one or more of disagreement, "
                                          r"persistent_input, any, got \['sometimes'\]"):
        config_from_dict({"drift": {"trigger_on": ["sometimes"]}})
    with pytest.raises(ConfigError, match="'any' already covers every signal"):
        config_from_dict({"drift": {"trigger_on": ["any", "disagreement"]}})
    with pytest.raises(ConfigError, match="drift.persistent_runs: must be >= 1, got 0"):
        config_from_dict({"drift": {"persistent_runs": 0}})
    with pytest.raises(ConfigError, match="drift.budget_period_hours: must be > 0, got 0.0"):
        config_from_dict({"drift": {"budget_period_hours": 0}})
    with pytest.raises(ConfigError, match="drift.cooldown_minutes: must be >= 0, got -1.0"):
        config_from_dict({"drift": {"cooldown_minutes": -1}})


# --- the history ------------------------------------------------------------------------------


def _entry(i, action="none", model="student"):
    d = {"action": action, "redistill": action == "redistill", "triggers": [], "action_reasons": []}
    v = {**verdict(DISAGREE, grew=action == "redistill"), "mlflow_run_id": f"run{i}"}
    return history_entry(v, d, NOW + i * 60, model, str(i))


def test_history_appends_reads_back_and_folds_in_results(tmp_path):
    home = Home.resolve(tmp_path / "home")
    assert history.read(home) == []
    history.append(home, _entry(0, "redistill"))
    history.append(home, _entry(1, model="other"))
    history.record_result(home, "run0", {"version": "2", "gate_passed": True})
    history.append(home, {**_entry(2), "scores": {"embedding_auc": float("nan")}})
    runs = history.read(home)
    assert [r["mlflow_run_id"] for r in runs] == ["run0", "run1", "run2"]
    assert runs[0]["result"] == {"version": "2", "gate_passed": True} and "result" not in runs[1]
    assert runs[2]["scores"]["embedding_auc"] is None  # JSON has no NaN
    assert [r["model_version"] for r in history.for_model(runs, "student")] == ["0", "2"]
    assert runs[0]["time"] == "1970-01-12T13:46:40Z" and runs[0]["scores"]["disagreement_production"] == 0.40


def test_a_damaged_history_line_is_an_error_naming_file_and_line(tmp_path):
    home = Home.resolve(tmp_path / "home")
    history.append(home, _entry(0))
    with open(home.drift_history, "a") as f:
        f.write("{not json\n")
    with pytest.raises(history.HistoryError, match=r"history.jsonl line 2: not JSON"):
        history.read(home)


def test_concurrent_appends_keep_every_line_whole(tmp_path):
    home = Home.resolve(tmp_path / "home")

    def writer(k):
        for i in range(50):
            with history.locked(home):
                history.append(home, {**_entry(i), "writer": k, "pad": "x" * 2000})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = home.drift_history.read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["pad"] == "x" * 2000 for line in lines)


# --- the chart --------------------------------------------------------------------------------


def test_history_chart_marks_each_redistillation_and_draws_each_signal():
    entries = [_entry(0, "redistill"), _entry(1, "skipped_cooldown"), _entry(2), _entry(3, "redistill")]
    svg = history_svg(entries)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="redistill"') == 2 and svg.count('class="action"') == 4
    for key in ("disagreement_production", "disagreement_reference", "embedding_auc", "drifted_descriptor_share"):
        assert f'data-signal="{key}"' in svg
    assert "run 2 (1970-01-12T13:47:40Z): skipped_cooldown" in svg
    assert history_svg([]) == ""


def test_the_drift_page_shows_the_action_and_drift_over_time():
    v = {**verdict(DISAGREE, grew=True), "action": "skipped_budget", "reasons": [],
         "action_reasons": ["skipped: budget, 3 redistillations in the last 24 hours (at most 3)"]}
    entries = [_entry(0, "redistill"), {**_entry(1, "skipped_budget"), "result": {"version": "7"}}]
    page = render_signals_section(v, {}, None, 0.5, history=entries)
    assert "Action: " in page and "SKIPPED BUDGET" in page and "at most 3" in page
    assert "Drift over time (the last 2 runs of this model)" in page and "<svg" in page
    assert "<td>7</td>" in page  # the resulting version
