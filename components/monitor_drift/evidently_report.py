"""Evidently 0.7 adapter of monitor_drift: run the drift tests and render the HTML report.

The only module of the step that imports evidently. It hands back plain dicts
(``{"drifted", "score", "method"}`` per column) so that ``core.decide_drift`` owns the decision.

Evidently API used (0.7.23): ``Report([DataDriftPreset(columns=...), ValueDrift(column=label)],
include_tests=True).run(current, reference)`` on ``Dataset.from_pandas(df, data_definition=
DataDefinition(...))``; the snapshot's ``.dict()`` holds one ``ValueDrift`` metric per column
(value = score, config = resolved method and threshold) and one test per column whose status
(FAIL = drift detected) is Evidently's own verdict for that column.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations import stattests
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

from components.monitor_drift.core import DriftInputError, DriftPolicy

# Above this many reference rows Evidently's automatic choice switches from p-value tests
# (K-S, chi-square, Z) to distances (Wasserstein, Jensen-Shannon) whose thresholds mean
# something else (0.1 of a distance, drift when above). DriftPolicy.stattest_threshold is a
# p-value, so for large references the methods are pinned to p-value tests instead.
_EVIDENTLY_AUTO_PVALUE_MAX_ROWS = 1000
_LARGE_NUM_METHOD = "ks"
_LARGE_CAT_METHOD = "chisquare"
_PVALUE_METHODS = {
    "ks",
    "chisquare",
    "z",
    "anderson",
    "cramer_von_mises",
    "es",
    "fisher_exact",
    "g_test",
    "mannw",
    "t_test",
}

# Evidently's per-column test statuses; anything else (ERROR, SKIPPED) is counted as drift.
_NOT_DRIFTED_STATUSES = {"SUCCESS"}
_DRIFTED_STATUSES = {"FAIL", "WARNING"}


# ---------------------------------------------------------------------------------------------
# Input checks: fail closed before Evidently silently drops NaN rows or guesses column types.
# ---------------------------------------------------------------------------------------------


def _descriptor_columns(
    reference: pd.DataFrame, production: pd.DataFrame, label_column: str | None
) -> list[str]:
    """Descriptor columns (reference order), after checking both frames hold the same columns."""
    ref_cols = [c for c in reference.columns if c != label_column]
    prod_cols = [c for c in production.columns if c != label_column]
    if set(ref_cols) != set(prod_cols):
        raise DriftInputError(
            f"reference and production descriptor columns differ: "
            f"only in reference {sorted(set(ref_cols) - set(prod_cols))}, "
            f"only in production {sorted(set(prod_cols) - set(ref_cols))}"
        )
    if not ref_cols:
        raise DriftInputError("no descriptor columns to compare")
    return [str(c) for c in ref_cols]


def _check_frame(frame: pd.DataFrame, batch_name: str, columns: list[str], label_column: str | None) -> None:
    if len(frame) == 0:
        raise DriftInputError(f"{batch_name} batch has no rows")
    for column in columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise DriftInputError(
                f"{batch_name} column {column!r} is {frame[column].dtype}, expected numeric"
            )
        finite = np.isfinite(frame[column].to_numpy(dtype="float64"))
        if not finite.all():
            row = int(finite.argmin())
            value = float(frame[column].iloc[row])
            raise DriftInputError(
                f"{batch_name} column {column!r} row {row} is {value!r}, expected a finite number"
            )
    if label_column is not None:
        if label_column not in frame.columns:
            raise DriftInputError(f"{batch_name} batch lacks the label column {label_column!r}")
        missing = frame[label_column].isna().to_numpy()
        if missing.any():
            row = int(missing.argmax())
            raise DriftInputError(
                f"{batch_name} label column {label_column!r} row {row} is {frame[label_column].iloc[row]!r}"
            )


def _prepare(frame: pd.DataFrame, columns: list[str], label_column: str | None) -> pd.DataFrame:
    out = frame[columns].astype("float64").reset_index(drop=True)
    if label_column is not None:
        # Labels are categories: "1" and 1 must not become a numerical column by inference.
        out[label_column] = frame[label_column].astype(str).to_numpy()
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _methods(n_reference: int) -> tuple[str | None, str | None]:
    """(numerical, categorical) method names; None lets Evidently choose (p-value tests when small)."""
    if n_reference > _EVIDENTLY_AUTO_PVALUE_MAX_ROWS:
        return _LARGE_NUM_METHOD, _LARGE_CAT_METHOD
    return None, None


def _make_report(
    columns: list[str], label_column: str | None, policy: DriftPolicy, n_reference: int
) -> Report:
    num_method, cat_method = _methods(n_reference)
    metrics: list[Any] = [
        # The preset renders the familiar drift table and the "share of drifted columns" summary
        # over the descriptors only, so the HTML agrees with the policy's share.
        DataDriftPreset(
            columns=columns,
            drift_share=policy.column_drift_share,
            threshold=policy.stattest_threshold,
            num_method=num_method,
        )
    ]
    if label_column is not None:
        metrics.append(
            ValueDrift(column=label_column, method=cat_method, threshold=policy.stattest_threshold)
        )
    # include_tests: each ValueDrift then carries a test whose status is Evidently's drift flag.
    return Report(metrics, include_tests=True)


def _dataset(frame: pd.DataFrame, columns: list[str], label_column: str | None) -> Dataset:
    definition = DataDefinition(
        numerical_columns=columns,
        categorical_columns=[label_column] if label_column is not None else [],
    )
    return Dataset.from_pandas(frame, data_definition=definition)


# ---------------------------------------------------------------------------------------------
# Extraction from snapshot.dict()
# ---------------------------------------------------------------------------------------------


def _status_name(status: Any) -> str:
    # Snapshot.dict() holds TestStatus enum members (str() gives "TestStatus.FAIL" on 3.11);
    # Snapshot.json() holds plain "FAIL". Accept both.
    return str(getattr(status, "value", status)).upper()


def _test_statuses(tests: list[dict]) -> dict[str, str]:
    """metric id -> status of its per-column drift test."""
    statuses: dict[str, str] = {}
    for test in tests:
        metric_config = test.get("metric_config") or {}
        params = metric_config.get("params") or {}
        if "ValueDrift" in str(params.get("type", "")) and metric_config.get("metric_id"):
            statuses[str(metric_config["metric_id"])] = _status_name(test.get("status"))
    return statuses


@functools.cache
def _method_names() -> dict[str, str]:
    """Evidently display name -> registry name ("K-S p_value" -> "ks", "chi-square p_value" -> "chisquare")."""
    return {v.display_name: v.name for v in vars(stattests).values() if isinstance(v, stattests.StatTest)}


def _short_method(method: str) -> str:
    # An auto-chosen method comes back as its display name, a pinned one as the name we passed;
    # report the registry name in both cases so verdicts are comparable across batch sizes.
    return _method_names().get(method, method)


def _drifted_from_score(score: float, method: str, threshold: float) -> bool:
    # Fallback only (no test result found): p-value tests drift below the threshold,
    # distances at or above it, as in evidently.legacy.calculations.stattests.
    if "p_value" in method.lower() or _short_method(method) in _PVALUE_METHODS:
        return score < threshold
    return score >= threshold


def _value_drift_result(metric: dict, statuses: dict[str, str], default_threshold: float) -> dict[str, Any]:
    config = metric.get("config") or {}
    method = str(config.get("method") or "unknown")
    threshold = float(config["threshold"]) if config.get("threshold") is not None else default_threshold
    value = metric.get("value")
    score = float(value) if isinstance(value, int | float) else float("nan")
    result: dict[str, Any] = {"score": score, "method": _short_method(method), "threshold": threshold}
    status = statuses.get(str(metric.get("id")))
    if not math.isfinite(score):
        # Fail closed: a NaN/inf statistic (chi-square on a constant reference) proves nothing,
        # whatever status Evidently gave it (it reports SUCCESS for nan < threshold being false).
        result["drifted"] = True
        result["note"] = f"Evidently gave status {status} and score {score!r}: the statistic is undefined"
    elif status in _NOT_DRIFTED_STATUSES:
        result["drifted"] = False
    elif status in _DRIFTED_STATUSES:
        result["drifted"] = True
    elif status is None and math.isfinite(score):
        result["drifted"] = _drifted_from_score(score, method, threshold)
    else:
        # Fail closed: an errored test or a missing score cannot vouch for "no drift".
        result["drifted"] = True
        result["note"] = f"Evidently gave status {status} and score {score!r}; counted as drifted"
    return result


def extract_value_drift(snapshot_dict: dict, default_threshold: float = 0.05) -> dict[str, dict[str, Any]]:
    """Column -> {"drifted", "score", "method", "threshold"[, "note"]} from ``Snapshot.dict()``.

    ``default_threshold`` is used only if a metric's config lacks its resolved threshold.
    """
    statuses = _test_statuses(snapshot_dict.get("tests") or [])
    results: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict.get("metrics") or []:
        config = metric.get("config") or {}
        if str(config.get("type", "")).endswith("ValueDrift") and config.get("column") is not None:
            results[str(config["column"])] = _value_drift_result(metric, statuses, default_threshold)
    return results


def _note_constant_columns(
    results: dict[str, dict[str, Any]], reference: pd.DataFrame, production: pd.DataFrame, columns: list[str]
) -> None:
    """Mark columns holding one and the same value in both batches: nothing to test, not drifted.

    Evidently does not crash on them (it picks a Z-test and returns p = 1), but the verdict says
    so explicitly, since "no drift" there means "not measurable" (e.g. digit_share all zero).
    """
    for column in columns:
        values = pd.concat([reference[column], production[column]], ignore_index=True)
        if values.nunique() <= 1 and column in results and math.isfinite(results[column]["score"]):
            results[column]["drifted"] = False
            results[column]["note"] = (
                f"constant ({values.iloc[0]:g}) in both batches, not testable; not drifted"
            )


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float | np.number) else repr(str(value))


def _note_undefined_scores(results: dict[str, dict[str, Any]], reference: pd.DataFrame,
                           production: pd.DataFrame) -> None:
    """Say why a statistic came back NaN/inf (core.decide_drift then counts it "not evaluated")."""
    for column, result in results.items():
        if math.isfinite(result["score"]):
            continue
        parts = []
        for name, frame in (("reference", reference), ("production batch", production)):
            values = frame[column].unique()
            if len(values) == 1:
                parts.append(f"the {name} holds one value ({_plain(values[0])}) in all {len(frame)} rows")
        detail = " and ".join(parts) or f"Evidently's {result['method']} gave no finite score"
        result["drifted"] = True
        result["note"] = f"{column}: {detail}, so {result['method']} is undefined (nan)"


@dataclass
class EvidentlyRun:
    """One Evidently report run: its standalone HTML, what the adapter read from it, and the
    snapshot itself (kept in the local workspace by ``save_to_workspace``)."""

    html: str
    results: dict[str, Any]
    snapshot: Any


def build_drift_report(
    reference: pd.DataFrame,
    production: pd.DataFrame,
    label_column: str | None,
    policy: DriftPolicy,
) -> tuple[str, dict[str, dict], dict | None]:
    """Run Evidently on descriptor frames; return (standalone HTML, per-column results, label result).

    ``reference``/``production`` hold numeric descriptor columns and optionally ``label_column``
    (predicted labels, compared as categories). Raises DriftInputError on degenerate frames.
    """
    run = run_drift_report(reference, production, label_column, policy)
    return run.html, run.results["columns"], run.results["label"]


def run_drift_report(
    reference: pd.DataFrame,
    production: pd.DataFrame,
    label_column: str | None,
    policy: DriftPolicy,
) -> EvidentlyRun:
    """``build_drift_report`` keeping the snapshot: results are {"columns", "label"}."""
    columns = _descriptor_columns(reference, production, label_column)
    _check_frame(reference, "reference", columns, label_column)
    _check_frame(production, "production", columns, label_column)
    ref = _prepare(reference, columns, label_column)
    prod = _prepare(production, columns, label_column)

    report = _make_report(columns, label_column, policy, len(ref))
    with warnings.catch_warnings():
        # numpy warns "invalid value encountered in divide" while Evidently renders correlations
        # of constant columns; the results are unaffected and the noise hides real warnings.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(_dataset(prod, columns, label_column), _dataset(ref, columns, label_column))
        html = snapshot.get_html_str(as_iframe=False)

    results = extract_value_drift(snapshot.dict(), policy.stattest_threshold)
    missing = [c for c in columns + ([label_column] if label_column else []) if c not in results]
    if missing:
        # Not the caller's input: the snapshot did not have the shape this adapter expects.
        raise RuntimeError(f"Evidently returned no drift result for columns {missing}")
    _note_constant_columns(results, ref, prod, columns)
    _note_undefined_scores(results, ref, prod)
    label_result = results.pop(label_column) if label_column is not None else None
    column_results = {c: results[c] for c in columns}
    return EvidentlyRun(html, {"columns": column_results, "label": label_result}, snapshot)


# ---------------------------------------------------------------------------------------------
# Embedding drift
# ---------------------------------------------------------------------------------------------


def build_embedding_drift_report(reference: np.ndarray, production: np.ndarray, threshold: float,
                                 ) -> tuple[str, dict[str, Any]]:
    """Evidently's EmbeddingsDrift with the domain-classifier method: a linear classifier learns to
    tell reference rows from production rows; its ROC AUC on held-out rows is the score (0.5 =
    indistinguishable). Returns (standalone HTML, {"drifted", "score", "method", "threshold"}).

    Callers validate the matrices first (``core.validate_embeddings``).
    """
    run = run_embedding_drift_report(reference, production, threshold)
    return run.html, run.results


def run_embedding_drift_report(reference: np.ndarray, production: np.ndarray, threshold: float) -> EvidentlyRun:
    """``build_embedding_drift_report`` keeping the snapshot."""
    from evidently.metrics.embeddings import EmbeddingsDrift, ModelDriftMethod

    dims = reference.shape[1]
    columns = [f"emb_{i}" for i in range(dims)]
    ref = pd.DataFrame(reference, columns=columns)
    prod = pd.DataFrame(production, columns=columns)
    definition = DataDefinition(numerical_columns=columns, embeddings={"embeddings": columns})
    # PCA keeps the classifier small and its AUC stable on wide embeddings (384 for MiniLM).
    method = ModelDriftMethod(threshold=threshold, pca_components=min(20, dims, len(ref), len(prod)))
    report = Report([EmbeddingsDrift(embeddings_name="embeddings", drift_method=method)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(Dataset.from_pandas(prod, data_definition=definition),
                              Dataset.from_pandas(ref, data_definition=definition))
        html = snapshot.get_html_str(as_iframe=False)
    values = [m.get("value") for m in snapshot.dict().get("metrics") or []
              if "EmbeddingsDrift" in str((m.get("config") or {}).get("type", ""))]
    if not values or not isinstance(values[0], int | float) or not math.isfinite(values[0]):
        raise RuntimeError(f"Evidently returned no embedding drift score: {values}")
    score = float(values[0])
    return EvidentlyRun(html, {"drifted": score > threshold, "score": score, "method": "domain_classifier_roc_auc",
                               "threshold": threshold}, snapshot)


# ---------------------------------------------------------------------------------------------
# Local workspace: drift over time in Evidently's UI
# ---------------------------------------------------------------------------------------------


def _drift_panels(label_column: str | None) -> list:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    panels = [line_plot_panel("Share of drifted text descriptors",
                              [PanelMetric(legend="drifted share", metric="DriftedColumnsCount",
                                           metric_labels={"value_type": "share"})], size="half")]
    if label_column is not None:
        panels.append(line_plot_panel(f"Predicted-label drift score ({label_column})",
                                      [PanelMetric(legend="p-value", metric="ValueDrift",
                                                   metric_labels={"column": label_column})], size="half"))
    panels.append(line_plot_panel("Embedding drift (domain classifier ROC AUC)",
                                  [PanelMetric(legend="ROC AUC", metric="EmbeddingsDrift")], size="half"))
    return panels


def save_to_workspace(path: str, project_name: str, runs: list[tuple[str, EvidentlyRun]],
                      label_column: str | None = "predicted_label") -> dict[str, Any]:
    """Add the runs' snapshots to the local Evidently workspace at ``path``, in the project named
    ``project_name`` (one per monitored registered model; created with drift-over-time panels the
    first time). ``evidently ui --workspace <path>`` then shows every drift run and the trends.

    Returns {"path", "project", "project_id", "snapshots": {name: snapshot id}}.
    """
    from evidently.ui.workspace import Workspace

    ws = Workspace.create(path)
    found = ws.search_project(project_name)
    if found:
        project = found[0]
    else:
        project = ws.create_project(project_name, description=f"distillops drift runs of {project_name}")
        # tab=None: the first tab ("General"). Evidently 0.7.23 lists a panel twice when it is
        # added to a named tab that already exists.
        for panel in _drift_panels(label_column):
            project.dashboard.add_panel(panel)
    ids = {}
    for name, run in runs:
        ids[name] = str(ws.add_run(project.id, run.snapshot, include_data=False, name=name).id)
    return {"path": str(path), "project": project_name, "project_id": str(project.id), "snapshots": ids}
