"""The agent's core: C (``heapwatch._native``) where it loads, else pure Python.

One small interface, two cores (STYLE.md 16). The agent and its collectors call
:func:`census` and :func:`newest_of_type` and never know which core ran; :func:`info`
says which one runs and, after a fallback, why — the agent records it in the run store
and every report shows it. Both cores hold no reference to a target object while another
thread can run (see ``census.py`` for the pure-Python one, ``_native/census.c`` for C).

The extension is ABI-specific and ``heapwatch attach`` may inject the agent into another
Python than the one heapwatch was installed with, so :func:`load_native` checks before it
imports and falls back silently: it never raises. ``HEAPWATCH_NO_NATIVE=1`` in the
target's environment turns the native core off (it also skips building it at install);
for ``heapwatch attach``, in the attach's environment (the agent config carries it).

Example::

    from heapwatch.agent import core
    res = core.census(floor=100, exclude_ids=set(), want_ids={id(suspect)})
    core.info().name  # "native" or "python"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent import census as _py
from heapwatch.agent.census import CensusResult
from heapwatch.errors import AgentError

NO_NATIVE_ENV = "HEAPWATCH_NO_NATIVE"
CORES = ("native", "python")


@dataclass(frozen=True)
class CoreInfo:
    """Which core runs; ``fallback`` says why it is not the native one (None when it is)."""

    name: str
    fallback: str | None

    def as_meta(self) -> dict[str, Any]:
        return {"core": self.name, "core_fallback": self.fallback}


_loaded: tuple[ModuleType | None, str | None] | None = None
_forced: str | None = None
_forced_why = "the python core was chosen"


def disabled_by_env() -> bool:
    """True when ``HEAPWATCH_NO_NATIVE`` (set and not 0) turns the native core off here."""
    return os.environ.get(NO_NATIVE_ENV, "").strip() not in ("", "0")


def load_native() -> tuple[ModuleType | None, str | None]:
    """``heapwatch._native`` when it can run in this interpreter, else ``(None, why)``.

    Checked once per process (the environment variable is read then). Never raises: a
    missing, foreign or broken build is a reason to fall back, not an error.
    """
    global _loaded
    if _loaded is None:
        try:
            _loaded = _load()
        except BaseException as exc:  # never fail the agent over an accelerator
            _loaded = (None, f"loading failed: {type(exc).__name__}")
    return _loaded


def _load() -> tuple[ModuleType | None, str | None]:
    if disabled_by_env():
        return None, f"{NO_NATIVE_ENV} is set"
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.implementation.name != "cpython":
        return None, f"{sys.implementation.name} is not CPython"
    import sysconfig

    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None, "a free-threaded build"
    import importlib
    import importlib.machinery
    import importlib.util

    # Look before importing: the extension's file name carries its ABI tag, so a build for
    # another Python is simply not found; its source directory (heapwatch/_native/ in a
    # checkout) would otherwise import as an empty namespace package.
    spec = importlib.util.find_spec("heapwatch._native")
    origin = spec.origin if spec is not None else None
    if origin is None or not origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return None, f"not built for Python {here}"
    try:
        mod = importlib.import_module("heapwatch._native")
    except Exception as exc:
        return None, f"failed to load: {type(exc).__name__}: {str(exc)[:200]}"
    if getattr(mod, "BUILT_FOR", None) != here:
        return None, f"built for Python {getattr(mod, 'BUILT_FOR', '?')}, not {here}"
    why = getattr(mod, "CENSUS_UNAVAILABLE", "no census")
    if why is not None:
        return None, f"its census cannot run here: {why}"
    return mod, None


def use(name: str | None, why: str = "the python core was chosen") -> None:
    """Force a core ("native" or "python"; None: the automatic choice) — for tests and
    benchmarks, and an attach under HEAPWATCH_NO_NATIVE (``why`` is what the reports say
    for a forced python core). Raises AgentError when the native core cannot run here."""
    global _forced, _forced_why
    if name not in (None, *CORES):
        raise AgentError(f"core must be one of {', '.join(CORES)}, not {name!r}")
    if name == "native":
        mod, reason = load_native()
        if mod is None:
            raise AgentError(f"the native core cannot run here: {reason}")
    _forced, _forced_why = name, why


def forced() -> str | None:
    """The core :func:`use` forced (None: the automatic choice)."""
    return _forced


def _native() -> ModuleType | None:
    if _forced == "python":
        return None
    return load_native()[0]


def native() -> ModuleType | None:
    """``heapwatch._native`` when the native core runs (it also holds the jobs beside the
    census, such as the audit hook of ``process.py``), else None."""
    return _native()


def info() -> CoreInfo:
    """The core that runs, and why it is not the native one."""
    if _forced == "python":
        return CoreInfo("python", _forced_why)
    mod, why = load_native()
    return CoreInfo("native", None) if mod is not None else CoreInfo("python", why)


def census(floor: int, exclude_ids: Collection[int], want_ids: Collection[int] = ()
           ) -> CensusResult:
    """Count the gc-tracked objects by type; list the tracked containers (dict, list, set,
    deque and subclasses) with ``len >= floor`` as (id, type, len), except ``exclude_ids``;
    put the containers whose id is in ``want_ids`` in ``result.wanted`` (the caller clears
    it before the snapshot ends). Nothing else in the result refers to a target object."""
    mod = _native()
    if mod is None:
        return _py.take_census(floor, exclude_ids, want_ids)
    counts, big, wanted, total = mod.census(floor, exclude_ids, want_ids)
    try:
        return CensusResult(counts, big, total, {id(o): o for o in wanted})
    finally:
        wanted.clear()


def newest_of_type(t: type, k: int) -> list[Any]:
    """Up to ``k`` of the newest objects of exactly type ``t``, newest first; never a
    tuple, frozenset, str or bytes. (One implementation serves both cores: it is a C-only
    pass already, see census.py.)"""
    return _py.newest_of_type(t, k)
