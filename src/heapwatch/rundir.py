"""Run directories: where a run's store, reports and private files live."""

from __future__ import annotations

import datetime as _dt
import os
import re

from heapwatch.errors import UsageError

DEFAULT_ROOT = "reports"


def default_run_dir(stem: str, root: str = DEFAULT_ROOT) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "run"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root, f"{safe}-{stamp}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def prepare_run_dir(path: str) -> str:
    """Create ``path`` for a new run; refuse one that already holds a run."""
    path = os.path.abspath(path)
    if os.path.exists(os.path.join(path, "run.sqlite")):
        raise UsageError(
            f"{path} already holds a run: choose another --out directory or remove it"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{path} exists and is not a directory: choose another --out")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create run directory {path}: {exc.strerror}") from None
    return path
