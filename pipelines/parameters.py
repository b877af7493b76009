"""The one map from a resolved config to the DAGs' parameters: used by local runs, cluster
submissions, compile and the watch schedule alike; and each parameter's default and description in
the compiled DAGs (``default_parameters``, ``PARAMETER_HELP``), for runs started from the KFP UI.

Each step receives only the config sections it reads (its *slice*, canonical JSON), so KFP's cache
key of a step changes only when its own settings change: a new gate threshold does not retrain
the student. Slices are built here and parsed once, in each step's KFP interface.

Content versions travel as parameters too (data fingerprint, pinned teacher reference and
teacher_version, config hash): KFP's cache key covers parameter values but only artifact names.

Usage::

    cfg = resolve_config("params.yaml", ["distill.epochs=2"])     # validated, loss keys included
    t = resolve_teacher(cfg.teacher.ref, home)                      # at the run's first use
    distill_parameters(cfg, home, data_path, fingerprint, t.pinned_ref, t.version)
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from typing import Any

from components.common.config import (
    Config,
    ConfigError,
    config_hash,
    config_to_dict,
    config_to_json,
    load_config,
)
from components.common.teachers import ResolvedTeacher

# The config sections each step reads.
STEP_SECTIONS = {
    "version_data": ("data",),
    # cache: where the store lives; distill: the features the configured losses need, the extra
    # teachers and the transfer set's augmentation.
    "cache_teacher_outputs": ("teacher", "cache", "distill"),
    "train_student": ("student", "distill"),
    "benchmark_gate": ("gate", "distill", "teacher", "student"),
    "promote": ("student",),
    "monitor_drift": ("drift", "data", "student", "distill", "teacher"),
    "prepare_redistill": ("drift", "data", "teacher"),
}
# Steps that run per task: with task other than classification their slices also carry `task` and
# the `generation` section (a classification slice is the one it was before tasks existed, so its
# KFP cache keys did not move).
TASK_STEPS = ("version_data", "cache_teacher_outputs", "train_student", "benchmark_gate", "promote",
              "monitor_drift", "prepare_redistill")
# Parameter name of each distillation step's slice in the DAGs.
SLICE_PARAMETERS = {"version_data": "data_config", "cache_teacher_outputs": "teacher_config",
                    "train_student": "train_config", "benchmark_gate": "gate_config", "promote": "promote_config"}


def _resolved_for_steps(cfg: Config) -> Config:
    """What the slices must carry beyond their own sections: train_student does not read `teacher`,
    so student.init_weights=pretrained with no student.pretrained_model gets teacher.base here
    (when both are "", the step uses the shipped MiniLM)."""
    s = cfg.student
    if s.init_weights == "pretrained" and not s.pretrained_model and cfg.teacher.base:
        return dataclasses.replace(cfg, student=dataclasses.replace(s, pretrained_model=cfg.teacher.base))
    return cfg


def step_config_json(cfg: Config, step: str) -> str:
    """The resolved config sections one step reads, as canonical JSON (a partial config)."""
    d = config_to_dict(_resolved_for_steps(cfg))
    sections = STEP_SECTIONS[step]
    if cfg.task != "classification" and step in TASK_STEPS:
        sections = ("task", "generation", *sections)
    return json.dumps({k: d[k] for k in sections}, sort_keys=True)


def validate(cfg: Config) -> Config:
    """Checks that need the distillation library's registries (loss keys, student builders), made
    before any step runs: an unknown key is a config error naming it, not a failed task."""
    from components.common.keyed import RegistryKeyError
    from components.distillation.losses import LossConfigError, resolve_losses
    from components.distillation.students import BUILDERS

    try:
        resolve_losses(dict(cfg.distill.losses), cfg.distill.alpha)
    except (RegistryKeyError, LossConfigError) as exc:
        raise ConfigError(f"distill.losses: {exc}") from None
    if cfg.task == "generation":
        from components.distillation.lm_losses import LMLossConfigError, resolve_lm_losses

        try:
            resolve_lm_losses(dict(cfg.generation.losses) or {"seq_kd": 1.0})
        except (RegistryKeyError, LMLossConfigError) as exc:
            raise ConfigError(f"generation.losses: {exc}") from None
    if cfg.student.init not in BUILDERS:
        raise ConfigError(f"student.init: unknown builder {cfg.student.init!r}; known: {', '.join(BUILDERS.keys())}")
    return cfg


def task_teacher_ref(cfg: Config) -> str:
    """The configured teacher of the config's task: teacher.ref (classification) or
    generation.teacher_ref (generation). Every way into the distillation DAG resolves this one."""
    return cfg.generation.teacher_ref if cfg.task == "generation" else cfg.teacher.ref


def production_column(cfg: Config) -> str:
    """The column of a production batch the drift DAGs read by default: data.text_column, or
    generation.prompt_column for task generation."""
    return cfg.generation.prompt_column if cfg.task == "generation" else cfg.data.text_column


def resolve_config(path: str | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file, then the overrides; validated against the schema and registries."""
    return validate(load_config(path, overrides))


def step_slices(cfg: Config) -> dict[str, str]:
    """Every distillation step's slice, by its parameter name in the DAGs (not validated)."""
    return {param: step_config_json(cfg, step) for step, param in SLICE_PARAMETERS.items()}


def _slices(cfg: Config) -> dict[str, str]:
    validate(cfg)  # every way into a DAG passes here: a bad loss key never reaches a step
    return step_slices(cfg)


def distill_parameters(cfg: Config, home: str, data_path: str, data_fingerprint: str, teacher_ref: str,
                       teacher_version: str, trigger: str = "") -> dict[str, str]:
    """Every parameter of the distillation DAG. The teacher comes pinned: `teacher_ref` as
    ``ResolvedTeacher.pinned_ref`` and its `teacher_version`, which every step checks (common/teachers.py)."""
    params = {"home": home, "data_path": data_path, "data_fingerprint": data_fingerprint,
              "teacher_ref": teacher_ref, "teacher_version": teacher_version, **_slices(cfg),
              "config_hash": config_hash(cfg)}
    if trigger:
        params["trigger"] = trigger
    return params


def watch_parameters(cfg: Config, home: str, data_path: str, teacher_ref: str) -> dict[str, str]:
    """The watch DAG's parameters (the distillation DAG's, less what check_for_changes resolves)."""
    return {"home": home, "data_path": data_path, "teacher_ref": teacher_ref, "config_json": config_to_json(cfg),
            **_slices(cfg), "config_hash": config_hash(cfg)}


def drift_parameters(cfg: Config, home: str, production_path: str, production_fingerprint: str,
                     model_ref: str | None = None, text_column: str | None = None) -> dict[str, str]:
    return {"home": home, "production_path": production_path, "production_fingerprint": production_fingerprint,
            "text_column": text_column or production_column(cfg),
            "model_ref": model_ref or f"models:/{cfg.student.registered_name}@champion",
            "drift_config": step_config_json(cfg, "monitor_drift")}


def redistill_parameters(cfg: Config, home: str, production_path: str, production_fingerprint: str,
                         teacher: ResolvedTeacher, model_ref: str | None = None,
                         text_column: str | None = None) -> dict[str, Any]:
    """The closed loop's parameters: the drift DAG's, the redistillation's and the distillation DAG's."""
    return {**drift_parameters(cfg, home, production_path, production_fingerprint, model_ref, text_column),
            "redistill_config": step_config_json(cfg, "prepare_redistill"), "teacher_ref": teacher.pinned_ref,
            "teacher_version": teacher.version, **_slices(cfg), "config_hash": config_hash(cfg)}


# ---------------------------------------------------------------------------------------------
# What the compiled pipelines say about their parameters: a default and a description each, so a
# run can be started from the KFP UI. Submissions, schedules and local runs pass every value.
# ---------------------------------------------------------------------------------------------

_SLICE_HELP = ("{step}'s settings: JSON of the params.yaml sections {sections} (the CLI builds it from "
               "--config and --set); the default is params.yaml's defaults")
PARAMETER_HELP = {
    "home": "distillops home directory as the tasks see it (the home volume's mount path): teacher cache, DVC "
            "repository, registry database, reports",
    "data_path": "the labelled data file (JSONL, CSV or Parquet with text and label columns), as the tasks see it",
    "data_fingerprint": "sha256 of the data file (`sha256sum FILE`), so KFP's cache reruns the steps when the file "
                        "changes under the same path; empty: the cache follows the path alone (a replaced file is "
                        "served from the cache unless caching is off)",
    "teacher_ref": "the teacher: models:/<name>@<alias>, models:/<name>/<version>, a model directory or a Hugging "
                   "Face id in the local cache (teacher.ref; with task generation a causal LM, generation.teacher_ref)",
    "teacher_version": "the teacher_version this run is pinned to (`distillops submit` resolves it); every step "
                       "refuses a teacher that now resolves to another. Empty: the first step resolves teacher_ref "
                       "and the later steps follow it (KFP's cache then does not notice a moved alias)",
    **{param: _SLICE_HELP.format(step=step, sections=", ".join(STEP_SECTIONS[step]))
       for step, param in SLICE_PARAMETERS.items()},
    "config_hash": "hash of the training-relevant config (data, student, distill, teacher.max_length) the slices "
                   "come from: the student's lineage records it (`distillops submit` computes it); the default "
                   "is the hash of params.yaml's defaults",
    "trigger": "why the run started (JSON; the drift loop sets it): the gate then also gates the student on the "
               "triggering production batch; empty for a run started by hand",
    "production_path": "the batch of production inputs (JSONL, CSV or Parquet with the text column), as the tasks see it",
    "production_fingerprint": "sha256 of the production batch, part of KFP's cache key (monitor_drift itself never "
                              "caches, so any value will do)",
    "text_column": "column of the production batch holding the input text (data.text_column)",
    "model_ref": "the model serving production, whose training data is the drift reference "
                 "(models:/<student.registered_name>@champion)",
    "drift_config": _SLICE_HELP.format(step="monitor_drift", sections=", ".join(STEP_SECTIONS["monitor_drift"])),
    "redistill_config": _SLICE_HELP.format(step="prepare_redistill",
                                           sections=", ".join(STEP_SECTIONS["prepare_redistill"])),
    "config_json": "the whole resolved config as JSON (check_for_changes compares its hash with the champion's); "
                   "the default is params.yaml's defaults",
}


def default_parameters(home: str, data_path: str, production_path: str) -> dict[str, str]:
    """The default of every DAG parameter (what the KFP UI fills in): the defaults of params.yaml
    (``Config()``), the given paths, the default teacher and champion references, and empty content
    versions (PARAMETER_HELP says what an empty one means)."""
    cfg = Config()
    return {"home": home, "data_path": data_path, "data_fingerprint": "", "teacher_ref": cfg.teacher.ref,
            "teacher_version": "", **step_slices(cfg), "config_hash": config_hash(cfg), "trigger": "",
            **drift_parameters(cfg, home, production_path, ""),
            "redistill_config": step_config_json(cfg, "prepare_redistill"), "config_json": config_to_json(cfg)}


def describe_parameters(func: Callable) -> Callable:
    """Append a Google-style ``Args:`` section (from PARAMETER_HELP) to a pipeline function's
    docstring: KFP reads it into the compiled inputs' descriptions. Apply below ``@dsl.pipeline``.
    A parameter without help is an error naming it."""
    names = list(inspect.signature(func).parameters)
    missing = [n for n in names if n not in PARAMETER_HELP]
    if missing:
        raise KeyError(f"{func.__name__}: no description for parameter(s) {', '.join(missing)} in PARAMETER_HELP")
    args = "\n".join(f"    {n}: {PARAMETER_HELP[n]}" for n in names)
    func.__doc__ = f"{inspect.cleandoc(func.__doc__ or func.__name__)}\n\nArgs:\n{args}\n"
    return func
