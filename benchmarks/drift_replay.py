"""Replay shifted production traffic through the real drift-redistill DAG and watch the loop settle.

Trains the quickstart champion (the teacher fine-tuned on the quickstart data, then `distillops run`)
in a fresh home, unless --home already holds one, then replays --batches production batches: the
first drawn from one shifted, real distribution (--first-shift, e.g. banking77 texts), from batch
--second-shift-at on from another (--second-shift, e.g. ag_news texts). Each batch goes through
`distillops monitor --redistill` (pipelines.local.run_drift_loop: kfp.local, MLflow, DVC, Evidently).

    python -m benchmarks.drift_replay --policy new --batches 12 \\
        --first-shift ../shared/datasets/banking77 --second-shift ../shared/datasets/ag_news --second-shift-at 8
    python -m benchmarks.drift_replay --policy legacy ...        # today's behaviour, for comparison

--policy new: the drift policy's defaults (params.yaml), except drift.cooldown_minutes=0: a replay
puts batches minutes apart where production has hours, so the cooldown in runs (drift.cooldown_runs)
stands in for it. --policy legacy: drift.trigger_on=[any] with no cooldown, no budget, no
production window, no redistill pool and production rows weighed like the others: every drifted
batch redistils, as before the policy existed. --set overrides any
config key on top of either (e.g. --set distill.epochs=2 for a quicker run).

Prints (on stdout; task logs go to stderr) one JSON line per batch: the drift signals, what was seen
(drifted), the action, whether it redistilled and the promoted version, the teacher-student
disagreement on that batch before (the champion that was monitored) and after (the champion after
the batch: re-measured on the same rows when it changed), and seconds. Then one summary JSON object: redistillations per shift, whether the
first shift settled (at most two redistillations, the last batch's disagreement increase under the
threshold), whether the second shift redistilled again, and seconds per batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

LEGACY = ["drift.trigger_on=[any]", "drift.cooldown_minutes=0", "drift.cooldown_runs=0", "drift.max_redistills=0",
          "drift.reference_window_rows=0", "drift.redistill_pool=false", "distill.teacher_labelled_repeat=1",
          "drift.redistill_min_rows=0"]
NEW = ["drift.cooldown_minutes=0"]


def _texts(folder: Path) -> list[str]:
    """Every text of a dataset folder's train.jsonl (deduplicated, in file order)."""
    path = folder / "train.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; expected a dataset folder with train.jsonl (text, label per line)")
    texts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get("text"), str) or not row["text"].strip():
                raise SystemExit(f"{path} line {n}: expected a non-empty string 'text', got {row.get('text')!r}")
            texts.append(row["text"])
    return list(dict.fromkeys(texts))


def batches(first: list[str], second: list[str], n_batches: int, rows: int, second_at: int,
            seed: int = 0) -> list[list[str]]:
    """n_batches disjoint batches of `rows` texts: from `first` before batch `second_at` (1-based), then `second`."""
    pools = [random.Random(seed).sample(first, len(first)), random.Random(seed + 1).sample(second, len(second))]
    taken = [0, 0]
    out = []
    for i in range(1, n_batches + 1):
        k = 0 if i < second_at else 1
        if taken[k] + rows > len(pools[k]):
            raise SystemExit(f"not enough texts for {n_batches} batches of {rows} rows ({len(pools[k])} in the "
                             f"{'first' if k == 0 else 'second'} shift)")
        out.append(pools[k][taken[k]:taken[k] + rows])
        taken[k] += rows
    return out


def _champion_disagreement(home, cfg, texts: list[str]) -> float:
    """The share of `texts` (a seeded sample of drift.disagreement_sample) on which the champion and its teacher disagree."""
    import numpy as np

    from components.common import registry
    from components.common.modeling import label_names, load_classifier, predict_logits
    from components.common.teachers import load_pinned, load_teacher, pinned_ref_for

    client = registry.connect(home)
    path, mv = registry.download_model(client, home, registry.ModelRef.parse(
        f"models:/{cfg.student.registered_name}@champion"))
    version = mv.tags.get("teacher_version", "")
    teacher = load_teacher(load_pinned(pinned_ref_for(mv.tags.get("teacher_ref") or cfg.teacher.ref, version), version,
                                       home, where="the champion's teacher"))
    model, tokenizer = load_classifier(path)
    sample = texts if len(texts) <= cfg.drift.disagreement_sample else random.Random(1).sample(
        texts, cfg.drift.disagreement_sample)
    s_names, t_names = label_names(model), teacher.label_names
    s = [s_names[i] for i in predict_logits(model, tokenizer, sample, cfg.distill.max_length).argmax(-1)]
    t = [t_names[i] for i in predict_logits(teacher.model, teacher.tokenizer, sample, cfg.teacher.max_length).argmax(-1)]
    return float(np.mean([a != b for a, b in zip(s, t, strict=True)]))


def _ensure_champion(home, cfg, base: str | None, data_rows: int) -> dict:
    """The quickstart champion: teacher fine-tuned on the quickstart data, student distilled and promoted."""
    from mlflow.exceptions import MlflowException

    from components.common import registry
    from components.teacher.runner import prepare_teacher
    from pipelines.local import run_distill
    from pipelines.quickstart import write_quickstart

    client = registry.connect(home)
    try:
        mv = client.get_model_version_by_alias(cfg.student.registered_name, "champion")
        return {"reused": True, "champion": str(mv.version)}
    except MlflowException:  # no such model or alias yet: train it
        pass
    t0 = time.perf_counter()
    data = write_quickstart(home.root / "quickstart" / "support_tickets.jsonl", rows=data_rows)
    prepare_teacher(home, str(data), cfg, base=base)
    summary = run_distill(home, cfg, str(data))
    if not summary["gate"]["passed"]:
        raise SystemExit(f"the quickstart student was refused by the gate: {summary['gate']['reasons']}")
    return {"reused": False, "champion": summary["promotion"]["version"],
            "setup_seconds": round(time.perf_counter() - t0, 1)}


def replay(args) -> dict:
    from components.common.home import Home
    from pipelines.cli_common import stdout_to_stderr
    from pipelines.local import run_drift_loop
    from pipelines.parameters import resolve_config

    overrides = [*(LEGACY if args.policy == "legacy" else NEW), *args.overrides]
    cfg = resolve_config(args.config, overrides)
    home = Home.resolve(args.home or tempfile.mkdtemp(prefix="drift-replay-")).ensure()
    with stdout_to_stderr(True):  # kfp.local streams task logs to stdout: it carries the JSON alone
        setup = _ensure_champion(home, cfg, args.base, args.data_rows)
    print(json.dumps({"home": str(home.root), "policy": args.policy, "overrides": overrides, **setup}), flush=True)
    stream = batches(_texts(Path(args.first_shift)), _texts(Path(args.second_shift)), args.batches, args.batch_rows,
                     args.second_shift_at, args.seed)
    rows = []
    batch_dir = home.root / "replay"
    batch_dir.mkdir(exist_ok=True)
    for i, texts in enumerate(stream, start=1):
        path = batch_dir / f"batch-{i:03d}.jsonl"
        path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        t0 = time.perf_counter()
        with stdout_to_stderr(True):
            loop = run_drift_loop(home, cfg, str(path))
        seconds = round(time.perf_counter() - t0, 1)
        dis = loop.get("disagreement") or {}
        promoted = (loop.get("promotion") or {}).get("action") in ("register", "alias_existing")
        after = _champion_disagreement(home, cfg, texts) if promoted else dis.get("production")
        row = {"batch": i, "shift": "first" if i < args.second_shift_at else "second", "drifted": loop["drifted"],
               "signals": loop["signals"], "action": loop["action"], "redistilled": loop["redistill"],
               "triggers": [r for r in loop.get("action_reasons", []) if r.startswith("trigger")],
               "promoted_version": (loop.get("promotion") or {}).get("version") if promoted else None,
               "gate_passed": loop.get("gate_passed"), "window_rows": (loop.get("moving_reference") or {}).get("window_rows"),
               "input_drift_vs_moving_reference": (loop.get("moving_reference") or {}).get("input_drifted"),
               "disagreement_before": dis.get("production"), "disagreement_reference": dis.get("reference"),
               "disagreement_threshold": dis.get("threshold"), "disagreement_after": after,
               "rows_added": loop.get("rows_added"), "backlog_rows": loop.get("backlog_rows"), "seconds": seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return summarize(rows, args.policy)


def summarize(rows: list[dict], policy: str) -> dict:
    """Redistillations per shift, and whether each shift did what the drift policy is for."""
    out = {"policy": policy, "batches": len(rows), "redistills": sum(r["redistilled"] for r in rows),
           "seconds_per_batch": [r["seconds"] for r in rows]}
    for shift in ("first", "second"):
        part = [r for r in rows if r["shift"] == shift]
        if not part:
            continue
        last = part[-1]
        increase = (None if last["disagreement_after"] is None or last["disagreement_reference"] is None
                    else last["disagreement_after"] - last["disagreement_reference"])
        out[shift] = {"batches": len(part), "redistills": sum(r["redistilled"] for r in part),
                      "actions": [r["action"] for r in part], "last_disagreement_after": last["disagreement_after"],
                      "last_disagreement_increase": increase,
                      "under_threshold": None if increase is None else increase <= last["disagreement_threshold"]}
    first = out.get("first")
    if first:
        out["first_shift_settled"] = first["redistills"] <= 2 and bool(first["under_threshold"])
    if out.get("second"):
        out["second_shift_redistilled"] = out["second"]["redistills"] >= 1
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.drift_replay", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", choices=("new", "legacy"), default="new",
                   help="the drift policy's defaults or today's behaviour (default: new)")
    p.add_argument("--first-shift", required=True, help="dataset folder (train.jsonl) the first batches are drawn from")
    p.add_argument("--second-shift", required=True, help="dataset folder the batches from --second-shift-at on are "
                   "drawn from")
    p.add_argument("--batches", type=int, default=12, help="production batches to replay (default: 12)")
    p.add_argument("--second-shift-at", type=int, default=8, help="the first batch (1-based) of the second shift "
                   "(default: 8)")
    p.add_argument("--batch-rows", type=int, default=200, help="texts per batch (default: 200)")
    p.add_argument("--home", help="distillops home; one holding a champion is reused (default: a new temp directory)")
    p.add_argument("--base", help="base model of the quickstart teacher (default: the MiniLM of `distillops teacher`)")
    p.add_argument("--data-rows", type=int, default=800, help="rows of quickstart data the champion is trained on "
                   "(default: 800)")
    p.add_argument("--config", help="YAML config file (default: the embedded defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key after the policy's settings (repeatable; default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch sampling (default: 0)")
    args = p.parse_args(argv)
    if not 1 <= args.second_shift_at <= args.batches + 1 or args.batches < 1 or args.batch_rows < 1:
        p.error(f"expected --batches >= 1, --batch-rows >= 1 and 1 <= --second-shift-at <= batches + 1, got "
                f"{args.batches}, {args.batch_rows}, {args.second_shift_at}")
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(replay(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
