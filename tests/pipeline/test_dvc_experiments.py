"""DVC experiments on the project's own dvc.yaml (issue 17): in a git repository holding this
checkout's code and its `distill` stage, `dvc repro` runs the distillation DAG (kfp.local, tiny
teacher made in the test) and `dvc exp run -S distill.epochs=2` reruns it with the new parameter;
the gate's numbers come back through `dvc metrics show --json` and `dvc exp show --json`, and the
training curve through the plot file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakes import make_rows, write_jsonl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
PARAMS = {
    "student": {"max_parameter_fraction": 0.9, "min_speedup": 0.0},  # tiny models: speed-ups are noise
    "distill": {"epochs": 1, "max_length": 32},
    "teacher": {"max_length": 32},
    "gate": {"min_speedup": 0.0, "min_accuracy_retention": 0.5, "latency_samples": 4, "throughput_batches": 1,
             "quantized_teacher": False},
}


def _project(tmp_path: Path, teacher: Path) -> Path:
    """A git repository with this checkout's code, its .gitignore/.dvcignore and its distill stage."""
    proj = tmp_path / "proj"
    for name in ("components", "pipelines"):
        shutil.copytree(ROOT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, proj / name)
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    # the stage as it is; its data file is the test's (the quickstart data does not fit the tiny teacher)
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"distill": spec["stages"]["distill"]},
                                                   "plots": spec["plots"]}, sort_keys=False))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**PARAMS, "teacher": {**PARAMS["teacher"], "ref": str(teacher)}}.items():
        params[section].update(values)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_jsonl(make_rows(150), proj / "data" / "support_tickets.jsonl")
    (proj / ".gitignore").write_text((proj / ".gitignore").read_text().replace("/data\n", ""))
    return proj


def _run(proj: Path, env: dict, *cmd: str) -> str:
    done = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def test_dvc_exp_run_reruns_the_distill_stage_and_reports_the_gate_as_metrics(tmp_path, tiny_teacher):
    proj = _project(tmp_path, tiny_teacher)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DISTILLOPS_HOME",
                                                             "DISTILLOPS_DVC_REMOTE")}
    # PYTHONPATH: the copied code, whatever the environment's editable install points at
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(proj),
               DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@localhost", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@localhost")
    dvc = (sys.executable, "-m", "dvc")
    _run(proj, env, "git", "init", "-q")
    _run(proj, env, *dvc, "init", "-q")
    _run(proj, env, "git", "add", "-A")
    _run(proj, env, "git", "commit", "-qm", "project")

    _run(proj, env, *dvc, "repro")
    baseline = json.loads((proj / "metrics" / "gate.json").read_text())
    assert baseline["passed"] in (0, 1) and 0 < baseline["parameter_fraction"] <= 0.9
    assert len(json.loads((proj / "plots" / "training.json").read_text())) == 1  # distill.epochs: 1
    _run(proj, env, "git", "add", "dvc.lock", "metrics", "plots")
    _run(proj, env, "git", "commit", "-qm", "baseline")
    assert "up to date" in _run(proj, env, *dvc, "status")  # nothing changed: nothing to rerun

    _run(proj, env, *dvc, "exp", "run", "-n", "two-epochs", "-S", "distill.epochs=2")
    # the stage really ran again, with the new value: two epochs of training in the curve and the lock
    assert [r["epoch"] for r in json.loads((proj / "plots" / "training.json").read_text())] == [1, 2]
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    assert lock["stages"]["distill"]["params"]["params.yaml"]["distill"]["epochs"] == 2

    shown = json.loads(_run(proj, env, *dvc, "metrics", "show", "--json"))
    workspace = next(iter(shown.values()))["data"]["metrics/gate.json"]["data"]
    assert set(baseline) == set(workspace) and workspace["accuracy"] >= 0
    assert all(isinstance(v, (int, float)) for v in workspace.values())

    exps = json.loads(_run(proj, env, *dvc, "exp", "show", "--json"))
    runs = [e for base in exps for e in (base.get("experiments") or [])]
    names = {r["name"] for r in runs}
    assert "two-epochs" in names, exps
    exp = next(r for r in runs if r["name"] == "two-epochs")["revs"][0]["data"]
    assert exp["params"]["params.yaml"]["data"]["distill"]["epochs"] == 2
    assert exp["metrics"]["metrics/gate.json"]["data"] == workspace
    diff = json.loads(_run(proj, env, *dvc, "params", "diff", "--json"))
    epochs = diff["params.yaml"]["distill.epochs"]
    assert (epochs["old"], epochs["new"]) == (1, 2)
