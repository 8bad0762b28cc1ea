"""The second Ctrl-C's "end the target now" never blocks on Popen's internal lock."""
from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest

from heapwatch import launch
from procs import reap


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "kill"])
def test_end_now_reaps_a_target_whose_popen_lock_an_interrupt_left_held(pidfd: bool) -> None:
    proc = subprocess.Popen(["sleep", "100"])
    exits = launch._ExitWatch(proc)
    held = proc._waitpid_lock.acquire(False)  # what an interrupt inside Popen.wait leaves
    try:
        assert held
        with pytest.raises(subprocess.TimeoutExpired):  # Popen itself cannot reap it now
            proc.wait(timeout=0.2)
        if not pidfd:
            exits.close()
        ending = threading.Thread(target=launch._end_now, args=(proc, exits), daemon=True)
        ending.start()
        ending.join(60)  # bounded here, so that a fault fails instead of hanging the suite
        assert not ending.is_alive(), "ending the target blocked"
        assert proc.returncode == -signal.SIGKILL
    finally:
        exits.close()
        if held:
            proc._waitpid_lock.release()
        reap(proc)


def test_end_now_leaves_a_target_already_reaped_alone() -> None:
    """Reaped by Popen, which an interrupt stopped before it kept the status: nothing is
    signalled and nothing waits."""
    proc = subprocess.Popen(["true"])
    exits = launch._ExitWatch(proc)
    try:
        os.waitpid(proc.pid, 0)
        launch._end_now(proc, exits, timeout=0.0)
        assert proc.returncode is None
    finally:
        exits.close()
        proc.returncode = 0  # reaped above: keep Popen from waiting for it again
