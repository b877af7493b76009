"""The one map from a resolved config to the DAGs' parameters: used by local runs, cluster
submissions, compile and the watch schedule alike.

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
import json
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
    return json.dumps({k: d[k] for k in STEP_SECTIONS[step]}, sort_keys=True)


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
    if cfg.student.init not in BUILDERS:
        raise ConfigError(f"student.init: unknown builder {cfg.student.init!r}; known: {', '.join(BUILDERS.keys())}")
    return cfg


def resolve_config(path: str | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file, then the overrides; validated against the schema and registries."""
    return validate(load_config(path, overrides))


def _slices(cfg: Config) -> dict[str, str]:
    validate(cfg)  # every way into a DAG passes here: a bad loss key never reaches a step
    return {param: step_config_json(cfg, step) for step, param in SLICE_PARAMETERS.items()}


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
            "text_column": text_column or cfg.data.text_column,
            "model_ref": model_ref or f"models:/{cfg.student.registered_name}@champion",
            "drift_config": step_config_json(cfg, "monitor_drift")}


def redistill_parameters(cfg: Config, home: str, production_path: str, production_fingerprint: str,
                         teacher: ResolvedTeacher, model_ref: str | None = None,
                         text_column: str | None = None) -> dict[str, Any]:
    """The closed loop's parameters: the drift DAG's, the redistillation's and the distillation DAG's."""
    return {**drift_parameters(cfg, home, production_path, production_fingerprint, model_ref, text_column),
            "redistill_config": step_config_json(cfg, "prepare_redistill"), "teacher_ref": teacher.pinned_ref,
            "teacher_version": teacher.version, **_slices(cfg), "config_hash": config_hash(cfg)}
