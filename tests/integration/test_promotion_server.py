"""Promotion, audit and rollback against a real `mlflow server` process (sqlite backend, loopback):
idempotency, lineage, 8 promotions racing, the server killed mid-promotion, tampering detected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import mlflow
import pytest
from conftest import make_promotable

from components.common import registry
from components.common.config import Config
from components.common.home import Home
from components.promote import audit
from components.promote import runner as promote_step

NAME = "distillops-student"
CFG = Config()


def _promote(home, student, gate):
    return promote_step.run(str(home), str(student), str(gate), CFG)


def _aliases():
    return registry.get_aliases(mlflow.MlflowClient(), NAME)


def test_promote_rollback_and_audit_against_a_server(mlflow_server, home, tmp_path):
    h = Home.resolve(home)
    client = registry.connect(h)
    assert mlflow.get_tracking_uri() == mlflow_server.uri  # the server, not a sqlite file
    s1, g1 = make_promotable(tmp_path, 1)
    first = _promote(home, s1, g1)
    assert (first["action"], first["version"], first["outcome"]["status"]) == ("register", "1", "applied")
    again = _promote(home, s1, g1)
    assert again["action"] == "noop"  # the same promotion twice: no second version, no second entry
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1

    s2, g2 = make_promotable(tmp_path, 2, champion_version="1")
    assert _promote(home, s2, g2)["version"] == "2"
    assert _aliases() == {"champion": "2", "previous": "1"}
    mv = client.get_model_version(NAME, "2")
    for key in ("data_version", "teacher_version", "teacher_ref", "teacher_cache_key", "config_hash", "git_commit",
                "model_digest", "pipeline_run_id", "gate_report", "mlflow_run_id"):
        assert key in mv.tags, key
    assert mv.tags["data_version"] == "data2" and mv.tags["gate_report"].startswith("runs:/")

    s3, g3 = make_promotable(tmp_path, 3, champion_version="2", passed=False)
    with pytest.raises(promote_step.PromotionRefused, match="student accuracy too low"):
        _promote(home, s3, g3)
    assert _aliases() == {"champion": "2", "previous": "1"}

    result = audit.rollback(client, h, NAME, "bad answers in production")
    assert (result["champion"], result["previous"]) == ("1", "2")
    assert _aliases() == {"champion": "1", "previous": "2"}

    entries = audit.show(h, NAME)
    assert [(e["record"]["action"], e["outcome"]["status"]) for e in entries] == [
        ("promote", "applied"), ("promote", "applied"), ("refuse", "recorded"), ("rollback", "applied")]
    assert entries[3]["record"]["reasons"] == ["bad answers in production"] and entries[3]["record"]["actor"]
    assert audit.verify(client, h, NAME) == []
    ledger = registry.read_ledger(client, NAME)
    assert [t["audit_hash"] for _, _, t in ledger] == [e["hash"] for e in entries]  # mirrored in the registry

    # Tampering: an edited entry, a deleted entry, a deleted tail, an edited registry mirror.
    path = audit.audit_path(h, NAME)
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    path.write_text(original.replace('"bad answers in production"', '"routine"'))
    assert any("was edited" in p for p in audit.verify(client, h, NAME))
    path.write_text("".join(lines[:1] + lines[2:]))
    assert any("deleted" in p for p in audit.verify(client, h, NAME))
    with pytest.raises(audit.AuditError):  # fail closed: no registry change over a damaged log
        audit.rollback(client, h, NAME, "")
    assert _aliases() == {"champion": "1", "previous": "2"}
    path.write_text("".join(lines[:-1]))
    assert any("it was deleted" in p for p in audit.verify(client, h, NAME))
    audit.sync(client, h, NAME)  # a deleted tail is restored, identically, from the registry's mirror
    assert path.read_text() == original
    registry.tag_ledger_entry(client, NAME, 2, {"record": json.dumps({**ledger[1][1], "version": "9"})})
    assert any("differs from the registry" in p for p in audit.verify(client, h, NAME))


RACER = """
import json, os, sys, time
from pipelines.cli import main  # imports done before the start line, so the racers start together
go = sys.argv[1]
open(go + "." + str(os.getpid()), "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.01)
start = time.time()
rc = main(sys.argv[2:])
print(json.dumps({"start": start, "end": time.time(), "rc": rc}))
"""


@pytest.mark.slow
def test_eight_promotions_racing_leave_one_champion_and_every_attempt_recorded(mlflow_server, home, tmp_path):
    h = Home.resolve(home)
    client = registry.connect(h)
    base, gate = make_promotable(tmp_path, 0)
    assert _promote(home, base, gate)["version"] == "1"
    racers = [make_promotable(tmp_path, 10 + i, champion_version="1") for i in range(8)]
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(go), "promote", "--home", str(home), "--student",
                               str(s), "--gate-report", str(g)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "DISTILLOPS_ACTOR": f"racer-{i}"})
             for i, (s, g) in enumerate(racers)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.*"))) < 8 and time.time() < deadline:  # all eight imported
        time.sleep(0.1)
    go.write_text("go")
    outs = [p.communicate(timeout=300) for p in procs]
    for i, (_, err) in enumerate(outs):
        (tmp_path / f"racer-{i}.log").write_text(err)
    assert all(p.returncode == 0 for p in procs), [err[-3000:] for _, err in outs if "Traceback" in err]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(r["rc"] for r in results) == [0] + [1] * 7, [err[-2000:] for _, err in outs]
    assert max(r["start"] for r in results) < min(r["end"] for r in results)  # they really overlapped

    entries = audit.show(h, NAME)
    racing = entries[1:]
    assert len(racing) == 8 and {e["record"]["actor"] for e in racing} == {f"racer-{i}" for i in range(8)}
    applied = [e for e in racing if e["outcome"]["status"] == "applied"]
    assert len(applied) == 1
    assert all("another change landed first" in e["outcome"]["why"] for e in racing if e not in applied)
    assert _aliases() == {"champion": applied[0]["record"]["version"], "previous": "1"}
    assert audit.verify(client, h, NAME) == []


def _kill_before(monkeypatch, server, module, name):
    original = getattr(module, name)
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            server.stop()  # SIGKILL: the server dies before this request
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, dying)
    return lambda: monkeypatch.setattr(module, name, original)


@pytest.mark.parametrize("kill_at", ["append_ledger", "set_alias"])
def test_server_killed_mid_promotion_leaves_no_partial_state_and_a_retry_completes(
        mlflow_server, home, tmp_path, monkeypatch, kill_at):
    h = Home.resolve(home)
    client = registry.connect(h)
    s1, g1 = make_promotable(tmp_path, 1)
    _promote(home, s1, g1)
    s2, g2 = make_promotable(tmp_path, 2, champion_version="1")
    restore = _kill_before(monkeypatch, mlflow_server, registry, kill_at)
    with pytest.raises(Exception):  # noqa: B017 (a connection error of whatever kind the client raises)
        _promote(home, s2, g2)
    restore()
    mlflow_server.start()
    client = registry.connect(h)
    # What serving sees is untouched: the old champion; no alias half-moved.
    assert _aliases() == {"champion": "1"}
    retried = _promote(home, s2, g2)
    assert retried["version"] == "2"
    assert _aliases() == {"champion": "2", "previous": "1"}
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2  # the retry registered nothing twice
    actions = [(e["record"]["action"], e["record"]["version"], e["outcome"]["status"]) for e in audit.show(h, NAME)]
    assert actions == [("promote", "1", "applied"), ("promote", "2", "applied")]
    assert audit.verify(client, h, NAME) == []
