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
