"""Side effects of cache_teacher_outputs: run the teachers on the rows the store lacks, check a sample
of the cached rows against the live teachers (fidelity), make the augmented transfer set, write the
TeacherOutputs artifact, and record every key the run used (so ``cache gc`` keeps them).

The teacher arrives pinned (reference + teacher_version) and is loaded through its adapter; the
extra teachers of multi-teacher distillation are resolved here, at their first use, and their
versions travel in the artifact. Every output kind is its own content-keyed row in the store.

task: generation (``run_generation``, which ``run`` hands a generation config to): the causal-LM
teacher's generations and per-token top-k log-probs for every prompt of the prompt snapshot, from the
store where present (common/teacher_generations.py's GenerationFiller, which monitor_drift shares), in the
artifact of common/generation_outputs.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from components.cache_teacher_outputs.core import compare_outputs, fidelity_sample, plan_rows
from components.common.config import Config, layer_pairs
from components.common.dataset import check_labels, read_prompt_snapshot, read_snapshot
from components.common.generation import TokenRate
from components.common.generation_outputs import pack_generations, write_generation_outputs
from components.common.hashing import md5_file
from components.common.home import Home
from components.common.io import atomic_write_text
from components.common.modeling import ModelError, check_same_tokenizer
from components.common.runtime import prepare_process
from components.common.steplog import record_step, steps_since
from components.common.teacher_generations import GenerationFiller, decoding_of
from components.common.teacher_outputs import TeacherOutputs, texts_digest, write_teacher_outputs
from components.common.teacher_store import CacheIntegrityError, TeacherOutputStore, open_store, row_key
from components.common.teachers import LoadedTeacher, load_pinned, load_teacher, resolve_teacher
from components.distillation.losses import needs, resolve_losses
from components.distillation.transfer import augment_record, augment_texts, resolve_copies

log = logging.getLogger(__name__)
KIND = "logits"


class CacheFidelityError(RuntimeError):
    """Cached teacher outputs differ from what the live teacher computes: a stale or tampered cache."""


def cache_hit_rate(home: Home, store_url: str | None = None) -> dict:
    """Hit rate of the teacher outputs over every cache_teacher_outputs step in the step log (of the
    store at `store_url` when given): the share of rows the runs needed that came without a teacher
    forward pass. A step KFP served from its own cache (logged by ``record_reused``) needed no row from
    the teacher, so all its rows count as hits: a fully cached rerun is a hit rate of 1.0."""
    runs = [s for s in steps_since(home, 0) if s["step"] == "cache_teacher_outputs"
            and (store_url is None or s.get("cache_store", store_url) == store_url)]
    counted = [_run_counts(s) for s in runs]
    hits, misses = sum(h for h, _ in counted), sum(m for _, m in counted)
    last_run = None
    if runs:
        last, (last_hits, last_misses) = runs[-1], counted[-1]
        last_run = {"hits": last_hits, "teacher_forward_passes": last_misses,
                    "hit_rate": round(last_hits / (last_hits + last_misses), 4) if last_hits + last_misses else None,
                    "served_by": "kfp cache" if "reused_from" in last else "teacher store",
                    "integrity_problems": last.get("integrity_problems")}
    return {"lookups": hits + misses, "hits": hits, "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "last_run": last_run, "runs": len(runs), "runs_served_by_kfp_cache": sum("reused_from" in s for s in runs)}


def _run_counts(entry: dict) -> tuple[int, int]:
    """(rows served without the teacher, teacher forward passes) of one logged step."""
    hits, passes = int(entry.get("cache_hits", 0)), int(entry.get("teacher_forward_passes", 0))
    if "reused_from" in entry:  # served whole from KFP's cache: no row reached the teacher or the store
        return int(entry.get("rows", hits + passes)), 0
    return hits, passes


def pooled_kinds(distill_cfg, teacher_layers: int) -> list[str]:
    """Output kinds of pooled hidden states the configured losses read from the cache: the mapped
    layers (pooled_mse) and the last layer (the sentence embedding of the relation losses)."""
    need = needs(resolve_losses(distill_cfg.losses, distill_cfg.alpha))
    layers = set()
    if "pooled" in need:
        layers |= {t for _, t in layer_pairs(distill_cfg)}
    if "embedding" in need:
        layers.add(teacher_layers)
    return [f"pooled:{layer}" for layer in sorted(layers)]


class _Filler:
    """One teacher's outputs for lists of texts, from the store where present, computed where not."""

    def __init__(self, store: TeacherOutputStore, teacher: LoadedTeacher, version: str, kinds: list[str],
                 max_length: int, batch_size: int):
        teacher.check_kinds(kinds)
        self.store, self.teacher, self.version, self.kinds = store, teacher, version, kinds
        self.max_length, self.batch_size = max_length, batch_size
        self.keys: list[bytes] = []  # every key looked up (recorded as this run's ref)
        self.problems: list[str] = []
        self.computed = 0

    def lookup(self, texts: list[str]):
        kind_keys = {kind: [row_key(self.version, self.teacher.tokenizer_id, self.max_length, kind, t) for t in texts]
                     for kind in self.kinds}
        cached = self.store.get_many([k for ks in kind_keys.values() for k in ks])
        self.problems += [str(p) for p in self.store.last_problems]
        self.keys += [k for ks in kind_keys.values() for k in ks]
        return kind_keys, cached

    def fill(self, texts: list[str], kind_keys, cached, desc: str) -> dict[str, np.ndarray]:
        todo = sorted({i for ks in kind_keys.values() for i in plan_rows(texts, ks, cached)})
        log.info("teacher %s: %d rows x %d kinds, %d rows to compute (%s)", self.version, len(texts), len(self.kinds),
                 len(todo), desc)
        if todo:
            fresh = self.teacher.compute([texts[i] for i in todo], self.kinds, self.max_length, self.batch_size,
                                         desc=desc)
            self._put(kind_keys, todo, fresh, cached)
        self.computed += len(todo)
        self.check_widths(kind_keys, cached)
        return {kind: np.stack([cached[k] for k in ks]) for kind, ks in kind_keys.items()}

    def _put(self, kind_keys, rows: list[int], fresh: dict[str, np.ndarray], cached) -> None:
        # put_many is atomic per shard: logits last, so a row counts as cached only when complete
        for kind in sorted(self.kinds, key=lambda k: k == KIND):
            self.store.put_many([kind_keys[kind][i] for i in rows], fresh[kind])
            cached.update({kind_keys[kind][i]: fresh[kind][j] for j, i in enumerate(rows)})

    def fill_in_chunks(self, texts: list[str], chunk_rows: int, progress=None) -> int:
        """Compute the rows of `texts` the store lacks, `chunk_rows` at a time in the given order, each
        chunk written to the store before the next is computed (a worker stopped mid-way loses at most
        one chunk; a rerun computes only what is still missing). progress(done, todo) after each chunk.
        Returns the rows computed."""
        kind_keys, cached = self.lookup(texts)
        todo = sorted({i for ks in kind_keys.values() for i in plan_rows(texts, ks, cached)})
        for start in range(0, len(todo), chunk_rows):
            rows = todo[start:start + chunk_rows]
            fresh = self.teacher.compute([texts[i] for i in rows], self.kinds, self.max_length, self.batch_size)
            self._put(kind_keys, rows, fresh, cached)
            self.computed += len(rows)
            if progress is not None:
                progress(self.computed, len(todo))
        return len(todo)

    def check_widths(self, kind_keys, cached) -> None:
        """Every row of a kind has one shape, and logits one column per teacher label: a stored row of
        another width (a record rewritten with its shard) stops the step before anything is stacked."""
        for kind, ks in kind_keys.items():
            shapes = sorted({cached[k].shape for k in ks})
            expected = [(len(self.teacher.label_names),)] if kind == KIND else shapes[:1]
            if shapes and shapes != expected:
                raise CacheIntegrityError(
                    f"teacher cache {self.store.url}: {kind} rows of shapes {shapes} for teacher {self.version}, "
                    f"expected {expected[0]}; the store holds rows that do not belong to this teacher. Run "
                    f"`distillops cache verify`, or delete the store and rerun.")

    def check_fidelity(self, texts: list[str], kind_keys, cached, cache_cfg, fresh=frozenset()) -> int:
        """Recompute a deterministic sample of cached rows with the live teacher; raise on any mismatch.
        Rows in `fresh` (texts this run's workers computed) are not samples of the cache's past.
        Returns the rows recomputed (forward passes spent on checking, not on outputs)."""
        keys = kind_keys[KIND]
        candidates = [i for i, k in enumerate(keys) if k in cached and texts[i] not in fresh]
        if cache_cfg.fidelity_sample == 0 or not candidates:
            return 0
        picked = [candidates[j] for j in fidelity_sample([keys[i] for i in candidates], cache_cfg.fidelity_sample,
                                                         self.version)]
        fresh = self.teacher.compute([texts[i] for i in picked], [KIND], self.max_length, len(picked))[KIND]
        bad = compare_outputs(np.stack([cached[keys[i]] for i in picked]), fresh, cache_cfg.fidelity_atol,
                              cache_cfg.fidelity_rtol)
        if bad:
            rows = "; ".join(f"row {picked[j]} ({texts[picked[j]][:40]!r}): max |stored - live| = {d:.4g}"
                             for j, d in bad[:5])
            raise CacheFidelityError(
                f"teacher cache {self.store.url}: {len(bad)} of {len(picked)} sampled cached rows differ from what the "
                f"live teacher {self.version} computes (tolerance atol={cache_cfg.fidelity_atol}, "
                f"rtol={cache_cfg.fidelity_rtol}): {rows}. The cache is stale or has been tampered with; nothing was "
                f"trained. Delete the store (or point cache.url elsewhere) and rerun to recompute every row.")
        return len(picked)

    def outputs(self, texts: list[str], cache_cfg, desc: str, fresh=frozenset()) -> tuple[dict[str, np.ndarray], int]:
        """(outputs by kind, fidelity passes): cached rows are checked before anything is computed."""
        kind_keys, cached = self.lookup(texts)
        checked = self.check_fidelity(texts, kind_keys, cached, cache_cfg, fresh)
        return self.fill(texts, kind_keys, cached, desc), checked


def _extra_teacher(ref: str, home: Home, main: LoadedTeacher) -> tuple[LoadedTeacher, str]:
    extra = resolve_teacher(ref, home)  # first use in the run: resolved here, its version travels on
    loaded = load_teacher(extra)
    if loaded.label_names != main.label_names:
        raise ModelError(f"distill.extra_teachers {ref}: labels {loaded.label_names} differ from the teacher's "
                         f"{main.label_names}")
    check_same_tokenizer(main.tokenizer, loaded.tokenizer, f"distill.extra_teachers {ref}")
    return loaded, extra.version


def augmented_texts(snapshot, d) -> list[str]:
    """The transfer set's extra rows: perturbed training texts, labelled by the teacher (by content, so
    a rerun with the same snapshot, copies and seed computes nothing)."""
    train_texts = [snapshot.texts[i] for i in snapshot.indices("train")]
    copies = augment_copies_for(snapshot, d)
    return augment_texts(train_texts, copies, seed=d.seed) if copies and train_texts else []


def augment_copies_for(snapshot, d) -> int:
    """distill.augment_copies resolved for this snapshot's training rows (transfer.resolve_copies)."""
    return resolve_copies(d.augment_copies, len(snapshot.indices("train")), d.augment_target_rows)


def main_filler(store: TeacherOutputStore, loaded: LoadedTeacher, version: str, cfg: Config) -> _Filler:
    """The main teacher's filler: logits and the pooled kinds the configured losses read."""
    return _Filler(store, loaded, version, [KIND] + pooled_kinds(cfg.distill, loaded.num_layers),
                   cfg.teacher.max_length, cfg.teacher.batch_size)


def run(home: str, snapshot_path: str, teacher_ref: str, cfg: Config, outputs_path: str,
        teacher_version: str = "", worker_reports: list[dict] | None = None) -> dict:
    """The teachers' outputs for every row of the snapshot (and the augmented transfer set).

    In the fanned-out DAG this is the merge: `worker_reports` (fanout.work_classification's) say which
    texts the workers computed in this run; those count as this run's teacher forward passes and are
    left out of the fidelity sample (as freshly computed rows are in an unsharded run).

    With cfg.task == "generation" the snapshot is a prompt snapshot and this is run_generation."""
    if cfg.task == "generation":
        return run_generation(home, snapshot_path, teacher_ref, cfg, outputs_path, teacher_version, worker_reports)
    h = Home.resolve(home).ensure()
    t_cfg, cache_cfg, d = cfg.teacher, cfg.cache, cfg.distill
    prepare_process()
    with record_step(h, "cache_teacher_outputs") as counters:
        snapshot = read_snapshot(snapshot_path)
        teacher = load_pinned(teacher_ref, teacher_version, h)
        loaded = load_teacher(teacher)
        check_labels(snapshot.label_names, loaded.label_names, snapshot_path)
        store = open_store(h, cache_cfg.url)
        workers = list(worker_reports or [])
        fresh = frozenset(t for r in workers for t in shard_texts(r))
        snapshot_texts = set(snapshot.texts)
        main = main_filler(store, loaded, teacher.version, cfg)
        out, fidelity_passes = main.outputs(snapshot.texts, cache_cfg, "teacher forward", fresh)
        snapshot_computed = main.computed
        todo = snapshot_computed + len(fresh & snapshot_texts)
        augment, augment_meta = {}, {}
        aug_texts = augmented_texts(snapshot, d)
        if aug_texts:  # made here, once
            augment, checked = main.outputs(aug_texts, cache_cfg, "teacher forward (augmented)", fresh)
            fidelity_passes += checked
            augment_meta = augment_record(aug_texts, augment_copies_for(snapshot, d), d.seed)
        augmented_passes = main.computed - snapshot_computed + len(fresh - snapshot_texts)
        features = {kind: out[kind] for kind in main.kinds if kind != KIND}
        extras, fillers = [], [main]
        for k, ref in enumerate(d.extra_teachers, start=1):
            extra, version = _extra_teacher(ref, h, loaded)
            filler = _Filler(store, extra, version, [KIND], t_cfg.max_length, t_cfg.batch_size)
            extra_out, checked = filler.outputs(snapshot.texts, cache_cfg, f"teacher {ref}")
            features[f"logits@{k}"] = extra_out[KIND]
            if aug_texts:
                aug_out, more = filler.outputs(aug_texts, cache_cfg, f"teacher {ref} (augmented)")
                augment[f"logits@{k}"] = aug_out[KIND]
                checked += more
            fidelity_passes += checked
            extras.append({"ref": ref, "teacher_version": version})
            fillers.append(filler)
        # gc keeps what some snapshot references: this snapshot (by its content digest) under these teachers.
        ref_name = f"{md5_file(snapshot_path)}--{teacher.version}--{KIND}{t_cfg.max_length}"
        if aug_texts:
            ref_name += f"--augment{augment_meta['copies']}s{d.seed}"
        if extras:
            ref_name += "--extra-" + "-".join(e["teacher_version"].rsplit(":", 1)[-1][:8] for e in extras)
        store.record_ref(ref_name, [k for f in fillers for k in f.keys])
        write_teacher_outputs(TeacherOutputs(out[KIND], teacher.version, loaded.label_names, features, augment,
                                             augment_meta, aug_texts, extras, texts_digest(snapshot.texts)),
                              outputs_path)
        problems = [p for f in fillers for p in f.problems]
        rows = len(snapshot)
        counters.update(teacher_version=teacher.version, rows=rows, teacher_forward_passes=todo,
                        cache_hits=rows - min(todo, rows),
                        fidelity_passes=fidelity_passes, integrity_problems=len(problems), cache_store=store.url,
                        augmented_forward_passes=augmented_passes,
                        extra_teacher_forward_passes=sum(f.computed for f in fillers[1:]),
                        **worker_counters(workers))
    return {"teacher_version": teacher.version, "teacher_ref": teacher_ref, "rows": rows,
            "teacher_forward_passes": todo, "cache_hits": rows - min(todo, rows),
            "fidelity_passes": fidelity_passes, "integrity_problems": problems, "label_names": loaded.label_names,
            "augmented_rows": augment_meta.get("rows", 0), "augmented_forward_passes": augmented_passes,
            "extra_teachers": extras, "extra_teacher_forward_passes": sum(f.computed for f in fillers[1:]),
            **worker_counters(workers), "step_report": counters}


def check_generation_fidelity(filler: GenerationFiller, prompts: list[str], sample: int,
                              atol: float = 0.05) -> int:
    """Teacher-force a deterministic sample of `filler`'s cached generations through the live teacher and
    compare its log-probs at the stored top-k ids with the stored ones (fp16: atol in nats).
    Teacher forcing makes the check independent of how rows were batched when generated.
    Returns the rows checked; raises CacheFidelityError naming the rows that differ."""
    import torch

    from components.distillation.lm_trainer import build_examples, token_batch

    rendered, keys = filler.teacher.generation_keys(prompts, filler.version, filler.decoding, filler.k)
    cached = filler.store.get_generations(keys)
    present = [i for i, key in enumerate(keys) if key in cached]
    if sample <= 0 or not present:
        return 0
    picked = [present[j] for j in fidelity_sample([keys[i] for i in present], sample, filler.version)]
    bad = []
    for i in picked:
        g = cached[keys[i]]
        if len(g.tokens) == 0:
            continue
        (ex,) = build_examples(filler.teacher.tokenizer, [rendered[i]], [g], max_length=1 << 30)
        with torch.inference_mode():
            b = token_batch(filler.teacher.model, [ex], filler.teacher.tokenizer.pad_token_id)
            live = torch.log_softmax(b.student_logits.float(), -1).gather(-1, b.topk_ids).numpy()
        diff = float(np.abs(live - g.topk_logprobs.astype(np.float32)).max())
        if diff > atol:
            bad.append((i, diff))
    if bad:
        rows = "; ".join(f"prompt {i} ({prompts[i][:40]!r}): max |stored - live| = {d:.3g}" for i, d in bad[:5])
        raise CacheFidelityError(
            f"teacher cache {filler.store.url}: {len(bad)} of {len(picked)} sampled cached generations differ from "
            f"what the live teacher {filler.version} computes (atol {atol} nats): {rows}. The cache is stale or has "
            f"been tampered with; nothing was trained. Delete the store (or point cache.url elsewhere) and rerun.")
    return len(picked)


def merge_generation(store: TeacherOutputStore, teacher: LoadedTeacher, version: str, prompts: Sequence[str],
                     decoding, k: int, outputs_path: str | Path, fidelity_sample: int = 16,
                     worker_reports: Sequence[dict] = (), batch_size: int = 8, flush_rows: int = 64,
                     progress=None, ref_name: str = "") -> dict:
    """The generations of every prompt, in order, as the generation TeacherOutputs artifact
    (common/generation_outputs.py), written atomically. Cached rows the workers did not compute in this
    run are fidelity-checked first; anything the store still lacks (every missing row in an unsharded
    run, a worker's rows lost since in a fanned-out one) is generated here, flushed every `flush_rows`.
    With `ref_name`, the rows' keys are recorded under it (``cache gc`` keeps them)."""
    fresh = {t for r in worker_reports for t in shard_texts(r)}
    filler = GenerationFiller(store, teacher, version, decoding, k, batch_size, flush_rows)
    checked = check_generation_fidelity(filler, [p for p in prompts if p not in fresh], fidelity_sample)
    keys, rows = filler.outputs(list(prompts), progress)
    payload = write_generation_outputs(
        pack_generations(rows, k, version, dataclasses.asdict(decoding), keys, list(prompts)), outputs_path)
    if ref_name:
        store.record_ref(ref_name, keys)
    return {"rows": len(prompts), "teacher_forward_passes": filler.computed + len(fresh),
            "tokens_generated": filler.tokens_generated, "fidelity_passes": checked,
            "integrity_problems": list(filler.problems), "sha256": hashlib.sha256(payload).hexdigest(),
            "workers": [dict(r) for r in worker_reports]}


def run_generation(home: str, snapshot_path: str, teacher_ref: str, cfg: Config, outputs_path: str,
                   teacher_version: str = "", worker_reports: list[dict] | None = None) -> dict:
    """task: generation: the causal-LM teacher's generations (decoding and k from cfg.generation) for every
    prompt of the prompt snapshot at `snapshot_path`, written to `outputs_path`; the summary counts the
    prompts sent to the teacher (teacher_forward_passes: 0 on a rerun with nothing changed) and the cached
    rows checked against the live teacher (fidelity_passes, cache.fidelity_sample)."""
    h = Home.resolve(home).ensure()
    g, cache_cfg = cfg.generation, cfg.cache
    prepare_process()
    with record_step(h, "cache_teacher_outputs") as counters:
        snapshot = read_prompt_snapshot(snapshot_path)
        teacher = load_pinned(teacher_ref, teacher_version, h)
        loaded = load_teacher(teacher)
        if "generation" not in loaded.produces:
            raise ModelError(f"task generation needs a causal-LM teacher; {teacher_ref} ({teacher.version}) is a "
                             f"{loaded.kind} teacher (generation.teacher_ref; distillops teacher --task generation)")
        store = open_store(h, cache_cfg.url)
        decoding = decoding_of(g)
        ref_name = (f"{md5_file(snapshot_path)}--{teacher.version}--generation-k{g.top_k}-"
                    f"{hashlib.sha256(decoding.key_text().encode()).hexdigest()[:8]}")
        bar = TokenRate(len(snapshot))
        try:
            merged = merge_generation(store, loaded, teacher.version, snapshot.prompts, decoding, g.top_k, outputs_path,
                                      cache_cfg.fidelity_sample, list(worker_reports or []), g.batch_size,
                                      cache_cfg.flush_rows, bar, ref_name)
        finally:
            bar.close()
        rows, todo = len(snapshot), merged["teacher_forward_passes"]
        counters.update(task="generation", teacher_version=teacher.version, rows=rows, teacher_forward_passes=todo,
                        cache_hits=rows - min(todo, rows), fidelity_passes=merged["fidelity_passes"],
                        tokens_generated=merged["tokens_generated"],
                        integrity_problems=len(merged["integrity_problems"]), cache_store=store.url,
                        **worker_counters(merged["workers"]))
    log.info("teacher %s: %d prompts, %d generated (%d tokens), %d cached rows checked", teacher.version, rows, todo,
             merged["tokens_generated"], merged["fidelity_passes"])
    return {"task": "generation", "teacher_version": teacher.version, "teacher_ref": teacher_ref, "rows": rows,
            "teacher_forward_passes": todo, "cache_hits": rows - min(todo, rows),
            "fidelity_passes": merged["fidelity_passes"], "tokens_generated": merged["tokens_generated"],
            "integrity_problems": merged["integrity_problems"], "k": g.top_k,
            "decoding": dataclasses.asdict(decoding), "sha256": merged["sha256"],
            **worker_counters(merged["workers"]), "step_report": counters}


SHARD_FORMAT = "distillops-teacher-shard/1"


def write_shard(plan_dir: str | Path, payload: dict, shard: int, shards: int) -> str:
    """Write one shard's plan (its texts, in the order the teacher batches them, and how to compute
    them) to a file named by its content, atomically; return the shard's descriptor (JSON): the item a
    worker gets. The same rows under the same teacher are the same file, so a rerun plans idempotently."""
    body = json.dumps({"format": SHARD_FORMAT, **payload}, sort_keys=True, ensure_ascii=False)
    path = Path(plan_dir) / f"{hashlib.sha256(body.encode()).hexdigest()}.json"
    if path.is_file():
        os.utime(path)  # planned again: its age (what prune_plans reads) counts from now
    else:
        atomic_write_text(path, body)
    return json.dumps({"shard": shard, "shards": shards, "rows": len(payload["texts"]), "path": str(path)},
                      sort_keys=True)


def prune_plans(plan_dir: str | Path, older_than_s: float, dry_run: bool = False) -> dict:
    """Remove shard plans not written or planned again for `older_than_s` seconds (and temp files a
    killed writer left that long). A plan is needed only while its run's workers and merge run; a
    cached plan step of a later run hands out the same file again only if its worker or merge must
    rerun too, so keep the grace well above a run's length. Returns what was (or would be) removed."""
    plan_dir, cutoff = Path(plan_dir), time.time() - older_than_s
    removed, freed, kept = 0, 0, 0
    for path in sorted(plan_dir.glob("*")) if plan_dir.is_dir() else []:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if not path.is_file() or st.st_mtime >= cutoff:
            kept += 1
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
        removed, freed = removed + 1, freed + st.st_size
    return {"dir": str(plan_dir), "removed": removed, "bytes": freed, "kept": kept}


def empty_shard() -> str:
    """The descriptor of a shard with nothing to compute: what the plan hands out when the store holds
    every row (kfp.local fails a dsl.ParallelFor over an empty list), so one worker starts and exits."""
    return json.dumps({"shard": 0, "shards": 0, "rows": 0, "path": ""}, sort_keys=True)


def read_shard(path: str | Path) -> dict:
    """A shard's plan, checked: a missing, foreign or torn file is a clear error."""
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"teacher shard {path}: cannot read it ({e}); rerun the plan (the step before the "
                         f"workers) to write it again") from e
    if not isinstance(plan, dict) or plan.get("format") != SHARD_FORMAT or not isinstance(plan.get("texts"), list):
        raise ValueError(f"teacher shard {path}: not a {SHARD_FORMAT} file")
    return plan


def shard_texts(report: dict) -> list[str]:
    """The texts of the shard a worker report describes (none for an empty shard)."""
    return read_shard(report["path"])["texts"] if report.get("path") else []


def worker_counters(workers: list[dict]) -> dict:
    """What the merge reports about the fan-out: each worker's rows, teacher calls and rows/s, and the
    teacher calls of all workers (the rows they computed in their last attempt)."""
    if not workers:
        return {}
    keep = ("shard", "shards", "rows", "teacher_forward_passes", "seconds", "rows_per_s")
    return {"workers": [{k: w.get(k) for k in keep} for w in sorted(workers, key=lambda w: w.get("shard", 0))],
            "worker_teacher_forward_passes": int(sum(w.get("teacher_forward_passes", 0) for w in workers))}

