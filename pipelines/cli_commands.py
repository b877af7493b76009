"""CLI subcommands beyond the main loop: each step by hand, the promotion audit log and rollback, and
submitting to / scheduling on a Kubeflow Pipelines cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

from pipelines.cli_common import EPILOG, add_common, config_of, home_of


def add_step_commands(sub) -> None:
    """One subcommand per step: the same runner the KFP component calls, run by hand."""
    snapshot = "snapshot JSONL written by version-data"
    outputs = "teacher outputs file written by cache-teacher-outputs"
    student = "student directory written by train-student"
    p = sub.add_parser("version-data", help="step: validate, split and DVC-version a dataset",
                       description="The version_data step by hand: validate the labelled file, split it by a hash "
                       "of each row's normalised text, version the snapshot with DVC and print its data_version.",
                       epilog=EPILOG)
    add_common(p)
    p.add_argument("--data", required=True, help="labelled JSONL/CSV/Parquet file")
    p.add_argument("--out", required=True, help="where to write the snapshot (JSONL)")

    p = sub.add_parser("cache-teacher-outputs", help="step: the teacher's logits for a snapshot, from the cache",
                       description="The cache_teacher_outputs step by hand: the teacher's outputs for every row of "
                       "the snapshot, running the teacher only on rows the content-addressed cache lacks.",
                       epilog=EPILOG)
    add_common(p)
    p.add_argument("--snapshot", required=True, help=snapshot)
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--out", required=True, help="teacher outputs file (safetensors)")

    p = sub.add_parser("train-student", help="step: distil a student",
                       description="The train_student step by hand: distil a student from the teacher's cached "
                       "outputs on the snapshot's train split (resumable checkpoints under <home>/checkpoints).",
                       epilog=EPILOG)
    add_common(p)
    p.add_argument("--snapshot", required=True, help=snapshot)
    p.add_argument("--teacher-outputs", required=True, help=outputs)
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--data-version", required=True, help="data_version printed by version-data (the lineage)")
    p.add_argument("--out", required=True, help="directory for the student (safetensors + tokenizer)")

    p = sub.add_parser("benchmark-gate", help="step: student vs teacher vs champion; writes the gate report",
                       description="The benchmark_gate step by hand: measure student, teacher and champion on the "
                       "test split, apply the gate: thresholds, and write gate.json, gate.md and gate.html.",
                       epilog=EPILOG)
    add_common(p)
    p.add_argument("--snapshot", required=True, help=snapshot)
    p.add_argument("--teacher-outputs", required=True, help=outputs)
    p.add_argument("--student", required=True, help=student)
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--out-dir", required=True, help="directory for gate.json, gate.md and gate.html")

    p = sub.add_parser("promote", help="step: register a gated student and make it champion",
                       description="The promote step by hand: check that the gate report is bound to this student "
                       "(and signed, with DISTILLOPS_SIGNING_KEY), register it and move the champion alias.",
                       epilog=EPILOG)
    add_common(p)
    p.add_argument("--student", required=True, help=student)
    p.add_argument("--gate-report", required=True, help="gate.json written by benchmark-gate")


def add_audit_commands(sub) -> None:
    """`audit show|verify|sync` and `rollback`: the promotion history of a registered model."""
    p = sub.add_parser("audit", help="the promotion audit log: show, verify, sync",
                       description="Every promotion, refusal and rollback of a model, as a hash-chained log under "
                       "<home>/audit/<model>.jsonl mirrored in the registry (the <model>-ledger versions).",
                       epilog=EPILOG)
    p.add_argument("action", choices=("show", "verify", "sync"),
                   help="show: print the history; verify: detect any edit or deletion (exit 1); "
                   "sync: append registry entries this home has not seen and complete pending changes")
    add_common(p)
    p.add_argument("--model", help="registered model (default: student.registered_name)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("rollback", help="re-point champion to previous (recorded in the audit log)",
                       description="Make the previous champion champion again; the rolled-back version becomes "
                       "previous, so a second rollback undoes the first.", epilog=EPILOG)
    add_common(p)
    p.add_argument("--model", help="registered model (default: student.registered_name)")
    p.add_argument("--reason", default="", help="why (recorded; default: none)")


def add_export_command(sub) -> None:
    p = sub.add_parser("export", help="write a registered model as a plain Hugging Face folder",
                       description="Write a registered model version as one folder that transformers loads "
                       "directly (transformers.pipeline('text-classification', model=OUT)): weights as safetensors, "
                       "config with id2label/label2id, tokenizer, README.md model card and LICENSE.txt. MLflow's own "
                       "layout keeps the tokenizer apart from the weights; loading its model/ folder alone gives "
                       "wrong labels. The folder is written beside --out and renamed into place at the end.",
                       epilog=EPILOG)
    add_common(p)
    p.add_argument("--model", default=None,
                   help="registered model: models:/<name>@<alias> or models:/<name>/<version> "
                   "(default: models:/<student.registered_name>@champion, i.e. models:/distillops-student@champion)")
    p.add_argument("--out", required=True, help="folder to write; must be new or empty unless --force (required)")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out (whole, at the end of the export; default: refuse)")
    p.add_argument("--int8", action="store_true",
                   help="export the version's int8 student instead (emitted by promote with "
                   "gate.emit_quantized_student; load it with components.distillation.quantize."
                   "load_int8_classifier); default: the registered fp32 model")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (default: text)")


def cmd_export(args) -> int:
    from components.common.export import export_model
    from components.common.home import Home

    ref = args.model if args.model is not None else f"models:/{config_of(args).student.registered_name}@champion"
    # the home is created only once the reference and --out passed their checks
    result = export_model(Home.resolve(args.home), ref, args.out, force=args.force, int8=args.int8)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"exported {result['model']} to {result['out']}")
        if result["labels"]:
            print(f"  labels  {', '.join(result['labels'])}")
        print(f"  files   {', '.join(result['files'])}")
        if result.get("int8"):
            print(f"  load    {result['load']}({result['out']!r})  (dynamic int8, CPU)")
        else:
            print(f"  load    transformers.pipeline({result['pipeline_task']!r}, model={result['out']!r})")
    return 0


def _model_name(args) -> str:
    """--model (an empty one is refused like any other bad name, not replaced by the default)."""
    from components.common.paths import safe_name

    name = args.model if args.model is not None else config_of(args).student.registered_name
    return safe_name(name, "model name")


def cmd_audit(args) -> int:
    from components.common import registry
    from components.promote import audit

    home, name = home_of(args), _model_name(args)
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

    home, name = home_of(args), _model_name(args)
    result = audit.rollback(registry.connect(home), home, name, args.reason)
    print(json.dumps(result, indent=2))
    return 0 if result["outcome"]["status"] == "applied" else 1


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("KF_PIPELINES_ENDPOINT"),
                   help="KFP API URL, e.g. http://localhost:8080 (default: $KF_PIPELINES_ENDPOINT)")
    p.add_argument("--namespace", default="kubeflow", help="Kubernetes namespace of the run")
    p.add_argument("--experiment", default="distillops", help="KFP experiment")
    p.add_argument("--token", help="bearer token for the KFP API (default: $DISTILLOPS_KFP_TOKEN)")
    p.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                   help="set one pipeline parameter directly, overriding the computed one (repeatable; default: none)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_image_options(p)


def add_image_options(p: argparse.ArgumentParser, cluster: bool = True) -> None:
    p.add_argument("--image", help="image of every task, best pinned: name@sha256:<64 hex digits> (default: "
                   "$DISTILLOPS_IMAGE when the pipelines were defined, else the project's release tag)")
    if cluster:
        p.add_argument("--allow-mutable-image", action="store_true",
                       help="submit although the image is a movable tag (name:tag) rather than a digest")


def cluster_image(args) -> str | None:
    """The --image to compile in (None: the compiled-in one), refused when it is a movable tag
    unless --allow-mutable-image (ImageError)."""
    from components.common.image import IMAGE, check_pinned

    check_pinned(args.image or IMAGE, args.allow_mutable_image)
    return args.image


def add_cluster_commands(sub) -> None:
    cluster_epilog = ("Tasks mount the home PVC at /var/lib/distillops; paths given here are paths the pods see. "
                      "See docs/deploy.md.")
    p = sub.add_parser("submit", help="submit one distillation run to a Kubeflow Pipelines cluster",
                       description="Compile the distillation DAG and start a run with kfp.Client. Content versions "
                       "are resolved here, as for local runs: the data fingerprint from --data when that path "
                       "exists on this machine too (or --data-fingerprint), the teacher version from the "
                       "registry at $MLFLOW_TRACKING_URI (or --teacher-version).", epilog=cluster_epilog)
    add_common(p)
    _add_cluster_options(p)
    p.add_argument("--data", required=True, help="labelled data file, as the pods see it (on the home PVC)")
    p.add_argument("--data-fingerprint", help="sha256 of the data file (default: computed from --data here)")
    p.add_argument("--teacher", help="teacher reference (default: teacher.ref)")
    p.add_argument("--teacher-version", help="teacher_version (default: resolved through the registry)")
    p.add_argument("--run-name", help="display name of the run (default: the one KFP gives)")

    p = sub.add_parser("schedule", help="schedule the drift monitor as a KFP recurring run",
                       description="Create the recurring drift-monitor run (cron, max concurrency 1, no catch-up) "
                       "unless one with --name exists in the experiment: safe to rerun.", epilog=cluster_epilog)
    add_common(p)
    _add_cluster_options(p)
    p.add_argument("--production", required=True,
                   help="production batch file, as the pods see it; the producer replaces it between runs")
    p.add_argument("--model", default=None, help="model to monitor (default: models:/<student>@champion)")
    p.add_argument("--cron", default="0 0 */6 * * *",
                   help="KFP cron expression with seconds (6 fields; default: every 6 hours)")
    p.add_argument("--name", default="distillops-drift-monitor", help="recurring run name")


def cmd_step(args) -> int:
    """Run one step by hand, outside KFP (same runner the component calls)."""
    from pipelines.parameters import task_teacher_ref

    cfg, home = config_of(args), home_of(args)
    teacher = getattr(args, "teacher", None) or task_teacher_ref(cfg)
    if args.command == "version-data":
        from components.version_data.runner import run

        result = run(str(home.root), args.data, cfg, args.out)
    elif args.command == "cache-teacher-outputs":
        from components.cache_teacher_outputs.runner import run

        result = run(str(home.root), args.snapshot, teacher, cfg, args.out)
    elif args.command == "train-student":
        from components.common.config import config_hash
        from components.train_student.runner import run

        result = run(str(home.root), args.snapshot, args.teacher_outputs, teacher, cfg, args.data_version, args.out,
                     config_hash(cfg))
    elif args.command == "benchmark-gate":
        from components.benchmark_gate.runner import run

        out = Path(args.out_dir)
        result = run(str(home.root), args.snapshot, args.teacher_outputs, args.student, teacher, cfg,
                     str(out / "gate.json"), str(out / "gate.md"), str(out / "gate.html"))
    else:
        from components.promote.runner import run

        result = run(str(home.root), args.student, args.gate_report, cfg)
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
    from components.common.image import ImageError
    from pipelines import submit

    try:
        image = cluster_image(args)
        cfg = config_of(args)
        params = submit.parse_params(args.params)
        from pipelines.parameters import task_teacher_ref

        teacher_ref = args.teacher or task_teacher_ref(cfg)
        fingerprint = params.get("data_fingerprint") or _submit_data_fingerprint(args)
        teacher_version = params.get("teacher_version") or args.teacher_version
        if not teacher_version:
            from components.common.home import Home
            from components.common.teachers import resolve_teacher

            teacher_version = resolve_teacher(teacher_ref, Home.resolve(args.home)).version
        arguments = submit.distill_arguments(cfg, args.data, fingerprint, teacher_ref, teacher_version)
        arguments.update(params)
        from pipelines.distill import distill_pipeline

        submit.check_parameters(distill_pipeline, arguments)
        # kfp.Client prints links to stdout; with --json, stdout must carry the JSON alone.
        with redirect_stdout(sys.stderr if args.json else sys.stdout):
            client = submit.connect(args.host, args.namespace, args.token)
            result = submit.submit_distill(client, args.host, args.experiment, arguments, args.run_name,
                                           args.namespace, image)
    except (submit.ClusterError, submit.ParameterError, ImageError) as exc:
        print(f"distillops submit: error: {exc}", file=sys.stderr)
        return 2
    _print_cluster_result(args, result)
    return 0


def cmd_schedule(args) -> int:
    from components.common.image import ImageError
    from pipelines import submit

    try:
        image = cluster_image(args)
        if len(args.cron.split()) != 6:
            raise submit.ParameterError(f"--cron {args.cron!r}: KFP cron expressions have 6 fields, seconds "
                                        "first (e.g. '0 0 */6 * * *')")
        arguments = submit.drift_arguments(config_of(args), args.production, args.model)
        arguments.update(submit.parse_params(args.params))
        from pipelines.drift import drift_pipeline

        submit.check_parameters(drift_pipeline, arguments)
        with redirect_stdout(sys.stderr if args.json else sys.stdout):
            client = submit.connect(args.host, args.namespace, args.token)
            result = submit.schedule_drift(client, args.host, args.experiment, arguments, args.cron, args.name,
                                           args.namespace, image)
    except (submit.ClusterError, submit.ParameterError, ImageError) as exc:
        print(f"distillops schedule: error: {exc}", file=sys.stderr)
        return 2
    _print_cluster_result(args, result)
    return 0
