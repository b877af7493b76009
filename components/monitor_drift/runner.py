"""Side effects of monitor_drift: reference from DVC, predictions by the monitored model, the
Evidently report, the verdict; files under the home and the run in MLflow."""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from components.common import dvc_store, registry
from components.common.config import config_from_json
from components.common.dataset import read_snapshot, read_texts
from components.common.home import Home
from components.common.modeling import label_names, load_classifier, predict_logits, set_threads
from components.common.steplog import record_step
from components.monitor_drift.core import DriftPolicy, decide_drift, text_descriptors, validate_texts

log = logging.getLogger(__name__)
MAX_ROWS = 2000  # per batch: descriptors and predictions of a sample are enough to see drift


def _sample(texts: list[str], n: int, seed: int = 0) -> list[str]:
    return texts if len(texts) <= n else random.Random(seed).sample(texts, n)


def _frame(model, tokenizer, texts: list[str], max_length: int):
    frame = text_descriptors(texts)
    names = label_names(model)
    frame["predicted_label"] = [
        names[i] for i in predict_logits(model, tokenizer, texts, max_length).argmax(-1)
    ]
    return frame


def run(
    home: str,
    production_path: str,
    text_column: str,
    model_ref: str,
    config_json: str,
    report_html: str,
    verdict_json: str,
) -> dict:
    from components.monitor_drift.evidently_report import build_drift_report

    h = Home.resolve(home).ensure()
    cfg = config_from_json(config_json)
    set_threads()
    with record_step(h, "monitor_drift") as counters:
        production = validate_texts(read_texts(production_path, text_column), "production")
        client = registry.connect(h)
        model_path, mv = registry.download_model(client, h, registry.ModelRef.parse(model_ref))
        data_version = mv.tags.get("data_version")
        if not data_version:
            raise registry.RegistryError(
                f"{model_ref} (version {mv.version}) has no data_version tag: "
                f"cannot find the data it was trained on"
            )
        with tempfile.TemporaryDirectory() as tmp:
            snap = read_snapshot(
                dvc_store.materialize(h.data_repo, h.dvc_remote, data_version, Path(tmp) / "reference.jsonl")
            )
        reference = validate_texts(snap.split("train")[0], "reference")
        model, tokenizer = load_classifier(model_path)
        ref_frame = _frame(model, tokenizer, _sample(reference, MAX_ROWS), cfg.distill.max_length)
        prod_frame = _frame(model, tokenizer, _sample(production, MAX_ROWS), cfg.distill.max_length)
        d = cfg.drift
        policy = DriftPolicy(
            column_drift_share=d.column_drift_share,
            stattest_threshold=d.stattest_threshold,
            label_drift=d.label_drift,
        )
        html, columns, label = build_drift_report(ref_frame, prod_frame, "predicted_label", policy)
        verdict = decide_drift(columns, label, policy, len(ref_frame), len(prod_frame)).to_dict()
        verdict.update(
            model=f"{mv.name}/v{mv.version}",
            reference_data_version=data_version,
            production=str(production_path),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            production_label_share=_shares(prod_frame["predicted_label"]),
            reference_label_share=_shares(ref_frame["predicted_label"]),
        )
        stem = f"drift-{time.strftime('%Y%m%d-%H%M%S')}-{mv.name}-v{mv.version}"
        kept_html, kept_json = h.reports / f"{stem}.html", h.reports / f"{stem}.json"
        verdict.update(report_html=str(kept_html), verdict_json=str(kept_json))
        for paths, text in (
            ((report_html, kept_html), html),
            ((verdict_json, kept_json), json.dumps(verdict, indent=2)),
        ):
            for path in paths:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text)
        import mlflow

        with mlflow.start_run(run_name="monitor_drift"):
            mlflow.set_tags(
                {
                    "distillops.step": "monitor_drift",
                    "drifted": str(verdict["drifted"]),
                    "model": verdict["model"],
                    "reference_data_version": data_version,
                }
            )
            mlflow.log_text(html, "drift/report.html")
            mlflow.log_dict(verdict, "drift/verdict.json")
            mlflow.log_metric("drifted_columns", len(verdict["drifted_columns"]))
        counters.update(drifted=verdict["drifted"], production_rows=len(production))
    log.info(
        "drift %s: %s", "DETECTED" if verdict["drifted"] else "not detected", "; ".join(verdict["reasons"])
    )
    return verdict


def _shares(values) -> dict[str, float]:
    labels, counts = np.unique(np.asarray(values), return_counts=True)
    return {str(k): round(float(c) / counts.sum(), 4) for k, c in zip(labels, counts, strict=True)}
