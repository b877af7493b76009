"""The bugs the consolidation fixed, each pinned by a test that failed before it: the resume
checkpoint loads no pickle, its key covers the teacher, teachers are pinned per run, and the
compiled schedule uses the cluster's home and the user's config."""

import pickle
from pathlib import Path

import pytest
import yaml
from fakes import make_rows, make_tiny_teacher, write_jsonl

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict, config_hash
from components.common.home import Home
from components.common.teachers import TeacherMismatchError, load_pinned, resolve_teacher
from components.distillation.checkpoint import manifest, write_marker
from components.train_student import runner as train_step
from components.version_data import runner as version_step

MARKER = Path("/tmp/distillops-planted-checkpoint-ran")


class _Planted:
    """Unpickling this runs code: it creates MARKER."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


def _prepared(home, tmp_path, teacher, cfg):
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")), cfg, str(snap))
    outputs = tmp_path / f"t-{Path(teacher).name}.safetensors"
    cache_step.run(str(home), str(snap), str(teacher), cfg, str(outputs))
    return snap, outputs, v["data_version"]


def test_a_planted_checkpoint_runs_no_code(home, tmp_path, tiny_teacher):
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "distill": {"epochs": 1}})
    snap, outputs, data_version = _prepared(home, tmp_path, tiny_teacher, cfg)
    h = Home.resolve(home)
    ckpt = train_step.checkpoint_dir(h, "h", data_version, [resolve_teacher(str(tiny_teacher), h).version])
    planted = ckpt / "ckpt-000001-step-00000002"  # where a checkpoint is looked for now
    planted.mkdir(parents=True)
    MARKER.unlink(missing_ok=True)
    for folder in (ckpt, planted):
        for name in ("checkpoint.pt", "pytorch_model.bin", "tensors.safetensors"):  # old names, and the new one
            (folder / name).write_bytes(pickle.dumps(_Planted()))
        (folder / "state.json").write_text("{}")
    # a marker whose manifest matches the planted files: verification passes, loading must still run no code
    write_marker(planted, manifest(planted, step=2))
    result = train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg, data_version,
                            str(tmp_path / "student"), "h")
    assert not MARKER.exists(), "loading the resume checkpoint unpickled a planted file"
    assert result["resumed_from_step"] == 0  # the planted state was set aside, training started over


def test_no_weights_only_false_anywhere():
    root = Path(__file__).parents[2]
    offenders = [str(p) for folder in ("components", "pipelines", "benchmarks") for p in (root / folder).rglob("*.py")
                 if "weights_only=False" in p.read_text().replace(" ", "")]
    assert offenders == []


def test_a_new_teacher_never_resumes_the_old_teachers_checkpoint(home, tmp_path, tiny_teacher, monkeypatch):
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "distill": {"epochs": 2}})
    snap, outputs_a, data_version = _prepared(home, tmp_path, tiny_teacher, cfg)
    other = make_tiny_teacher(tmp_path / "other", seed=3)
    _, outputs_b, _ = _prepared(home, tmp_path, other, cfg)
    # Keep run A's final checkpoint, as a run killed at its very end would.
    monkeypatch.setattr(train_step.shutil, "rmtree", lambda *a, **k: None)
    first = train_step.run(str(home), str(snap), str(outputs_a), str(tiny_teacher), cfg, data_version,
                           str(tmp_path / "a"), config_hash(cfg))
    assert first["resumed_from_step"] == 0
    again = train_step.run(str(home), str(snap), str(outputs_a), str(tiny_teacher), cfg, data_version,
                           str(tmp_path / "a2"), config_hash(cfg))
    assert again["resumed_from_step"] > 0  # same teacher: the checkpoint is reused
    other_teacher = train_step.run(str(home), str(snap), str(outputs_b), str(other), cfg, data_version,
                                   str(tmp_path / "b"), config_hash(cfg))
    assert other_teacher["resumed_from_step"] == 0


def test_a_step_refuses_a_teacher_that_moved_under_the_run(home, tmp_path, tiny_teacher):
    h = Home.resolve(home)
    moving = make_tiny_teacher(tmp_path / "moving", seed=4)
    pinned = resolve_teacher(str(moving), h)
    assert load_pinned(pinned.pinned_ref, pinned.version, h).version == pinned.version
    make_tiny_teacher(moving, seed=5)  # new weights under the same path, mid-run
    with pytest.raises(TeacherMismatchError, match="this run pinned"):
        load_pinned(pinned.pinned_ref, pinned.version, h)
    cfg = config_from_dict({})
    snap = tmp_path / "s.jsonl"
    version_step.run(str(home), str(write_jsonl(make_rows(40), tmp_path / "d.jsonl")), cfg, str(snap))
    with pytest.raises(TeacherMismatchError):
        cache_step.run(str(home), str(snap), pinned.pinned_ref, cfg, str(tmp_path / "t.safetensors"),
                       teacher_version=pinned.version)
    assert not (tmp_path / "t.safetensors").exists()


def test_compiled_watch_schedule_uses_the_cluster_home_and_the_given_config(tmp_path):
    from pipelines.compile import compile_watch
    from pipelines.platform import CLUSTER_HOME

    custom = config_from_dict({"distill": {"epochs": 7, "temperature": 3.0}, "gate": {"min_speedup": 1.5}})
    _, spec_path = compile_watch(tmp_path, custom)
    params = yaml.safe_load(spec_path.read_text())["parameters"]
    assert params["home"] == CLUSTER_HOME
    assert params["data_path"].startswith(CLUSTER_HOME + "/")
    assert params["config_hash"] == config_hash(custom)
    assert '"epochs": 7' in params["train_config"] and '"min_speedup": 1.5' in params["gate_config"]


def test_compile_command_passes_the_config_to_the_schedule(tmp_path):
    from pipelines.cli import main

    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({"distill": {"epochs": 9}}))
    assert main(["compile", "--output-dir", str(tmp_path / "build"), "--config", str(config),
                 "--set", "distill.temperature=5"]) == 0
    params = yaml.safe_load((tmp_path / "build" / "watch_recurring_run.yaml").read_text())["parameters"]
    assert params["config_hash"] == config_hash(config_from_dict({"distill": {"epochs": 9, "temperature": 5}}))
