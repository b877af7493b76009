"""`distillops export`: a registered model as a plain Hugging Face folder, loadable anywhere::

    distillops export --model models:/distillops-student@champion --out ./student
    python -c 'from transformers import pipeline; print(pipeline("text-classification", model="./student")("hi"))'

A generative student (task: generation, a causal LM) exports the same way and loads with
``pipeline("text-generation", model="./student")``: its folder has no labels to check, but the same
weights, config, generation_config.json and tokenizer (with its chat template), so
``pipeline(...)([{"role": "user", "content": "hi"}])`` answers as the registered model does.

MLflow's transformers flavor keeps the tokenizer apart from the weights (``model/`` and
``components/tokenizer/``); pointed at ``model/`` alone, transformers 5 builds a tokenizer of the
five special tokens and nearly every word becomes [UNK], so predictions are silently wrong. The
export puts weights (safetensors), config (with id2label / label2id), tokenizer, model card
(README.md) and LICENSE.txt in one folder.

The version is fetched through ``registry.fetch_version_files`` (the same checks as every download:
no symlinks, no pickles, only the transformers flavor). The folder is written beside --out and
renamed into place at the end: there is never a half-written export.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from components.common import registry
from components.common.home import Home
from components.common.io import atomic_dir
from components.common.lineage import TASK_ARCHITECTURES
from components.common.model_card import CARD_FILE, License, base_license, render_card, render_lm_card
from components.common.modeling import ModelError, check_model_dir
from components.common.teachers import pinned_ref_for

# A tokenizer with fewer tokens than this share of the model's vocabulary is the [UNK] failure above.
MIN_TOKENIZER_SHARE = 0.9
# The transformers pipeline an exported folder is loaded with, per student task.
PIPELINE_TASKS = {"classification": "text-classification", "generation": "text-generation"}


class ExportError(ValueError):
    """An export that was refused (a non-empty --out without --force) or whose folder would not load."""


def inherited_license(client, teacher_ref: str, teacher_version: str = "") -> License:
    """The license a student inherits (model_card.base_license): a local teacher's card, a registered
    teacher's tags (read, not downloaded), else the shipped base model's."""
    if registry.is_registry_uri(teacher_ref):
        try:
            mv = registry.get_version(client, registry.ModelRef.parse(pinned_ref_for(teacher_ref, teacher_version)))
        except registry.RegistryError:
            mv = None
        return base_license(teacher_ref, teacher_tags=dict(mv.tags) if mv is not None else None)
    return base_license(teacher_ref, teacher_dir=teacher_ref or None)


def check_destination(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a directory; refused")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out}: not empty ({len(list(out.iterdir()))} entries); refused. Pass --force to "
                          "replace it, or choose an empty or new directory")


def folder_task(config: dict[str, Any], uri: str) -> str:
    """The task of an exported model from its config.json: a causal LM (architectures ending in
    ForCausalLM) is "generation", a sequence classifier "classification"; anything else is refused."""
    architectures = config.get("architectures") or []
    found = {task for task, suffix in TASK_ARCHITECTURES.items() if any(str(a).endswith(suffix) for a in architectures)}
    if len(found) != 1:
        raise ExportError(f"{uri}: config.json's architectures {architectures} are neither a sequence classifier "
                          f"nor a causal LM; not a distillops student")
    return found.pop()


def check_folder(folder: Path, uri: str) -> dict[str, Any]:
    """Refuse a folder `transformers.pipeline` would load wrongly: no safetensors, no labels (a
    classifier), or a tokenizer far smaller than the model's vocabulary. Returns its task, the
    pipeline task it loads with, its labels (none for a causal LM) and sizes."""
    from transformers import AutoTokenizer

    try:
        check_model_dir(folder)
    except ModelError as exc:
        raise ExportError(f"{uri}: {exc}") from None
    config = json.loads((folder / "config.json").read_text())
    task = folder_task(config, uri)
    id2label, label2id = config.get("id2label") or {}, config.get("label2id") or {}
    problems = []
    if task == "classification" and (not id2label or {v: int(k) for k, v in id2label.items()}
                                     != {k: int(v) for k, v in label2id.items()}):
        problems.append(f"config.json's id2label {id2label} and label2id {label2id} are missing or disagree")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    vocab = int(config.get("vocab_size") or 0)
    if len(tokenizer) < MIN_TOKENIZER_SHARE * vocab:
        problems.append(f"its tokenizer has {len(tokenizer)} tokens for a vocabulary of {vocab}: words would "
                        "become [UNK]")
    if problems:
        raise ExportError(f"{uri}: the exported folder would not predict correctly: {'; '.join(problems)}")
    labels = [id2label[k] for k in sorted(id2label, key=int)] if task == "classification" else []
    return {"task": task, "pipeline_task": PIPELINE_TASKS[task], "labels": labels, "tokenizer_size": len(tokenizer),
            "vocab_size": vocab}


def card_from_tags(client, mv) -> str:
    """A model card for a version logged before models carried one, from its lineage and gate tags."""
    tags = dict(mv.tags)
    try:
        checks = json.loads(tags.get("gate_checks", "[]"))
    except ValueError:
        checks = []
    gate = {"passed": tags.get("gate_passed") == "True", "reasons": [], "checks": checks,
            "models": {"student": {"accuracy": tags.get("student_accuracy")}},
            "context": {"model_digest": tags.get("model_digest", "?"), "report_location": tags.get("gate_report", "?"),
                        "champion_version": tags.get("gate_champion", "none")}}
    lineage = {k: tags.get(k, "?") for k in ("teacher_ref", "teacher_version", "data_version", "config_hash",
                                             "mlflow_run_id")}
    license_ = inherited_license(client, tags.get("teacher_ref", ""), tags.get("teacher_version", ""))
    if tags.get("task") == "generation":
        figures = {}
        for k in ("rouge_l", "exact_match", "token_agreement", "teacher_nll"):
            try:
                figures[k] = float(tags[f"student_{k}"])
            except (KeyError, ValueError):
                pass
        gate["models"]["student"] = figures
        return render_lm_card(mv.name, gate, lineage, license_, [])
    return render_card(mv.name, gate, lineage, [], license_, [])


def export_model(home: Home, ref: str, out: str | Path, force: bool = False, int8: bool = False) -> dict[str, Any]:
    """Write registered model `ref` (models:/<name>@<alias> or models:/<name>/<version>) to `out` as a
    Hugging Face folder; refuses a non-empty `out` unless `force` (then replaces it whole). With
    `int8`, the version's int8 student instead (promote emits one with gate.emit_quantized_student):
    its folder, which ``components.distillation.quantize.load_int8_classifier`` loads."""
    model_ref = registry.ModelRef.parse(ref)  # a bad reference fails before anything is touched
    out = Path(out).expanduser().absolute()
    check_destination(out, force)
    client = registry.connect(home)
    mv = registry.get_version(client, model_ref)
    if mv is None:
        raise registry.RegistryError(f"{ref} is not in the registry at {home.tracking_uri}")
    uri = f"models:/{mv.name}/{mv.version}"
    if int8:
        return _export_int8(client, mv, uri, ref, out)
    with atomic_dir(out) as staging:
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".download", dir=out.parent) as tmp:
            flat = registry.fetch_version_files(mv.name, str(mv.version), Path(tmp))
            for f in sorted(flat.iterdir()):
                shutil.move(str(f), staging / f.name)
        if not (staging / CARD_FILE).is_file():
            (staging / CARD_FILE).write_text(card_from_tags(client, mv), encoding="utf-8")
        facts = check_folder(staging, uri)
        files = sorted(f.name for f in staging.iterdir())
    return {"model": uri, "ref": ref, "out": str(out), "files": files, **facts}


INT8_FILES = ("model_int8.safetensors", "quantization.json")


def _export_int8(client, mv, uri: str, ref: str, out: Path) -> dict[str, Any]:
    """The int8 student logged beside version `mv` (its ``int8_model_uri`` tag), checked like any
    export (safetensors only, labels, tokenizer) and written whole to `out`."""
    import mlflow

    int8_uri = (mv.tags or {}).get("int8_model_uri")
    if not int8_uri:
        why = (mv.tags or {}).get("int8_reason") or "gate.emit_quantized_student was off when it was promoted"
        raise ExportError(f"{uri}: no int8 student was emitted for this version ({why})")
    with atomic_dir(out) as staging:
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".download", dir=out.parent) as tmp:
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=int8_uri, dst_path=tmp))
            for f in sorted(got.iterdir()):
                if f.is_symlink() or not f.is_file():
                    raise ExportError(f"{int8_uri}: {f.name} is not a plain file; refused")
                shutil.move(str(f), staging / f.name)
        missing = [name for name in INT8_FILES if not (staging / name).is_file()]
        if missing:
            raise ExportError(f"{int8_uri}: not an int8 student folder (missing {', '.join(missing)})")
        if not (staging / CARD_FILE).is_file():
            (staging / CARD_FILE).write_text(card_from_tags(client, mv), encoding="utf-8")
        facts = check_folder(staging, int8_uri)
        files = sorted(f.name for f in staging.iterdir())
    quantization = json.loads((out / "quantization.json").read_text())
    return {"model": uri, "ref": ref, "out": str(out), "files": files, **facts, "int8": int8_uri,
            "quantization": quantization, "pipeline_task": None,
            "load": "components.distillation.quantize.load_int8_classifier"}
