"""Preemption: SIGTERM becomes a request to stop at the next step boundary, after a checkpoint.

Kubernetes deletes a preempted pod by sending SIGTERM and, after the pod's grace period
(``terminationGracePeriodSeconds``, 30 s by default), SIGKILL. The trainer installs
:func:`stop_on_sigterm` around its loop; the handler only sets a flag, and the loop writes a
checkpoint at the next step boundary and raises :class:`Preempted`. One optimizer step and one
checkpoint write must therefore fit in the grace period.

A preempted step exits with ``PREEMPTED_EXIT_CODE`` (75, EX_TEMPFAIL: "temporary failure, try
again"): the ``distillops`` CLI and the KFP component both turn :class:`Preempted` into it, and a
KFP retry (or a rerun) resumes from the checkpoint. No torch here: the CLI imports this cheaply.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

PREEMPTED_EXIT_CODE = 75  # os.EX_TEMPFAIL (not defined on every platform)


class Preempted(Exception):
    """Training stopped on SIGTERM after writing a checkpoint; a rerun resumes from it."""

    exit_code = PREEMPTED_EXIT_CODE

    def __init__(self, message: str, step: int = 0, checkpoint: str = ""):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@contextmanager
def stop_on_sigterm() -> Iterator[dict]:
    """A dict whose "signal" becomes the signal's name when SIGTERM arrives during the block.

    Python only lets the main thread install handlers: elsewhere (a training run inside a worker
    thread) nothing is installed and the flag never rises. The previous handler is restored after.
    """
    flag: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
