"""The one map from config to DAG parameters: every caller (local runs, submissions, compile, the
watch schedule) gets the same slices, and a config the library cannot run fails before any step."""

import json

import pytest

from components.common.config import ConfigError, config_from_dict, config_hash
from pipelines import parameters, submit
from pipelines.platform import CLUSTER_HOME


def test_unknown_loss_key_fails_when_parameters_are_built():
    cfg = config_from_dict({"distill": {"losses": {"kl_div": 1.0}}})
    with pytest.raises(ConfigError, match="distill.losses: unknown loss key 'kl_div'; known: .*kl"):
        parameters.distill_parameters(cfg, "/h", "/d.jsonl", "f" * 64, "models:/t/1", "t/v1+sha256:ab")
    with pytest.raises(ConfigError, match="kl_div"):
        parameters.watch_parameters(cfg, "/h", "/d.jsonl", "models:/t@champion")


def test_cli_refuses_an_unknown_loss_key_before_any_step(tmp_path, capsys):
    from pipelines.cli import main

    code = main(["run", "--home", str(tmp_path / "home"), "--set", "distill.losses={kl_div: 1}"])
    assert code == 2
    assert "unknown loss key 'kl_div'" in capsys.readouterr().err
    assert not (tmp_path / "home" / "pipeline-root").exists() or not any((tmp_path / "home" / "pipeline-root").iterdir())


def test_submissions_and_local_runs_share_the_map():
    cfg = config_from_dict({"distill": {"epochs": 3}, "gate": {"min_speedup": 1.5}})
    local = parameters.distill_parameters(cfg, CLUSTER_HOME, "/d.jsonl", "f" * 64, "models:/t/2", "t/v2+sha256:ab")
    cluster = submit.distill_arguments(cfg, "/d.jsonl", "f" * 64, "models:/t/2", "t/v2+sha256:ab")
    assert local == cluster
    assert json.loads(local["train_config"])["distill"]["epochs"] == 3
    assert "gate" not in json.loads(local["train_config"]) and local["config_hash"] == config_hash(cfg)
    watch = parameters.watch_parameters(cfg, CLUSTER_HOME, "/d.jsonl", "models:/t@champion")
    assert {k: watch[k] for k in parameters.SLICE_PARAMETERS.values()} == {
        k: local[k] for k in parameters.SLICE_PARAMETERS.values()}


def test_a_recorded_registry_teacher_version_pins_its_version():
    from components.common.teachers import pinned_ref_for

    assert pinned_ref_for("models:/distillops-teacher@champion", "distillops-teacher/v3+sha256:ab12") == \
        "models:/distillops-teacher/3"
    assert pinned_ref_for("/models/t", "local+sha256:ab12") == "/models/t"
