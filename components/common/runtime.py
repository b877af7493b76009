"""Process setup every step runs first: no model hub at run time, quiet advisories, all CPU cores.

Called explicitly (by each step's runner and the CLI), never as a side effect of an import.
"""

from __future__ import annotations

import os
import sys

# What the CLI sets, unless already set, for a run without --verbose: the libraries' advisories,
# info logs and progress bars, in this process and in every kfp.local task it starts (tasks inherit
# the environment). Errors stay visible: tracebacks and error logs are not affected.
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",  # e.g. the LOAD REPORT table of a freshly initialised head
    "MLFLOW_LOGGING_LEVEL": "ERROR",  # e.g. "the model card could not be retrieved from the hub"
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" / "Writing model shards"
    "PYTHONWARNINGS": "ignore",  # tasks' DeprecationWarnings and the like (-v shows them)
}


def progress_bars_enabled() -> bool:
    """tqdm bars draw only on a terminal (a log file or a kfp.local task's pipe gets none), and
    never with DISTILLOPS_PROGRESS=0."""
    return os.environ.get("DISTILLOPS_PROGRESS", "1") != "0" and sys.stderr.isatty()


def offline_environment() -> None:
    # No step may reach a model hub at run time; DVC sends no analytics.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # No MLflow flavor may unpickle anything (models are checked by registry.check_model_artifact too).
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"


def prepare_process() -> None:
    offline_environment()
    set_threads()


def set_threads() -> None:
    import torch

    # OMP_NUM_THREADS when set: a pod's CPU request (or a worker sharing a machine with others) is
    # what the process should use; os.cpu_count() is the whole node's.
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else max(1, os.cpu_count() or 1))
