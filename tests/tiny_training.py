"""A tiny, deterministic training through the real trainer loop (a 2-layer MLP with dropout on 64
fixed rows: 8 optimizer steps per epoch), in-process or as its own process for the tests that kill it.

As a process (the tests send it SIGKILL or SIGTERM mid-run)::

    python tests/tiny_training.py CKPT_DIR OUT.safetensors [--pause S] [--die-in-marker N]

prints ``step N`` after every optimizer step (then sleeps S seconds), writes the final weights to OUT
and a last JSON line (resumed_from_step, steps, the logged metric steps). A preempted run exits with
``Preempted.exit_code``, as the CLI does. ``--die-in-marker N`` SIGKILLs the process on the N-th
checkpoint save after its tensors are written and before its completeness marker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import torch

from components.distillation.trainer import TrainSettings, train_loop

STEPS_PER_EPOCH = 8


def tiny_modules() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"model": torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                         torch.nn.Linear(16, 3))}


def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def train(ckpt="", epochs: int = 3, checkpoint_every: int = 2, on_step=None, loss_hook=None):
    """(modules, TrainResult, logged) where logged is [(step, sorted metric keys)] as on_metrics saw it.
    loss_hook(call_number, loss) -> loss can poison or fail a micro-batch (calls count from 1)."""
    modules = tiny_modules()
    x, y = tiny_data()
    calls = [0]

    def batch_loss(idx):
        calls[0] += 1
        loss = torch.nn.functional.cross_entropy(modules["model"](x[idx]), y[idx])
        if loss_hook is not None:
            loss = loss_hook(calls[0], loss)
        return loss, {"ce": float(loss.detach())}

    def evaluate():
        modules["model"].eval()
        with torch.no_grad():
            return float((modules["model"](x).argmax(-1) == y).float().mean())

    logged = []

    def on_metrics(metrics, step):
        logged.append((step, sorted(metrics)))
        if on_step is not None and "step_loss" in metrics:
            on_step(step)

    settings = TrainSettings(epochs=epochs, batch_size=8, learning_rate=1e-2, max_length=0, seed=0, log_every=1,
                             checkpoint_dir=str(ckpt), checkpoint_every=checkpoint_every)
    result = train_loop(modules, len(x), settings, batch_loss, evaluate, on_metrics)
    return modules, result, logged


def main() -> int:
    from safetensors.torch import save_file

    from components.distillation import checkpoint
    from components.distillation.preemption import Preempted

    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("out")
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--die-in-marker", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)  # the same reduction order in every process
    if args.die_in_marker:
        saves, real = [0], checkpoint.write_marker

        def dying(*a, **kw):
            saves[0] += 1
            if saves[0] == args.die_in_marker:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **kw)

        checkpoint.write_marker = dying

    def on_step(step):
        print(f"step {step}", flush=True)
        time.sleep(args.pause)

    try:
        modules, result, logged = train(args.ckpt, on_step=on_step)
    except Preempted as exc:
        print(f"preempted: {exc}", file=sys.stderr)
        return exc.exit_code
    save_file({k: v.contiguous() for k, v in modules["model"].state_dict().items()}, args.out)
    print(json.dumps({"resumed_from_step": result.resumed_from_step, "steps": result.steps, "logged": logged}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
