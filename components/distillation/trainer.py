"""The distillation library's trainer: a deterministic, resumable loop over composed distillation losses.

The same trainer fine-tunes the teacher (losses {ce: 1}: labels only, no teacher outputs), distils
classifiers (``classifier.train_classifier``) and sentence-embedding students (``embedder.train_embedder``).

The loop (:func:`train_loop`) owns what every run needs: warmup + linear/cosine decay, gradient
accumulation, clipping, early stopping on validation, seeds, checkpoint/resume, a progress bar,
per-step metrics and bf16 autocast on CUDA. It sees the data only through ``batch_loss(indices)``
and the order of rows through ``order(epoch)``, so a distributed run can swap in a sharded order
(a DistributedSampler's indices) and a DDP-wrapped model without touching it.

Checkpoints (checkpoint.py) survive crashes: a torn one is quarantined and the previous one resumes.
SIGTERM (a preempted pod) checkpoints at the next step boundary and raises
:class:`~components.distillation.preemption.Preempted`; a step that runs out of memory raises
:class:`OutOfMemory` naming the intact checkpoint a rerun resumes from.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from components.common.runtime import progress_bars_enabled
from components.distillation import distributed as ddp
from components.distillation.checkpoint import load_latest, save_checkpoint
from components.distillation.preemption import Preempted, stop_on_sigterm

log = logging.getLogger(__name__)


class OutOfMemory(RuntimeError):
    """A step ran out of (GPU) memory; the last checkpoint is intact and a rerun resumes from it."""


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    max_length: int
    temperature: float = 1.0
    alpha: float = 0.0
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    seed: int = 0
    # key -> weight; empty = {kl: alpha, ce: 1 - alpha} (alpha 0: plain fine-tuning)
    losses: Mapping[str, float] = field(default_factory=dict)
    # (student layer, teacher layer) pairs for hidden/pooled/attention losses
    layer_map: tuple[tuple[int, int], ...] = ()
    projection: bool = True
    grad_accumulation: int = 1
    max_grad_norm: float = 1.0
    schedule: str = "linear"
    # epochs without validation improvement before stopping; 0 = never stop early
    early_stopping_patience: int = 0
    checkpoint_dir: str = ""
    checkpoint_every: int = 0
    log_every: int = 10
    # the config key that sets batch_size, named in the out-of-memory error
    batch_size_key: str = "distill.batch_size"


@dataclass
class TrainResult:
    best_validation_accuracy: float
    best_epoch: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    stopped_early: bool = False
    projections: dict[str, torch.nn.Module] = field(default_factory=dict)


def _schedule(step: int, total: int, warmup: int, kind: str = "linear") -> float:
    """Linear warmup, then linear (or cosine) decay to zero.

    After warmup this is transformers' ``get_scheduler("linear" | "cosine")``; during warmup it is
    one step ahead of it, since the library's first step has lr 0 (a wasted optimizer step, and
    every trained student would change). tests/unit/test_trainer.py pins both facts.
    """
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(0.0, (total - step) / max(1, total - warmup))


def device_for_training() -> torch.device:
    if torch.cuda.is_available() and ddp.requested_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per torchrun process
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _StepModule(torch.nn.Module):
    """The trainable modules with batch_loss as forward, so one DistributedDataParallel wrapper
    sees every parameter (the model and any projections) and its forward runs the whole loss."""

    def __init__(self, modules: Mapping[str, torch.nn.Module], batch_loss):
        super().__init__()
        self.parts = torch.nn.ModuleDict(dict(modules))
        self._batch_loss = batch_loss

    def forward(self, idx: list[int]):
        return self._batch_loss(idx)


def train_loop(modules: Mapping[str, torch.nn.Module], n: int, settings: TrainSettings,
               batch_loss: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]],
               evaluate: Callable[[], float] | None = None,
               on_metrics: Callable[[dict[str, float], int], None] | None = None,
               order: Callable[[int, torch.Generator], list[int]] | None = None,
               desc: str = "train") -> TrainResult:
    """Optimise every parameter of `modules` ("model" is the one whose best-epoch weights are kept).

    `batch_loss(indices)` returns (loss, parts) for a micro-batch; `evaluate()` a validation score
    (higher is better) after each epoch. With `settings.checkpoint_dir`, state is saved every
    `checkpoint_every` optimizer steps and at each epoch end; a run that finds a checkpoint there
    continues from it and reaches the same weights as an uninterrupted run with the same seed.
    SIGTERM (in the main thread) makes the loop checkpoint at the next step boundary and raise
    Preempted; a step that runs out of memory raises OutOfMemory; neither leaves a partial checkpoint.

    Inside a torch.distributed process group (torchrun, see distributed.py) each rank trains on its
    shard of every epoch's order with batch_size / world_size rows per micro-batch under
    DistributedDataParallel; only rank 0 reports metrics and writes checkpoints, and rank 0's
    validation score decides the best epoch and early stopping on every rank.
    """
    seed_everything(settings.seed)
    if settings.grad_accumulation < 1:
        raise ValueError(f"grad_accumulation must be >= 1, got {settings.grad_accumulation}")
    distributed, rank, world = ddp.active(), ddp.rank(), ddp.world_size()
    batch_size = ddp.per_rank_batch(settings.batch_size, world) if distributed else settings.batch_size
    main = rank == 0
    if not main:
        on_metrics = None
    micro = math.ceil(n / settings.batch_size)
    steps_per_epoch = math.ceil(micro / settings.grad_accumulation)
    total = steps_per_epoch * settings.epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = [(f"{m}.{k}", p) for m, mod in modules.items() for k, p in mod.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for k, p in named if not k.endswith(no_decay)], "weight_decay": settings.weight_decay},
        {"params": [p for k, p in named if k.endswith(no_decay)], "weight_decay": 0.0},
    ]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    warmup = int(total * settings.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _schedule(s, total, warmup, settings.schedule))
    generator = torch.Generator().manual_seed(settings.seed)
    order = order or (lambda epoch, g: torch.randperm(n, generator=g).tolist())
    device = next(modules["model"].parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    state = {"epoch": 1, "micro": 0, "step": 0, "perm": None, "running": 0.0, "best": (-math.inf, 0, None),
             "history": [], "bad_epochs": 0, "stopped_early": False}
    ckpt = settings.checkpoint_dir or None
    # every rank resumes from the same checkpoint (a shared volume); only rank 0 writes it
    # (only rank 0 moves a torn checkpoint aside; the others skip it)
    resumed_from = 0
    last: dict = {"step": None, "path": None}  # the newest checkpoint on disk, for error messages
    if ckpt is not None:
        loaded = load_latest(ckpt, dict(modules), optimizer, scheduler, generator, tidy=main)
        if loaded is not None:
            state, path = loaded
            resumed_from = state["step"]
            last.update(step=state["step"], path=path)

    def checkpoint() -> None:
        if ckpt is None or not main:
            return
        path = save_checkpoint(ckpt, dict(modules), optimizer, scheduler, generator, state)
        last.update(step=state["step"], path=path)

    def stop_requested(stop: dict) -> bool:
        if not distributed:
            return stop["signal"] is not None
        # every rank must stop at the same step (their collectives would hang otherwise)
        return ddp.all_mean(1.0 if stop["signal"] else 0.0, device) > 0

    def preempt(stop: dict, saved: bool) -> None:
        if not saved:
            checkpoint()
        what = ("with no checkpoint_dir set: nothing was saved" if ckpt is None else
                f"after writing checkpoint {last['path']}; a rerun (or a KFP retry) resumes from it" if main else
                "(rank 0 wrote the checkpoint a rerun resumes from)")
        raise Preempted(f"{stop['signal'] or 'SIGTERM'} received: training stopped at step {state['step']} {what}",
                        step=state["step"], checkpoint=str(last["path"] or ""))

    def out_of_memory(exc: BaseException) -> OutOfMemory:
        kept = (f"the last checkpoint (step {last['step']}, {last['path']}) is intact and a rerun resumes from it"
                if last["path"] is not None else "no checkpoint was written yet")
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return OutOfMemory(f"out of memory at step {state['step'] + 1} (micro-batches of {batch_size} rows: "
                           f"{first_line}); {kept}; lower {settings.batch_size_key} (and raise "
                           f"distill.grad_accumulation to keep the effective batch)")

    step_fn, step_module = batch_loss, None
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        # built after any resume: DDP broadcasts rank 0's parameters, so all ranks start equal.
        # find_unused_parameters: a loss may leave parameters without gradients (e.g. a pooler).
        step_module = DistributedDataParallel(
            _StepModule(modules, batch_loss), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)
        step_fn = step_module

    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=state["step"], desc=desc, unit="step",
               disable=not (main and progress_bars_enabled()))
    with stop_on_sigterm() as stop, contextlib.closing(bar):
        while state["epoch"] <= settings.epochs and not state["stopped_early"]:
            for mod in modules.values():
                mod.train()
            if state["perm"] is None:
                state["perm"] = order(state["epoch"], generator)
                state["micro"], state["running"] = 0, 0.0
            perm = ddp.shard(state["perm"], rank, world) if distributed else state["perm"]
            while state["micro"] < micro:
                first = state["micro"]
                chunk = range(first, min(first + settings.grad_accumulation, micro))
                optimizer.zero_grad(set_to_none=True)
                step_loss, parts = 0.0, {}
                try:
                    for j in chunk:
                        idx = perm[j * batch_size:(j + 1) * batch_size]
                        # DDP: all-reduce gradients only on the last micro-batch of an accumulation chunk
                        sync = step_module.no_sync() if step_module is not None and j != chunk[-1] else \
                            contextlib.nullcontext()
                        with sync:
                            with autocast:
                                loss, parts = step_fn(idx)
                            (loss / len(chunk)).backward()
                        step_loss += loss.item() / len(chunk)
                except RuntimeError as exc:
                    if _out_of_memory(exc):
                        raise out_of_memory(exc) from exc
                    raise
                step_loss = ddp.all_mean(step_loss, device)  # the global batch's loss, the same on every rank
                if settings.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                state["micro"] = chunk.stop
                state["running"] += step_loss
                state["step"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}")
                if on_metrics and settings.log_every and state["step"] % settings.log_every == 0:
                    on_metrics({"step_loss": step_loss, "learning_rate": scheduler.get_last_lr()[0],
                                **{f"loss_{k}": v for k, v in parts.items()}}, state["step"])
                saved = bool(settings.checkpoint_every and state["step"] % settings.checkpoint_every == 0)
                if saved:
                    checkpoint()
                if stop_requested(stop):  # a step boundary: the state is whole
                    preempt(stop, saved)
            epoch = state["epoch"]
            metrics = {"epoch": epoch, "train_loss": state["running"] / steps_per_epoch}
            if evaluate is not None:
                # evaluated on rank 0 only and broadcast, so every rank takes the same best/stop decision
                metrics["validation_score"] = ddp.from_main(evaluate() if main else 0.0, device)
            score = metrics.get("validation_score", -metrics["train_loss"])
            best = state["best"]
            if score > best[0] or best[2] is None:
                state["best"] = (score, epoch, copy.deepcopy({k: m.state_dict() for k, m in modules.items()}))
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
                if settings.early_stopping_patience and state["bad_epochs"] >= settings.early_stopping_patience:
                    state["stopped_early"] = True
            state["history"].append(metrics)
            if main:  # one line per epoch: progress where no progress bar is drawn (pipelines, CI logs)
                log.info("%s: epoch %d/%d, train loss %.4f%s; best epoch %d (%.0f s)", desc, epoch, settings.epochs,
                         metrics["train_loss"],
                         f", validation {metrics['validation_score']:.4f}" if "validation_score" in metrics else "",
                         state["best"][1], time.perf_counter() - t0)
            state["epoch"] += 1
            state["perm"] = None
            if on_metrics:
                on_metrics(metrics, state["step"])
            checkpoint()
            more = state["epoch"] <= settings.epochs and not state["stopped_early"]
            if stop_requested(stop) and more:  # (a finished run just finishes)
                preempt(stop, saved=True)
    best_score, best_epoch, best_state = state["best"]
    for name, mod in modules.items():
        mod.load_state_dict(best_state[name])
    for mod in modules.values():
        mod.eval()
    return TrainResult(best_validation_accuracy=float(best_score) if evaluate is not None else float("nan"),
                       best_epoch=best_epoch, steps=state["step"], seconds=time.perf_counter() - t0,
                       history=state["history"], resumed_from_step=resumed_from,
                       stopped_early=state["stopped_early"],
                       projections={k: v for k, v in modules.items() if k != "model"})
