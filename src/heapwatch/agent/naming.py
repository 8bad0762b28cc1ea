"""Names for types and paths, shared by the collectors. Names only: never values."""

from __future__ import annotations

import os
import re
import sys

_IDENT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,31}$")
# Identifier-like strings that still look like secrets or user data are hidden.
_SECRETISH = re.compile(r"(?i)(secret|token|passw|pwd|apikey|api_key|auth|cookie|session_?id|bearer)")
_HEXISH = re.compile(r"^[0-9a-fA-F\-]{12,}$")


def main_stem() -> str:
    """How ``__main__`` is named in paths: the script's file stem (``app`` for app.py)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        name: str = spec.name
        return name[: -len(".__main__")] if name.endswith(".__main__") else name
    path = getattr(main, "__file__", None)
    if isinstance(path, str):
        return os.path.splitext(os.path.basename(path))[0] or "__main__"
    return "__main__"


def module_display(name: str, stem: str) -> str:
    return stem if name == "__main__" else name


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
        return qual
    return f"{module_display(module, stem)}.{qual}"


def key_part(key: object) -> str:
    """A dict key as it may appear in a path: short identifier-like strings only."""
    if (isinstance(key, str) and _IDENT_KEY.match(key) and not _SECRETISH.search(key)
            and not _HEXISH.match(key)):
        return f"[{key!r}]"
    return "[…]"
