"""The pipeline's default recipe, step by step in plain processes, for a GPU machine without the MLOps stack.

benchmarks/pipeline_defaults.py runs the real pipeline (kfp.local, MLflow, DVC): the quality targets
are judged on it. On a CPU machine a dataset the size of ag_news needs hours for its teacher alone;
a GPU machine does it in minutes, but it may have torch and transformers and nothing else. This
makes the library calls the pipeline's steps make, with the same defaults and overrides:

- the same hash split of the same joined data (snapshot_from_config, pipeline_defaults.joined_data);
- the teacher's learning-rate sweep judged on validation, refused if no better than the majority
  label (components.teacher.runner.finetune, check_better_than_majority);
- the teacher's logits on the training rows and on the augmented transfer set, its copies resolved
  and its texts made as cache_teacher_outputs does (transfer.resolve_copies, augment_texts);
- the student shaped to the budget (shaping.build_shaped; factored embeddings by default), trained
  by train_classifier with the distill section's settings (train_student.runner.settings_from);
- the labels-only baselines exactly as `pipeline_defaults --baselines` defines them.

What it leaves out: the registry, DVC, the teacher store, the gate's speed timing and the int8
teacher. The student's shape comes from --shape, a ShapeChoice JSON that `--probe-only` writes on
the machine whose CPU the budget's speed-up is about (a GPU machine's CPU is not the one a student
serves on); parameters and the shape do not depend on the teacher's trained weights, only on its
architecture, the labels and the training texts.

    # where the student will serve: choose the shape (a probe, as the student step runs it)
    python -m benchmarks.accelerated_defaults probe --data ../shared/datasets/ag_news \\
        --test-file test_description_only.jsonl --set data.conflicting_labels=drop --out shape.json
    # on the GPU machine: the teacher once, then each (variant, seed) run in its own process
    python -m benchmarks.accelerated_defaults teacher --data ... --work W --set ...
    python -m benchmarks.accelerated_defaults student --work W --shape shape.json --seed 0 --variant distilled
    python -m benchmarks.accelerated_defaults summary --work W     # one JSON, like pipeline_defaults'
    # back where the student serves: the gate's speed figures (teacher, int8 teacher, student of the shape)
    python -m benchmarks.accelerated_defaults speed --data ... --shape shape.json --set ...

Every stage takes the same --data, --test-file, --train-rows and --set; `teacher` keeps them in W. A
`student` run's own --set values apply on top (an idea tried beside the defaults, under its --name).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("distilled", "baseline_finetuned_init", "baseline_pretrained_init")


def _config(overrides: list[str]):
    from pipelines.parameters import resolve_config

    return resolve_config(None, overrides)


def _snapshot(args, work: Path, cfg):
    from benchmarks.pipeline_defaults import joined_data
    from components.common.dataset import snapshot_from_config

    data = joined_data(Path(args.data), work / "data.jsonl", args.train_rows, test_file=args.test_file)
    snapshot, report = snapshot_from_config(data, cfg.data)
    return snapshot, report


def _load_args(work: Path, args) -> argparse.Namespace:
    """The data arguments the teacher stage kept in the work folder (a later stage reads the same data)."""
    kept = json.loads((work / "arguments.json").read_text())
    for key, value in kept.items():
        setattr(args, key, value)
    return args


def _untrained_teacher(cfg, names: list[str]):
    """The teacher's architecture with the labels' head, untrained: speed and parameter counts do not
    depend on trained weights."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from components.common.modeling import default_base_model

    base = cfg.teacher.base or default_base_model()
    teacher = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    return teacher.eval(), AutoTokenizer.from_pretrained(base)


def speed(args) -> dict:
    """Batch-32 throughput of the teacher, the teacher quantized to dynamic int8 and the student of
    --shape, side by side on this machine's CPU and on the test texts, as the gate times them."""
    import torch

    from components.common.runtime import prepare_process
    from components.distillation.measure import count_parameters, measure_speeds
    from components.distillation.quantize import quantize_dynamic_int8
    from components.distillation.shaping import ShapeChoice, build_shaped
    from components.train_student.runner import budget_parameters

    prepare_process()
    cfg = _config(args.overrides)
    snapshot, _ = _snapshot(args, Path(tempfile.mkdtemp(prefix="accelerated-speed-")), cfg)
    teacher_model, tokenizer = _untrained_teacher(cfg, list(cfg.data.labels) or snapshot.label_names)
    shape = ShapeChoice.from_dict(json.loads(Path(args.shape).read_text()))
    train = [snapshot.texts[i] for i in snapshot.indices("train")]
    test = [snapshot.texts[i] for i in snapshot.indices("test")]
    with torch.inference_mode():
        student_model, s_tokenizer = build_shaped(teacher_model, tokenizer, shape.shape, train, cfg.distill.max_length,
                                                  budget_parameters(teacher_model, cfg.student),
                                                  factorize=cfg.student.factorize_embeddings)
        student_model.eval()
        timed = {"teacher": (teacher_model, tokenizer, cfg.teacher.max_length),
                 "teacher_int8": (quantize_dynamic_int8(teacher_model), tokenizer, cfg.teacher.max_length),
                 "student": (student_model, s_tokenizer, cfg.distill.max_length)}
        speeds = measure_speeds(timed, test, cfg.gate.latency_samples, cfg.gate.throughput_batches)
    rate = {k: v["throughput_rows_per_s"] for k, v in speeds.items()}
    return {"speeds": speeds, "speedup": rate["student"] / rate["teacher"],
            "speedup_over_int8_teacher": rate["student"] / rate["teacher_int8"],
            "int8_teacher_speedup": rate["teacher_int8"] / rate["teacher"],
            "parameter_fraction": count_parameters(student_model) / count_parameters(teacher_model),
            "student_shape": shape.shape.label(), "threads": torch.get_num_threads(), "test_texts": len(test)}


def probe(args) -> dict:
    """The budget's shape for this data, timed on this machine's CPU against an untrained teacher of the
    same architecture and labels (speed and parameters do not depend on trained weights)."""
    import torch

    from components.distillation.shaping import choose_shape
    from components.train_student.runner import probe_texts

    cfg = _config(args.overrides)
    work = Path(tempfile.mkdtemp(prefix="accelerated-probe-"))
    snapshot, _ = _snapshot(args, work, cfg)
    names = list(cfg.data.labels) or snapshot.label_names
    teacher, tokenizer = _untrained_teacher(cfg, names)
    train = [snapshot.texts[i] for i in snapshot.indices("train")]
    timed, what = probe_texts(train, [snapshot.texts[i] for i in snapshot.indices("validation")])
    with torch.inference_mode():
        choice = choose_shape(teacher, tokenizer, train, timed, cfg.distill.max_length,
                              cfg.student.max_parameter_fraction, cfg.student.min_speedup,
                              factorize=cfg.student.factorize_embeddings)
    choice.reason += f"; timed on {what}"
    out = {**choice.to_dict(), "cpus": torch.get_num_threads(), "labels": names}
    Path(args.out).write_text(json.dumps(out, indent=2))
    return out


def teacher(args) -> dict:
    from components.teacher.runner import check_better_than_majority, finetune

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "arguments.json").write_text(json.dumps({k: getattr(args, k) for k in
                                                     ("data", "test_file", "train_rows", "overrides")}))
    cfg = _config(args.overrides)
    snapshot, report = _snapshot(args, work, cfg)
    names = list(cfg.data.labels) or snapshot.label_names
    started = time.time()
    from components.common.modeling import default_base_model

    model, tokenizer, result, test_acc, sweep = finetune(cfg.teacher.base or default_base_model(), snapshot,
                                                         names, cfg)
    floors = check_better_than_majority(snapshot, result, test_acc)
    model.save_pretrained(work / "teacher")
    tokenizer.save_pretrained(work / "teacher")
    chosen = next(e for e in sweep if e["chosen"])
    out = {"test_accuracy": test_acc, "learning_rate": chosen["learning_rate"],
           "validation_accuracy": chosen["best_validation_accuracy"], "learning_rate_sweep": sweep,
           "seconds": round(time.time() - started, 1), "input": report, **floors,
           "rows": {s: len(snapshot.indices(s)) for s in ("train", "validation", "test")}}
    (work / "teacher.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def student(args) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from benchmarks.pipeline_defaults import BASELINES
    from components.common.modeling import predict_logits
    from components.common.paths import safe_name
    from components.distillation.measure import accuracy, count_parameters
    from components.distillation.shaping import ShapeChoice, build_shaped
    from components.distillation.students import load_pretrained, pretrained_model_path
    from components.distillation.trainer import device_for_training, seed_everything
    from components.distillation.transfer import augment_texts, resolve_copies
    from components.train_student.runner import budget_parameters, settings_from

    work = Path(args.work)
    trying = list(args.overrides)  # this run's own --set, after the kept ones and the variant's
    args = _load_args(work, args)
    extra = [] if args.variant == "distilled" else BASELINES[args.variant]
    cfg = _config([*args.overrides, f"distill.seed={args.seed}", *extra, *trying])
    name = safe_name(args.name or args.variant, "--name")  # a path segment: refused before any work
    d = cfg.distill
    # the data the teacher stage joined and kept: split again by the same hash, not joined again
    from components.common.dataset import snapshot_from_config

    snapshot, _ = snapshot_from_config(work / "data.jsonl", cfg.data)
    device = device_for_training()
    teacher_model = AutoModelForSequenceClassification.from_pretrained(work / "teacher").to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(work / "teacher")
    names = [teacher_model.config.id2label[i] for i in range(teacher_model.config.num_labels)]
    label_id = {n: i for i, n in enumerate(names)}
    train_idx, val_idx, test_idx = (snapshot.indices(s) for s in ("train", "validation", "test"))
    texts = [snapshot.texts[i] for i in train_idx]
    labels = [label_id[snapshot.labels[i]] for i in train_idx]
    started = time.time()
    # the teacher's logits, as cache_teacher_outputs computes them (teacher.max_length, teacher.batch_size)
    logits = predict_logits(teacher_model, tokenizer, texts, cfg.teacher.max_length, cfg.teacher.batch_size)
    copies = resolve_copies(d.augment_copies, len(train_idx), d.augment_target_rows)
    augmented = augment_texts(texts, copies, seed=d.seed) if copies else []
    shape = ShapeChoice.from_dict(json.loads(Path(args.shape).read_text()))
    seed_everything(d.seed)
    pretrained = load_pretrained(pretrained_model_path(cfg)) if cfg.student.init_weights == "pretrained" else None
    teacher_model.to("cpu")
    model, s_tokenizer = build_shaped(teacher_model, tokenizer, shape.shape, texts, d.max_length,
                                      budget_parameters(teacher_model, cfg.student), pretrained, d.seed,
                                      factorize=cfg.student.factorize_embeddings)
    if augmented:  # labelled by the teacher, as the student step does
        teacher_model.to(device)
        aug_logits = predict_logits(teacher_model, tokenizer, augmented, cfg.teacher.max_length, cfg.teacher.batch_size)
        texts, labels = texts + augmented, labels + aug_logits.argmax(-1).tolist()
        logits = np.concatenate([logits, aug_logits])
    teacher_model.to("cpu")
    model.to(device)
    from components.distillation.classifier import train_classifier

    with tempfile.TemporaryDirectory() as ckpt:
        result = train_classifier(model, s_tokenizer, texts, labels, settings_from(d, Path(ckpt)),
                                  teacher_logits=logits, val_texts=[snapshot.texts[i] for i in val_idx],
                                  val_label_ids=[label_id[snapshot.labels[i]] for i in val_idx],
                                  desc=f"{name} seed {args.seed}")
    test_texts = [snapshot.texts[i] for i in test_idx]
    test_labels = [label_id[snapshot.labels[i]] for i in test_idx]
    student_acc = accuracy(predict_logits(model, s_tokenizer, test_texts, d.max_length), test_labels)
    teacher_acc = json.loads((work / "teacher.json").read_text())["test_accuracy"]  # measured once, by `teacher`
    model.to("cpu")
    params, t_params = count_parameters(model), count_parameters(teacher_model)
    out = {"variant": args.variant, "name": name, "overrides": trying, "seed": args.seed, "teacher_accuracy": teacher_acc,
           "student_accuracy": student_acc, "student_correct": round(student_acc * len(test_idx)),
           "test_rows": len(test_idx), "retention": student_acc / teacher_acc,
           "parameter_fraction": params / t_params, "student_parameters": params, "teacher_parameters": t_params,
           "student_shape": shape.shape.label(), "vocab_size": model.config.vocab_size,
           "embedding_rank": getattr(model.config, "embedding_size", None)
           if model.config.model_type == "albert" else None,
           "augment_copies": copies, "train_rows": len(texts), "best_epoch": result.best_epoch,
           "best_validation_accuracy": result.best_validation_accuracy, "stopped_early": result.stopped_early,
           "train_seconds": round(result.seconds, 1), "seconds": round(time.time() - started, 1),
           "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")}
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    (runs / f"{name}-seed{args.seed}.json").write_text(json.dumps(out, indent=2))
    return out


def summary(args) -> dict:
    from benchmarks.pipeline_defaults import spread

    work = Path(args.work)
    runs = [json.loads(p.read_text()) for p in sorted((work / "runs").glob("*.json"))] \
        if (work / "runs").is_dir() else []
    out = {"arguments": json.loads((work / "arguments.json").read_text()),
           "teacher": json.loads((work / "teacher.json").read_text()) if (work / "teacher.json").is_file() else None}
    names = list(dict.fromkeys([*VARIANTS, *sorted({r.get("name", r["variant"]) for r in runs})]))
    for name in names:
        rows = sorted((r for r in runs if r.get("name", r["variant"]) == name), key=lambda r: r["seed"])
        if rows:
            out[name] = {"runs": rows, **{k: spread([r[k] for r in rows]) for k in
                                          ("student_accuracy", "retention", "parameter_fraction")}}
    baselines = [v for v in VARIANTS[1:] if v in out]
    for name in (n for n in names if n in out and not n.startswith("baseline_")):
        mean = out[name]["student_accuracy"]["mean"]
        beats = {v.removeprefix("baseline_"): mean > out[v]["student_accuracy"]["mean"] for v in baselines}
        out["distillation_beats" if name == "distilled" else f"{name}_beats"] = beats
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("probe", "speed", "teacher", "student", "summary"))
    p.add_argument("--data", help="folder with train.jsonl and the test file (probe, teacher)")
    p.add_argument("--test-file", default="test.jsonl", help="the folder's test file to join (as pipeline_defaults)")
    p.add_argument("--train-rows", type=int, default=20000, help="seeded subset of train.jsonl (0 = all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override (default: none)")
    p.add_argument("--work", help="folder the teacher, its arguments and each run's result are kept in")
    p.add_argument("--shape", help="the ShapeChoice JSON `probe` wrote (student, speed)")
    p.add_argument("--seed", type=int, default=0, help="distill.seed (student)")
    p.add_argument("--variant", choices=VARIANTS, default="distilled", help="student: what to train")
    p.add_argument("--name", help="student: the run's name in the summary (default: the variant); its own --set "
                                  "values apply after the teacher stage's and the variant's")
    p.add_argument("--out", help="probe: where to write the shape")
    args = p.parse_args(argv)
    needed = {"probe": ("data", "out"), "speed": ("data", "shape"), "teacher": ("data", "work"),
              "student": ("work", "shape"), "summary": ("work",)}[args.stage]
    missing = [f"--{k.replace('_', '-')}" for k in needed if not getattr(args, k)]
    if missing:
        p.error(f"{args.stage} needs {', '.join(missing)}")
    from components.common.runtime import offline_environment

    offline_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    stages = {"probe": probe, "speed": speed, "teacher": teacher, "student": student, "summary": summary}
    result = stages[args.stage](args)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
