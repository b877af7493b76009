"""What the CLI's command modules share: common options, the config and home of a command, and
keeping stdout clean for --json."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

# Exit codes: what CI can gate on. README.md ("Exit codes") has the same table.
EXIT_OK = 0
EXIT_FAILED = 1  # a step failed (its error is printed), a refusal by the teacher or ledger, anything unexpected
EXIT_BAD_INPUT = 2
EXIT_ATTENTION = 3  # run/watch: the gate refused the student; monitor: drift detected
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: SIGTERM, a checkpoint was written; a retry resumes

EXIT_CODES = """exit codes:
  0   done: run/watch promoted the student, or changed nothing because the champion already
      has these weights (or nothing changed since it); monitor found no drift; monitor
      --redistill: nothing to act on (no drift, or drift seen that no configured trigger
      counts, drift.trigger_on) or it redistilled and promoted the student
  1   failed: a step failed (its error is shown), the teacher was no better than the majority
      label, a promotion was rejected, the registry was unreachable, or any unexpected error
  2   bad input: a missing or malformed file, config, name or image, a forged gate report
  3   run/watch: the gate refused the student (champion unchanged); monitor: drift detected;
      monitor --redistill: a trigger fired but the redistillation was skipped (cooldown or
      budget) or the redistilled student was refused, so the champion still drifts
  75  preempted (SIGTERM): a checkpoint was written; rerun the same command to resume"""

EPILOG = ("All state (MLflow registry, DVC remote, teacher cache, pipeline root, reports) lives under --home."
          "\n\n" + EXIT_CODES)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose but keeps indented blocks (the exit-code table) as written; appends each option's
    default to its help unless the help already says it."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            if "\n  " in block:
                blocks.append("\n".join(indent + line for line in block.splitlines()))
            else:
                blocks.append(textwrap.fill(" ".join(block.split()), width, initial_indent=indent,
                                            subsequent_indent=indent))
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.required or not action.option_strings
                or action.default in (None, False, [], argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The CLI's parser; its subcommands' parsers are of this class too (argparse's default)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("distillops")
    except PackageNotFoundError:
        return "unknown (not installed)"


def run_exit_code(summary: dict) -> int:
    """A distillation run's outcome: 0 promoted or nothing to change, 3 the gate refused the student."""
    return EXIT_OK if summary["gate"]["passed"] else EXIT_ATTENTION


def monitor_exit_code(verdict: dict) -> int:
    """The drift monitor's outcome: 0 no drift, 3 drift detected."""
    return EXIT_ATTENTION if verdict["drifted"] else EXIT_OK


def loop_exit_code(loop: dict) -> int:
    """`monitor --redistill`: 0 nothing to act on (no drift, or drift seen that no trigger counts:
    action none), or the redistilled student was promoted (the champion is current again); 3 a
    trigger fired but was skipped (cooldown, budget, gathering), or the redistilled student was not promoted."""
    action = loop.get("action", "redistill" if loop["drifted"] else "none")
    if action == "none":
        return EXIT_OK
    if action != "redistill":
        return EXIT_ATTENTION
    # promote never caches, so its report is there when it ran; a cached gate's may not be.
    promoted = (loop.get("promotion") or {}).get("action") in ("register", "alias_existing", "noop")
    return EXIT_OK if promoted or loop.get("gate_passed") is True else EXIT_ATTENTION


def add_common(p: argparse.ArgumentParser, config: bool = True, home: bool = True) -> None:
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show every library's logs and each step's full output (default: one line per step, "
                   "the result, and the output of a step that failed)")
    if home:
        p.add_argument("--home", help="state directory (default: $DISTILLOPS_HOME or ./.distillops)")
    if config:
        p.add_argument("--config", help="YAML config file with any subset of params.yaml's keys (default: the "
                       "embedded defaults, those of params.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config value, e.g. --set distill.epochs=2 (repeatable; default: none)")


def config_of(args):
    """The command's config: defaults, --config, --set; validated (loss keys and builders included)."""
    from pipelines.parameters import resolve_config

    return resolve_config(args.config, args.overrides)


def home_of(args):
    from components.common.home import Home

    return Home.resolve(args.home).ensure()


@contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """kfp.local streams task logs to stdout; with --json, stdout must carry the JSON alone."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
