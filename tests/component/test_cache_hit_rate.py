"""`distillops cache stats` after reruns over the same rows, with the tiny teacher and a real store:
a rerun the store serves, and a rerun KFP serves from its own cache (which never runs the step, and
used to leave the log with the first run's 0.0 alone)."""

import json

from fakes import make_rows

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.dataset import Snapshot, write_snapshot
from components.common.home import Home
from components.common.steplog import record_reused
from pipelines.cli import main


def _stats(home, capsys) -> dict:
    assert main(["cache", "stats", "--home", str(home)]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_rerun_over_the_same_rows_is_all_hits(home, tmp_path, tiny_teacher, capsys):
    rows = make_rows(30)
    snap = tmp_path / "s.jsonl"
    write_snapshot(Snapshot([r["text"] for r in rows], [r["label"] for r in rows], ["train"] * 30), snap)
    cfg = config_from_dict({})
    first = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o1.safetensors"))
    assert (first["teacher_forward_passes"], first["cache_hits"]) == (30, 0)
    stats = _stats(home, capsys)
    assert (stats["hit_rate"], stats["runs"], stats["last_run"]["hit_rate"]) == (0.0, 1, 0.0)

    second = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o2.safetensors"))
    assert (second["teacher_forward_passes"], second["cache_hits"]) == (0, 30)
    stats = _stats(home, capsys)
    assert stats["last_run"] == {"hits": 30, "teacher_forward_passes": 0, "hit_rate": 1.0,
                                 "served_by": "teacher store", "integrity_problems": 0}
    assert (stats["lookups"], stats["hits"], stats["hit_rate"], stats["runs"]) == (60, 30, 0.5, 2)

    # A third run that KFP serves from its cache returns the second's report; `distillops run` logs the
    # reuse (pipelines/local.py): every row came without the teacher.
    record_reused(Home.resolve(home), second["step_report"], run_started=second["step_report"]["started"] + 60)
    stats = _stats(home, capsys)
    assert stats["last_run"] == {"hits": 30, "teacher_forward_passes": 0, "hit_rate": 1.0,
                                 "served_by": "kfp cache", "integrity_problems": 0}
    assert (stats["lookups"], stats["hits"], stats["runs"], stats["runs_served_by_kfp_cache"]) == (90, 60, 3, 1)
    assert stats["hit_rate"] == round(60 / 90, 4)

    # Another store's runs are not this store's hit rate.
    other = tmp_path / "other-store"
    assert main(["cache", "stats", "--home", str(home), "--set", f"cache.url={other}"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == 0
