"""Where running agents can be found by pid: one small JSON file each in a private
per-user directory (0700), written at start and removed at stop."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401


def registry_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, f"heapwatch-{os.getuid()}")


def _private_dir() -> str | None:
    path = registry_dir()
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not ours, or readable by others: do not use it
    except OSError:
        return None
    return path


def register(pid: int, info: dict[str, Any]) -> None:
    path = _private_dir()
    if path is None:
        return
    tmp = os.path.join(path, f".{pid}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, os.path.join(path, f"{pid}.json"))


def unregister(pid: int) -> None:
    try:
        os.unlink(os.path.join(registry_dir(), f"{pid}.json"))
    except OSError:
        pass


def lookup(pid: int) -> dict[str, Any] | None:
    try:
        with open(os.path.join(registry_dir(), f"{pid}.json"), encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return None
