"""Does a distilled student keep its accuracy when quantized to dynamic int8?

For every student the pipeline trained in a distillops home (kfp.local's pipeline root), this loads
the student, quantizes it the way the gate does (`components.distillation.quantize`), and scores
the fp32 and the int8 student on the same gold-labelled test rows of the snapshot that run used.
The teacher's test accuracy is the one that run's gate report measured. Only what the gate's
`gate.quantized_student` would measure, for students already trained (no training here):

    python -m benchmarks.int8_students --home /work/i16/h-t3 --home /work/i16/h-b77t3

Prints one JSON object: per student, its seed, init, fp32 and int8 accuracy and retention, and
the rows where the int8 student's prediction differs from the fp32 one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _students(home: Path):
    """(run folder, student folder, lineage) of each trained student under the home's pipeline root."""
    for student in sorted(home.glob("pipeline-root/*/train-student/student")):
        meta = student / "distillops.json"
        if meta.is_file():
            yield student.parent.parent, student, json.loads(meta.read_text())


def _teacher_accuracy(run: Path) -> float | None:
    report = run / "benchmark-gate" / "gate_report"
    if not report.is_file():
        return None
    return json.loads(report.read_text())["models"]["teacher"]["accuracy"]


def measure(home: Path) -> list[dict]:
    from benchmarks.homes import snapshots
    from components.benchmark_gate.runner import _predict
    from components.common.dataset import read_snapshot
    from components.common.modeling import load_classifier
    from components.distillation.quantize import quantize_dynamic_int8

    found = snapshots(home)
    rows = []
    for run, student, lineage in _students(home):
        teacher_accuracy = _teacher_accuracy(run)
        if teacher_accuracy is None:
            continue  # the gate never ran (a stopped run): no teacher figure to compare with
        snapshot = read_snapshot(found[lineage["data_version"]])
        test_rows = snapshot.indices("test")
        test = [i for i, gold in zip(test_rows, snapshot.is_gold(test_rows), strict=True) if gold]
        texts = [snapshot.texts[i] for i in test]
        model, tokenizer = load_classifier(student)
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        gold = np.array([names.index(snapshot.labels[i]) for i in test])
        max_length = lineage["config"]["distill"]["max_length"]
        _, fp32 = _predict(model, tokenizer, texts, max_length, names)
        _, int8 = _predict(quantize_dynamic_int8(model), tokenizer, texts, max_length, names)
        acc32, acc8 = float((fp32 == gold).mean()), float((int8 == gold).mean())
        rows.append({"run": run.name, "seed": lineage["config"]["distill"]["seed"],
                     "init_weights": lineage.get("init_weights"), "augment_copies": (lineage.get("augment") or {}).get("copies", 0),
                     "alpha": lineage["config"]["distill"]["alpha"], "parameters": lineage.get("parameters"),
                     "test_rows": len(test), "teacher_accuracy": teacher_accuracy,
                     "fp32_accuracy": round(acc32, 6), "int8_accuracy": round(acc8, 6),
                     "fp32_retention": round(acc32 / teacher_accuracy, 6),
                     "int8_retention": round(acc8 / teacher_accuracy, 6),
                     "rows_changed": int((fp32 != int8).sum())})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", action="append", required=True, help="a distillops home (repeatable)")
    args = p.parse_args(argv)
    from components.common.runtime import offline_environment

    offline_environment()
    print(json.dumps({"homes": {h: measure(Path(h)) for h in args.home}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
