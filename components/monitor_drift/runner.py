"""Side effects of monitor_drift: reference from DVC, predictions by the monitored model, the
Evidently report, the verdict; files under the home and the run in MLflow.

The HTML report is Evidently's page with distillops' section on top (``report_html``): every signal
the verdict was decided on (descriptors, predicted labels, embeddings, teacher-student
disagreement) with its value, threshold and verdict. Each run's Evidently snapshots are also kept
in the local Evidently workspace ``<home>/evidently`` (one project per registered model), whose UI
shows drift over time; the verdict records where (``evidently_workspace``).

The drift policy (``policy``): the reference is the champion's training data plus the recent
production rows it was redistilled on (the moving reference); the verdict keeps what was seen
(``drifted``) and adds what to do (``action``, ``redistill``), decided on the drift history
(``history``, ``<home>/drift/history.jsonl``), which gets this run's line and is drawn in the report.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from components.common import dvc_store, registry
from components.common.backlog import add_to_backlog, backlog_path, newest_unique, read_backlog
from components.common.config import Config, ConfigError
from components.common.dataset import read_texts
from components.common.home import Home
from components.common.io import atomic_write_text
from components.common.paths import safe_name
from components.common.runtime import prepare_process
from components.common.steplog import record_step
from components.common.tracking import start_run
from components.monitor_drift import history
from components.monitor_drift.core import (
    DriftPolicy,
    combine_signals,
    decide_drift,
    validate_embeddings,
    validate_texts,
)
from components.monitor_drift.policy import (
    SKIPPED,
    ActionPolicy,
    decide_action,
    history_entry,
    input_drifted,
    moving_input_drift,
    production_window,
)
from components.monitor_drift.report_html import (
    add_signals_section,
    render_signals_section,
)
from components.monitor_drift.views import sample, view_for

log = logging.getLogger(__name__)
MAX_ROWS = 2000  # per batch: descriptors and predictions of a sample are enough to see drift
# A production window smaller than this is not tested as a reference (too few rows for the tests).
MIN_WINDOW_ROWS = 20


def _sample(texts: list[str], n: int, seed: int = 0) -> list[str]:
    return sample(texts, n, seed)


def _snapshot_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _window(h: Home, mv, rows: list[dict], cfg: Config, tmp: str, view) -> list[str]:
    """The recent production rows the champion was redistilled on (policy.production_window): rows
    marked ``label_source: teacher``, else those its data version added to the one its redistillation
    started from (the ``trigger`` tag promote wrote)."""
    limit = cfg.drift.reference_window_rows
    if limit <= 0:
        return []
    parent_texts = None
    if not any("label_source" in r for r in rows):
        try:
            parent = json.loads(mv.tags.get("trigger") or "{}").get("reference_data_version")
        except ValueError:
            parent = None
        if not parent:
            return []
        parent_texts = set(view.all_texts(dvc_store.materialize(h.data_repo, h.dvc_remote, parent,
                                                                Path(tmp) / "parent.jsonl")))
    window = production_window(rows, parent_texts, limit, "prompt" if view.task == "generation" else "text")
    return [t[:cfg.data.max_text_chars] for t in window]


def _moving_reference(verdict: dict, window: list[str], view, prod_frame, prod_emb, policy: DriftPolicy,
                      cfg: Config) -> dict:
    """Input drift against the moving reference: the same input tests with the production window the
    champion was redistilled on as the reference; the batch counts as input-drifted when it drifted
    from the training data and from this window (policy.moving_input_drift)."""
    from components.monitor_drift.evidently_report import run_drift_report, run_embedding_drift_report

    if not input_drifted(verdict["signals"]):
        return {"window_rows": 0, "input_drifted": False, "window_signals": None,
                "reasons": ["no input drift against the training data: the production window was not tested"]}
    if len(window) < MIN_WINDOW_ROWS:
        why = (f"no production window ({len(window)} rows, at least {MIN_WINDOW_ROWS} needed): the reference is "
               f"the training data alone")
        return {"window_rows": 0, "input_drifted": moving_input_drift(verdict["signals"], None),
                "window_signals": None, "reasons": [why]}
    rows = _sample(window, MAX_ROWS)
    win_frame = view.frame(rows)
    report = run_drift_report(win_frame, prod_frame, view.label_column, policy)
    embedding = None
    if prod_emb is not None:
        win_emb = validate_embeddings(view.embed(rows), "production window")
        embedding = run_embedding_drift_report(win_emb, prod_emb, cfg.drift.embedding_threshold).results
    against = combine_signals(decide_drift(report.results["columns"], report.results["label"], policy,
                                           len(win_frame), len(prod_frame)), embedding, None)
    drifted = moving_input_drift(verdict["signals"], against["signals"])
    lead = (f"moving reference: {len(rows)} recent production rows the champion was redistilled on; against "
            f"them the batch {'drifted too' if against['drifted'] else 'did not drift'}")
    return {"window_rows": len(rows), "input_drifted": drifted, "window_signals": against["signals"],
            "window_embedding_score": (embedding or {}).get("score"),
            "reasons": [lead] + [f"against the window: {r}" for r in against["reasons"]]}


def run(
    home: str,
    production_path: str,
    text_column: str,
    model_ref: str,
    cfg: Config,
    report_html: str,
    verdict_json: str,
    acts: bool = True,
) -> dict:
    """``acts``: whether this run may start a redistillation (the closed loop), or only says what
    it would do (the watch-only DAG: ``would_redistill``, no budget spent)."""
    from components.monitor_drift.evidently_report import run_drift_report, save_to_workspace

    h = Home.resolve(home).ensure()
    prepare_process()
    with record_step(h, "monitor_drift") as counters:
        production = validate_texts(read_texts(production_path, text_column, cfg.data.max_text_chars,
                                               cfg.data.long_texts), "production")
        client = registry.connect(h)
        model_path, mv = registry.download_model(client, h, registry.ModelRef.parse(model_ref))
        data_version = mv.tags.get("data_version")
        if not data_version:
            raise registry.RegistryError(
                f"{model_ref} (version {mv.version}) has no data_version tag: "
                f"cannot find the data it was trained on"
            )
        task = (mv.tags or {}).get("task", "classification")
        if task != cfg.task:
            raise ConfigError(f"{model_ref} (version {mv.version}) is a {task} model; monitor it with task: {task} "
                              f"(--task {task}), not {cfg.task}")
        view = view_for(task, model_path, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            snap_path = dvc_store.materialize(h.data_repo, h.dvc_remote, data_version, Path(tmp) / "reference.jsonl")
            training = view.training_texts(snap_path)
            window = _window(h, mv, _snapshot_rows(snap_path), cfg, tmp, view)
        # A snapshot versioned before data.max_text_chars existed may hold longer texts.
        reference = [t[:cfg.data.max_text_chars] for t in validate_texts(training, "reference")]
        ref_frame = view.frame(_sample(reference, MAX_ROWS))
        prod_frame = view.frame(_sample(production, MAX_ROWS))
        d = cfg.drift
        policy = DriftPolicy(
            column_drift_share=d.column_drift_share,
            stattest_threshold=d.stattest_threshold,
            label_drift=d.label_drift,
        )
        descriptors = run_drift_report(ref_frame, prod_frame, view.label_column, policy)
        columns, label = descriptors.results["columns"], descriptors.results["label"]
        embedding, embedding_html, embedding_run, prod_emb = None, "", None, None
        if d.embedding_drift:
            from components.monitor_drift.evidently_report import run_embedding_drift_report

            ref_emb = validate_embeddings(view.embed(_sample(reference, MAX_ROWS)), "reference")
            prod_emb = validate_embeddings(view.embed(_sample(production, MAX_ROWS)), "production")
            embedding_run = run_embedding_drift_report(ref_emb, prod_emb, d.embedding_threshold)
            embedding_html, embedding = embedding_run.html, embedding_run.results
        disagreement = view.disagreement(h, mv, reference, production)
        verdict = combine_signals(decide_drift(columns, label, policy, len(ref_frame), len(prod_frame)), embedding,
                                  disagreement)
        verdict.update(
            model=f"{mv.name}/v{mv.version}",
            reference_data_version=data_version,
            production=str(production_path),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            task=task,
            production_label_share=_shares(prod_frame[view.label_column]) if view.label_column else {},
            reference_label_share=_shares(ref_frame[view.label_column]) if view.label_column else {},
        )
        verdict["moving_reference"] = _moving_reference(verdict, window, view, prod_frame, prod_emb, policy, cfg)

        stem = safe_name(f"drift-{time.strftime('%Y%m%d-%H%M%S')}-{mv.name}-v{mv.version}", "drift report name")
        kept_html, kept_json = h.reports / f"{stem}.html", h.reports / f"{stem}.json"
        kept_emb = h.reports / f"{stem}-embeddings.html"
        verdict.update(report_html=str(kept_html), verdict_json=str(kept_json),
                       embedding_report_html=str(kept_emb) if embedding_html else None)
        # Every run in the local Evidently workspace, one project per registered model: its UI shows
        # drift over time (evidently ui --workspace <home>/evidently).
        verdict["evidently_workspace"] = save_to_workspace(
            str(h.evidently), mv.name, [(f"{stem} descriptors and labels", descriptors)]
            + ([(f"{stem} embeddings", embedding_run)] if embedding_run is not None else []))
        tags = {"distillops.step": "monitor_drift", "drifted": str(verdict["drifted"]), "model": verdict["model"],
                "reference_data_version": data_version, "signals": ",".join(verdict["signals"])}
        # Read, decide and append under the history's lock: two concurrent runs cannot both spend the
        # last redistillation of a budget, and a run is recorded only once all its outputs are written.
        with history.locked(h):
            past = history.for_model(history.read(h), mv.name)
            now = time.time()
            backlog = backlog_path(h.root, data_version)
            waiting = read_backlog(backlog) if d.redistill_pool else []
            gathered = len(newest_unique([*waiting, *production], d.redistill_max_rows)) if d.redistill_pool else None
            decision = decide_action(verdict, past, ActionPolicy.from_config(d), now, acts=acts,
                                     gathered_rows=gathered)
            verdict.update(decision)
            if decision["action"] in SKIPPED and d.redistill_pool:
                # the traffic seen while the policy waits joins the next redistillation from this champion
                verdict["backlog_rows"] = add_to_backlog(backlog, list(dict.fromkeys(production)),
                                                         d.redistill_max_rows, waiting)
            tags.update(action=decision["action"], redistill=str(decision["redistill"]))
            with start_run(h, "monitor_drift", tags=tags) as drift_run:
                verdict.update(mlflow_run_id=drift_run.run_id,
                               report_location=f"{drift_run.location}/drift/report.html")
                entry = history_entry(verdict, decision, now, mv.name, str(mv.version))
                html = add_signals_section(descriptors.html, render_signals_section(
                    verdict, columns, label, policy.column_drift_share, policy.label_drift, past + [entry]))
                drift_run.log_text(html, "drift/report.html")
                if embedding_html:
                    drift_run.log_text(embedding_html, "drift/embeddings.html")
                drift_run.log_dict(verdict, "drift/verdict.json")
                drift_run.log_metrics({"drifted_columns": len(verdict["drifted_columns"]),
                                       "disagreement_production": disagreement["production"],
                                       "disagreement_reference": disagreement["reference"],
                                       "redistill": float(decision["redistill"]),
                                       **({"embedding_drift_score": embedding["score"]} if embedding else {})})
            outputs = [((report_html, kept_html), html), ((verdict_json, kept_json), json.dumps(verdict, indent=2))]
            if embedding_html:
                outputs.append(((kept_emb,), embedding_html))
            for paths, text in outputs:
                for path in paths:
                    atomic_write_text(path, text)
            history.append(h, entry)
        # teacher_forward_passes: the inputs this step sent to the teacher for the disagreement signal
        # (generation: the sampled prompts the teacher store lacked; classification: every sampled text),
        # summed with the redistillation's steps into the drift loop's teacher_forward_passes
        counters.update(drifted=verdict["drifted"], action=verdict["action"], production_rows=len(production),
                        teacher_forward_passes=disagreement["teacher_calls"],
                        teacher_answers_cached=disagreement["teacher_answers_cached"])
    log.info(
        "drift %s, action %s: %s", "DETECTED" if verdict["drifted"] else "not detected", verdict["action"],
        "; ".join(verdict["reasons"] + verdict["action_reasons"])
    )
    return {**verdict, "step_report": counters}


def _shares(values) -> dict[str, float]:
    labels, counts = np.unique(np.asarray(values), return_counts=True)
    return {str(k): round(float(c) / counts.sum(), 4) for k, c in zip(labels, counts, strict=True)}
