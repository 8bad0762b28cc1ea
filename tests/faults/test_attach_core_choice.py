"""HEAPWATCH_NO_NATIVE reaches an attached agent: the attach's environment chooses the core
(the target's own environment was fixed when it started). The choice lasts as long as
that agent: the next attach without it runs the native core again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from faultkit import SRC, wait_for
from test_case07_attach_disk_full import stored
from test_case21_22_attach import env_for, finish, python311
from test_case21_22_attach import target as target  # the fixture, used by name below


def record(pid: int, out: str, workdir: str, no_native: bool) -> dict[str, Any]:
    env = env_for(workdir)
    if no_native:
        env["HEAPWATCH_NO_NATIVE"] = "1"
    else:
        env.pop("HEAPWATCH_NO_NATIVE", None)
    rec = subprocess.Popen([sys.executable, "-m", "heapwatch", "attach", str(pid),
                            "--interval", "0.2", "--out", out], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: stored(os.path.join(out, "run.sqlite")) >= 3 or rec.poll() is not None,
                 120, "three snapshots in the store")
        stop = subprocess.run([sys.executable, "-m", "heapwatch", "stop", str(pid)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
        _, err = rec.communicate(timeout=120)
        assert rec.returncode == 0, err
    finally:
        if rec.poll() is None:
            rec.kill()
            rec.communicate()
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        rep: dict[str, Any] = json.load(f)
    return rep


def native_in_target(workdir: str) -> str | None:
    """Why the target's interpreter (CPython 3.11, for lldb) cannot load this tree's native
    core, or None when it can: a tree built for another Python has no 3.11 build."""
    proc = subprocess.run(
        [python311(), "-c", "from heapwatch.agent import core\n"
         "mod, why = core.load_native()\nprint('' if mod is not None else why)"],
        env=dict(env_for(workdir), PYTHONPATH=SRC), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip() or None


def test_no_native_in_the_attach_environment_picks_the_python_core(
        target: subprocess.Popen[str], workdir: str) -> None:
    why = native_in_target(workdir)
    if why is not None:
        pytest.skip(f"the target's Python cannot load the native core: {why}")
    first = record(target.pid, os.path.join(workdir, "a"), workdir, no_native=True)
    assert first["agent"]["core"] == "python", first["agent"]
    assert "HEAPWATCH_NO_NATIVE" in (first["agent"]["core_fallback"] or "")
    assert first["trace"]["mode"] == "auto"  # the sampler is part of the native core
    second = record(target.pid, os.path.join(workdir, "b"), workdir, no_native=False)
    assert second["agent"]["core"] == "native", second["agent"]
    assert second["trace"]["mode"] == "sample"
    assert finish(target) == (0, "woke ['MainThread']\n", "")
