"""Side effects of prepare_redistill: the reference snapshot from DVC, teacher labels for the
production inputs, and the merged data file the distillation DAG versions next."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from components.common import dvc_store
from components.common.config import config_from_json
from components.common.dataset import read_snapshot, read_texts
from components.common.hashing import sha256_file
from components.common.home import Home
from components.common.modeling import label_names, load_classifier, predict_logits, set_threads
from components.common.steplog import record_step
from components.common.teacher import resolve_teacher
from components.monitor_drift.core import validate_texts
from components.prepare_redistill.core import merge_rows

log = logging.getLogger(__name__)


def run(home: str, verdict_path: str, production_path: str, text_column: str, teacher_ref: str,
        config_json: str) -> dict:
    h = Home.resolve(home).ensure()
    cfg = config_from_json(config_json)
    set_threads()
    with record_step(h, "prepare_redistill") as counters:
        verdict = json.loads(Path(verdict_path).read_text())
        if not verdict.get("drifted"):
            raise ValueError(f"{verdict_path}: the verdict says no drift; nothing to redistil")
        production = validate_texts(read_texts(production_path, text_column), "production")
        with tempfile.TemporaryDirectory() as tmp:
            snap = read_snapshot(dvc_store.materialize(h.data_repo, h.dvc_remote, verdict["reference_data_version"],
                                                       Path(tmp) / "reference.jsonl"))
        teacher = resolve_teacher(teacher_ref, h)
        model, tokenizer = load_classifier(teacher.path)
        names = label_names(model)
        todo = list(dict.fromkeys(production))[: cfg.drift.redistill_max_rows]
        logits = predict_logits(model, tokenizer, todo, cfg.teacher.max_length, cfg.teacher.batch_size,
                                desc="teacher labels")
        merged = merge_rows(list(zip(snap.texts, snap.labels, strict=True)),
                            [(t, names[i]) for t, i in zip(todo, logits.argmax(-1), strict=True)],
                            cfg.drift.redistill_max_rows, cfg.data.text_column, cfg.data.label_column)
        out_dir = h.root / "redistill"
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = out_dir / f".{Path(verdict_path).name}.partial"
        staging.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged.rows))
        fingerprint = sha256_file(staging)
        data_path = out_dir / f"data-{fingerprint[:16]}.jsonl"
        staging.replace(data_path)  # atomic: the DAG never versions half a file
        trigger = {"kind": "drift", "drift_report": verdict.get("report_location", verdict.get("report_html")),
                   "drift_run_id": verdict.get("mlflow_run_id", ""), "drift_verdict": verdict.get("verdict_json", ""),
                   "signals": ",".join(verdict.get("signals", [])), "production": str(production_path),
                   "reference_data_version": verdict["reference_data_version"], "rows_added": merged.added,
                   "teacher_version": teacher.version}
        counters.update(rows_added=merged.added, rows_kept=merged.kept, teacher_forward_passes=len(todo))
    log.info("redistill data %s: %d reference rows + %d teacher-labelled production rows", data_path.name,
             merged.kept, merged.added)
    return {"data_path": str(data_path), "data_fingerprint": fingerprint, "trigger": json.dumps(trigger, sort_keys=True),
            "rows_added": merged.added, "rows_kept": merged.kept}
