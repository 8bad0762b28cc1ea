"""heapwatch: find what leaks in a Python process, who holds it, and where it was allocated.

In-process use::

    import heapwatch
    with heapwatch.watch(interval=1.0) as run:
        serve_requests()
    print(run.result.verdict, run.result.findings[:1])

From the shell: ``heapwatch run -- python app.py``.
"""

from __future__ import annotations

from heapwatch.api import Result, Watch, mark, snapshot, start, stop, watch
from heapwatch.errors import HeapwatchError

__version__ = "0.1.0"
__all__ = [
    "HeapwatchError",
    "Result",
    "Watch",
    "__version__",
    "mark",
    "snapshot",
    "start",
    "stop",
    "watch",
]
