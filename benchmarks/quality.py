"""Quality benchmark: does distillation hold up on real data?

For a dataset folder with train.jsonl and test.jsonl ({"text", "label"}), fine-tune the MiniLM
teacher, then train one student architecture three ways, side by side in this one run:

  (a) labels only (no distillation), (b) logit distillation (Hinton KL + CE),
  (c) the best combination found (--best-losses, --layer-map, --augment): by default logit
      distillation on a transfer set enlarged with --augment perturbed copies of each training
      text, labelled by the teacher (Tang et al. 2019; see components/train_student/augment.py).

The default student is the one that met the targets on trec (docs/benchmarks.md): the teacher's
layers 0 and 5, feed-forward blocks pruned to 768 neurons, vocabulary trimmed to the training
texts within --param-budget of the teacher's parameters.

Prints one JSON: teacher and student test accuracy / macro-F1, retention (student / teacher),
parameter ratio, CPU batch-1 latency and batch-32 throughput ratios, and training times.

    python -m benchmarks.quality --data ../shared/datasets/trec --teacher-epochs 4 --out /tmp/q_trec.json

A validation split (10% of train, fixed seed) picks each model's best epoch; the test set is only
used for the reported figures. --test-limit evaluates on a fixed, seeded subset of the test set
(recorded in the JSON) when time forces it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from components.benchmark_gate.core import classification_metrics
from components.common.modeling import default_base_model, predict_logits, teacher_features
from components.common.runtime import set_threads
from components.distillation.classifier import train_classifier
from components.distillation.measure import count_parameters, measure_speeds
from components.distillation.students import (
    build_student_from_config,
    build_student_from_teacher_layers,
    prune_intermediate,
    trim_vocabulary_to_budget,
)
from components.distillation.trainer import TrainSettings
from components.distillation.transfer import augment_texts

log = logging.getLogger("benchmarks.quality")


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            row = json.loads(line)
            if "text" not in row or "label" not in row:
                raise ValueError(f"{path}:{n}: expected keys text and label, got {sorted(row)}")
            texts.append(row["text"])
            labels.append(str(row["label"]))
    return texts, labels


def scores(model, tokenizer, texts, gold, max_length, n_labels) -> dict[str, float]:
    logits = predict_logits(model, tokenizer, texts, max_length)
    # the gate's own metrics, so the benchmark reports what the gate decides on
    return classification_metrics(logits.argmax(-1), np.asarray(gold), n_labels)


def make_student(teacher, tokenizer, texts, args, overrides):
    """(student, its tokenizer): the narrow config or the teacher's layers, then optionally the
    vocabulary trimmed to the training texts within the parameter budget."""
    if args.student_from_layers:
        student = build_student_from_teacher_layers(teacher, [int(i) for i in args.student_from_layers.split(",")])
        if args.prune_intermediate:
            student = prune_intermediate(student, args.prune_intermediate)
    else:
        student = build_student_from_config(teacher, overrides)
    if not args.trim_vocab:
        return student, tokenizer
    return trim_vocabulary_to_budget(student, tokenizer, texts, max_positions=args.max_length,
                                     max_parameters=int(args.param_budget * count_parameters(teacher)),
                                     factorize=args.factorize_embeddings)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train.jsonl and test.jsonl")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--teacher-lr", type=float, default=5e-5)
    p.add_argument("--teacher-dir", help="reuse a teacher fine-tuned by an earlier run of this script (saved here)")
    p.add_argument("--student-epochs", type=int, default=8)
    p.add_argument("--student-lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--student-hidden", type=int, default=128)
    p.add_argument("--student-layers", type=int, default=4)
    p.add_argument("--student-heads", type=int, default=4)
    p.add_argument("--student-intermediate", type=int, default=512)
    p.add_argument("--student-from-layers", default="0,5",
                   help="build the student from these teacher layers (DistilBERT-style); '' = the narrow "
                        "--student-hidden/... config instead (PCA-initialised embeddings; try --student-lr 1e-3)")
    p.add_argument("--prune-intermediate", type=int, default=768,
                   help="with --student-from-layers: keep this many feed-forward neurons per layer, the most "
                        "important by weight magnitude (0 = keep all)")
    p.add_argument("--trim-vocab", action=argparse.BooleanOptionalAction, default=True,
                   help="trim the student's vocabulary to the word pieces of the training texts (most frequent "
                        "first) and its position table to --max-length, within --param-budget")
    p.add_argument("--factorize-embeddings", action=argparse.BooleanOptionalAction, default=True,
                   help="with --trim-vocab: keep every training piece in factored embeddings when the full-width "
                        "table would not fit (student.factorize_embeddings, the pipeline's default); "
                        "--no-factorize-embeddings drops the rarest pieces instead, as runs before 2026-12-04 did")
    p.add_argument("--param-budget", type=float, default=0.25,
                   help="with --trim-vocab: largest student size as a fraction of the teacher's parameters")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9, help="weight of the KL term in variant (b); CE gets 1 - alpha")
    p.add_argument("--variants", default="labels_only,logits,best", help="comma-separated subset")
    p.add_argument("--best-losses", default="kl=0.9,ce=0.1",
                   help="loss terms of variant (c), key=weight,...")
    p.add_argument("--layer-map", default="",
                   help="student:teacher layers of variant (c)'s feature losses, e.g. 1:3,2:6 with pooled_mse")
    p.add_argument("--augment", type=int, default=2,
                   help="variant (c) also trains on this many perturbed copies of each training text, with the "
                        "teacher's logits (and its argmax as the hard label); 0 = none")
    p.add_argument("--train-limit", type=int, default=0, help="use a fixed seeded subset of train (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="evaluate on a fixed seeded subset of test (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    # Fail before the teacher fine-tune (minutes), not after it.
    unknown = sorted(set(v for v in args.variants.split(",") if v) - {"labels_only", "logits", "best"})
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; expected labels_only, logits, best")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("DISTILLOPS_PROGRESS", "0")
    set_threads()
    data = Path(args.data)
    tr_x, tr_y = read_jsonl(data / "train.jsonl")
    te_x, te_y = read_jsonl(data / "test.jsonl")
    rng = random.Random(args.seed)
    if args.train_limit and args.train_limit < len(tr_x):
        keep = sorted(rng.sample(range(len(tr_x)), args.train_limit))
        tr_x, tr_y = [tr_x[i] for i in keep], [tr_y[i] for i in keep]
    if args.test_limit and args.test_limit < len(te_x):
        keep = sorted(random.Random(args.seed + 1).sample(range(len(te_x)), args.test_limit))
        te_x, te_y = [te_x[i] for i in keep], [te_y[i] for i in keep]
    names = sorted(set(tr_y))
    unknown = sorted(set(te_y) - set(names))
    if unknown:
        raise ValueError(f"{data / 'test.jsonl'}: labels {unknown} never occur in train.jsonl")
    lid = {n: i for i, n in enumerate(names)}
    order = list(range(len(tr_x)))
    random.Random(args.seed).shuffle(order)
    n_val = max(1, len(order) // 10)
    val_i, fit_i = sorted(order[:n_val]), sorted(order[n_val:])
    fx, fy = [tr_x[i] for i in fit_i], [lid[tr_y[i]] for i in fit_i]
    vx, vy = [tr_x[i] for i in val_i], [lid[tr_y[i]] for i in val_i]
    ty = [lid[y] for y in te_y]
    L = args.max_length
    report: dict = {"dataset": str(data), "labels": len(names), "train_rows": len(fx), "validation_rows": len(vx),
                    "test_rows": len(te_x), "test_subset": bool(args.test_limit), "max_length": L,
                    "torch_threads": torch.get_num_threads(), "args": vars(args)}

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    teacher_dir = Path(args.teacher_dir) if args.teacher_dir else None
    if teacher_dir is not None and (teacher_dir / "config.json").is_file():
        teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
        meta = json.loads((teacher_dir / "benchmark_teacher.json").read_text())
        if meta["labels"] != names or meta["fit_rows"] != len(fx):
            raise ValueError(f"{teacher_dir}: teacher was trained on another label set or split")
        report["teacher_train_seconds"] = meta["train_seconds"]
        report["teacher_reused_from"] = str(teacher_dir)
    else:
        base = default_base_model()
        tokenizer = AutoTokenizer.from_pretrained(base)
        teacher = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(names), id2label=dict(enumerate(names)), label2id=lid)
        ts = TrainSettings(epochs=args.teacher_epochs, batch_size=args.batch_size, learning_rate=args.teacher_lr,
                           max_length=L, losses={"ce": 1.0}, seed=args.seed)
        res = train_classifier(teacher, tokenizer, fx, fy, ts, val_texts=vx, val_label_ids=vy, desc="teacher")
        report["teacher_train_seconds"] = res.seconds
        log.info("teacher trained in %.0fs, validation %.4f", res.seconds, res.best_validation_accuracy)
        if teacher_dir is not None:
            teacher.save_pretrained(teacher_dir)
            tokenizer.save_pretrained(teacher_dir)
            (teacher_dir / "benchmark_teacher.json").write_text(json.dumps(
                {"labels": names, "fit_rows": len(fx), "train_seconds": res.seconds}))
    teacher.eval()
    report["teacher"] = {**scores(teacher, tokenizer, te_x, ty, L, len(names)),
                         "parameters": count_parameters(teacher)}
    log.info("teacher test %s", report["teacher"])

    layer_map = tuple(tuple(int(x) for x in pair.split(":")) for pair in args.layer_map.split(",") if pair)
    t0 = time.perf_counter()
    feats = teacher_features(teacher, tokenizer, fx, L, pooled_layers=sorted({t for _, t in layer_map}
                                                                               | {teacher.config.num_hidden_layers}))
    report["teacher_outputs_seconds"] = time.perf_counter() - t0
    pooled = {k: v for k, v in feats.items() if k.startswith("pooled:")}

    overrides = {"hidden_size": args.student_hidden, "num_hidden_layers": args.student_layers,
                 "num_attention_heads": args.student_heads, "intermediate_size": args.student_intermediate}
    best_losses = {k: float(v) for k, v in (kv.split("=") for kv in args.best_losses.split(",") if kv)}
    variants = {
        "labels_only": dict(losses={"ce": 1.0}),
        "logits": dict(losses={"kl": args.alpha, "ce": 1 - args.alpha}),
        "best": dict(losses=best_losses, layer_map=layer_map),
    }
    # One student built (and trimmed) once; every variant starts from a copy of the same weights.
    torch.manual_seed(args.seed)
    initial_student, s_tokenizer = make_student(teacher, tokenizer, fx, args, overrides)
    transfer = {name: (fx, fy, feats["logits"], pooled) for name in variants}
    if args.augment and "best" in args.variants.split(","):
        t0 = time.perf_counter()
        aug_x = augment_texts(fx, args.augment, seed=args.seed)
        aug = teacher_features(teacher, tokenizer, aug_x, L, pooled_layers=[int(k.split(":")[1]) for k in pooled])
        report["augment"] = {"copies": args.augment, "rows": len(aug_x),
                             "teacher_outputs_seconds": time.perf_counter() - t0,
                             "teacher_agrees_with_source_label": float(np.mean(
                                 aug["logits"].argmax(-1) == np.repeat(fy, args.augment)))}
        transfer["best"] = (fx + aug_x, fy + aug["logits"].argmax(-1).tolist(),
                            np.concatenate([feats["logits"], aug["logits"]]),
                            {k: np.concatenate([v, aug[k]]) for k, v in pooled.items()})
    report["students"] = {}
    student_models = {}
    for name in [v for v in args.variants.split(",") if v]:
        torch.manual_seed(args.seed)
        student = copy.deepcopy(initial_student)
        x, y, t_logits, t_pooled = transfer[name]
        s = TrainSettings(epochs=args.student_epochs, batch_size=args.batch_size, learning_rate=args.student_lr,
                          max_length=L, temperature=args.temperature, seed=args.seed, **variants[name])
        res = train_classifier(student, s_tokenizer, x, y, s, teacher_logits=t_logits, val_texts=vx,
                               val_label_ids=vy, teacher_features=t_pooled,
                               teacher_num_layers=teacher.config.num_hidden_layers, desc=name)
        sc = scores(student, s_tokenizer, te_x, ty, L, len(names))
        report["students"][name] = {
            **sc, "losses": variants[name]["losses"], "layer_map": [list(m) for m in variants[name].get(
                "layer_map", ())], "best_epoch": res.best_epoch, "validation_accuracy": res.best_validation_accuracy,
            "train_rows": len(x), "train_seconds": res.seconds, "retention_accuracy": sc["accuracy"] / report["teacher"]["accuracy"],
            "retention_macro_f1": sc["macro_f1"] / report["teacher"]["macro_f1"]}
        student_models[name] = (student, s_tokenizer)
        log.info("student %s: %s", name, report["students"][name])
        if args.out:  # partial results survive a kill
            Path(args.out).write_text(json.dumps(report, indent=2))

    any_student, s_tokenizer = next(iter(student_models.values()))
    report["student_parameters"] = count_parameters(any_student)
    report["student_config"] = {k: any_student.config.to_dict()[k] for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
        "max_position_embeddings")}
    report["student_built"] = (f"teacher layers {args.student_from_layers}"
                               + (f", feed-forward pruned to {args.prune_intermediate}" if args.prune_intermediate
                                  else "") + (", vocabulary trimmed" if args.trim_vocab else "")
                               if args.student_from_layers else "narrow config, PCA-initialised embeddings")
    report["parameter_ratio"] = report["student_parameters"] / report["teacher"]["parameters"]
    # Side by side: calls alternate between teacher and student and each figure is a median, so
    # load on a shared machine hits both alike.
    sp = measure_speeds({"teacher": (teacher, tokenizer, L), "student": (any_student, s_tokenizer, L)}, te_x,
                        latency_samples=96, throughput_batches=20)
    t_lat, s_lat = sp["teacher"]["latency_p50_ms"], sp["student"]["latency_p50_ms"]
    t_thr, s_thr = sp["teacher"]["throughput_rows_per_s"], sp["student"]["throughput_rows_per_s"]
    report["speed"] = {"teacher_latency_p50_ms": t_lat, "student_latency_p50_ms": s_lat,
                       "latency_speedup": t_lat / s_lat, "teacher_throughput_rows_per_s": t_thr,
                       "student_throughput_rows_per_s": s_thr, "throughput_speedup_batch32": s_thr / t_thr}
    st = report["students"]
    report["targets"] = {
        "params_at_most_quarter": report["parameter_ratio"] <= 0.25,
        "throughput_at_least_3x": report["speed"]["throughput_speedup_batch32"] >= 3,
    }
    if "best" in st:
        report["targets"]["best_retention_at_least_0.97"] = st["best"]["retention_accuracy"] >= 0.97
        if "labels_only" in st:
            report["targets"]["best_beats_labels_only"] = st["best"]["accuracy"] > st["labels_only"]["accuracy"]
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
