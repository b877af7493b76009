"""What monitor_drift measures on the monitored model, per task: the rows Evidently compares (text
descriptors, plus the predicted label for a classifier), the model's embeddings of its inputs, and
the teacher-student disagreement on a sample of reference and production inputs.

- ``ClassifierView`` (task classification): the student's predicted label is a column; embeddings
  are its mean-pooled last hidden states; disagreement is the share of inputs where the student's
  label is not the teacher's.
- ``LMView`` (task generation): the inputs are prompts; no label column; embeddings are the causal
  LM's mean-pooled last hidden states over the prompt's tokens; disagreement is 1 - ROUGE-L of the
  student's greedy answer against the teacher's (both on the chat-rendered prompt), averaged.

The teacher is the one the monitored model was distilled from (its lineage tags), pinned to that
version, in both.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from components.common.config import Config
from components.common.dataset import read_prompt_snapshot, read_snapshot
from components.common.home import Home
from components.common.modeling import encode, fitted_max_length, label_names, load_classifier, predict_logits
from components.common.numerics import masked_mean
from components.common.teachers import load_pinned, load_teacher, pinned_ref_for
from components.monitor_drift.core import disagreement_from_rates, disagreement_result, text_descriptors

LABEL_COLUMN = "predicted_label"


def sample(texts: list[str], n: int, seed: int = 0) -> list[str]:
    return texts if len(texts) <= n else random.Random(seed).sample(texts, n)


def _pinned_teacher(h: Home, mv, configured_ref: str):
    version = mv.tags.get("teacher_version", "")
    return load_pinned(pinned_ref_for(mv.tags.get("teacher_ref") or configured_ref, version), version, h,
                       where=f"the teacher of {mv.name} v{mv.version}")


class ClassifierView:
    task = "classification"
    label_column: str | None = LABEL_COLUMN

    def __init__(self, model_path: Path, cfg: Config):
        self.model, self.tokenizer = load_classifier(model_path)
        self.cfg = cfg

    @staticmethod
    def training_texts(snapshot_path: Path) -> list[str]:
        return read_snapshot(snapshot_path).split("train")[0]

    @staticmethod
    def all_texts(snapshot_path: Path) -> list[str]:
        return read_snapshot(snapshot_path).texts

    def labels(self, texts: list[str]) -> np.ndarray:
        names = label_names(self.model)
        logits = predict_logits(self.model, self.tokenizer, texts, self.cfg.distill.max_length)
        return np.array([names[i] for i in logits.argmax(-1)])

    def frame(self, texts: list[str]):
        frame = text_descriptors(texts)
        frame[LABEL_COLUMN] = list(self.labels(texts))
        return frame

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Mean-pooled last hidden states of the monitored model: what it 'sees' in each input."""
        import torch

        out = []
        max_length = fitted_max_length(self.model, self.cfg.distill.max_length)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = encode(self.tokenizer, texts[start:start + batch_size], max_length)
                hidden = self.model(**enc, output_hidden_states=True).hidden_states[-1]
                out.append(masked_mean(hidden, enc["attention_mask"]).float().numpy())
        return np.concatenate(out)

    def disagreement(self, h: Home, mv, reference: list[str], production: list[str]) -> dict:
        """Teacher and student label the same samples of reference and production inputs."""
        cfg = self.cfg
        teacher = _pinned_teacher(h, mv, cfg.teacher.ref)
        loaded = load_teacher(teacher)

        def teacher_labels(texts):
            names = label_names(loaded.model)
            logits = predict_logits(loaded.model, loaded.tokenizer, texts, cfg.teacher.max_length)
            return np.array([names[i] for i in logits.argmax(-1)])

        n = cfg.drift.disagreement_sample
        ref, prod = sample(reference, n, seed=1), sample(production, n, seed=1)
        result = disagreement_result(self.labels(ref), teacher_labels(ref), self.labels(prod), teacher_labels(prod),
                                     cfg.drift.max_disagreement_increase)
        result["teacher_version"] = teacher.version
        return result


class LMView:
    task = "generation"
    label_column: str | None = None

    def __init__(self, model_path: Path, cfg: Config):
        loaded = load_teacher(model_path)  # any causal-LM directory, through the causal_lm adapter
        if "generation" not in loaded.produces:
            from components.common.modeling import ModelError

            raise ModelError(f"{model_path}: the monitored model is a {loaded.kind}, not a causal LM; task "
                             f"generation monitors generative students")
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.cfg = cfg

    @staticmethod
    def training_texts(snapshot_path: Path) -> list[str]:
        return read_prompt_snapshot(snapshot_path).split("train")[0]

    @staticmethod
    def all_texts(snapshot_path: Path) -> list[str]:
        return read_prompt_snapshot(snapshot_path).prompts

    def frame(self, texts: list[str]):
        return text_descriptors(texts)

    def embed(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """Mean-pooled last hidden states of the causal LM over each prompt's own tokens (no chat
        template: its fixed tokens would pull every prompt's mean toward the same point)."""
        import torch

        self.tokenizer.padding_side = "right"
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                                     truncation=True, max_length=self.cfg.generation.max_length)
                hidden = self.model(**enc, output_hidden_states=True).hidden_states[-1]
                out.append(masked_mean(hidden, enc["attention_mask"]).float().numpy())
        return np.concatenate(out)

    def disagreement(self, h: Home, mv, reference: list[str], production: list[str]) -> dict:
        """Teacher and student answer the same samples of reference and production prompts (greedy,
        generation.max_new_tokens); per prompt, 1 - ROUGE-L of the student's answer against the
        teacher's; the rates are the means."""
        from components.common.generation import render_prompts
        from components.distillation.lm_measure import greedy_answers, rouge_l

        cfg = self.cfg
        teacher = _pinned_teacher(h, mv, cfg.generation.teacher_ref)
        loaded = load_teacher(teacher)
        if "generation" not in loaded.produces:
            from components.common.modeling import ModelError

            raise ModelError(f"the teacher of {mv.name} v{mv.version} ({teacher.version}) is a {loaded.kind}, not a "
                             f"causal LM")
        n, max_new = cfg.drift.lm_disagreement_sample, cfg.generation.max_new_tokens
        batch = cfg.generation.batch_size

        def rate(prompts: list[str]) -> float:
            t = greedy_answers(loaded.model, loaded.tokenizer, render_prompts(loaded.tokenizer, prompts), max_new,
                               batch)
            s = greedy_answers(self.model, self.tokenizer, render_prompts(self.tokenizer, prompts), max_new, batch)
            return float(np.mean([1.0 - rouge_l(a, b) for a, b in zip(s, t, strict=True)]))

        ref, prod = sample(reference, n, seed=1), sample(production, n, seed=1)
        result = disagreement_from_rates(rate(ref), rate(prod), len(prod), cfg.drift.max_disagreement_increase)
        result.update(teacher_version=teacher.version, measure="1 - ROUGE-L of the student's answer against the "
                      "teacher's (greedy), mean over the sample")
        return result


VIEWS = {"classification": ClassifierView, "generation": LMView}


def view_for(task: str, model_path: Path, cfg: Config):
    return VIEWS[task](model_path, cfg)
