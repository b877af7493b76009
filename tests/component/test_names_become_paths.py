"""Defect 5 of issue 13 and RELIABILITY item 27: a name that becomes a path never leads outside the
home. `audit sync|show|verify --model` and `rollback --model` refuse a name with a path in it (exit 2,
one line naming the value and what is allowed, no traceback); registry downloads refuse symlink
members; run artifacts refuse traversing paths before anything is logged."""

import json
from types import SimpleNamespace

import pytest

from components.common.home import Home
from components.common.paths import UnsafeNameError
from pipelines.cli import main

TRAVERSING = ["../../x", "../x", "/tmp/x", "..\\..\\x", "%2e%2e%2fx", "x#frag", "x\x00y", "", "a" * 200]


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("action", ["sync", "show", "verify"])
@pytest.mark.parametrize("name", TRAVERSING)
def test_audit_refuses_a_model_name_that_is_a_path(home, tmp_path, capsys, action, name):
    before = {p for p in _files(tmp_path) if not p.startswith("home")}
    code = main(["audit", action, "--home", str(home), "--model", name])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert f"model name {name[:80]!r}" in err and "allowed:" in err
    # Nothing was created beside the home (x.jsonl, x.lock, ...).
    assert {p for p in _files(tmp_path) if not p.startswith("home")} == before


def test_audit_show_does_not_read_a_jsonl_outside_the_home(home, tmp_path, capsys):
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"seq": 1, "record": {"actor": "SECRET-CONTENT"}}) + "\n")
    assert main(["audit", "show", "--home", str(home), "--model", "../../secret", "--json"]) == 2
    out, err = capsys.readouterr()
    assert "SECRET-CONTENT" not in out + err


def test_rollback_refuses_a_model_name_that_is_a_path(home, tmp_path, capsys):
    assert main(["rollback", "--home", str(home), "--model", "../../x"]) == 2
    err = capsys.readouterr().err
    assert "model name '../../x'" in err and "Traceback" not in err
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.lock").exists()


def test_a_symlinked_audit_directory_is_refused(home, tmp_path, capsys):
    """The home's own audit directory pointing elsewhere (a symlink) is outside the home too."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Home.resolve(home).ensure()
    (home / "audit").symlink_to(outside)
    assert main(["audit", "sync", "--home", str(home)]) == 2
    assert "outside" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("uri", ["models:/..@champion", "models:/%2e%2e@champion", "models:/x#frag/1",
                                 "models:/a\\..\\b@champion"])
def test_registry_references_with_path_names_are_refused(uri):
    from components.common.registry import ModelRef

    with pytest.raises(UnsafeNameError):
        ModelRef.parse(uri)


def test_download_refuses_symlink_members(home, tmp_path, monkeypatch):
    """A registered model whose artifacts hold a symlink (to /etc/passwd, say) is refused before
    anything is copied into the home."""
    import mlflow

    from components.common import registry

    src = tmp_path / "downloaded"
    (src / "model").mkdir(parents=True)
    (src / "components" / "tokenizer").mkdir(parents=True)
    (src / "model" / "config.json").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    (src / "model" / "model.safetensors").symlink_to(secret)
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda artifact_uri: str(src))
    mv = SimpleNamespace(name="student", version="1")
    monkeypatch.setattr(registry, "get_version", lambda client, ref: mv)
    h = Home.resolve(home).ensure()
    with pytest.raises(registry.RegistryError, match="symlink"):
        registry.download_model(None, h, registry.ModelRef("student", version="1"))
    assert not (h.root / "models" / "student-v1").exists()


@pytest.mark.parametrize("artifact", ["../../etc/passwd", "/etc/passwd", "gate\\..\\..\\x", "%2e%2e/x",
                                      "gate/report.md#frag", "gate/x\x00"])
def test_run_artifacts_with_traversing_names_are_refused_before_logging(artifact):
    from components.common.tracking import Run

    calls = []
    client = SimpleNamespace(log_text=lambda *a: calls.append(a), log_dict=lambda *a: calls.append(a))
    run = Run(client, "run-1")
    with pytest.raises(UnsafeNameError):
        run.log_text("x", artifact)
    with pytest.raises(UnsafeNameError):
        run.log_dict({}, artifact)
    assert calls == []
