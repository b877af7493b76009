"""`distillops audit` and `distillops rollback` on a real sqlite MLflow registry."""

import json

import pytest

from pipelines.cli import main


@pytest.mark.parametrize("command", ["audit", "rollback"])
def test_audit_commands_explain_themselves(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage: distillops" in capsys.readouterr().out


def test_empty_history_verifies_and_rollback_is_a_clear_error(home, capsys):
    assert main(["audit", "verify", "--home", str(home), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"model": "distillops-student", "entries": 0, "intact": True,
                                                   "problems": []}
    assert main(["rollback", "--home", str(home), "--reason", "test"]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err


def test_a_tampered_log_fails_verify(home, capsys):
    log = home / "audit" / "distillops-student.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"seq": 1, "record": {"action": "promote"}, "outcome": {}, "prev_hash": "0" * 64,
                               "hash": "f" * 64}) + "\n")
    assert main(["audit", "verify", "--home", str(home)]) == 1
    out = capsys.readouterr().out
    assert "was edited" in out and "not in the registry" in out
