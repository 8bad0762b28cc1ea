"""The agent lives in other people's processes: importing it must load the stdlib only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ["matplotlib", "click", "numpy", "objgraph", "pympler", "heapwatch.cli",
             "heapwatch.report", "heapwatch.analysis"]

PROBE = """
import builtins, json, sys
seen = []
real = builtins.__import__
def hook(name, *args, **kwargs):
    seen.append(name)
    return real(name, *args, **kwargs)
builtins.__import__ = hook
import {module}
builtins.__import__ = real
print(json.dumps({{"seen": seen, "modules": sorted(sys.modules)}}))
"""


@pytest.mark.parametrize("module", ["heapwatch.agent", "heapwatch"])
def test_import_loads_no_heavy_module(module: str) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    loaded = set(data["modules"]) | set(data["seen"])
    bad = sorted(m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + "."))
    assert bad == [], f"import {module} loaded {bad}"
    assert "heapwatch.agent.sampler" in data["modules"]  # the probe really imported the agent
