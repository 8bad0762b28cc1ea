"""Case 17: names are drawn as they are. A name with TeX between ``$`` signs (or with
characters the chart font lacks) made matplotlib raise while drawing, and no report.md
or report.html was written. Charts draw every text literally (``text.parse_math`` off,
no usetex), so no name can break the rendering.
"""

from __future__ import annotations

import os
import subprocess
import sys

from faultkit import SRC, heapwatch, report, write

NAMES = ["$\\frac{x}{y}$", "$\\undefinedmacro{x}$", "a$b$c$", "ｗｉｄｅ🙂", "tab\tnew"]


def test_case17_tex_and_odd_characters_in_names_render(workdir: str) -> None:
    out = os.path.join(workdir, "run")
    script = write(os.path.join(workdir, "t.py"), f"""
        import time, heapwatch

        class Holder:
            pass

        H = Holder()
        NAMES = {NAMES!r}
        for n in NAMES:
            setattr(H, n, [])
        heapwatch.start(out={out!r}, interval=3600, trace="off")
        heapwatch.mark(NAMES[0])
        for step in range(20):
            if step == 10:
                heapwatch.mark(NAMES[1])
            for n in NAMES:
                getattr(H, n).extend(range(40))
            heapwatch.snapshot()
            time.sleep(0.05)
        for n in NAMES:
            getattr(H, n).extend(range(40))
        heapwatch.stop()
    """)
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=SRC, TMPDIR=workdir), timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    got = heapwatch("report", out, "--format", "json,md,html")
    assert got.returncode == 0, got.stderr
    assert "Traceback" not in got.stderr and "Warning" not in got.stderr, got.stderr
    paths = {f.get("path") for f in report(out)["findings"]}
    assert {f"t.H.{n}" for n in NAMES[:3]} <= paths  # the charts had these names to draw
    for name in ("report.md", "report.html"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    charts = os.listdir(os.path.join(out, "charts"))
    assert "growth.png" in charts and "phases.png" in charts
