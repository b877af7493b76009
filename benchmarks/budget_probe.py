"""What the student step's budget probe chooses for a teacher and a dataset, timed on held-out texts
(what the step does) and on training texts (what it did before), side by side.

The texts come from the snapshot a pipeline run in `--home` versioned (its hash split), so the probe
sees exactly what the train step would. No training: the probe builds each candidate shape from the
teacher, times it beside the teacher and picks the most capable one within both budgets.

    python -m benchmarks.budget_probe --home /work/i16/h-t3 --teacher /work/i16/teacher-trec

Prints one JSON object: per text source, the chosen shape, its speed-up and every candidate's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _snapshot(home: Path):
    from benchmarks.homes import snapshots
    from components.common.dataset import read_snapshot

    found = snapshots(home)
    if len(found) != 1:
        raise SystemExit(f"{home}: expected the snapshot of one data version under pipeline-root/, found "
                         f"{len(found)} (run the pipeline once, on one dataset)")
    return read_snapshot(next(iter(found.values())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", required=True, help="a distillops home a pipeline run versioned data in")
    p.add_argument("--teacher", required=True, help="the teacher model directory")
    p.add_argument("--max-parameter-fraction", type=float, default=0.25)
    p.add_argument("--min-speedup", type=float, default=3.0)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--sources", nargs="+", default=["held_out", "training"], choices=["held_out", "training"])
    p.add_argument("--extra-shapes", nargs="*", default=[], metavar="LAYERS:FFN",
                   help="shapes outside the candidate list (e.g. 0,3,5:192), built the same way and timed on "
                        "the held-out texts beside the teacher and the probe's pick")
    p.add_argument("--repeats", type=int, default=2, help="timings of the extra shapes (each printed)")
    args = p.parse_args(argv)

    from benchmarks.student_shapes import parse_shape
    from components.common.modeling import load_classifier
    from components.common.runtime import offline_environment
    from components.distillation.measure import count_parameters, measure_speeds
    from components.distillation.shaping import build_shaped, choose_shape
    from components.train_student.runner import PROBE_ROWS, probe_texts

    offline_environment()
    snapshot = _snapshot(Path(args.home))
    train = [snapshot.texts[i] for i in snapshot.indices("train")]
    held_out = [snapshot.texts[i] for i in snapshot.indices("validation")]
    teacher, tokenizer = load_classifier(args.teacher)
    texts = {"held_out": probe_texts(train, held_out), "training": (train[:PROBE_ROWS], "training texts")}
    report = {"home": args.home, "teacher": args.teacher, "budget": {
        "max_parameter_fraction": args.max_parameter_fraction, "min_speedup": args.min_speedup}, "choices": {}}
    for source in args.sources:
        timed, what = texts[source]
        choice = choose_shape(teacher, tokenizer, train, timed, args.max_length, args.max_parameter_fraction,
                              args.min_speedup)
        report["choices"][source] = {"timed_on": what, **choice.to_dict()}
        print(f"{source}: {choice.shape.label()} at {choice.speedup:.2f}x", file=sys.stderr)
    if args.extra_shapes:
        limit = int(args.max_parameter_fraction * count_parameters(teacher))
        timed, what = texts["held_out"]
        models, extra = {"teacher": (teacher, tokenizer, args.max_length)}, {}
        for spec in args.extra_shapes:
            shape = parse_shape(spec, teacher.config.intermediate_size)
            student, s_tok = build_shaped(teacher, tokenizer, shape, train, args.max_length, limit)
            models[shape.label()] = (student, s_tok, args.max_length)
            extra[shape.label()] = {"parameter_fraction": round(count_parameters(student) / count_parameters(teacher), 4),
                                    "vocab_size": student.config.vocab_size, "speedups": []}
        for _ in range(args.repeats):  # the same settings as the probe's timing
            speeds = measure_speeds(models, timed, 4, 8)
            for label, row in extra.items():
                row["speedups"].append(round(speeds[label]["throughput_rows_per_s"]
                                             / speeds["teacher"]["throughput_rows_per_s"], 3))
        report["extra_shapes"] = {"timed_on": what, "shapes": extra}
        print(json.dumps(extra), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
