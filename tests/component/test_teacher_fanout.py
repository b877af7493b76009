"""The teacher's work fanned out (plan -> workers -> merge) with the real step functions, the real
content-addressed store and real tiny teachers: the merged outputs are byte-identical for any shard
count, a worker killed mid-shard loses only its unwritten chunk, and a store that holds every row
sends no row to a teacher."""

import hashlib
import json
from pathlib import Path

import pytest
from fakes import make_rows

from components.cache_teacher_outputs import fanout
from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.dataset import Snapshot, write_snapshot
from components.common.generation import Decoding
from components.common.teacher_store import TeacherOutputStore
from components.common.teachers import LoadedTeacher, load_teacher
from tests.tiny_lm import make_tiny_llama


def _cfg(shards: int, flush_rows: int = 256, **extra):
    # batch 4 so 40 rows are 10 batches: shards of 2/3/2/3 batches for 4 shards
    # no augmentation: the shards and counts below are the snapshot's rows
    return config_from_dict({"teacher": {"batch_size": 4, "max_length": 32}, "distill": {"augment_copies": 0},
                             "cache": {"shards": shards, "flush_rows": flush_rows}, **extra})


def _snapshot(rows, path: Path) -> Path:
    write_snapshot(Snapshot([r["text"] for r in rows], [r["label"] for r in rows], ["train"] * len(rows)), path)
    return path


def _count_teacher_rows(monkeypatch) -> list[int]:
    """Rows each LoadedTeacher.compute call received (the real teacher still computes them)."""
    calls: list[int] = []
    real = LoadedTeacher.compute

    def counting(self, texts, *args, **kwargs):
        calls.append(len(texts))
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(LoadedTeacher, "compute", counting)
    return calls


def _fan_out(home: Path, snap: Path, teacher: Path, cfg, out: Path) -> dict:
    """plan -> every worker -> merge, as the DAG wires them (the worker reports cross as JSON)."""
    shards = fanout.plan_classification(str(home), str(snap), str(teacher), cfg)
    reports = [json.dumps(fanout.work_classification(str(home), s, str(teacher), cfg)) for s in shards]
    return cache_step.run(str(home), str(snap), str(teacher), cfg, str(out),
                          worker_reports=[json.loads(r) for r in reports])


def test_merged_outputs_are_byte_identical_for_1_2_and_4_shards(tmp_path, tiny_teacher, monkeypatch):
    """Each shard count in its own home (a cold store): same TeacherOutputs digest, every row computed once."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    snap = _snapshot(make_rows(40), tmp_path / "s.jsonl")
    calls = _count_teacher_rows(monkeypatch)
    digests, summaries = {}, {}
    for shards in (1, 2, 4):
        calls.clear()
        out = tmp_path / f"o{shards}.safetensors"
        summaries[shards] = _fan_out(tmp_path / f"home{shards}", snap, tiny_teacher, _cfg(shards), out)
        digests[shards] = hashlib.sha256(out.read_bytes()).hexdigest()
        assert sum(calls) == 40  # every row once, in the workers; the merge computes nothing and checks no fresh row
    assert len(set(digests.values())) == 1, digests
    for shards, summary in summaries.items():
        assert summary["teacher_forward_passes"] == 40 and summary["fidelity_passes"] == 0
        assert [w["rows"] for w in summary["workers"]] == {1: [40], 2: [20, 20], 4: [8, 12, 8, 12]}[shards]
        assert summary["worker_teacher_forward_passes"] == 40
        assert all(w["rows_per_s"] > 0 for w in summary["workers"])


def test_a_worker_killed_mid_shard_loses_only_its_unwritten_rows(home, tmp_path, tiny_teacher, monkeypatch):
    """A worker dies after its first flushed chunk (8 rows); its retry computes only the other 12, and the
    merge's artifact is the one an undisturbed run makes."""
    snap = _snapshot(make_rows(40), tmp_path / "s.jsonl")
    cfg = _cfg(2, flush_rows=8)
    shards = fanout.plan_classification(str(home), str(snap), str(tiny_teacher), cfg)
    assert [json.loads(s)["rows"] for s in shards] == [20, 20]

    class Killed(RuntimeError):
        pass

    def die_after_first_chunk(done, todo):
        raise Killed(f"killed after {done} of {todo} rows")

    with pytest.raises(Killed, match="killed after 8 of 20 rows"):
        fanout.work_classification(str(home), shards[0], str(tiny_teacher), cfg, progress=die_after_first_chunk)
    calls = _count_teacher_rows(monkeypatch)
    retry = fanout.work_classification(str(home), shards[0], str(tiny_teacher), cfg)
    assert (retry["teacher_forward_passes"], retry["cache_hits"]) == (12, 8)
    assert calls == [8, 4]  # the rest of the shard, in chunks of flush_rows
    other = fanout.work_classification(str(home), shards[1], str(tiny_teacher), cfg)
    assert other["teacher_forward_passes"] == 20
    calls.clear()
    merged = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o.safetensors"),
                            worker_reports=[retry, other])
    assert calls == [] and merged["teacher_forward_passes"] == 40

    clean = _fan_out(tmp_path / "clean", snap, tiny_teacher, cfg, tmp_path / "clean.safetensors")
    assert clean["teacher_forward_passes"] == 40
    assert (tmp_path / "o.safetensors").read_bytes() == (tmp_path / "clean.safetensors").read_bytes()


def test_a_full_store_plans_one_empty_shard_and_no_teacher_runs(home, tmp_path, tiny_teacher, monkeypatch):
    snap = _snapshot(make_rows(12), tmp_path / "s.jsonl")
    cfg = _cfg(4)
    _fan_out(home, snap, tiny_teacher, cfg, tmp_path / "first.safetensors")
    shards = fanout.plan_classification(str(home), str(snap), str(tiny_teacher), cfg)
    assert [json.loads(s) for s in shards] == [{"path": "", "rows": 0, "shard": 0, "shards": 0}]

    def no_teacher(*args, **kwargs):
        raise AssertionError("an empty shard must not load the teacher")

    monkeypatch.setattr(fanout, "load_teacher", no_teacher)
    report = fanout.work_classification(str(home), shards[0], str(tiny_teacher), cfg)
    assert report["teacher_forward_passes"] == 0
    monkeypatch.undo()
    again = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "again.safetensors"),
                           worker_reports=[report])
    assert again["teacher_forward_passes"] == 0 and again["fidelity_passes"] == 12  # every cached row sampled
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "first.safetensors").read_bytes()


def test_bad_shards_are_clear_errors(home, tmp_path):
    cfg = _cfg(2)
    with pytest.raises(ValueError, match="not JSON"):
        fanout.work_classification(str(home), "shard-0", "teacher", cfg)
    with pytest.raises(ValueError, match=r"missing \['rows', 'path'\]"):
        fanout.work_classification(str(home), '{"shard": 0, "shards": 1}', "teacher", cfg)
    gone = json.dumps({"shard": 0, "shards": 1, "rows": 3, "path": str(tmp_path / "gone.json")})
    with pytest.raises(ValueError, match="cannot read it .* rerun the plan"):
        fanout.work_classification(str(home), gone, "teacher", cfg)
    with pytest.raises(ValueError, match=r"cache.shards: must be >= 1, got 0"):
        _cfg(0)


# ---------------------------------------------------------------------------------------------
# generation (component level: the task is not wired into the DAG yet)
# ---------------------------------------------------------------------------------------------

PROMPTS = [f"{w} {i}" for i, w in enumerate(["hello my card was declined", "where is my order",
                                              "reset password please", "refund", "my account is locked",
                                              "please help"] * 2)]


@pytest.fixture(scope="module")
def lm_teacher(tmp_path_factory) -> LoadedTeacher:
    return load_teacher(make_tiny_llama(tmp_path_factory.mktemp("lm") / "model"))


def _generate(root: Path, teacher, shards: int, decoding, flush_rows: int = 64, kill_after_first=False) -> dict:
    store = TeacherOutputStore(root / "store")
    plan = fanout.plan_generation(store, teacher, "lm-v1", PROMPTS, decoding, 4, 2, shards, root / "plans")
    reports = [fanout.work_generation(store, teacher, "lm-v1", s, decoding, 4, flush_rows) for s in plan]
    return fanout.merge_generation(store, teacher, "lm-v1", PROMPTS, decoding, 4, root / "generations.safetensors",
                                   fidelity_sample=3, worker_reports=reports, batch_size=2)


def test_generations_are_byte_identical_for_1_2_and_4_shards(tmp_path, lm_teacher):
    decoding = Decoding(max_new_tokens=5)
    merged = {n: _generate(tmp_path / f"g{n}", lm_teacher, n, decoding) for n in (1, 2, 4)}
    assert len({m["sha256"] for m in merged.values()}) == 1, merged
    for n, m in merged.items():
        assert m["teacher_forward_passes"] == len(PROMPTS) and m["fidelity_passes"] == 0
        assert sorted(w["rows"] for w in m["workers"]) == {1: [12], 2: [6, 6], 4: [2, 2, 4, 4]}[n]
    # the file is what the store holds, in prompt order
    from safetensors.numpy import load_file
    got = load_file(str(tmp_path / "g1" / "generations.safetensors"))
    assert len(got["lengths"]) == len(PROMPTS) and got["tokens"].shape == (int(got["lengths"].sum()),)


def test_a_killed_generation_worker_regenerates_only_its_unwritten_rows(tmp_path, lm_teacher):
    decoding = Decoding(max_new_tokens=5)
    store = TeacherOutputStore(tmp_path / "store")
    plan = fanout.plan_generation(store, lm_teacher, "lm-v1", PROMPTS, decoding, 4, 2, 2, tmp_path / "plans")

    def die(done, tokens):
        raise RuntimeError(f"killed after {done} rows")

    with pytest.raises(RuntimeError, match="killed after 2 rows"):
        fanout.work_generation(store, lm_teacher, "lm-v1", plan[0], decoding, 4, flush_rows=2, progress=die)
    retry = fanout.work_generation(store, lm_teacher, "lm-v1", plan[0], decoding, 4, flush_rows=2)
    assert (retry["teacher_forward_passes"], retry["cache_hits"]) == (4, 2)
    rest = fanout.work_generation(store, lm_teacher, "lm-v1", plan[1], decoding, 4, flush_rows=2)
    merged = fanout.merge_generation(store, lm_teacher, "lm-v1", PROMPTS, decoding, 4, tmp_path / "g.safetensors",
                                     worker_reports=[retry, rest], batch_size=2)
    clean = _generate(tmp_path / "clean", lm_teacher, 1, decoding)
    assert merged["sha256"] == clean["sha256"]
    # planned again, the store holds every prompt: one empty shard, and a worker with it generates nothing
    again = fanout.plan_generation(store, lm_teacher, "lm-v1", PROMPTS, decoding, 4, 2, 2, tmp_path / "plans")
    assert len(again) == 1 and json.loads(again[0])["rows"] == 0
    with pytest.raises(ValueError, match="planned with decoding"):
        fanout.work_generation(store, lm_teacher, "lm-v1", plan[1], Decoding(max_new_tokens=6), 4)


def test_cache_gc_removes_only_stale_shard_plans(home, tmp_path, tiny_teacher, capsys):
    """`distillops cache gc` prunes <home>/teacher-plans: a plan not planned again within --plan-grace
    goes, one planned again (the same rows: the same file, its age reset) stays; --dry-run removes nothing."""
    import os
    import time

    from components.common.home import Home
    from pipelines.cli import main

    plans = Home.resolve(home).teacher_plans
    snap = _snapshot(make_rows(40), tmp_path / "snap.json")
    old = _snapshot(make_rows(12, seed=7), tmp_path / "old.json")
    stale = [json.loads(s)["path"] for s in fanout.plan_classification(str(home), str(old), str(tiny_teacher), _cfg(1))]
    fresh = [json.loads(s)["path"] for s in fanout.plan_classification(str(home), str(snap), str(tiny_teacher), _cfg(2))]
    week_ago = time.time() - 8 * 86400
    for path in stale + fresh:
        os.utime(path, (week_ago, week_ago))
    # the fresh rows are planned again: the same files, their age reset
    assert [json.loads(s)["path"] for s in fanout.plan_classification(str(home), str(snap), str(tiny_teacher),
                                                                      _cfg(2))] == fresh

    capsys.readouterr()
    assert main(["cache", "gc", "--home", str(home), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["teacher_plans"]["removed"] == len(stale) == 1
    assert sorted(str(p) for p in plans.iterdir()) == sorted(stale + fresh)
    stale_bytes = Path(stale[0]).stat().st_size
    assert main(["cache", "gc", "--home", str(home)]) == 0
    assert json.loads(capsys.readouterr().out)["teacher_plans"] == {
        "dir": str(plans), "removed": 1, "bytes": stale_bytes, "kept": len(fresh)}
    assert sorted(str(p) for p in plans.iterdir()) == sorted(fresh)
