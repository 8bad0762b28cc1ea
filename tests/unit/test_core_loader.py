"""Choosing the core: the extension is ABI-specific and the agent may be injected into
another Python than heapwatch's own, so a missing, foreign or broken build falls back to
the pure-Python core, silently, and says why. Each case runs in a fresh interpreter on a
copy of the package."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

import heapwatch

PKG = os.path.dirname(os.path.abspath(heapwatch.__file__))
HERE_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so

PROBE = """
import json, sys
from heapwatch.agent import core
held = [[i] for i in range(150)]
res = core.census(100, set())
info = core.info()
print(json.dumps({"core": info.name, "fallback": info.fallback,
                  "found": id(held) in {oid for oid, _, _ in res.big},
                  "namespace": "heapwatch._native" in sys.modules
                               and getattr(sys.modules["heapwatch._native"], "__file__", None) is None}))
"""


def package_copy(tmp_path: Any) -> str:
    """heapwatch copied without any built extension (the C sources stay, as in a checkout)."""
    dst = os.path.join(str(tmp_path), "heapwatch")
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    assert os.path.isdir(os.path.join(dst, "_native")), "the sources directory is part of the case"
    return dst


def probe(path: str | None, **env: str) -> dict[str, Any]:
    e = {k: v for k, v in os.environ.items() if k != "HEAPWATCH_NO_NATIVE"}
    if path is not None:
        e["PYTHONPATH"] = path
    e.update(env)
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=e,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["found"], "the census must work whichever core runs"
    return data


def test_the_environment_variable_turns_the_native_core_off() -> None:
    got = probe(None, HEAPWATCH_NO_NATIVE="1")
    assert got["core"] == "python"
    assert got["fallback"] == "HEAPWATCH_NO_NATIVE is set"


def test_no_build_for_this_python_falls_back_without_a_namespace_package(tmp_path: Any) -> None:
    pkg = package_copy(tmp_path)
    got = probe(os.path.dirname(pkg))
    assert got["core"] == "python"
    assert got["fallback"] == f"not built for Python {sys.version_info[0]}.{sys.version_info[1]}"
    assert not got["namespace"], "heapwatch/_native/ (the sources) was imported as a package"


def test_a_build_for_another_python_is_not_loaded(tmp_path: Any) -> None:
    pkg = package_copy(tmp_path)
    with open(os.path.join(pkg, "_native.cpython-39-x86_64-linux-gnu.so"), "wb") as f:
        f.write(b"\x7fELF not for this interpreter")
    got = probe(os.path.dirname(pkg))
    assert got["core"] == "python"
    assert got["fallback"].startswith("not built for Python")


def test_a_broken_build_falls_back(tmp_path: Any) -> None:
    pkg = package_copy(tmp_path)
    with open(os.path.join(pkg, "_native" + HERE_SUFFIX), "wb") as f:
        f.write(b"\x7fELF truncated")
    got = probe(os.path.dirname(pkg))
    assert got["core"] == "python"
    assert got["fallback"].startswith("failed to load: ImportError"), got["fallback"]


@pytest.mark.skipif(os.environ.get("HEAPWATCH_NO_NATIVE", "") not in ("", "0"),
                    reason="HEAPWATCH_NO_NATIVE is set: the extension is neither built nor loaded")
def test_the_native_core_runs_where_it_is_built() -> None:
    got = probe(None)
    assert got == {"core": "native", "fallback": None, "found": True, "namespace": False}


def test_the_build_falls_back_to_a_warning_without_a_compiler(tmp_path: Any) -> None:
    pytest.importorskip("setuptools", reason="setup.py is run directly, which needs setuptools")
    repo = os.path.dirname(os.path.dirname(PKG))  # the checkout: src/heapwatch -> .
    work = os.path.join(str(tmp_path), "repo")
    shutil.copytree(os.path.join(PKG, "_native"), os.path.join(work, "src", "heapwatch", "_native"))
    shutil.copy(os.path.join(repo, "setup.py"), work)
    env = {k: v for k, v in os.environ.items() if k != "HEAPWATCH_NO_NATIVE"}
    env["CC"] = "false"  # a compiler that always fails
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", "out", "--build-temp", "tmp"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: heapwatch: heapwatch._native could not be built" in proc.stderr
    assert not os.path.exists(os.path.join(work, "out", "heapwatch"))
    env.pop("CC")
    env["HEAPWATCH_NO_NATIVE"] = "1"
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "not building the C extension: HEAPWATCH_NO_NATIVE is set" in proc.stderr
