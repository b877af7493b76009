"""Checkpoints that survive crashes (RELIABILITY.md items 1-4, 7, 24): the last two complete
checkpoints are kept, each with a completeness marker carrying a sha256 manifest; a torn one is
quarantined and training resumes from the previous; a failed save (ENOSPC, NaN weights) never
replaces a good checkpoint; SIGTERM checkpoints at the next step boundary and exits non-zero.

The tiny training is tests/tiny_training.py (8 steps per epoch, 3 epochs, a checkpoint every 2 steps
and at each epoch end); the kill tests run it as its own process."""

import errno
import hashlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_training import train

from components.distillation import checkpoint
from components.distillation.checkpoint import MARKER, TENSORS, CheckpointError, NonFiniteWeights
from components.distillation.preemption import PREEMPTED_EXIT_CODE, Preempted
from components.distillation.trainer import OutOfMemory

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "tiny_training.py"
PLANTED = Path("/tmp/distillops-planted-resume-state-ran")


class Killed(Exception):
    pass


def _kill_at(k):
    def on_step(step):
        if step == k:
            raise Killed

    return on_step


def _step_of(directory: Path) -> int:
    return json.loads((directory / MARKER).read_text())["step"]


def _tree(root: Path) -> dict[str, str]:
    """Every file under root: relative path -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("DISTILLOPS_PROGRESS", "0")


@pytest.fixture(scope="module")
def reference():
    modules, result, logged = train()
    return {k: v.clone() for k, v in modules["model"].state_dict().items()}, result


def test_keeps_the_last_two_complete_checkpoints_each_with_a_manifest(tmp_path):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        train(ckpt, on_step=_kill_at(11))
    kept = checkpoint.checkpoints(ckpt)
    assert [_step_of(d) for d in kept] == [8, 10]  # the epoch-end save at step 8 and the step-10 save
    for d in kept:
        manifest = json.loads((d / MARKER).read_text())["files"]
        assert set(manifest) == {p.name for p in d.iterdir()} - {MARKER}
        for name, entry in manifest.items():
            data = (d / name).read_bytes()
            assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        checkpoint.verify(d)


def test_a_torn_newest_checkpoint_is_quarantined_and_the_previous_resumes(tmp_path, caplog, reference):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        train(ckpt, on_step=_kill_at(11))
    older, newest = checkpoint.checkpoints(ckpt)
    tensors = newest / TENSORS
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])  # torn: half the file
    with caplog.at_level(logging.WARNING):
        modules, result, _ = train(ckpt)
    assert result.resumed_from_step == 8
    quarantined = [p for p in ckpt.iterdir() if p.name.startswith(newest.name + ".torn-")]
    assert len(quarantined) == 1 and not newest.exists()
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert newest.name in warning and quarantined[0].name in warning and TENSORS in warning
    _same_weights(reference[0], modules["model"].state_dict())
    assert result.history == reference[1].history


def test_no_valid_checkpoint_means_step_0_with_a_warning_never_a_crash(tmp_path, caplog, reference):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        train(ckpt, on_step=_kill_at(11))
    for d in checkpoint.checkpoints(ckpt):
        (d / TENSORS).write_bytes(b"\0" * 64)  # same name, garbage
    (ckpt / checkpoint.checkpoints(ckpt)[0].name / "state.json").unlink()
    with caplog.at_level(logging.WARNING):
        modules, result, _ = train(ckpt)
    assert result.resumed_from_step == 0
    assert "step 0" in caplog.text
    _same_weights(reference[0], modules["model"].state_dict())


def test_a_kill_between_tensors_and_marker_leaves_a_partial_that_is_ignored(tmp_path, caplog, reference):
    """RELIABILITY 2 in-process: a published directory without its marker (a rename that survived a
    crash its contents did not), and a staging directory left by kill -9."""
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        train(ckpt, on_step=_kill_at(11))
    older, newest = checkpoint.checkpoints(ckpt)
    (newest / MARKER).unlink()
    staging = ckpt / ".ckpt-000099-step-00000012.0123456789ab.partial"
    staging.mkdir()
    (staging / TENSORS).write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.WARNING):
        modules, result, _ = train(ckpt)
    assert result.resumed_from_step == 8
    assert not staging.exists()
    assert MARKER in caplog.text and newest.name in caplog.text
    _same_weights(reference[0], modules["model"].state_dict())


def test_enospc_during_save_leaves_the_previous_checkpoint_byte_identical(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        train(ckpt, on_step=_kill_at(5))
    before = _tree(ckpt)
    assert before

    def full_disk(tensors, path, *a, **kw):
        Path(path).write_bytes(b"\0" * 100)  # part of the file made it to disk
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(OSError) as failed:
        train(ckpt)  # resumes from step 4, fails saving step 6
    assert failed.value.errno == errno.ENOSPC
    assert _tree(ckpt) == before  # nothing new, nothing truncated under a final name, nothing removed
    assert [_step_of(d) for d in checkpoint.checkpoints(ckpt)] == [2, 4]


def test_nan_weights_are_never_saved(tmp_path):
    ckpt = tmp_path / "ckpt"

    def poison(call, loss):
        return loss * float("nan") if call == 5 else loss

    with pytest.raises(NonFiniteWeights, match="NaN or Inf in modules/model/"):
        train(ckpt, loss_hook=poison)  # step 5's update makes the weights NaN; step 6's save refuses
    kept = checkpoint.checkpoints(ckpt)
    assert [_step_of(d) for d in kept] == [2, 4]
    for d in kept:
        checkpoint.verify(d)
        assert all(torch.isfinite(t).all() for t in load_file(str(d / TENSORS)).values() if t.is_floating_point())


def test_out_of_memory_mid_step_fails_cleanly_with_the_last_checkpoint_intact(tmp_path, reference):
    """RELIABILITY 7 on CPU: the error a CUDA allocator raises, injected at step 7."""
    ckpt = tmp_path / "ckpt"

    def oom(call, loss):
        if call == 7:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return loss

    with pytest.raises(OutOfMemory, match=r"out of memory at step 7.*step 6.*distill.batch_size"):
        train(ckpt, loss_hook=oom)
    newest = checkpoint.checkpoints(ckpt)[-1]
    assert _step_of(newest) == 6
    checkpoint.verify(newest)
    assert all(torch.isfinite(t).all() for t in load_file(str(newest / TENSORS)).values() if t.is_floating_point())
    modules, result, _ = train(ckpt)
    assert result.resumed_from_step == 6
    _same_weights(reference[0], modules["model"].state_dict())


def test_sigterm_checkpoints_at_the_next_step_and_raises_preempted(tmp_path, reference):
    ckpt = tmp_path / "ckpt"
    before = signal.getsignal(signal.SIGTERM)

    def preempt(step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled by the trainer's handler

    with pytest.raises(Preempted, match="SIGTERM") as stopped:
        train(ckpt, on_step=preempt)
    assert stopped.value.exit_code == PREEMPTED_EXIT_CODE != 0
    assert signal.getsignal(signal.SIGTERM) is before  # the old handler is back
    assert _step_of(checkpoint.checkpoints(ckpt)[-1]) in (5, 6)  # the next step boundary
    modules, result, logged = train(ckpt)
    assert result.resumed_from_step in (5, 6)
    _same_weights(reference[0], modules["model"].state_dict())


def test_training_off_the_main_thread_installs_no_handler(tmp_path):
    errors = []

    def run():
        try:
            train(tmp_path / "ckpt", epochs=1)
        except Exception as exc:  # signal.signal outside the main thread raises ValueError
            errors.append(exc)

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is before


class _Planted:
    """Unpickling this runs code: it creates PLANTED."""

    def __reduce__(self):
        return (Path.touch, (PLANTED,))


def test_a_pickle_planted_as_resume_state_with_a_forged_manifest_runs_no_code(tmp_path, caplog):
    """RELIABILITY 24: the payload sits where resume state would be (the old checkpoint.pt, a .bin,
    the tensors file), with a marker whose manifest matches it; loading is safetensors + JSON only."""
    ckpt = tmp_path / "ckpt"
    planted = ckpt / "ckpt-000001-step-00000004"
    planted.mkdir(parents=True)
    payload = pickle.dumps(_Planted())
    PLANTED.unlink(missing_ok=True)
    for name in ("checkpoint.pt", "pytorch_model.bin", TENSORS):
        (planted / name).write_bytes(payload)
        (ckpt / name).write_bytes(payload)  # the pre-manifest layout's place
    (planted / "state.json").write_text("{}")
    checkpoint.write_marker(planted, checkpoint.manifest(planted, step=4))
    with caplog.at_level(logging.WARNING):
        _, result, _ = train(ckpt, epochs=1)
    assert not PLANTED.exists(), "loading the resume state unpickled a planted file"
    assert result.resumed_from_step == 0
    assert not planted.exists() and "ckpt-000001-step-00000004.torn-" in caplog.text


# --- real processes: SIGKILL and SIGTERM from outside -------------------------------------------------


def _child(ckpt, out, *extra, stop_at=None, sig=None):
    """Run tests/tiny_training.py; with stop_at, send `sig` once it reports that step.
    (exit code, stdout lines, stderr, seconds from the signal to the exit)"""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, str(CHILD), str(ckpt), str(out), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines, sent = [], None
    for line in proc.stdout:
        lines.append(line.strip())
        if stop_at is not None and line.strip() == f"step {stop_at}":
            proc.send_signal(sig)
            sent = time.monotonic()
    proc.wait(timeout=60)
    seconds_to_exit = time.monotonic() - sent if sent is not None else None
    return proc.returncode, lines, proc.stderr.read(), seconds_to_exit


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("uninterrupted")
    rc, lines, err, _ = _child("", d / "w.safetensors")
    assert rc == 0, err
    return load_file(str(d / "w.safetensors")), json.loads(lines[-1])


def test_sigkill_at_step_k_resumes_bit_identical_without_duplicate_metric_steps(tmp_path, uninterrupted):
    """RELIABILITY 1 and 40: kill -9 from outside mid-run, rerun resumes from the last complete checkpoint."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "w.safetensors"
    rc, lines, _, _ = _child(ckpt, out, "--pause", "0.05", stop_at=11, sig=signal.SIGKILL)
    assert rc == -signal.SIGKILL and not out.exists()
    rc, lines, err, _ = _child(ckpt, out)
    assert rc == 0, err
    report = json.loads(lines[-1])
    assert report["resumed_from_step"] >= 8
    assert report["steps"] == uninterrupted[1]["steps"] == 24
    _same_weights(uninterrupted[0], load_file(str(out)))
    steps = [step for step, keys in report["logged"] if "step_loss" in keys]
    assert steps == list(range(report["resumed_from_step"] + 1, 25))  # each step logged once, none repeated


def test_sigkill_between_tensors_and_marker_resumes_from_the_previous(tmp_path, uninterrupted):
    """RELIABILITY 2: the process dies (SIGKILL) after writing the 3rd save's tensors, before its marker."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "w.safetensors"
    rc, _, _, _ = _child(ckpt, out, "--die-in-marker", "3")
    assert rc == -signal.SIGKILL
    assert [_step_of(d) for d in checkpoint.checkpoints(ckpt)] == [2, 4]
    assert any(p.name.endswith(".partial") for p in ckpt.iterdir())  # what the kill left behind
    rc, lines, err, _ = _child(ckpt, out)
    assert rc == 0, err
    assert json.loads(lines[-1])["resumed_from_step"] == 4
    assert "FileNotFoundError" not in err
    _same_weights(uninterrupted[0], load_file(str(out)))


def test_sigterm_writes_a_checkpoint_exits_non_zero_and_the_rerun_resumes(tmp_path, uninterrupted):
    """RELIABILITY 3 and 40: preemption (SIGTERM from outside), then the retry."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "w.safetensors"
    rc, lines, err, took = _child(ckpt, out, "--pause", "0.2", stop_at=9, sig=signal.SIGTERM)
    assert rc == PREEMPTED_EXIT_CODE, err
    assert "preempted" in err and "SIGTERM" in err
    stopped = int(lines[-1].split()[1])  # the last step the child finished
    assert stopped in (9, 10)  # the next step boundary, not the epoch's end (16)
    assert _step_of(checkpoint.checkpoints(ckpt)[-1]) == stopped
    assert took < 15  # well inside Kubernetes' default 30 s grace period
    rc, lines, err, _ = _child(ckpt, out)
    assert rc == 0, err
    assert json.loads(lines[-1])["resumed_from_step"] == stopped
    _same_weights(uninterrupted[0], load_file(str(out)))


def test_a_checkpoint_that_does_not_verify_names_the_file_and_why(tmp_path):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        train(ckpt, on_step=_kill_at(3))
    (d,) = checkpoint.checkpoints(ckpt)
    data = bytearray((d / TENSORS).read_bytes())
    data[-1] ^= 0xFF  # one flipped byte, same size
    (d / TENSORS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{TENSORS}: sha256 .* differs from the manifest"):
        checkpoint.verify(d)
    marker = json.loads((d / MARKER).read_text())
    marker["files"]["../../outside"] = {"sha256": "0" * 64, "size": 0}
    (d / MARKER).write_text(json.dumps(marker))
    with pytest.raises(CheckpointError, match="lists '../../outside', not a file of the checkpoint"):
        checkpoint.verify(d)
