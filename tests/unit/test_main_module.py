"""``python -m heapwatch`` exits with heapwatch's code even after a caught Ctrl-C."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

# Run as ``python -m probe``: heapwatch imported first (an import can exec() strings, which
# would clear what the caught interrupt leaves behind), then a Ctrl-C caught after it passed
# through an exec() of a string, then heapwatch's command.
PROBE = """
import sys

import heapwatch.cli

try:
    exec("raise KeyboardInterrupt")
except KeyboardInterrupt:
    pass
sys.argv = ["heapwatch", "--help"]
{run}
"""


def _probe(tmp_path: Any, run: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "probe.py").write_text(PROBE.format(run=run), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "probe"], cwd=tmp_path, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_python_m_heapwatch_keeps_its_exit_code_after_a_caught_interrupt(tmp_path: Any
                                                                         ) -> None:
    done = _probe(tmp_path, "import heapwatch.__main__")
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert "heapwatch run" in done.stdout and done.stderr == ""


def test_the_control_without_the_module_dies_by_sigint(tmp_path: Any) -> None:
    """The CPython behaviour ``heapwatch.__main__`` works around: the same command run
    without it ends by SIGINT although heapwatch returned normally."""
    if sys.version_info >= (3, 14):
        pytest.skip("CPython 3.14 exits with the program's own code here")
    done = _probe(tmp_path, "heapwatch.cli.main()")
    assert done.returncode == -2, (done.returncode, done.stderr)
    assert "heapwatch run" in done.stdout
