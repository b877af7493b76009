"""Side effects of prepare_redistill: the reference snapshot from DVC, teacher labels for the
production inputs, and the merged data file the distillation DAG versions next."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

from components.common import dvc_store
from components.common.backlog import backlog_path, read_backlog
from components.common.config import Config
from components.common.dataset import read_prompt_snapshot, read_snapshot, read_texts, validate_texts
from components.common.home import Home
from components.common.io import atomic_write_bytes, read_string_rows
from components.common.modeling import ModelError
from components.common.runtime import prepare_process
from components.common.steplog import record_step
from components.common.teachers import adapter_kind, load_pinned, load_teacher
from components.prepare_redistill.core import merge_prompts, merge_rows, pool_rows, rows_to_label

log = logging.getLogger(__name__)


def run(home: str, verdict_path: str, production_path: str, text_column: str, teacher_ref: str,
        cfg: Config, teacher_version: str = "") -> dict:
    h = Home.resolve(home).ensure()
    prepare_process()
    with record_step(h, "prepare_redistill") as counters:
        verdict = json.loads(Path(verdict_path).read_text())
        if not verdict.get("drifted"):
            raise ValueError(f"{verdict_path}: the verdict says no drift; nothing to redistil")
        production = validate_texts(read_texts(production_path, text_column, cfg.data.max_text_chars,
                                               cfg.data.long_texts), "production")
        generation = cfg.task == "generation"
        with tempfile.TemporaryDirectory() as tmp:
            snap_path = dvc_store.materialize(h.data_repo, h.dvc_remote, verdict["reference_data_version"],
                                              Path(tmp) / "reference.jsonl")
            snap = read_prompt_snapshot(snap_path) if generation else read_snapshot(snap_path)
        teacher = load_pinned(teacher_ref, teacher_version, h)
        # with the pool, also the batches that drifted while the policy waited (cooldown, budget)
        waiting = (read_backlog(backlog_path(h.root, verdict["reference_data_version"]))
                   if cfg.drift.redistill_pool else [])
        backlog, todo = rows_to_label(production, waiting, cfg.drift.redistill_max_rows)
        out_dir = h.root / "redistill"
        out_dir.mkdir(parents=True, exist_ok=True)
        pooled = passes = 0
        if generation:
            # The prompts go into the data as they are: the DAG's cache step has the teacher answer them.
            if adapter_kind(teacher.path) != "causal_lm":
                raise ModelError(f"task generation redistils from a causal-LM teacher; {teacher_ref} "
                                 f"({teacher.version}) is a {adapter_kind(teacher.path)} (generation.teacher_ref)")
            g = cfg.generation
            merged = merge_prompts(list(zip(snap.prompts, snap.responses, strict=True)), todo,
                                   cfg.drift.redistill_max_rows, g.prompt_column, g.response_column)
        else:
            loaded = load_teacher(teacher)
            names = loaded.label_names
            logits = loaded.compute(todo, ["logits"], cfg.teacher.max_length, cfg.teacher.batch_size,
                                    desc="teacher labels")["logits"]
            passes = len(todo)
            labelled = [(t, names[i]) for t, i in zip(todo, logits.argmax(-1), strict=True)]
            if cfg.drift.redistill_pool:
                # Keyed by the champion's data version and the teacher's: the rows of refused attempts
                # from this champion, labelled by this teacher.
                key = hashlib.sha256(f"{verdict['reference_data_version']}|{teacher.version}".encode()).hexdigest()
                pool_path = out_dir / "pool" / f"{key[:32]}.jsonl"
                earlier = read_pool(pool_path)
                rows = pool_rows(earlier, labelled, cfg.drift.redistill_max_rows)
                pooled = len(rows) - len(labelled)
                write_pool(pool_path, rows)
                labelled = rows
            merged = merge_rows(list(zip(snap.texts, snap.labels, strict=True)), labelled,
                                cfg.drift.redistill_max_rows, cfg.data.text_column, cfg.data.label_column,
                                snap.label_sources)
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged.rows).encode("utf-8")
        fingerprint = hashlib.sha256(body).hexdigest()
        data_path = out_dir / f"data-{fingerprint[:16]}.jsonl"
        atomic_write_bytes(data_path, body)  # the DAG never versions half a file
        trigger = {"kind": "drift", "drift_report": verdict.get("report_location", verdict.get("report_html")),
                   "drift_run_id": verdict.get("mlflow_run_id", ""), "drift_verdict": verdict.get("verdict_json", ""),
                   "signals": ",".join(verdict.get("signals", [])), "production": str(production_path),
                   "text_column": text_column,
                   "reference_data_version": verdict["reference_data_version"], "rows_added": merged.added,
                   "rows_pooled": pooled, "rows_backlog": len(backlog), "teacher_version": teacher.version,
                   "task": cfg.task}
        counters.update(rows_added=merged.added, rows_kept=merged.kept, rows_pooled=pooled, rows_backlog=len(backlog),
                        teacher_forward_passes=passes, task=cfg.task)
    log.info("redistill data %s: %d reference rows + %d production rows (teacher-labelled, or prompts) (%d pooled from earlier "
             "attempts, %d from batches skipped by cooldown or budget)", data_path.name, merged.kept, merged.added,
             pooled, len(backlog))
    return {"data_path": str(data_path), "data_fingerprint": fingerprint, "trigger": json.dumps(trigger, sort_keys=True),
            "report": json.dumps(counters, sort_keys=True),
            "rows_added": merged.added, "rows_kept": merged.kept}


def read_pool(path: Path) -> list[tuple[str, str]]:
    """The pooled (text, teacher label) rows of `path` ([] when there is none yet)."""
    return read_string_rows(path, ("text", "label"), "redistill pool", "delete the file to start the pool afresh")


def write_pool(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n"
                                     for t, y in rows).encode("utf-8"))
