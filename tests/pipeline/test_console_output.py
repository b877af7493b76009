"""What a kfp.local run shows by default (pipelines/console.py), with real kfp.local tasks: one line
per task on stderr, the rest in the run log; a failing task's error and traceback still on stderr."""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.
import pytest
from kfp import dsl

from components.common.home import Home
from pipelines.console import output, task_output
from pipelines.local import init_kfp_local


@dsl.component
def _fine(x: int) -> int:
    print("a line the user does not need by default")
    return x + 1


@dsl.component
def _breaks(x: int) -> int:
    raise ValueError(f"row {x}: the label 'spam' is not one of data.labels")


@dsl.pipeline
def _good(x: int) -> int:
    return _fine(x=x).output


@dsl.pipeline
def _bad(x: int) -> int:
    return _breaks(x=_fine(x=x).output).output


def test_default_mode_shows_one_line_per_task_and_keeps_the_rest_in_the_log(tmp_path, capsys):
    home = Home.resolve(tmp_path / "home").ensure()
    log = tmp_path / "run.log"
    with output(verbose=False), task_output(log, verbose=False):
        init_kfp_local(home)
        assert _good(x=1).output == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].split()[:2] == ["fine", "done"], lines
    text = log.read_text()
    assert "a line the user does not need by default" in text and "executor_input" in text


def test_a_failing_task_shows_its_error_and_traceback_in_default_mode(tmp_path, capsys):
    home = Home.resolve(tmp_path / "home").ensure()
    log = tmp_path / "run.log"
    with pytest.raises(RuntimeError, match=r"Inner task failed: 'breaks'.*every task's output: .*run\.log"):
        with output(verbose=False), task_output(log, verbose=False):
            init_kfp_local(home)
            _bad(x=1)
    err = capsys.readouterr().err
    assert "breaks" in err and "FAILED" in err
    assert "Traceback (most recent call last)" in err
    assert "ValueError: row 2: the label 'spam' is not one of data.labels" in err
    assert "executor_input" not in err and "a line the user does not need" not in err


def test_verbose_mode_streams_every_tasks_output_to_stderr(tmp_path, capsys):
    home = Home.resolve(tmp_path / "home").ensure()
    with output(verbose=True), task_output(tmp_path / "run.log", verbose=True):
        init_kfp_local(home)
        _good(x=5)
    captured = capsys.readouterr()
    assert captured.out == ""  # the result alone goes to stdout
    assert "a line the user does not need by default" in captured.err and "executor_input" in captured.err
