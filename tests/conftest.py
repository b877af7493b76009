import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from fakes import make_rows, make_tiny_teacher, write_jsonl  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh distillops home; MLflow/DVC env pointing elsewhere must not leak in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DISTILLOPS_DVC_REMOTE", raising=False)
    h = tmp_path / "home"
    monkeypatch.setenv("DISTILLOPS_HOME", str(h))
    return h


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(make_rows(120), tmp_path / "data.jsonl")


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher") / "model")
