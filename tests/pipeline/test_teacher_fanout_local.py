"""The distillation DAG's teacher fan-out (pipelines.distill.teacher_fan_out: plan -> dsl.ParallelFor of
workers -> merge), run for real by kfp.local on a tiny teacher: the merged TeacherOutputs artifact has
the same digest for 1 and 2 shards, and a rerun whose store holds every row sends none to the teacher.
kfp.local 2.17.3 runs the iterations in a thread pool of at most 2, whatever `parallelism` says."""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from fakes import make_rows
from kfp import compiler, dsl
from kfp.dsl import Artifact, Dataset, Output

from components.common.config import config_from_dict, config_to_dict
from components.common.dataset import Snapshot, write_snapshot
from components.common.home import Home
from components.common.image import IMAGE
from components.common.steplog import steps_since
from pipelines.distill import distill_pipeline, teacher_fan_out
from pipelines.local import init_kfp_local

pytestmark = pytest.mark.slow


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def _snapshot_file(path: str, dataset: Output[Dataset]):
    import shutil

    shutil.copyfile(path, dataset.path)


@dsl.pipeline(name="teacher-fan-out")
def _fan_out_pipeline(home: str, snapshot_path: str, teacher_ref: str, teacher_config: str) -> Artifact:
    snap = _snapshot_file(path=snapshot_path)
    merge = teacher_fan_out(home, snap.outputs["dataset"], "data-v1", teacher_ref, "", teacher_config)
    return merge.outputs["teacher_outputs"]


def _run(home: Home, snapshot: Path, teacher: Path, shards: int) -> str:
    init_kfp_local(home)
    # no augmentation: the shard sizes below are the snapshot's rows
    cfg = config_from_dict({"teacher": {"batch_size": 4, "max_length": 32}, "cache": {"shards": shards},
                            "distill": {"augment_copies": 0}})
    slice_json = json.dumps({k: config_to_dict(cfg)[k] for k in ("teacher", "cache", "distill")}, sort_keys=True)
    out = _fan_out_pipeline(home=str(home.root), snapshot_path=str(snapshot), teacher_ref=str(teacher),
                            teacher_config=slice_json)
    return hashlib.sha256(Path(out.output.path).read_bytes()).hexdigest()


def test_the_fan_out_gives_one_digest_for_1_and_2_shards_and_skips_a_full_store(tmp_path, tiny_teacher, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rows = make_rows(24)
    snapshot = tmp_path / "snapshot.jsonl"
    write_snapshot(Snapshot([r["text"] for r in rows], [r["label"] for r in rows], ["train"] * len(rows)), snapshot)
    digests, logs = {}, {}
    for shards in (1, 2):
        home = Home.resolve(tmp_path / f"home{shards}").ensure()
        digests[shards] = _run(home, snapshot, tiny_teacher, shards)
        logs[shards] = steps_since(home, 0)
    assert digests[1] == digests[2]
    workers = [s for s in logs[2] if s["step"] == "teacher_shard_worker"]
    assert sorted(w["rows"] for w in workers) == [12, 12]
    assert sum(w["teacher_forward_passes"] for w in workers) == 24
    merge = [s for s in logs[2] if s["step"] == "cache_teacher_outputs"][-1]
    assert merge["teacher_forward_passes"] == 24 and merge["worker_teacher_forward_passes"] == 24
    assert [w["rows"] for w in merge["workers"]] == [12, 12]

    # the same rows again, KFP's cache off: the plan finds every row stored; one empty shard, no teacher pass
    home = Home.resolve(tmp_path / "home2")
    shutil.rmtree(home.root / "kfp-cache")
    assert _run(home, snapshot, tiny_teacher, 2) == digests[1]
    again = steps_since(home, 0)[len(logs[2]):]
    assert [s["step"] for s in again] == ["plan_teacher_shards", "cache_teacher_outputs"]  # the empty worker logs nothing
    assert again[0]["missing"] == 0 and again[1]["teacher_forward_passes"] == 0


def test_the_compiled_dag_fans_the_teacher_out(tmp_path):
    """plan-teacher-shards -> for-loop over its output (teacher-shard-worker) -> cache-teacher-outputs,
    which collects the workers' reports (the fan-in makes it wait for every worker)."""
    path = tmp_path / "distill.yaml"
    compiler.Compiler().compile(distill_pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    loop = tasks["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--plan-teacher-shards-Output"
    assert loop["dependentTasks"] == ["plan-teacher-shards"]
    assert list(spec["components"]["comp-for-loop-1"]["dag"]["tasks"]) == ["teacher-shard-worker"]
    merge = tasks["cache-teacher-outputs"]
    assert merge["inputs"]["parameters"]["worker_reports"]["taskOutputParameter"]["producerTask"] == "for-loop-1"
    assert "for-loop-1" in merge["dependentTasks"]
    assert tasks["train-student"]["inputs"]["artifacts"]["teacher_outputs"]["taskOutputArtifact"]["producerTask"] == \
        "cache-teacher-outputs"
