"""Names for types and paths, shared by the collectors. Names only: never values.

Every name that leaves the process passes :func:`clean` (``heapwatch.redact``): a
secret-looking type, attribute, thread or module name, or part of one, is written
``[…]``. Dict keys are shown only when they are short identifier-like strings that
neither look like nor name a secret (``caches['users']``, not ``['password']``).
``set_show_names(True)`` (``--show-names``, ``show_names=True``) turns the hiding off
for the names of the run; values are never recorded either way.
"""

from __future__ import annotations

import os
import re
import sys

from heapwatch import redact
from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401

_IDENT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,31}$")
_HEXISH = re.compile(r"^[0-9a-fA-F\-]{12,}$")
# raw name -> cleaned name. A dict of strings only is not tracked by gc, so the agent's
# census never sees it; bounded by clearing.
_CLEANED: dict[str, str] = {}
_CACHE_MAX = 20_000
_show = False


def set_show_names(show: bool) -> None:
    """Show secret-looking names as they are (the run's opt-in); off by default."""
    global _show
    _show = bool(show)


def showing_names() -> bool:
    return _show


def clean(name: str) -> str:
    """``name`` with secret-looking parts written ``[…]`` (unless names are shown)."""
    if _show:
        return name
    got = _CLEANED.get(name)
    if got is None:
        if len(_CLEANED) >= _CACHE_MAX:
            _CLEANED.clear()
        got = _CLEANED[name] = redact.text(name)
    return got


def main_stem() -> str:
    """How ``__main__`` is named in paths: the script's file stem (``app`` for app.py)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        name: str = spec.name
        return clean(name[: -len(".__main__")] if name.endswith(".__main__") else name)
    path = getattr(main, "__file__", None)
    if isinstance(path, str):
        return clean(os.path.splitext(os.path.basename(path))[0] or "__main__")
    return "__main__"


def module_display(name: str, stem: str) -> str:
    return stem if name == "__main__" else clean(name)


def type_name(t: type, stem: str) -> str:
    """Qualified type name: ``dict`` for builtins, ``pkg.mod.Class`` otherwise."""
    module = t.__dict__.get("__module__") if isinstance(t.__dict__, dict) else None
    if module is None:
        try:
            module = type.__getattribute__(t, "__module__")
        except Exception:
            module = None
    qual = t.__qualname__ if isinstance(t.__qualname__, str) else t.__name__
    if not isinstance(module, str) or module == "builtins":
        return clean(qual)
    return clean(f"{module_display(module, stem)}.{qual}")


def key_part(key: object) -> str:
    """A dict key as it may appear in a path: short identifier-like strings only."""
    if isinstance(key, str) and _IDENT_KEY.match(key):
        if _show or not (redact.names_secret(key) or _HEXISH.match(key)
                         or redact.is_secret(key)):
            return f"[{key!r}]"
    elif _show and type(key) is int:
        return f"[{key!r}]"
    return redact.HIDDEN


def name_part(name: str) -> str:
    """An attribute, variable, function or thread name in a path."""
    return clean(name)
