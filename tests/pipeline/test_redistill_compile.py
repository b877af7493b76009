"""The closed drift loop compiles to IR: monitor_drift, then under the drift condition
prepare_redistill and the distillation DAG nested as a sub-DAG (with its own gate condition)."""

import yaml

from pipelines.cli import main
from pipelines.compile import compile_redistill


def test_redistill_ir_nests_the_distillation_dag(tmp_path):
    spec = next(yaml.safe_load_all(compile_redistill(tmp_path).read_text()))  # then the platform spec
    assert set(spec["root"]["dag"]["tasks"]) == {"monitor-drift", "condition-1"}
    drifted = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(drifted) == {"prepare-redistill", "distillops-distill"}
    nested = spec["components"]["comp-distillops-distill"]["dag"]["tasks"]
    assert {"version-data", "cache-teacher-outputs", "train-student", "benchmark-gate"} <= set(nested)
    trigger = drifted["distillops-distill"]["inputs"]["parameters"]["trigger"]
    assert trigger["taskOutputParameter"] == {"outputParameterKey": "trigger", "producerTask": "prepare-redistill"}


def test_compile_command_writes_the_loop_too(tmp_path, capsys):
    assert main(["compile", "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "drift_redistill_pipeline.yaml").is_file()
