"""Pure logic of the drift policy: what is *seen* (the verdict's ``drifted``) vs what is *acted on*
(``action``: redistill, skipped_cooldown, skipped_budget, skipped_gathering, none, or would_redistill in
a watch-only run).

Seeing drift is cheap and kept for people; acting on it costs a training run. A batch redistils when
a configured trigger fires (``drift.trigger_on``), no cooldown holds and the budget allows:

- ``disagreement``: the student no longer imitates its teacher where traffic now is (the
  teacher-student disagreement grew beyond ``drift.max_disagreement_increase``);
- ``persistent_input``: input drift (descriptors, labels, embeddings, or a signal not evaluated:
  fail closed) against the *moving* reference, in ``drift.persistent_runs`` consecutive monitor
  runs since the last redistillation;
- ``any``: any drift seen (the behaviour before the policy existed).

The moving reference (``moving_input_drift``) is the champion's training data plus a window of the
recent production rows it was redistilled on, each compared on its own, so a shift the champion has
learned stops reading as input drift instead of being swamped by thousands of original rows. Decisions read the drift history (``history.py``); every function here takes
plain values (the history's entries, the time as epoch seconds) so that it is unit-testable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from components.common.config import DriftConfig

# The verdict's signals that are about the inputs (not about the student vs its teacher).
INPUT_SIGNALS = ("descriptors_or_labels", "embeddings", "not_evaluated")
DISAGREEMENT_SIGNAL = "teacher_student_disagreement"
ACTIONS = ("redistill", "skipped_cooldown", "skipped_budget", "skipped_gathering", "none", "would_redistill")
# The actions that skip a triggered redistillation: their batch waits in the backlog for the next one.
SKIPPED = ("skipped_cooldown", "skipped_budget", "skipped_gathering")


@dataclass(frozen=True)
class ActionPolicy:
    """When a drift verdict starts a redistillation (the drift.* keys of the same names, and their defaults)."""

    trigger_on: tuple[str, ...] = DriftConfig.trigger_on
    persistent_runs: int = DriftConfig.persistent_runs
    cooldown_minutes: float = DriftConfig.cooldown_minutes
    cooldown_runs: int = DriftConfig.cooldown_runs
    max_redistills: int = DriftConfig.max_redistills
    budget_period_hours: float = DriftConfig.budget_period_hours
    # 0 unless the pool (and so the backlog that gathers rows) is on
    min_rows: int = DriftConfig.redistill_min_rows if DriftConfig.redistill_pool else 0

    @classmethod
    def from_config(cls, d: DriftConfig) -> ActionPolicy:
        return cls(trigger_on=tuple(d.trigger_on), persistent_runs=d.persistent_runs,
                   cooldown_minutes=d.cooldown_minutes, cooldown_runs=d.cooldown_runs,
                   max_redistills=d.max_redistills, budget_period_hours=d.budget_period_hours,
                   min_rows=d.redistill_min_rows if d.redistill_pool else 0)


def input_drifted(signals: list[str]) -> bool:
    """Whether the verdict saw drift in the inputs themselves (not only in the disagreement)."""
    return any(s in INPUT_SIGNALS for s in signals)


def verdict_input_drift(verdict: dict[str, Any]) -> bool:
    """Input drift against the moving reference when the verdict has one, else against the training data."""
    moving = verdict.get("moving_reference")
    if moving is not None:
        return bool(moving["input_drifted"])
    return input_drifted(list(verdict.get("signals") or []))


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def _since_last_redistill(past: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The last entry that redistilled and the entries after it (all of them when none did)."""
    for i in range(len(past) - 1, -1, -1):
        if past[i].get("redistill"):
            return past[i], past[i + 1:]
    return None, past


def _input_streak(after: list[dict[str, Any]], now_drifted: bool) -> int:
    """Consecutive runs, this one included, with input drift (counted back to the last redistillation)."""
    if not now_drifted:
        return 0
    streak = 1
    for entry in reversed(after):
        if not entry.get("input_drifted"):
            break
        streak += 1
    return streak


def _triggers(verdict: dict[str, Any], policy: ActionPolicy, streak: int) -> tuple[list[str], list[str]]:
    """(the triggers that fired, a sentence per configured trigger saying why it did or did not)."""
    signals = list(verdict.get("signals") or [])
    fired, reasons = [], []
    if "any" in policy.trigger_on:
        if verdict.get("drifted"):
            fired.append("any")
            reasons.append(f"trigger any: drift seen ({', '.join(signals)})")
        else:
            reasons.append("trigger any: no drift seen")
    if "disagreement" in policy.trigger_on:
        dis = verdict.get("disagreement")
        if dis is None:
            reasons.append("trigger disagreement: not measured")
        else:
            numbers = (f"{dis['production']:.1%} on production vs {dis['reference']:.1%} on the reference, "
                       f"increase {dis['increase']:+.1%}, allowed {dis['threshold']:.1%}")
            if DISAGREEMENT_SIGNAL in signals:
                fired.append("disagreement")
                reasons.append(f"trigger disagreement: the student no longer imitates its teacher ({numbers})")
            else:
                reasons.append(f"trigger disagreement: the student still imitates its teacher ({numbers})")
    if "persistent_input" in policy.trigger_on:
        need = policy.persistent_runs
        if streak >= need:
            fired.append("persistent_input")
            reasons.append(f"trigger persistent_input: input drift against the moving reference in {streak} "
                           f"consecutive runs since the last redistillation (needs {need})")
        elif streak:
            reasons.append(f"trigger persistent_input: input drift against the moving reference in {streak} "
                           f"consecutive run(s), fewer than the {need} needed")
        else:
            reasons.append("trigger persistent_input: no input drift against the moving reference")
    return fired, reasons


def decide_action(verdict: dict[str, Any], past: list[dict[str, Any]], policy: ActionPolicy, now: float,
                  acts: bool = True, gathered_rows: int | None = None) -> dict[str, Any]:
    """What to do about ``verdict`` given the earlier monitor runs of the same model (``past``,
    oldest first: history entries with ``timestamp``, ``redistill``, ``input_drifted``).
    ``gathered_rows``: the distinct production texts a redistillation now would add (this batch and
    the backlog); fewer than ``policy.min_rows`` and it waits (``skipped_gathering``). None: not counted.

    Returns ``{"action", "redistill", "triggers", "action_reasons", "input_drift_streak"}``.
    ``acts=False`` (the watch-only DAG): the same decision, but a batch that would redistil says
    ``would_redistill`` and ``redistill`` is False (it neither redistils nor uses the budget).
    """
    last, after = _since_last_redistill(past)
    streak = _input_streak(after, verdict_input_drift(verdict))
    fired, reasons = _triggers(verdict, policy, streak)
    action = "redistill" if fired else "none"
    if fired and last is not None:
        minutes = (now - float(last["timestamp"])) / 60.0
        if policy.cooldown_minutes and minutes < policy.cooldown_minutes:
            action = "skipped_cooldown"
            reasons.append(f"skipped: cooldown, the last redistillation was {minutes:.1f} minutes ago "
                           f"(cooldown {_plural(policy.cooldown_minutes, 'minute')})")
        elif policy.cooldown_runs and len(after) < policy.cooldown_runs:
            action = "skipped_cooldown"
            reasons.append(f"skipped: cooldown, {_plural(len(after), 'monitor run')} since the last "
                           f"redistillation (cooldown {_plural(policy.cooldown_runs, 'run')})")
    if action == "redistill" and policy.max_redistills:
        since = now - policy.budget_period_hours * 3600.0
        used = sum(1 for e in past if e.get("redistill") and float(e["timestamp"]) > since)
        if used >= policy.max_redistills:
            action = "skipped_budget"
            reasons.append(f"skipped: budget, {used} redistillations in the last "
                           f"{_plural(policy.budget_period_hours, 'hour')} (at most {policy.max_redistills})")
    if action == "redistill" and policy.min_rows and gathered_rows is not None and gathered_rows < policy.min_rows:
        action = "skipped_gathering"
        reasons.append(f"skipped: gathering, {gathered_rows} production texts since the champion (this batch and "
                       f"the backlog), a redistillation needs {policy.min_rows} (drift.redistill_min_rows)")
    if action == "redistill":
        reasons.append(f"redistill: triggered by {', '.join(fired)}")
        if not acts:
            action = "would_redistill"
            reasons.append("watch only: this run does not redistil (monitor --redistill would)")
    elif action == "none":
        reasons.append("no redistillation: no configured trigger fired")
    return {"action": action, "redistill": action == "redistill", "triggers": fired,
            "action_reasons": reasons, "input_drift_streak": streak}


# ---------------------------------------------------------------------------------------------
# The moving reference
# ---------------------------------------------------------------------------------------------


def production_window(rows: list[dict[str, Any]], parent_texts: set[str] | None, limit: int,
                      text_column: str = "text") -> list[str]:
    """The most recent (last in the data) production texts the champion was redistilled on, at most ``limit``.

    Production rows are those with ``label_source: teacher`` when the data says so; otherwise those
    whose text is not in the data version the redistillation started from (``parent_texts``); with
    neither, there is no window (a champion trained on gold data only)."""
    if limit <= 0:
        return []
    if any("label_source" in r for r in rows):
        texts = [r[text_column] for r in rows if r.get("label_source") == "teacher"]
    elif parent_texts is not None:
        texts = [r[text_column] for r in rows if r[text_column] not in parent_texts]
    else:
        return []
    return list(dict.fromkeys(texts))[-limit:]


def moving_input_drift(training_signals: list[str], window_signals: list[str] | None) -> bool:
    """Input drift against the moving reference (the champion's training data *and* the recent
    production window it was redistilled on): the batch drifted from both. A batch that looks like
    traffic the champion has learned is not new drift, however far it is from the original data.

    The window is a reference of its own, not mixed into a sample of the training data: a mixture
    keeps reading as drift on sensitive tests (a 50/50 mix of trec-like training texts and 200
    banking77 texts vs 200 other banking77 texts: 7 of 7 descriptors drifted; and a domain
    classifier separates the training share of a mixture, ROC AUC 0.5 + share / 2)."""
    if not input_drifted(training_signals):
        return False
    return window_signals is None or input_drifted(window_signals)


# ---------------------------------------------------------------------------------------------
# The history entry of one run
# ---------------------------------------------------------------------------------------------


def signal_scores(verdict: dict[str, Any]) -> dict[str, float | None]:
    """Each signal's number, for the history and its chart (None where not measured)."""
    dis = verdict.get("disagreement") or {}
    emb = verdict.get("embedding") or {}
    columns = verdict.get("column_scores") or {}
    evaluated = len(columns) - len([c for c in columns if c in (verdict.get("not_evaluated") or {})])
    drifted = len(verdict.get("drifted_columns") or [])
    return {"disagreement_production": dis.get("production"), "disagreement_reference": dis.get("reference"),
            "disagreement_increase": dis.get("increase"), "disagreement_threshold": dis.get("threshold"),
            "embedding_auc": emb.get("score"), "embedding_threshold": emb.get("threshold"),
            "drifted_descriptor_share": drifted / evaluated if evaluated else None}


def history_entry(verdict: dict[str, Any], decision: dict[str, Any], now: float, model_name: str,
                  model_version: str) -> dict[str, Any]:
    """The line the history keeps for one monitor run."""
    signals = list(verdict.get("signals") or [])
    return {"timestamp": now, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "model_name": model_name, "model_version": str(model_version),
            "data_version": verdict.get("reference_data_version"), "production": verdict.get("production"),
            "drifted": bool(verdict.get("drifted")), "signals": signals, "input_drifted": verdict_input_drift(verdict),
            "label_drifted": verdict.get("label_drifted"), "scores": signal_scores(verdict),
            "reference_window_rows": (verdict.get("moving_reference") or {}).get("window_rows", 0),
            "action": decision["action"], "redistill": decision["redistill"], "triggers": decision["triggers"],
            "action_reasons": decision["action_reasons"], "mlflow_run_id": verdict.get("mlflow_run_id"),
            "verdict_json": verdict.get("verdict_json"), "report_html": verdict.get("report_html")}
