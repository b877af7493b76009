"""The one module that writes MLflow runs (params, metrics, tags, text artifacts).

The registry (versions, aliases, the ledger) is ``registry.py``; both reach the same tracking
store through ``registry.connect``. A step opens its run with :func:`start_run`, or writes into an
existing one (the gate into the training run) with :func:`attach`::

    with tracking.start_run(home, "train_student abc", tags={...}, params={...}) as run:
        run.log_metrics({"train_seconds": 12.0})
    tracking.attach(home, run_id).log_text(markdown, "gate/report.md")
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.home import Home
from components.common.paths import safe_relpath


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v)[:500]
    return out


@dataclass(frozen=True)
class Run:
    """Writes to one MLflow run by id (no active-run state needed)."""

    client: Any
    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            if k != "epoch":
                self.client.log_metric(self.run_id, k, float(v), step=step or 0)

    def log_params(self, params: dict[str, Any]) -> None:
        for k, v in flatten(params).items():
            self.client.log_param(self.run_id, k, v)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, safe_relpath(artifact_file))

    def log_dict(self, obj: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, obj, safe_relpath(artifact_file))

    def log_dataset(self, frame, name: str, digest: str, source: str, targets: str | None = None,
                    context: str = "training") -> None:
        """Log a dataset as the run's input (the run page's "Datasets"), with `digest` as its identity
        (a data version: DVC's md5) rather than MLflow's hash of a sample of rows."""
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # a local path matches two equivalent source resolvers
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(frame, source=source, name=name, digest=digest, targets=targets)
        # the entity mlflow.log_input builds from a Dataset, here for a run that need not be active
        self.client.log_inputs(self.run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                                          [InputTag("mlflow.data.context", context)])])

    def metric_logger(self) -> Callable[[dict[str, float], int], None]:
        """A callback(metrics, step) for the trainer's per-step metrics."""
        return lambda metrics, step: self.log_metrics(metrics, step)

    @property
    def location(self) -> str:
        return f"runs:/{self.run_id}"


@contextmanager
def start_run(home: Home, name: str, tags: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> Iterator[Run]:
    """A new run in the distillops experiment, ended (FINISHED, or FAILED on an error) after the block."""
    import mlflow

    from components.common.registry import connect

    client = connect(home)
    with mlflow.start_run(run_name=name, nested=mlflow.active_run() is not None) as active:
        run = Run(client, active.info.run_id)
        commit = source_commit()
        if commit:
            run.set_tags({"mlflow.source.git.commit": commit})
        if tags:
            run.set_tags(tags)
        if params:
            run.log_params(params)
        yield run


def attach(home: Home, run_id: str) -> Run:
    """Write into an existing run (e.g. the gate's report into the training run)."""
    from components.common.registry import connect

    return Run(connect(home), run_id)


def source_commit() -> str | None:
    """The git commit of the code that is running: $DISTILLOPS_GIT_COMMIT (set in the image), else
    `git rev-parse HEAD` of the checkout this package lies in; None outside a git checkout."""
    if os.environ.get("DISTILLOPS_GIT_COMMIT"):
        return os.environ["DISTILLOPS_GIT_COMMIT"]
    here = Path(__file__).resolve()
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=here.parent, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    # installed into some other repository's tree (a venv inside a project): not this code's commit
    if len(lines) != 2 or not (Path(lines[0]) / "components" / "common" / here.name).resolve() == here:
        return None
    return lines[1] if len(lines[1]) == 40 else None


def _describe_logged(client, info, card: str | None, license_text: str | None) -> None:
    """The logged model's README.md and LICENSE.txt (`card`, `license_text`), replacing MLflow's
    placeholder LICENSE.txt (which names the temporary directory the model was saved from)."""
    from components.common.model_card import CARD_FILE, LICENSE_FILE

    extra = {CARD_FILE: card, LICENSE_FILE: license_text}
    if any(extra.values()):
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in extra.items():
                if text:
                    Path(tmp, name).write_text(text, encoding="utf-8")
            client.log_model_artifacts(info.model_id, tmp)


def log_model(home: Home, model_dir: str | Path, run_id: str | None = None, input_example: list[str] | None = None,
              card: str | None = None, license_text: str | None = None) -> str:
    """Log a saved classifier (transformers flavor) into a run; returns the logged model's URI.

    `input_example`: a few texts, logged with the model (and its signature inferred from them).
    `card` and `license_text` become the logged model's README.md and LICENSE.txt: MLflow writes a
    placeholder LICENSE.txt naming the temporary directory the model was saved from, so the base
    model's license would be lost."""
    import mlflow
    import mlflow.transformers

    from components.common.modeling import load_classifier
    from components.common.registry import MODEL_REQUIREMENTS, connect

    client = connect(home)
    model, tokenizer = load_classifier(model_dir)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer}, name="model", task="text-classification",
            pip_requirements=MODEL_REQUIREMENTS, input_example=list(input_example) if input_example else None,
        )
    _describe_logged(client, info, card, license_text)
    return info.model_uri


# A placeholder no prompt contains, rendered through the chat template to find where a prompt goes.
_PROMPT_SLOT = "DISTILLOPS-PROMPT-SLOT-5e1f0c"


def prompt_template(tokenizer) -> str | None:
    """The tokenizer's chat template as MLflow's ``prompt_template`` (one ``{prompt}`` field; every
    other brace doubled): a raw prompt sent to the served model is rendered exactly as
    ``generation.render_prompts`` renders it for the teacher, the gate and training (a one-turn
    user message, the assistant turn opened). None when the tokenizer has no chat template."""
    from components.common.generation import render_prompts

    if not getattr(tokenizer, "chat_template", None):
        return None
    rendered = render_prompts(tokenizer, [_PROMPT_SLOT])[0]
    if rendered.count(_PROMPT_SLOT) != 1:
        raise ValueError(f"the tokenizer's chat template renders a one-turn prompt with the prompt "
                         f"{rendered.count(_PROMPT_SLOT)} times ({rendered[:200]!r}); expected once")
    return rendered.replace("{", "{{").replace("}", "}}").replace(_PROMPT_SLOT, "{prompt}")


def generation_inference_config(max_new_tokens: int | None = None) -> dict[str, Any]:
    """What a served causal LM does with a prompt (MLflow's ``model_config``, the pipeline call's
    keyword arguments): greedy decoding as the gate measured it, the prompt tokenized as rendered
    (no extra special tokens, as the teacher and the gate tokenize it), only the answer returned."""
    config: dict[str, Any] = {"do_sample": False, "return_full_text": False, "add_special_tokens": False}
    if max_new_tokens is not None:
        config["max_new_tokens"] = int(max_new_tokens)
    return config


def log_lm_model(home: Home, model_dir: str | Path, run_id: str | None = None, input_example: list[str] | None = None,
                 card: str | None = None, license_text: str | None = None, max_new_tokens: int | None = None) -> str:
    """Log a saved causal LM (transformers flavor, task text-generation) into a run; returns the
    logged model's URI.

    ``mlflow.pyfunc.load_model(uri).predict(["a prompt"])`` (and ``mlflow models serve``) answers a
    list of generated texts: each prompt goes through the tokenizer's chat template
    (:func:`prompt_template`) and is answered greedily with at most `max_new_tokens` new tokens
    (:func:`generation_inference_config`). `input_example`: a few prompts, logged with the model (its
    signature inferred by generating for them). `card` and `license_text`: as for :func:`log_model`."""
    import mlflow
    import mlflow.transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from components.common.modeling import check_model_dir
    from components.common.registry import MODEL_REQUIREMENTS, connect

    client = connect(home)
    check_model_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
    model.eval()
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer}, name="model", task="text-generation",
            pip_requirements=MODEL_REQUIREMENTS, input_example=list(input_example) if input_example else None,
            prompt_template=prompt_template(tokenizer), model_config=generation_inference_config(max_new_tokens),
        )
    _describe_logged(client, info, card, license_text)
    return info.model_uri
