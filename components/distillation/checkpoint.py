"""Resumable training state without pickle, kept so that a crash at any moment leaves one to resume.

Layout: the run's checkpoint root holds one directory per save, ``ckpt-<serial>-step-<step>``
(the serial orders saves; an epoch-end save can share its step with a periodic one). Each holds

- ``tensors.safetensors``: module weights, optimizer moments, the best epoch's weights, RNG states;
- ``state.json``: counters, schedule state, optimizer hyper-parameters, Python/NumPy RNG scalars;
- ``COMPLETE.json``, written last: the completeness marker, a manifest of the sha256 and size of
  every other file (and the step).

A save is built in a staging directory (``.ckpt-….partial``), each file fsynced, the marker last,
then renamed into place: the rename makes it visible whole, and the marker lets a reader tell a
complete checkpoint from one whose rename survived a crash its contents did not (no fsync ordering
on some volumes). The last ``KEEP`` complete checkpoints are kept; an older one is removed only
after a newer one is in place, so a failed save (ENOSPC, a kill) never costs the previous one.
Weights with NaN or Inf are refused before anything is written.

Resuming (:func:`load_latest`) verifies the newest checkpoint against its manifest and loads it;
one that is torn, unverifiable or unreadable is renamed aside (``<name>.torn-<UTC time>``, with a
warning saying why) and the previous one is tried; with none left, training starts from step 0
(with a warning). Staging directories left by a kill are removed. Loading reads only safetensors and
JSON: a file planted where resume state would be cannot run code (a pickle checkpoint would).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

TENSORS, STATE, MARKER = "tensors.safetensors", "state.json", "COMPLETE.json"
KEEP = 2
_PUBLISHED = re.compile(r"ckpt-(\d+)-step-(\d+)")
_SERIAL = re.compile(r"\.?ckpt-(\d+)-")


class CheckpointError(RuntimeError):
    """A checkpoint directory that is incomplete or does not fit the run resuming from it."""


class NonFiniteWeights(CheckpointError):
    """The training state holds NaN or Inf: it is not saved (the previous checkpoint stays)."""


def _flatten(prefix: str, state: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    for key, value in state.items():
        out[f"{prefix}/{key}"] = value.detach().to("cpu").contiguous().clone()


def _unflatten(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = prefix + "/"
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}


def _collect(modules: dict[str, torch.nn.Module], optimizer, scheduler, generator: torch.Generator,
             state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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
    return tensors, meta


def _check_finite(tensors: dict[str, torch.Tensor], step: int) -> None:
    bad = [k for k, t in tensors.items() if not k.startswith("rng/") and t.is_floating_point()
           and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteWeights(f"NaN or Inf in {shown} at step {step}: the training diverged, so this state is "
                               f"not saved and the previous checkpoint stays; lower distill.learning_rate or check "
                               f"the inputs and teacher outputs for NaN")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return {"sha256": hashlib.file_digest(f, "sha256").hexdigest(), "size": os.fstat(f.fileno()).st_size}


def manifest(directory: str | Path, step: int) -> dict[str, Any]:
    """The completeness marker's content for `directory`: sha256 and size of each file but the marker."""
    d = Path(directory)
    return {"format": 1, "step": int(step),
            "files": {p.name: _digest(p) for p in sorted(d.iterdir()) if p.is_file() and p.name != MARKER}}


def write_marker(directory: str | Path, content: dict[str, Any]) -> None:
    """Write the completeness marker (the last file of a save) and make it durable."""
    path = Path(directory) / MARKER
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(content, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())


def checkpoints(root: str | Path) -> list[Path]:
    """The published checkpoint directories under `root`, oldest first (complete or not: see verify)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _PUBLISHED.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _next_serial(root: Path) -> int:
    serials = [int(m.group(1)) for p in root.iterdir() if (m := _SERIAL.match(p.name))]
    return max(serials, default=0) + 1


def _remove_staging(root: Path) -> None:
    for p in root.glob(".ckpt-*.partial"):
        log.info("removing %s, a checkpoint save that never completed", p)
        shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(root: str | Path, modules: dict[str, torch.nn.Module], optimizer, scheduler,
                    generator: torch.Generator, state: dict[str, Any], keep: int = KEEP) -> Path:
    """Write the whole training state as a new checkpoint under `root`; keep the newest `keep`.

    Raises NonFiniteWeights (nothing written) when any weight or optimizer moment is NaN/Inf, and the
    writer's OSError (e.g. ENOSPC) when the save fails; either way the earlier checkpoints are untouched.
    """
    tensors, meta = _collect(modules, optimizer, scheduler, generator, state)
    _check_finite(tensors, state["step"])
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _remove_staging(root)
    name = f"ckpt-{_next_serial(root):06d}-step-{int(state['step']):08d}"
    staging = root / f".{name}.{uuid.uuid4().hex[:12]}.partial"
    staging.mkdir()
    try:
        save_file(tensors, str(staging / TENSORS))
        (staging / STATE).write_text(json.dumps(meta))
        for f in (TENSORS, STATE):
            _fsync(staging / f)
        write_marker(staging, manifest(staging, state["step"]))
        _fsync(staging)
        os.rename(staging, root / name)
        _fsync(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return root / name


def verify(directory: str | Path) -> dict[str, Any]:
    """The marker of a complete checkpoint; CheckpointError saying what is wrong otherwise."""
    d = Path(directory)
    try:
        marker = json.loads((d / MARKER).read_text())
        files = marker["files"]
        step = int(marker["step"])
    except FileNotFoundError:
        raise CheckpointError(f"{d.name}: no completeness marker {MARKER} (the save never finished)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{d.name}: {MARKER} is damaged ({type(exc).__name__}: {exc})") from None
    for name in (TENSORS, STATE):
        if name not in files:
            raise CheckpointError(f"{d.name}: {MARKER} does not list {name}")
    for name in files:  # names only: nothing outside the directory is ever opened
        if name in ("", ".", "..") or Path(name).name != name:
            raise CheckpointError(f"{d.name}: {MARKER} lists {name!r}, not a file of the checkpoint")
    for name, want in files.items():
        path = d / name
        if not path.is_file():
            raise CheckpointError(f"{d.name}/{name}: missing (listed in {MARKER})")
        size = path.stat().st_size
        if size != want["size"]:
            raise CheckpointError(f"{d.name}/{name}: {size} bytes, the manifest says {want['size']} (torn write)")
        got = _digest(path)["sha256"]
        if got != want["sha256"]:
            raise CheckpointError(f"{d.name}/{name}: sha256 {got[:16]}… differs from the manifest's "
                                  f"{want['sha256'][:16]}… (the bytes changed after the save)")
    return {**marker, "step": step}


def _quarantine(d: Path, why: str) -> None:
    aside = d.with_name(f"{d.name}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}")
    try:
        d.rename(aside)
    except OSError as exc:  # e.g. another rank moved it first: say so, and carry on without it
        log.warning("checkpoint %s cannot be used (%s) and could not be moved aside (%s)", d, why, exc)
        return
    log.warning("checkpoint %s cannot be used: %s; moved it aside to %s and trying the previous one",
                d, why, aside.name)


def load_latest(root: str | Path, modules: dict[str, torch.nn.Module], optimizer, scheduler,
                generator: torch.Generator, tidy: bool = True) -> tuple[dict[str, Any], Path] | None:
    """Restore the newest complete checkpoint under `root`: (loop state, its directory), or None.

    Each candidate, newest first, is verified against its manifest, read, and applied; one that fails
    any of these is quarantined (with `tidy`; the other ranks of a torchrun group only skip it) and
    the previous one is tried. Nothing here raises for a bad checkpoint: training starts over instead.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    if tidy:
        _remove_staging(root)
    strays = [p.name for p in root.iterdir() if p.is_file()]
    if strays:
        log.warning("ignoring %s in %s: not part of a checkpoint (the layout is ckpt-<serial>-step-<step>/)",
                    ", ".join(sorted(strays)), root)
    candidates = checkpoints(root)[::-1]
    if not candidates:
        return None
    fresh = _snapshot(modules, optimizer, scheduler, generator)
    for d in candidates:
        try:
            verify(d)
            state = _load(d, modules, optimizer, scheduler, generator)
        except Exception as exc:  # a torn, tampered or foreign checkpoint: never fatal, see above
            _restore(fresh, modules, optimizer, scheduler, generator)
            why = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
            if tidy:
                _quarantine(d, why)
            else:
                log.warning("checkpoint %s cannot be used: %s; trying the previous one", d, why)
            continue
        return state, d
    log.warning("no complete checkpoint under %s: training starts from step 0", root)
    return None


def _snapshot(modules, optimizer, scheduler, generator) -> dict[str, Any]:
    return {"modules": {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()), "scheduler": copy.deepcopy(scheduler.state_dict()),
            "generator": generator.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _restore(snap: dict[str, Any], modules, optimizer, scheduler, generator) -> None:
    for k, m in modules.items():
        m.load_state_dict(snap["modules"][k])
    optimizer.load_state_dict(snap["optimizer"])
    scheduler.load_state_dict(snap["scheduler"])
    generator.set_state(snap["generator"])
    torch.set_rng_state(snap["torch"])
    np.random.set_state(snap["numpy"])
    random.setstate(snap["python"])


def _load(directory: str | Path, modules: dict[str, torch.nn.Module], optimizer, scheduler,
          generator: torch.Generator) -> dict[str, Any]:
    """Restore modules, optimizer, scheduler and every RNG from `directory`; return the loop state."""
    d = Path(directory)
    try:
        meta = json.loads((d / STATE).read_text())
        tensors = load_file(str(d / TENSORS))
    except Exception as exc:  # safetensors raises its own error type for a file that is not safetensors
        raise CheckpointError(f"{d.name} is unreadable ({type(exc).__name__}: {exc})") from None
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
