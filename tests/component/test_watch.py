"""`distillops watch` and `distillops cache` against a real sqlite MLflow registry and a real store."""

import json

import yaml
from fakes import make_rows, write_jsonl

from components.common import registry
from components.common.config import Config, config_hash
from components.common.home import Home
from components.common.teachers import resolve_teacher
from components.watch.runner import current_data_version
from pipelines.cli import main


def _register_champion(home: Home, tags: dict, tmp_path) -> None:
    client = registry.connect(home)
    client.create_registered_model("distillops-student")
    src = tmp_path / "model-src"
    src.mkdir()
    mv = client.create_model_version("distillops-student", src.as_uri(), tags=tags)
    client.set_registered_model_alias("distillops-student", "champion", mv.version)


def test_watch_reruns_only_when_data_or_teacher_changed(home, tmp_path, tiny_teacher, capsys):
    h = Home.resolve(home).ensure()
    data = write_jsonl(make_rows(60), tmp_path / "d.jsonl")
    cfg = Config()
    _register_champion(h, {"data_version": current_data_version(str(data), cfg),
                           "teacher_version": resolve_teacher(str(tiny_teacher), h).version,
                           "config_hash": config_hash(cfg)}, tmp_path)

    assert main(["watch", "--home", str(home), "--data", str(data), "--teacher", str(tiny_teacher), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert not same["rerun"] and not same["launched"] and "nothing changed" in same["reasons"][0]

    grown = write_jsonl(make_rows(66), tmp_path / "d2.jsonl")
    assert main(["watch", "--home", str(home), "--data", str(grown), "--teacher", str(tiny_teacher),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "data_version changed" in out and "teacher_version" not in out and "--dry-run" in out


def test_cache_cli_stats_verify_gc(home, tmp_path, capsys):
    import numpy as np

    from components.common.teacher_store import TeacherOutputStore, row_key

    store = TeacherOutputStore(Home.resolve(home).ensure().teacher_cache)
    keys = [row_key("t", "tok", 8, "logits", t) for t in "abc"]
    shard = store.put_many(keys, np.ones((3, 2)))
    store.record_ref("snap", keys[:1])
    assert main(["cache", "stats", "--home", str(home)]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 3
    assert main(["cache", "gc", "--home", str(home)]) == 0
    assert json.loads(capsys.readouterr().out)["rows_removed"] == 2
    assert main(["cache", "verify", "--home", str(home)]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []
    shard_now = next((Home.resolve(home).teacher_cache / "shards").iterdir())
    shard_now.write_bytes(shard_now.read_bytes()[:-1])
    assert main(["cache", "verify", "--home", str(home)]) == 1
    assert "truncated" in json.loads(capsys.readouterr().out)["problems"][0]
    assert shard != str(shard_now)


def test_compile_writes_the_watch_pipeline_and_its_schedule(tmp_path, capsys):
    assert main(["compile", "--output-dir", str(tmp_path)]) == 0
    pipeline = next(yaml.safe_load_all((tmp_path / "watch_pipeline.yaml").read_text()))  # IR, then platform spec
    assert "comp-check-for-changes" in pipeline["components"]
    spec = yaml.safe_load((tmp_path / "watch_recurring_run.yaml").read_text())
    assert set(spec["parameters"]) == set(pipeline["root"]["inputDefinitions"]["parameters"])
