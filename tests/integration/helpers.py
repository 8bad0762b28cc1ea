from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "scenarios")


def heapwatch(*args: str, cwd: str | None = None, timeout: float = 120, **kw: Any
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heapwatch", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, **kw)


def report(out: str) -> dict[str, Any]:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def marker_line(path: str, marker: str) -> int:
    with open(path, encoding="utf-8") as f:
        lines = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(marker)]
    assert len(lines) == 1, f"{path} should have exactly one line ending with {marker}"
    return lines[0]
