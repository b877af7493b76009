"""The quickstart files: the sample dataset and the sample production batch, which has drifted from
it by the monitor's own measure (Evidently on the text descriptors), while a fresh sample of the
dataset's own distribution has not."""

import json

from components.monitor_drift.core import DriftPolicy, decide_drift, text_descriptors
from pipelines.cli import main
from pipelines.quickstart import generate, generate_production


def _descriptor_verdict(reference: list[str], production: list[str]):
    from components.monitor_drift.evidently_report import build_drift_report

    _, columns, _ = build_drift_report(text_descriptors(reference), text_descriptors(production), None,
                                       DriftPolicy())
    return decide_drift(columns, None, DriftPolicy(), len(reference), len(production))


def test_production_batch_is_deterministic_unlabelled_and_disjoint_from_the_data():
    batch = generate_production()
    assert batch == generate_production() and len(batch) == 300
    assert all(set(r) == {"text"} and r["text"] for r in batch)
    assert not {r["text"] for r in batch} & {r["text"] for r in generate()}


def test_production_batch_drifts_and_a_fresh_sample_of_the_data_does_not():
    reference = [r["text"] for r in generate()]
    drifted = _descriptor_verdict(reference, [r["text"] for r in generate_production()])
    assert drifted.drifted, drifted.reasons
    same = _descriptor_verdict(reference, [r["text"] for r in generate(300, seed=99)])
    assert not same.drifted, same.reasons


def test_quickstart_command_writes_both_files_once(tmp_path, capsys):
    data, batch = tmp_path / "d" / "tickets.jsonl", tmp_path / "p" / "batch.jsonl"
    assert main(["quickstart", "--home", str(tmp_path / "home"), "--data", str(data),
                 "--production-batch", str(batch)]) == 0
    out = capsys.readouterr().out
    assert f"--production {batch}" in out
    rows = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    assert rows == generate_production() and len(data.read_text().splitlines()) == 800
    batch.write_text('{"text": "kept"}\n')
    assert main(["quickstart", "--home", str(tmp_path / "home"), "--data", str(data),
                 "--production-batch", str(batch)]) == 0
    assert batch.read_text() == '{"text": "kept"}\n'
