"""What a user gets with the defaults: `distillops teacher` then `distillops run`, nothing overridden.

Runs the real pipeline (kfp.local, MLflow, DVC) on a labelled dataset folder (train.jsonl +
test.jsonl, e.g. ../shared/datasets/trec): the two files are joined into one data file, which the
pipeline splits by hash like any user's data. One teacher is prepared (its learning-rate sweep
judged on validation), then the student is distilled once per seed (distill.seed); each run's
gate report gives the teacher's and the student's test accuracy, the speed-up and the parameters.

    python -m benchmarks.pipeline_defaults --data ../shared/datasets/trec --seeds 0 1 2

Prints one JSON object: per seed and mean / standard deviation over seeds, with the gate's speed-up
over the int8-quantized teacher and the int8 student's retention where the gate measured them. With
more than one seed, each seed's student is registered under its own name (`<name>-seed<N>`), so no
seed's gate compares it with another seed's promoted champion and the verdicts stay independent.

Resumable: with --home, every finished piece is saved under <home>/pipeline_defaults/ (the teacher's
result, and each (variant, seed) run's, keyed by the overrides) and a rerun with the same --home and
arguments skips it, so a long benchmark stopped midway (a shared machine, a session's end) goes on
where it stopped instead of starting over.

With --baselines, each seed also trains two labels-only students through the same pipeline: the
same student shape with distill.alpha=0, distill.losses={} (cross-entropy on the labels alone) and
no augmentation, started (a) from the fine-tuned teacher's layers (student.init_weights=teacher) and
(b) from the pretrained, not fine-tuned, base model's (student.init_weights=pretrained). Each is
registered under its own name, so neither can become the distilled student's champion. The JSON
then carries per-seed and mean / standard deviation test accuracy of all three and
`distillation_beats`: whether the distilled mean exceeds each baseline's mean.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def joined_data(folder: Path, out: Path, train_rows: int, seed: int = 0, test_file: str = "test.jsonl") -> Path:
    """train.jsonl (a seeded subset of at most train_rows) and test_file joined into one data file."""
    for name in ("train.jsonl", test_file):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: no such file (--data needs train.jsonl and {test_file})")
    train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines() if line.strip()]
    test = [json.loads(line) for line in (folder / test_file).read_text().splitlines() if line.strip()]
    if train_rows and len(train) > train_rows:
        train = random.Random(seed).sample(train, train_rows)
    rows = [{"text": r["text"], "label": str(r["label"])} for r in train + test]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def _done(home, name: str, overrides: list[str]) -> Path:
    """Where a finished piece's result is kept: named by the piece and a digest of its overrides."""
    import hashlib

    digest = hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:12]
    folder = home.root / "pipeline_defaults"
    folder.mkdir(exist_ok=True)
    return folder / f"{name}-{digest}.json"


def _resumable(home, name: str, overrides: list[str], compute) -> dict:
    """`compute()`'s result, or the one an earlier run of the same piece saved (atomically)."""
    path = _done(home, name, overrides)
    if path.is_file():
        result = json.loads(path.read_text())
        print(f"{name}: reusing the result saved in {path}", file=sys.stderr)
        return result
    result = compute()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(path)
    return result


def _run_seed(home, data: Path, overrides: list[str], seed: int, own_name: bool = False) -> dict:
    return _resumable(home, f"run-seed{seed}", overrides,
                      lambda: _run_seed_now(home, data, overrides, seed, own_name))


def _run_seed_now(home, data: Path, overrides: list[str], seed: int, own_name: bool = False) -> dict:
    from pipelines.local import run_distill
    from pipelines.parameters import resolve_config

    cfg = resolve_config(None, [*overrides, f"distill.seed={seed}"])
    if own_name:  # its own registered model, so that no seed is gated against another seed's champion
        cfg = resolve_config(None, [*overrides, f"distill.seed={seed}",
                                    f"student.registered_name={cfg.student.registered_name}-seed{seed}"])
    summary = run_distill(home, cfg, str(data))
    report = json.loads(Path(summary["reports"]["gate_markdown"]).with_suffix(".json").read_text())
    s, t = report["models"]["student"], report["models"]["teacher"]
    checks = {c["name"]: c["value"] for c in report["checks"]}
    run = {"seed": seed, "teacher_accuracy": t["accuracy"], "student_accuracy": s["accuracy"],
           "retention": s["accuracy"] / t["accuracy"], "speedup": summary["gate"]["checks"]["speedup"],
           "parameter_fraction": s["parameters"] / t["parameters"], "student_parameters": s["parameters"],
           "teacher_parameters": t["parameters"], "student_shape": report["context"].get("student_shape"),
           "speedup_over_int8_teacher": checks.get("student_speedup_over_int8_teacher"),
           "int8_student_retention": checks.get("student_int8_accuracy_retention"),
           "registered_name": cfg.student.registered_name,
           "gate_passed": report["passed"], "gate_reasons": report["reasons"], "seconds": summary["seconds_total"]}
    print(json.dumps(run), file=sys.stderr)
    return run


# Labels-only baselines: the overrides that turn the distilled student into each (after the user's).
LABELS_ONLY = ["distill.alpha=0", "distill.losses={}", "distill.augment_copies=0"]
BASELINES = {
    "baseline_finetuned_init": [*LABELS_ONLY, "student.init_weights=teacher",
                                "student.registered_name=distillops-baseline-finetuned-init"],
    "baseline_pretrained_init": [*LABELS_ONLY, "student.init_weights=pretrained",
                                 "student.registered_name=distillops-baseline-pretrained-init"],
}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def baseline_summary(runs: dict[str, list[dict]]) -> dict:
    """Per-seed and mean / sd test accuracy of the distilled student and each baseline, and whether
    distillation's mean beats each baseline's."""
    out = {}
    for name, rows in runs.items():
        accuracies = [r["student_accuracy"] for r in rows]
        out[name] = {"per_seed": {str(r["seed"]): r["student_accuracy"] for r in rows}, "accuracy": spread(accuracies)}
    distilled = out["distilled"]["accuracy"]["mean"]
    out["distillation_beats"] = {name.removeprefix("baseline_"): distilled > out[name]["accuracy"]["mean"]
                                 for name in BASELINES}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train.jsonl and test.jsonl")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="distill.seed of each student run")
    p.add_argument("--train-rows", type=int, default=20000, help="seeded subset of train.jsonl (0 = all)")
    p.add_argument("--test-file", default="test.jsonl",
                   help="the folder's test file to join (ag_news: test_description_only.jsonl, which matches its "
                        "description-only train.jsonl; test.jsonl there carries titles too)")
    p.add_argument("--home", help="distillops home (default: a new temporary directory)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override (default: none)")
    p.add_argument("--reuse-teacher", action="store_true",
                   help="use the teacher already registered in --home instead of preparing one")
    p.add_argument("--baselines", action="store_true",
                   help="per seed, also train the two labels-only baselines (fine-tuned and pretrained init)")
    args = p.parse_args(argv)

    from components.common.home import Home
    from components.common.runtime import offline_environment
    from components.teacher.runner import prepare_teacher
    from pipelines.cli_common import stdout_to_stderr
    from pipelines.parameters import resolve_config

    offline_environment()
    home = Home.resolve(args.home or tempfile.mkdtemp(prefix="distillops-bench-")).ensure()
    data = joined_data(Path(args.data), home.root / "data.jsonl", args.train_rows, test_file=args.test_file)
    started = time.time()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    teacher = {"reused": True} if args.reuse_teacher else _resumable(
        home, "teacher", [args.data, str(args.train_rows), *args.overrides]
        + ([args.test_file] if args.test_file != "test.jsonl" else []),
        lambda: prepare_teacher(home, str(data), resolve_config(None, args.overrides)))
    runs, baselines = [], {name: [] for name in BASELINES}
    with stdout_to_stderr(True):  # kfp.local streams task logs to stdout; stdout carries the JSON alone
        own_name = len(args.seeds) > 1
        for seed in args.seeds:
            runs.append(_run_seed(home, data, args.overrides, seed, own_name=own_name))
            for name, extra in BASELINES.items() if args.baselines else ():
                baselines[name].append({"variant": name, **_run_seed(home, data, [*args.overrides, *extra], seed,
                                                                     own_name=own_name)})

    result = {"data": str(args.data), "rows": sum(1 for _ in data.open()), "train_rows_cap": args.train_rows,
              "overrides": args.overrides, "teacher": teacher, "runs": runs,
              **{k: spread([r[k] for r in runs]) for k in ("retention", "speedup", "parameter_fraction",
                                                           "student_accuracy")}}
    int8 = [r["speedup_over_int8_teacher"] for r in runs if r.get("speedup_over_int8_teacher") is not None]
    if int8:
        result["speedup_over_int8_teacher"] = spread(int8)
    if args.baselines:
        result["baseline_runs"] = baselines
        result["baselines"] = {"overrides": BASELINES, **baseline_summary({"distilled": runs, **baselines})}
    print(json.dumps({**result, "seconds_total": round(time.time() - started, 1)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
