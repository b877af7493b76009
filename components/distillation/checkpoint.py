"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a directory holding ``tensors.safetensors`` (module weights, optimizer moments,
the best epoch's weights, RNG states) and ``state.json`` (counters, schedule state, optimizer
hyper-parameters, Python/NumPy RNG scalars). It is published whole (written under a staging name
and renamed, see ``common.io.atomic_dir``), so a reader finds a complete checkpoint or none.
Loading reads only tensors and JSON: a file planted at the checkpoint path cannot run code
(a pickle-based checkpoint would run whatever code it is given).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from components.common.io import atomic_dir

TENSORS, STATE = "tensors.safetensors", "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint directory that is incomplete or does not fit the run resuming from it."""


def _flatten(prefix: str, state: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    for key, value in state.items():
        out[f"{prefix}/{key}"] = value.detach().to("cpu").contiguous().clone()


def _unflatten(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = prefix + "/"
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}


def save_checkpoint(directory: str | Path, modules: dict[str, torch.nn.Module], optimizer, scheduler,
                    generator: torch.Generator, state: dict[str, Any]) -> None:
    """Write the whole training state to `directory` (replacing an older checkpoint atomically)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, mod in modules.items():
        _flatten(f"modules/{name}", mod.state_dict(), tensors)
    opt = optimizer.state_dict()
    moments = {}
    for idx, per_param in opt["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{idx}/{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                moments.setdefault(str(idx), {})[key] = value
    score, epoch, best = state["best"]
    if best is not None:
        for name, sd in best.items():
            _flatten(f"best/{name}", sd, tensors)
    tensors["rng/generator"] = generator.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    np_state = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    py_version, py_internal, py_gauss = random.getstate()
    meta = {
        "optimizer": {"param_groups": opt["param_groups"], "scalars": moments, "params": sorted(map(int, opt["state"]))},
        "scheduler": scheduler.state_dict(),
        "rng": {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_version, list(py_internal), py_gauss]},
        "state": {**{k: v for k, v in state.items() if k != "best"}, "best": [score, epoch, best is not None]},
    }
    with atomic_dir(directory) as staging:
        save_file(tensors, str(staging / TENSORS))
        (staging / STATE).write_text(json.dumps(meta))


def has_checkpoint(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / TENSORS).is_file() and (d / STATE).is_file()


def load_checkpoint(directory: str | Path, modules: dict[str, torch.nn.Module], optimizer, scheduler,
                    generator: torch.Generator) -> dict[str, Any]:
    """Restore modules, optimizer, scheduler and every RNG from `directory`; return the loop state."""
    d = Path(directory)
    try:
        meta = json.loads((d / STATE).read_text())
        tensors = load_file(str(d / TENSORS))
    except Exception as exc:  # safetensors raises its own error type for a file that is not safetensors
        raise CheckpointError(f"checkpoint {d} is unreadable ({type(exc).__name__}: {exc}); nothing was loaded "
                              f"from it. Delete the directory to train from the start.") from None
    for name, mod in modules.items():
        mod.load_state_dict(_unflatten(f"modules/{name}", tensors))
    opt_state: dict[int, dict[str, Any]] = {}
    for idx in meta["optimizer"]["params"]:
        entry = dict(_unflatten(f"optimizer/{idx}", tensors))
        entry.update(meta["optimizer"]["scalars"].get(str(idx), {}))
        opt_state[idx] = entry
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    generator.set_state(tensors["rng/generator"])
    torch.set_rng_state(tensors["rng/torch"])
    kind, pos, has_gauss, cached = meta["rng"]["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_internal, py_gauss = meta["rng"]["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    state = dict(meta["state"])
    score, epoch, has_best = state["best"]
    best = {name: _unflatten(f"best/{name}", tensors) for name in modules} if has_best else None
    state["best"] = (score, epoch, best)
    return state
