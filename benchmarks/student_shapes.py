"""Which student shapes fit the budget? Parameter ratio and CPU speed-up of candidate students.

Every candidate is built from the MiniLM teacher the way benchmarks.quality builds it (teacher
layers, optional feed-forward pruning, vocabulary trimmed to the dataset's training texts and the
position table to --max-length), then timed side by side with the teacher on the dataset's test
texts: calls alternate between all models and each figure is a median, so load on a shared machine
hits them alike. Weights are not trained here; speed and size do not depend on them.

    python -m benchmarks.student_shapes --data ../shared/datasets/trec \\
        --shapes "0,5" "0,5:768" "0,5:512" "5" "0,3,5:768"

A shape is "LAYERS[:FFN]": comma-separated teacher layers, then optionally the pruned feed-forward
width. Prints one JSON. The dynamic-int8 teacher (``quantize.quantize_dynamic_int8``, what the gate
times as ``teacher_int8``) is timed in the same alternation, and each shape gets
``speedup_over_int8_teacher_batch32``: the number that says whether distilling beats quantizing.
With --int8-students, each shape's int8 version too (``<shape> int8``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmarks.quality import read_jsonl
from components.common.modeling import default_base_model
from components.common.runtime import set_threads
from components.distillation.measure import count_parameters, measure_speeds
from components.distillation.shaping import Shape, build_shaped


def parse_shape(spec: str, intermediate_size: int) -> Shape:
    """A shape written LAYERS[:FFN], e.g. "0,3,5:192" (no FFN: the teacher's full width)."""
    layers, _, ffn = spec.partition(":")
    return Shape(tuple(int(i) for i in layers.split(",")), int(ffn or intermediate_size))


def build(teacher, tokenizer, texts, shape: str, budget_fraction: float, max_length: int):
    """The student step's own construction (shaping.build_shaped) of the shape written `shape`."""
    return build_shaped(teacher, tokenizer, parse_shape(shape, teacher.config.intermediate_size), texts,
                        max_length, int(budget_fraction * count_parameters(teacher)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train.jsonl and test.jsonl")
    p.add_argument("--shapes", nargs="+", default=["0,5", "0,5:768", "5"], help="LAYERS[:FFN] per candidate")
    p.add_argument("--param-budget", type=float, default=0.25)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--latency-samples", type=int, default=96)
    p.add_argument("--throughput-batches", type=int, default=20)
    p.add_argument("--int8-students", action="store_true", help="also time each shape quantized to int8")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    set_threads()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tr_x, tr_y = read_jsonl(Path(args.data) / "train.jsonl")
    te_x, _ = read_jsonl(Path(args.data) / "test.jsonl")
    base = default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(base)
    teacher = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(set(tr_y)))
    from components.distillation.quantize import quantize_dynamic_int8

    models = {"teacher": (teacher, tokenizer, args.max_length),
              "teacher_int8": (quantize_dynamic_int8(teacher), tokenizer, args.max_length)}
    report = {"dataset": args.data, "teacher_parameters": count_parameters(teacher), "shapes": {}}
    for shape in args.shapes:
        student, s_tok = build(teacher, tokenizer, tr_x, shape, args.param_budget, args.max_length)
        models[shape] = (student, s_tok, args.max_length)
        report["shapes"][shape] = {"parameters": count_parameters(student),
                                   "parameter_ratio": count_parameters(student) / count_parameters(teacher),
                                   "vocab_size": student.config.vocab_size}
        if args.int8_students:  # the same weights stored as int8: same parameter count
            models[f"{shape} int8"] = (quantize_dynamic_int8(student), s_tok, args.max_length)
            report["shapes"][f"{shape} int8"] = {**report["shapes"][shape], "quantization": "dynamic int8"}
    speeds = measure_speeds(models, te_x, latency_samples=args.latency_samples,
                            throughput_batches=args.throughput_batches)
    t, q = speeds["teacher"], speeds["teacher_int8"]
    report["teacher_speed"], report["teacher_int8_speed"] = t, q
    report["teacher_int8_speedup_batch32"] = q["throughput_rows_per_s"] / t["throughput_rows_per_s"]
    for shape, row in report["shapes"].items():
        s = speeds[shape]
        row["speedup_over_int8_teacher_batch32"] = s["throughput_rows_per_s"] / q["throughput_rows_per_s"]
        row.update(s, latency_speedup=t["latency_p50_ms"] / s["latency_p50_ms"],
                   throughput_speedup_batch32=s["throughput_rows_per_s"] / t["throughput_rows_per_s"],
                   throughput_speedup_batch32_cpu=s["throughput_cpu_rows_per_s"] / t["throughput_cpu_rows_per_s"])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
