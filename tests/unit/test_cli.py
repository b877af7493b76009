import subprocess
import sys

import pytest

from pipelines.cli import main

COMMANDS = ["run", "quickstart", "teacher", "monitor", "compile", "version-data", "cache-teacher-outputs", "train-student",
            "benchmark-gate", "promote", "watch", "cache"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: distillops" in capsys.readouterr().out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in out.stdout


def test_missing_data_file_is_a_clear_error(home, tmp_path, capsys):
    assert main(["run", "--home", str(home), "--data", str(tmp_path / "nope.jsonl"), "--teacher", str(tmp_path)]) == 2
    assert "nope.jsonl: data file not found" in capsys.readouterr().err


def test_bad_config_is_a_clear_error(home, capsys):
    assert main(["run", "--home", str(home), "--set", "distill.temprature=3"]) == 2
    assert "unknown config key(s) distill.temprature" in capsys.readouterr().err


def test_compile_writes_both_pipelines(tmp_path, capsys):
    assert main(["compile", "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "distill_pipeline.yaml").is_file() and (tmp_path / "drift_pipeline.yaml").is_file()


def test_run_task_generation_without_data_uses_the_quickstart_prompts(home, monkeypatch, capsys):
    """--task generation sets the config's task; with no --data the quickstart prompts are written to the
    home and handed to the DAG (run_distill isolated: the DAG itself is tests/pipeline's)."""
    import json

    import pipelines.local

    seen = {}

    def fake_run_distill(home_, cfg, data, teacher):
        seen.update(task=cfg.task, data=data, teacher=teacher)
        raise SystemExit(0)

    monkeypatch.setattr(pipelines.local, "run_distill", fake_run_distill)
    with pytest.raises(SystemExit):
        main(["run", "--task", "generation", "--home", str(home)])
    assert seen["task"] == "generation" and seen["teacher"] is None
    assert seen["data"] == str(home / "quickstart" / "prompts.jsonl")
    rows = [json.loads(line) for line in open(seen["data"])]
    assert len(rows) == 400 and set(rows[0]) == {"prompt"}


def test_generation_data_errors_name_the_file_before_the_dag(home, tmp_path, capsys):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "hello"}\n{"text": "no prompt column"}\n')
    assert main(["run", "--task", "generation", "--home", str(home), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "prompts.jsonl" in err and "prompt" in err
