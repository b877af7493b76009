"""What monitor_drift measures on the monitored model, per task: the rows Evidently compares (text
descriptors, plus the predicted label for a classifier), the model's embeddings of its inputs, and
the teacher-student disagreement on a sample of reference and production inputs.

- ``ClassifierView`` (task classification): the student's predicted label is a column; embeddings
  are its mean-pooled last hidden states; disagreement is the share of inputs where the student's
  label is not the teacher's.
- ``LMView`` (task generation): the inputs are prompts; no label column; embeddings are the causal
  LM's mean-pooled last hidden states over the prompt's tokens; disagreement is 1 - ROUGE-L of the
  student's greedy answer against the teacher's (both on the chat-rendered prompt), averaged. The
  teacher's answers are its cached generations: read from the teacher store under the cache step's
  keys and decoding (``generation.*``), the missing ones generated and written back
  (common/teacher_generations.py), so the training prompts cost no teacher call and a production
  prompt answered here costs the redistillation's cache step none.

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
from components.common.modeling import (
    ModelError,
    encode,
    fitted_max_length,
    label_names,
    load_classifier,
    predict_logits,
)
from components.common.numerics import masked_mean
from components.common.teacher_generations import GenerationFiller, decoding_of, generation_texts
from components.common.teacher_store import open_store
from components.common.teachers import (
    LoadedTeacher,
    ResolvedTeacher,
    load_pinned,
    load_teacher,
    pinned_ref_for,
)
from components.monitor_drift.core import disagreement_from_rates, disagreement_result, text_descriptors

LABEL_COLUMN = "predicted_label"


def sample(texts: list[str], n: int, seed: int = 0) -> list[str]:
    return texts if len(texts) <= n else random.Random(seed).sample(texts, n)


# What a model must produce, by output family (LoadedTeacher.produces), in an error's words.
_PRODUCES = {"logits": "a sequence classifier", "generation": "a causal LM"}


def _load_producing(model, produces: str, what: str, hint: str = "") -> LoadedTeacher:
    """`model` (a resolved teacher or a model directory) loaded through its adapter; a ModelError
    naming `what` when it cannot produce `produces`."""
    loaded = load_teacher(model)
    if produces not in loaded.produces:
        raise ModelError(f"{what} is a {loaded.kind}, not {_PRODUCES[produces]}{hint}")
    return loaded


def _pinned_teacher(h: Home, mv, configured_ref: str, produces: str) -> tuple[ResolvedTeacher, LoadedTeacher]:
    """The teacher `mv` was distilled from (its lineage tags; `configured_ref` where it has none),
    pinned to the recorded version and loaded; it must produce `produces`."""
    version = mv.tags.get("teacher_version", "")
    where = f"the teacher of {mv.name} v{mv.version}"
    teacher = load_pinned(pinned_ref_for(mv.tags.get("teacher_ref") or configured_ref, version), version, h,
                          where=where)
    return teacher, _load_producing(teacher, produces, f"{where} ({teacher.version})")


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
        teacher, loaded = _pinned_teacher(h, mv, cfg.teacher.ref, "logits")

        def teacher_labels(texts):
            names = label_names(loaded.model)
            logits = predict_logits(loaded.model, loaded.tokenizer, texts, cfg.teacher.max_length)
            return np.array([names[i] for i in logits.argmax(-1)])

        n = cfg.drift.disagreement_sample
        ref, prod = sample(reference, n, seed=1), sample(production, n, seed=1)
        result = disagreement_result(self.labels(ref), teacher_labels(ref), self.labels(prod), teacher_labels(prod),
                                     cfg.drift.max_disagreement_increase)
        # every sampled text went through the teacher (classifier logits are not read from the store)
        result.update(teacher_version=teacher.version, teacher_calls=len(ref) + len(prod), teacher_answers_cached=0)
        return result


class LMView:
    task = "generation"
    label_column: str | None = None

    def __init__(self, model_path: Path, cfg: Config):
        # any causal-LM directory, through the causal_lm adapter
        loaded = _load_producing(model_path, "generation", f"{model_path}: the monitored model",
                                 "; task generation monitors generative students")
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
        """Teacher and student answer the same samples of reference and production prompts; per prompt,
        1 - ROUGE-L of the student's greedy answer (generation.max_new_tokens) against the teacher's;
        the rates are the means.

        The teacher's answers are its generations in the teacher store, keyed and decoded as the cache
        step does (generation: max_new_tokens, temperature, top_p, seed, top_k): read where present
        (the champion's training prompts are), generated in batches and written where not (each flush
        one whole shard), so the redistillation's cache step finds the production prompts answered.
        ``teacher_calls``: distinct prompts sent to the teacher; ``teacher_answers_cached``: distinct
        prompts read from the store. The keys are recorded as the ref ``monitor_drift--<model name>``
        (each run replaces it), so ``cache gc`` keeps them until the next monitor run."""
        from components.common.generation import render_prompts
        from components.distillation.lm_measure import greedy_answers, rouge_l

        cfg, g = self.cfg, self.cfg.generation
        teacher, loaded = _pinned_teacher(h, mv, g.teacher_ref, "generation")
        store = open_store(h, cfg.cache.url)
        filler = GenerationFiller(store, loaded, teacher.version, decoding_of(g), g.top_k, g.batch_size,
                                  cfg.cache.flush_rows)
        n = cfg.drift.lm_disagreement_sample
        ref, prod = sample(reference, n, seed=1), sample(production, n, seed=1)
        keys, generations = filler.outputs(ref + prod)  # one pass: both samples share the teacher's batches
        store.record_ref(f"monitor_drift--{mv.name}", keys)
        answers = generation_texts(loaded.tokenizer, generations)

        def rate(prompts: list[str], teacher_answers: list[str]) -> float:
            student = greedy_answers(self.model, self.tokenizer, render_prompts(self.tokenizer, prompts),
                                     g.max_new_tokens, g.batch_size)
            return float(np.mean([1.0 - rouge_l(s, t) for s, t in zip(student, teacher_answers, strict=True)]))

        result = disagreement_from_rates(rate(ref, answers[:len(ref)]), rate(prod, answers[len(ref):]), len(prod),
                                         cfg.drift.max_disagreement_increase)
        teacher_decoding = "sampled" if decoding_of(g).sampled else "greedy"
        result.update(teacher_version=teacher.version, teacher_calls=filler.computed,
                      teacher_answers_cached=filler.from_store,
                      measure=f"1 - ROUGE-L of the student's answer (greedy) against the teacher's ({teacher_decoding}, "
                              f"as cached), mean over the sample")
        return result


VIEWS = {"classification": ClassifierView, "generation": LMView}


def view_for(task: str, model_path: Path, cfg: Config):
    return VIEWS[task](model_path, cfg)
