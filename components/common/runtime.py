"""Process setup every step runs first: no model hub at run time, quiet advisories, all CPU cores.

Called explicitly (by each step's runner and the CLI), never as a side effect of an import.
"""

from __future__ import annotations

import os


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

    torch.set_num_threads(max(1, os.cpu_count() or 1))
