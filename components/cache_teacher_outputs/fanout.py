"""The teacher's work fanned out across workers: plan -> workers -> merge.

- **plan**: the rows the store lacks (by content key, as in an unsharded run), in the order the
  teacher batches them, split into `cache.shards` runs of whole batches. Each shard's texts go to a
  file under the home named by its content (`<home>/teacher-plans/<sha256>.json`); the plan returns
  one small JSON descriptor per shard: the items of the DAG's ``dsl.ParallelFor``.
- **worker**: one shard. It looks its rows up again (a retry finds what an earlier attempt wrote),
  computes the missing ones in the plan's batches and writes them to the content-addressed store every
  `cache.flush_rows` rows, so a worker killed mid-shard loses at most the chunk it was computing.
  Concurrent workers need no lock: every write is a new shard file plus its manifest record.
- **merge**: for classification the step runner itself (``runner.run`` with the workers' reports):
  every row is in the store by then; it builds the TeacherOutputs artifact and runs the fidelity
  check. For generation (not wired into the DAG yet) ``runner.merge_generation`` (re-exported here),
  which ``runner.run_generation`` calls.

Because every worker forms the batches one worker would have formed, the merged outputs are
byte-identical for any shard count (a row's floats depend on its batch's padding and shape).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from components.cache_teacher_outputs.core import flush_size, plan_rows, shard_rows
from components.cache_teacher_outputs.runner import (
    KIND,
    _Filler,
    augmented_texts,
    empty_shard,
    main_filler,
    read_shard,
    write_shard,
)
from components.cache_teacher_outputs.runner import (
    merge_generation as merge_generation,  # the generation merge
)
from components.common.config import Config
from components.common.dataset import check_labels, read_prompt_snapshot, read_snapshot
from components.common.home import Home
from components.common.runtime import prepare_process
from components.common.steplog import record_step
from components.common.teacher_generations import GenerationFiller, decoding_of
from components.common.teacher_store import TeacherOutputStore, open_store
from components.common.teachers import LoadedTeacher, TeacherMismatchError, load_pinned, load_teacher

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


def parse_descriptor(shard_json: str) -> dict:
    """A shard descriptor (what the plan returned), checked."""
    try:
        shard = json.loads(shard_json)
    except ValueError as e:
        raise ValueError(f"teacher shard descriptor {shard_json[:80]!r}: not JSON ({e})") from e
    missing = [k for k in ("shard", "shards", "rows", "path") if not isinstance(shard, dict) or k not in shard]
    if missing:
        raise ValueError(f"teacher shard descriptor {shard_json[:80]!r}: missing {missing}")
    # KFP may hand numbers that crossed its metadata back as floats
    return {**shard, "shard": int(shard["shard"]), "shards": int(shard["shards"]), "rows": int(shard["rows"])}


def _shards(plan_dir: Path, payload: dict, texts: Sequence[str], order: list[int], batch_size: int,
            shards: int) -> list[str]:
    parts = shard_rows(order, batch_size, shards)
    out = [write_shard(plan_dir, {**payload, "texts": [texts[i] for i in rows]}, n, len(parts))
           for n, rows in enumerate(parts)]
    log.info("teacher plan: %d rows to compute in %d shard(s) of %s rows", len(order), len(parts),
             [len(p) for p in parts])
    return out or [empty_shard()]


def _check_plan(plan: dict, path: str, task: str, teacher_version: str) -> None:
    if plan.get("task") != task or plan.get("teacher_version") != teacher_version:
        raise TeacherMismatchError(
            f"teacher shard {path}: planned for {plan.get('task')} with teacher {plan.get('teacher_version')}, "
            f"this worker runs {task} with teacher {teacher_version}; rerun the plan")


class _Throughput:
    """Logs a worker's progress (rows done, rows/s) after every chunk; calls on to `progress`."""

    def __init__(self, name: str, progress: Progress | None):
        self.name, self.progress, self.t0 = name, progress, time.perf_counter()

    def __call__(self, done: int, todo: int) -> None:
        log.info("%s: %d/%d rows, %.2f rows/s", self.name, done, todo, done / max(self.elapsed, 1e-9))
        if self.progress is not None:
            self.progress(done, todo)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _report(shard: dict, computed: int, seconds: float) -> dict:
    return {**shard, "teacher_forward_passes": computed, "cache_hits": shard["rows"] - computed,
            "seconds": round(seconds, 3), "rows_per_s": round(computed / seconds, 3) if computed and seconds else None}


def plan_shards(home: str, snapshot_path: str, teacher_ref: str, cfg: Config, teacher_version: str = "") -> list[str]:
    """The DAG's plan_teacher_shards for cfg.task: plan_classification or plan_generation_step."""
    plan = plan_generation_step if cfg.task == "generation" else plan_classification
    return plan(home, snapshot_path, teacher_ref, cfg, teacher_version)


def work_shard(home: str, shard_json: str, teacher_ref: str, cfg: Config, teacher_version: str = "",
               progress: Progress | None = None) -> dict:
    """The DAG's teacher_shard_worker for cfg.task: work_classification or work_generation_step."""
    work = work_generation_step if cfg.task == "generation" else work_classification
    return work(home, shard_json, teacher_ref, cfg, teacher_version, progress)


# ---------------------------------------------------------------------------------------------
# classification: the DAG's plan_teacher_shards, teacher_shard_worker (merge: runner.run)
# ---------------------------------------------------------------------------------------------


def plan_classification(home: str, snapshot_path: str, teacher_ref: str, cfg: Config,
                        teacher_version: str = "") -> list[str]:
    """The shards of the snapshot's (and the augmented transfer set's) rows the store lacks under the
    main teacher; one empty shard when it lacks none."""
    h = Home.resolve(home).ensure()
    prepare_process()
    with record_step(h, "plan_teacher_shards") as counters:
        snapshot = read_snapshot(snapshot_path)
        teacher = load_pinned(teacher_ref, teacher_version, h)
        loaded = load_teacher(teacher)
        check_labels(snapshot.label_names, loaded.label_names, snapshot_path)
        filler = main_filler(open_store(h, cfg.cache.url), loaded, teacher.version, cfg)
        texts = list(dict.fromkeys(snapshot.texts + augmented_texts(snapshot, cfg.distill)))
        kind_keys, cached = filler.lookup(texts)
        todo = sorted({i for ks in kind_keys.values() for i in plan_rows(texts, ks, cached)})
        # teacher_features batches by text length (stable): (length, key) is a total order it keeps
        order = sorted(todo, key=lambda i: (len(texts[i]), kind_keys[KIND][i]))
        payload = {"task": "classification", "teacher_version": teacher.version, "kinds": filler.kinds,
                   "max_length": cfg.teacher.max_length, "batch_size": cfg.teacher.batch_size}
        out = _shards(h.teacher_plans, payload, texts, order, cfg.teacher.batch_size, cfg.cache.shards)
        counters.update(rows=len(texts), missing=len(todo), shards=len(out) if todo else 0,
                        teacher_version=teacher.version)
    return out


def work_classification(home: str, shard_json: str, teacher_ref: str, cfg: Config, teacher_version: str = "",
                        progress: Progress | None = None) -> dict:
    """One worker: compute the shard's rows the store still lacks, flushed every cache.flush_rows rows.
    An empty shard loads no teacher."""
    shard = parse_descriptor(shard_json)
    if not shard["rows"]:
        log.info("teacher worker: the store holds every row; nothing to compute")
        return _report(shard, 0, 0.0)
    h = Home.resolve(home).ensure()
    prepare_process()
    plan = read_shard(shard["path"])
    _check_plan(plan, shard["path"], "classification", teacher_version or plan["teacher_version"])
    with record_step(h, "teacher_shard_worker") as counters:
        teacher = load_pinned(teacher_ref, teacher_version, h)
        _check_plan(plan, shard["path"], "classification", teacher.version)
        filler = _Filler(open_store(h, cfg.cache.url), load_teacher(teacher), teacher.version, plan["kinds"],
                         int(plan["max_length"]), int(plan["batch_size"]))
        meter = _Throughput(f"teacher worker {shard['shard'] + 1}/{shard['shards']}", progress)
        filler.fill_in_chunks(plan["texts"], flush_size(cfg.cache.flush_rows, int(plan["batch_size"])), meter)
        report = _report(shard, filler.computed, meter.elapsed)
        counters.update({k: v for k, v in report.items() if k != "path"})
    return report


# ---------------------------------------------------------------------------------------------
# generation: the step-level plan and worker (home, snapshot, config) around the library-level
# plan_generation / work_generation below; the merge is runner.run_generation
# ---------------------------------------------------------------------------------------------


def plan_generation_step(home: str, snapshot_path: str, teacher_ref: str, cfg: Config,
                         teacher_version: str = "") -> list[str]:
    """The shards of the prompt snapshot's prompts whose generations the store lacks (decoding and k from
    cfg.generation); one empty shard when it lacks none."""
    h = Home.resolve(home).ensure()
    prepare_process()
    g = cfg.generation
    with record_step(h, "plan_teacher_shards") as counters:
        snapshot = read_prompt_snapshot(snapshot_path)
        teacher = load_pinned(teacher_ref, teacher_version, h)
        out = plan_generation(open_store(h, cfg.cache.url), load_teacher(teacher), teacher.version, snapshot.prompts,
                              decoding_of(g), g.top_k, g.batch_size, cfg.cache.shards, h.teacher_plans)
        missing = sum(parse_descriptor(s)["rows"] for s in out)
        counters.update(task="generation", rows=len(snapshot), missing=missing, shards=len(out) if missing else 0,
                        teacher_version=teacher.version)
    return out


def work_generation_step(home: str, shard_json: str, teacher_ref: str, cfg: Config, teacher_version: str = "",
                         progress: Progress | None = None) -> dict:
    """One generation worker: the shard's prompts the store still lacks, flushed every cache.flush_rows
    (whole batches). An empty shard loads no teacher."""
    shard = parse_descriptor(shard_json)
    if not shard["rows"]:
        log.info("teacher worker: the store holds every generation; nothing to generate")
        return _report(shard, 0, 0.0)
    h = Home.resolve(home).ensure()
    prepare_process()
    plan = read_shard(shard["path"])
    _check_plan(plan, shard["path"], "generation", teacher_version or plan["teacher_version"])
    with record_step(h, "teacher_shard_worker") as counters:
        teacher = load_pinned(teacher_ref, teacher_version, h)
        report = work_generation(open_store(h, cfg.cache.url), load_teacher(teacher), teacher.version, shard_json,
                                 decoding_of(cfg.generation), cfg.generation.top_k, cfg.cache.flush_rows, progress)
        counters.update({"task": "generation", **{k: v for k, v in report.items() if k != "path"}})
    return report



def plan_generation(store: TeacherOutputStore, teacher: LoadedTeacher, version: str, prompts: Sequence[str],
                    decoding, k: int, batch_size: int, shards: int, plan_dir: str | Path) -> list[str]:
    """The shards of the prompts whose generations the store lacks, in generate_topk's batch order."""
    from components.common.generation import batch_order

    rendered, keys = teacher.generation_keys(prompts, version, decoding, k)
    todo = plan_rows(rendered, keys, store.get_generations(keys))
    order = [todo[j] for j in batch_order(teacher.tokenizer, [rendered[i] for i in todo], [keys[i] for i in todo])]
    payload = {"task": "generation", "teacher_version": version, "decoding": dataclasses.asdict(decoding), "k": k,
               "batch_size": batch_size}
    # sampled decoding generates one row per call: any split keeps its batches
    return _shards(Path(plan_dir), payload, list(prompts), order, batch_size if not decoding.sampled else 1, shards)


def work_generation(store: TeacherOutputStore, teacher: LoadedTeacher, version: str, shard_json: str, decoding,
                    k: int, flush_rows: int = 64, progress: Progress | None = None) -> dict:
    """One generation worker: GenerationFiller over the shard's prompts, flushed in whole batches."""
    shard = parse_descriptor(shard_json)
    if not shard["rows"]:
        return _report(shard, 0, 0.0)
    plan = read_shard(shard["path"])
    _check_plan(plan, shard["path"], "generation", version)
    if plan["decoding"] != dataclasses.asdict(decoding) or plan["k"] != k:
        raise ValueError(f"teacher shard {shard['path']}: planned with decoding {plan['decoding']} and k={plan['k']}, "
                         f"this worker decodes with {dataclasses.asdict(decoding)} and k={k}; rerun the plan")
    batch = int(plan["batch_size"])
    filler = GenerationFiller(store, teacher, version, decoding, k, batch, flush_size(flush_rows, batch))
    meter = _Throughput(f"teacher worker {shard['shard'] + 1}/{shard['shards']}", None)

    def step(done: int, tokens: int) -> None:
        meter(done, shard["rows"])
        if progress is not None:
            progress(done, tokens)

    filler.outputs(plan["texts"], step)
    return _report(shard, filler.computed, meter.elapsed)
