"""The CLI as a tool: documented exit codes CI can gate on, --version, and help that explains every
subcommand and every argument (with its default)."""

import argparse
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from pipelines.cli import _parser, main
from pipelines.cli_common import EXIT_CODES, loop_exit_code, monitor_exit_code, run_exit_code
from pipelines.console import without_executor_input

README = Path(__file__).resolve().parents[2] / "README.md"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _help_problems(parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    for name, sub in _subcommands(parser).items():
        if not (sub.description or "").strip():
            problems.append(f"{name}: no description")
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = "/".join(action.option_strings) or action.dest
            if not (action.help or "").strip():
                problems.append(f"{name} {flag}: no help")
                continue
            takes_value = action.nargs != 0
            if action.option_strings and takes_value and not action.required:
                shown = formatter._get_help_string(action) % {"default": action.default}
                if "default" not in shown:
                    problems.append(f"{name} {flag}: help does not say the default")
    return problems


def test_every_subcommand_has_a_description_and_every_argument_a_help_with_its_default():
    assert _help_problems(_parser()) == []


def test_the_walk_catches_what_is_missing():
    parser = _parser()
    sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    p = sub.add_parser("undocumented")
    p.add_argument("--quiet-flag", action="store_true")
    p.add_argument("--size", default=3, help="how big")  # the formatter adds its default
    p.add_argument("--name", help="a name")  # default None, and the help does not say what that means
    assert _help_problems(parser) == ["undocumented: no description", "undocumented --quiet-flag: no help",
                                      "undocumented --name: help does not say the default"]


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"distillops {version('distillops')}"


def test_help_epilog_documents_every_exit_code():
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for code in ("0", "1", "2", "3", "75"):
        assert re.search(rf"^\s+{code}\s+\S", out, re.M), code
    assert "the gate refused the student" in out and "drift detected" in out


def test_readme_has_the_same_exit_codes():
    text = README.read_text()
    table = text[text.index("## Exit codes"):]
    for code in ("0", "1", "2", "3", "75"):
        assert re.search(rf"^\| `{code}` \|", table, re.M), code
    for code in re.findall(r"^  (\d+) ", EXIT_CODES, re.M):
        assert f"| `{code}` |" in table


def _summary(passed: bool, action: str) -> dict:
    return {"gate": {"passed": passed, "reasons": [], "checks": {}}, "promotion": {"action": action, "version": "1"}}


@pytest.mark.parametrize(("passed", "action", "code"), [
    (True, "register", 0),  # promoted
    (True, "alias_existing", 0),  # promoted (these weights were registered before)
    (True, "noop", 0),  # nothing to do: the champion already has these weights
    (False, "skipped (gate failed)", 3),  # the gate refused: champion unchanged
])
def test_run_exit_code(passed, action, code):
    assert run_exit_code(_summary(passed, action)) == code


def test_monitor_exit_code():
    assert monitor_exit_code({"drifted": False, "reasons": []}) == 0
    assert monitor_exit_code({"drifted": True, "reasons": ["text length drifted"]}) == 3


@pytest.mark.parametrize(("loop", "code"), [
    ({"drifted": False, "gate_passed": None, "promotion": {"action": None}}, 0),
    ({"drifted": True, "gate_passed": True, "promotion": {"action": "register"}}, 0),
    # the gate was served from KFP's cache (no report in this run); promote, never cached, found it done
    ({"drifted": True, "gate_passed": None, "promotion": {"action": "noop"}}, 0),
    ({"drifted": True, "gate_passed": False, "promotion": {"action": None}}, 3),
    # the drift policy: drift seen that no trigger counts is nothing to act on; a skipped trigger needs attention
    ({"drifted": True, "action": "none", "gate_passed": None, "promotion": {"action": None}}, 0),
    ({"drifted": True, "action": "skipped_cooldown", "gate_passed": None, "promotion": {"action": None}}, 3),
    ({"drifted": True, "action": "skipped_budget", "gate_passed": None, "promotion": {"action": None}}, 3),
    ({"drifted": True, "action": "redistill", "gate_passed": True, "promotion": {"action": "register"}}, 0),
    ({"drifted": True, "action": "redistill", "gate_passed": False, "promotion": {"action": None}}, 3),
])
def test_redistill_exit_code(loop, code):
    assert loop_exit_code(loop) == code


def test_bad_input_is_still_2(home, tmp_path, capsys):
    assert main(["monitor", "--home", str(home), "--production", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: production file not found" in capsys.readouterr().err


def test_the_executor_input_dump_is_left_out_of_a_failed_tasks_output():
    lines = ["    [KFP Executor 12:00 INFO]: Got executor_input:", "    {", '        "inputs": {}', "    }",
             "    Traceback (most recent call last):", "    ValueError: boom"]
    assert without_executor_input(lines) == lines[4:]
    # no end of the dump found: everything is kept rather than losing a traceback
    assert without_executor_input(lines[:3]) == lines[:3]
