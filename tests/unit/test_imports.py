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


def test_the_agent_and_its_core_load_the_stdlib_and_heapwatch_only() -> None:
    """Starting the census (which loads heapwatch._native where it is built) adds nothing
    but the standard library, heapwatch's own modules, and psutil if the target has it."""
    code = ("import json, sys\n"
            "before = set(sys.modules)\n"
            "import heapwatch.agent\n"
            "from heapwatch.agent import core\n"
            "core.census(100, set())\n"
            "print(json.dumps({'modules': sorted(set(sys.modules) - before),"
            " 'core': core.info().name}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    data = json.loads(out)
    stdlib = set(sys.stdlib_module_names)
    foreign = sorted(m for m in data["modules"]
                     if m.split(".")[0] not in stdlib and not m.startswith("_sysconfigdata")
                     and m.split(".")[0] not in ("heapwatch", "psutil"))
    assert foreign == [], f"the agent loaded {foreign}"
    if data["core"] == "native":
        assert "heapwatch._native" in data["modules"]
