"""`distillops run` as CI sees it, one real run with tiny models: the gate refuses the student, the
command exits 3 (not 0), says one line per step on stderr and names the HTML gate report."""

import pytest
import yaml
from fakes import make_rows, write_jsonl

from pipelines.cli import main

pytestmark = pytest.mark.slow

OVERRIDES = {
    "student": {"shape": "manual", "layers": [0, 2]},
    "distill": {"epochs": 1, "max_length": 32},
    # an accuracy floor above 1 cannot be met: the gate refuses whatever the tiny student does
    "gate": {"min_speedup": 0.0, "min_accuracy_retention": 0.0, "min_accuracy": 1.01, "latency_samples": 2,
             "throughput_batches": 1, "quantized_teacher": False},
}


def test_a_refused_run_exits_3_with_one_line_per_step(tmp_path, tiny_teacher, home, capsys):
    data = write_jsonl(make_rows(120), tmp_path / "data.jsonl")
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump(OVERRIDES))

    code = main(["run", "--home", str(home), "--data", str(data), "--teacher", str(tiny_teacher),
                 "--config", str(config)])
    out, err = capsys.readouterr()

    assert code == 3, (out, err)
    assert "gate             FAILED" in out and "required >= 1.01" in out
    assert "promotion        skipped (gate failed)" in out
    html = next(line.split()[2] for line in out.splitlines() if line.startswith("gate report"))
    assert html.endswith(".html") and "data:image/png;base64," in open(html).read()
    # stderr: one line per step, nothing else (no executor_input dumps, library warnings or tables)
    steps = [line.split()[:2] for line in err.splitlines()]
    assert steps == [["version_data", "done"], ["plan_teacher_shards", "done"], ["teacher_shard_worker", "done"],
                     ["cache_teacher_outputs", "done"], ["train_student", "done"], ["benchmark_gate", "done"],
                     ["record_refusal", "done"]], err
    assert "executor_input" in (home / "logs" / "last-run.log").read_text()  # the detail is kept there
