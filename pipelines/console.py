"""What a `distillops` command shows on the terminal: by default one line per step (its status and
time) on stderr and the result on stdout; with -v/--verbose every library's logs and each kfp.local
task's streamed output as well.

Where the noise came from, and what quiets it by default:

- kfp.local prints each task's whole output (its executor dumps the full ``executor_input`` JSON
  first) and its own INFO lines through ``print`` / the root logger on ``sys.stdout``:
  :func:`task_output` takes ``sys.stdout`` for the run, keeps each task's lines in
  ``<home>/logs/last-run.log``, prints one line per task, and prints a failed task's whole output
  (less the ``executor_input`` dump) so its traceback stays visible.
- kfp.local warns on every task about its base image (not a python image): filtered where
  kfp.local is initialised (``pipelines/local.py``).
- transformers (``LOAD REPORT`` tables, weight-loading bars), MLflow (INFO lines, model-card and
  licence warnings) and Python warnings, here and in the tasks: ``QUIET_ENVIRONMENT`` in
  ``components/common/runtime.py``, set by :func:`output` and inherited by the tasks.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from components.common.runtime import QUIET_ENVIRONMENT

# Messages for the user in default mode too (a long step about to start, say); others log at INFO
# only with --verbose.
PROGRESS_LOGGER = "distillops.progress"
progress = logging.getLogger(PROGRESS_LOGGER)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own log messages (kfp 2.17, pinned), which tell where each task starts and ends.
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHE_HIT = re.compile(r"Task (\S+) cache hit")
_RETRYING = re.compile(r"Task (\S+) failed \(attempt (\d+)/(\d+)\)\. Retrying in ([\d.]+)s")
_KFP_OWN_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ - \w+ - ")  # kfp.local's lines around a task's output
_KFP_INDENT = "    "  # kfp.local indents a task's streamed lines by four spaces


class _ShowInDefaultMode(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(PROGRESS_LOGGER)


@contextmanager
def output(verbose: bool) -> Iterator[None]:
    """One command's logging setup; everything it changes is restored afterwards."""
    saved_env = {k: os.environ.get(k) for k in QUIET_ENVIRONMENT}
    root = logging.getLogger()
    saved_level = root.level
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_DefaultFormatter())
        handler.addFilter(_ShowInDefaultMode())
        for key, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
    libraries = _quiet_imported_libraries() if not verbose else {}
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # INFO records are made (the task tracker reads kfp's); the handler filters
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, level in libraries.items():
            logging.getLogger(name).setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _DefaultFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith(PROGRESS_LOGGER):
            return record.getMessage()
        return f"{record.levelname.lower()}: {record.name}: {super().format(record)}"


def _quiet_imported_libraries() -> dict[str, int]:
    """Libraries imported before the environment was set (in-process callers, tests) read their
    verbosity at import: set their loggers' levels directly. Returns the levels to restore."""
    levels = {}
    for name, level in (("mlflow", logging.ERROR), ("transformers", logging.ERROR), ("alembic", logging.WARNING)):
        if name in sys.modules:
            logger = logging.getLogger(name)
            levels[name] = logger.level
            logger.setLevel(level)
    return levels


def plain(text: str) -> str:
    """kfp's messages without their terminal colours."""
    return _ANSI.sub("", text)


def step_name(task: str) -> str:
    """kfp's task name (`cache-teacher-outputs`) as the step's (`cache_teacher_outputs`)."""
    return task.replace("-", "_")


def step_line(step: str, status: str, seconds: float | None = None) -> str:
    took = f"{seconds:7.1f}s" if seconds is not None else ""
    return f"  {step:26s} {status:8s}{took}".rstrip()


def without_executor_input(lines: list[str]) -> list[str]:
    """A task's output less the kfp executor's dump of its whole executor_input (an indented JSON
    object after 'Got executor_input:'), which is most of it and says nothing the user needs."""
    kept, skipping = [], False
    for line in lines:
        body = line[len(_KFP_INDENT):] if line.startswith(_KFP_INDENT) else line
        if not skipping and "Got executor_input:" in line:
            skipping = True
            continue
        if skipping:
            if body.rstrip() == "}":
                skipping = False
            continue
        kept.append(line)
    return kept if not skipping else lines  # no end found: show everything rather than lose a traceback


class _TaskOutput(io.TextIOBase):
    """Stands in for sys.stdout while kfp.local runs: keeps each task's lines, writes them to the
    log file (and, verbose, to stderr), and says one line per task on stderr."""

    def __init__(self, stderr: TextIO, log: TextIO, verbose: bool):
        self.stderr, self.log, self.verbose = stderr, log, verbose
        self.partial = ""
        self.task_lines: list[str] = []
        self.started: dict[str, float] = {}
        self.failed_output: list[str] = []  # shown once kfp gives up on the task (no retry left)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.verbose:
            self.stderr.write(text)
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        self.task_lines.extend(_ANSI.sub("", line) for line in lines)
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.stderr.flush()

    def task_event(self, message: str, at: float) -> None:
        message = _ANSI.sub("", message)
        if m := _STARTED.search(message):
            self.started[m.group(1)] = at
            self.task_lines = []
        elif m := _FINISHED.search(message):
            task, status = m.groups()
            seconds = at - self.started.pop(task, at)
            failed = status != "SUCCESS"
            self._say(step_line(step_name(task), "FAILED" if failed else "done", seconds))
            if failed and not self.verbose:  # verbose: already shown as it streamed
                self.failed_output = [line for line in without_executor_input(self.task_lines)
                                      if not _KFP_OWN_LINE.match(line)]
        elif m := _RETRYING.search(message):
            task, attempt, attempts, delay = m.groups()
            self.failed_output = []
            self._say(f"  {'':26s} retrying in {float(delay):.0f}s (attempt {int(attempt) + 1} of {attempts}; "
                      "-v shows each attempt's output)")
        elif m := _CACHE_HIT.search(message):
            self._say(step_line(step_name(m.group(1)), "cached"))

    def show_failure(self) -> None:
        """The output of the task that failed for good: its error and traceback."""
        if self.failed_output:
            self.stderr.write("".join(f"  | {line}\n" for line in self.failed_output))
            self.stderr.flush()
            self.failed_output = []

    def _say(self, line: str) -> None:
        self.log.write(line + "\n")
        self.stderr.write(line + "\n")
        self.stderr.flush()


class _KfpTaskEvents(logging.Filter):
    """On the root logger (kfp.local logs through it, swapping its handlers per task): hands
    kfp's task start / finish / cache-hit messages to the task output; filters nothing out."""

    def __init__(self, out: _TaskOutput):
        super().__init__()
        self.out = out

    def filter(self, record: logging.LogRecord) -> bool:
        self.out.task_event(record.getMessage(), record.created)
        return True


@contextmanager
def task_output(log_path: Path, verbose: bool) -> Iterator[Path]:
    """While kfp.local runs pipelines in the block: one line per task on stderr, each task's output
    in `log_path` (overwritten per command), a failed task's output on stderr."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    with open(log_path, "w") as log:
        out = _TaskOutput(sys.stderr, log, verbose)
        events = _KfpTaskEvents(out)
        saved_stdout, sys.stdout = sys.stdout, out
        root.addFilter(events)
        started = time.time()
        try:
            yield log_path
        except RuntimeError as exc:
            out.show_failure()
            if type(exc) is not RuntimeError:  # a refusal or the like, raised here: not a task's failure
                raise
            raise RuntimeError(f"{plain(str(exc))} (every task's output: {log_path})") from exc
        finally:
            root.removeFilter(events)
            sys.stdout = saved_stdout
            out.show_failure()  # a failure kfp did not raise
            if out.partial:
                out.write("\n")
            log.write(f"# {time.time() - started:.1f}s\n")
