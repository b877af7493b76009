"""train_student preempted (RELIABILITY 3 and 40): SIGTERM mid-training writes a checkpoint and the
step fails with Preempted (the CLI and the component exit 75); its rerun, as KFP's retry runs it,
finds the checkpoint under the same key, and resumes from it."""

import json
import os
import signal

import pytest
from fakes import make_rows, write_jsonl
from safetensors.torch import load_file

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.home import Home
from components.common.teachers import resolve_teacher
from components.distillation.checkpoint import MARKER, checkpoints
from components.distillation.preemption import PREEMPTED_EXIT_CODE, Preempted
from components.train_student import runner as train_step
from components.version_data import runner as version_step

CFG = {"student": {"shape": "manual", "layers": [0, 1]},
       "distill": {"epochs": 1, "batch_size": 8, "checkpoint_every": 2, "log_every": 1}}


def _sigterm_at(step, real):
    """train_classifier whose metric hook sends this process a real SIGTERM after `step`."""
    def train_classifier(*args, on_metrics=None, **kwargs):
        def hook(metrics, at):
            if on_metrics is not None:
                on_metrics(metrics, at)
            if at == step and "step_loss" in metrics:
                os.kill(os.getpid(), signal.SIGTERM)

        return real(*args, on_metrics=hook, **kwargs)

    return train_classifier


def test_sigterm_mid_training_then_the_retry_resumes(home, tmp_path, tiny_teacher, monkeypatch):
    monkeypatch.setenv("DISTILLOPS_PROGRESS", "0")
    cfg = config_from_dict(CFG)
    snap = tmp_path / "s.jsonl"
    data_version = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")), cfg,
                                    str(snap))["data_version"]
    outputs = tmp_path / "t.safetensors"
    cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(outputs))

    def train(out, config_hash):
        return train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg, data_version,
                              str(tmp_path / out), config_hash)

    h = Home.resolve(home)
    ckpt = train_step.checkpoint_dir(h, "h", data_version, [resolve_teacher(str(tiny_teacher), h).version])
    real = train_step.train_classifier
    monkeypatch.setattr(train_step, "train_classifier", _sigterm_at(3, real))
    with pytest.raises(Preempted, match="SIGTERM received: training stopped at step 3") as stopped:
        train("preempted", "h")
    assert stopped.value.exit_code == PREEMPTED_EXIT_CODE
    assert json.loads((checkpoints(ckpt)[-1] / MARKER).read_text())["step"] == 3
    assert not (tmp_path / "preempted" / "model.safetensors").exists()

    monkeypatch.setattr(train_step, "train_classifier", real)
    retried = train("retried", "h")  # the retry: same config, data and teacher -> the same checkpoint dir
    assert retried["resumed_from_step"] == 3
    assert load_file(str(tmp_path / "retried" / "model.safetensors"))  # the student is written
    # the retry's MLflow run logs each step once, from the first step after the checkpoint
    from components.common.registry import connect

    steps = [m.step for m in connect(h).get_metric_history(retried["mlflow_run_id"], "step_loss")]
    assert sorted(steps) == list(range(4, 4 + len(steps))) and len(steps) >= 2
    assert not ckpt.exists()  # finished: nothing left to resume
    # (that a resumed run's weights are bit-identical to an uninterrupted run's is pinned with real
    # SIGKILL/SIGTERM processes in tests/unit/test_checkpoint_recovery.py)


def test_the_cli_turns_preemption_into_exit_75_with_a_message(home, tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    def preempted(*args, **kwargs):
        raise Preempted("SIGTERM received: training stopped at step 7 after writing checkpoint /x/ckpt-000004-step-00000007",
                        step=7, checkpoint="/x/ckpt-000004-step-00000007")

    monkeypatch.setattr(train_step, "run", preempted)
    code = main(["train-student", "--home", str(home), "--snapshot", "s.jsonl", "--teacher-outputs", "t.safetensors",
                 "--teacher", "some/teacher", "--data-version", "v1", "--out", str(tmp_path / "out")])
    assert code == PREEMPTED_EXIT_CODE == 75
    err = capsys.readouterr().err
    assert "distillops train-student: preempted: SIGTERM received" in err and "ckpt-000004-step-00000007" in err
