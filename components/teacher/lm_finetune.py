"""Fine-tune a causal-LM teacher on prompt/response pairs (``distillops teacher --task generation --data``).

Each pair is its prompt rendered through the tokenizer's chat template (as the DAG renders prompts
for the teacher) followed by the response and EOS; the loss is cross-entropy on the response tokens
only (lm_trainer.finetune_on_references). Like the classification teacher: one run per
teacher.learning_rates candidate, at most teacher.epochs, early stopping on the validation loss
(teacher.early_stopping_patience), the best epoch kept; the lowest validation loss wins. The base
model's own validation loss is the floor runner.py refuses to register a teacher at or above.

With generation.teacher_lora_r > 0, LoRA adapters (Hu et al. 2021, https://arxiv.org/abs/2106.09685)
on the attention q/v projections are trained instead of every weight, then merged into them, so what
is saved is a plain causal-LM folder. Training runs in float32 on the CPU, like the generative student.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from components.common.config import Config
from components.common.dataset import DatasetError
from components.common.generation import render_prompts
from components.common.modeling import ModelError
from components.distillation.lm_trainer import build_reference_examples, finetune_on_references, teacher_nll
from components.distillation.trainer import TrainResult, TrainSettings, seed_everything

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "v_proj")


@dataclass
class LMFineTune:
    model: object  # a plain causal LM (adapters merged)
    tokenizer: object
    result: TrainResult
    learning_rate: float
    base_validation_loss: float
    validation_loss: float  # the best epoch's
    validation_loss_per_epoch: list[float]
    base_test_loss: float | None = None
    test_loss: float | None = None
    sweep: list[dict] = field(default_factory=list)


def _load(base: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True, trust_remote_code=False,
                                                 dtype=torch.float32)  # bf16 weights would train poorly on CPU
    return model, tokenizer


def add_lora(model, r: int, alpha: int, where: str):
    """`model` with trainable LoRA adapters of rank `r` on its q/v attention projections (peft); every
    other weight frozen. merge_adapters() folds them back into plain weights."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ModelError("generation.teacher_lora_r > 0 needs peft installed (pip install peft)") from exc
    names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n.endswith(LORA_TARGETS)})
    if not names:
        raise ModelError(f"{where}: no attention {' / '.join(LORA_TARGETS)} projections to put LoRA adapters on; "
                         f"set generation.teacher_lora_r: 0 for a full fine-tune")
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=names,
                                            task_type="CAUSAL_LM"))


def merge_adapters(model):
    """A peft model's adapters folded into its weights (a plain transformers model); others unchanged."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def pad_id(tokenizer) -> int:
    # padded positions are masked and never targets: any id will do when the tokenizer has no pad token
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def reference_examples(tokenizer, prompts: list[str], responses: list[str | None], max_length: int):
    return build_reference_examples(tokenizer, render_prompts(tokenizer, prompts), responses, max_length)


def settings_for(cfg: Config, learning_rate: float) -> TrainSettings:
    """The teacher section's optimisation keys; generation.max_length bounds a sequence."""
    t = cfg.teacher
    return TrainSettings(epochs=t.epochs, batch_size=t.train_batch_size, learning_rate=learning_rate,
                         max_length=cfg.generation.max_length, seed=t.seed,
                         early_stopping_patience=t.early_stopping_patience, batch_size_key="teacher.train_batch_size")


def _finetune_once(base: str, train, val, cfg: Config, learning_rate: float, on_metrics=None):
    g = cfg.generation
    model, tokenizer = _load(base)
    if g.teacher_lora_r > 0:
        seed_everything(cfg.teacher.seed)  # the adapters' initialisation is random
        model = add_lora(model, g.teacher_lora_r, g.teacher_lora_alpha, base)
    result = finetune_on_references(model, train, settings_for(cfg, learning_rate), pad_id(tokenizer), val,
                                    on_metrics=on_metrics, desc=f"fine-tune generation teacher (lr {learning_rate:g})")
    return merge_adapters(model), result


def finetune_lm(base: str, snapshot, cfg: Config, on_metrics=None) -> LMFineTune:
    """`base` fine-tuned on the train split of `snapshot` (a PromptSnapshot whose every row has a
    response), judged on its validation split against the base model's own validation loss."""
    g = cfg.generation
    if not snapshot.split("validation")[0]:
        raise DatasetError(f"no validation pairs among {len(snapshot)} prompts: the validation split picks the epoch "
                           f"and is compared with the base model's (add pairs or raise data.validation_fraction)")
    base_model, tokenizer = _load(base)
    pad = pad_id(tokenizer)
    train, val, test = (reference_examples(tokenizer, *snapshot.split(s), g.max_length)
                        for s in ("train", "validation", "test"))
    base_val, base_test = teacher_nll(base_model, val, pad), teacher_nll(base_model, test, pad)
    del base_model
    best, sweep = None, []
    for lr in cfg.teacher.learning_rates:
        model, result = _finetune_once(base, train, val, cfg, lr, on_metrics)
        per_epoch = [round(-h["validation_score"], 4) for h in result.history]
        val_loss = -result.best_validation_accuracy  # the validation score is -(loss)
        sweep.append({"learning_rate": lr, "validation_loss_per_epoch": per_epoch,
                      "best_validation_loss": round(val_loss, 4), "best_epoch": result.best_epoch,
                      "stopped_early": result.stopped_early, "seconds": round(result.seconds, 1)})
        log.info("generation teacher lr %g: validation loss per epoch %s (best %.4f, epoch %d; base model %.4f)", lr,
                 per_epoch, val_loss, result.best_epoch, base_val)
        if best is None or val_loss < best.validation_loss:
            best = LMFineTune(model, tokenizer, result, lr, base_val, val_loss, per_epoch, base_test)
    best.test_loss = teacher_nll(best.model, test, pad)
    for entry in sweep:
        entry["chosen"] = entry["learning_rate"] == best.learning_rate
    best.sweep = sweep
    return best
