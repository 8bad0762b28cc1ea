"""The builtins as they were when heapwatch was first imported.

Code that runs inside the target (the agent, the store writer, naming and redaction)
binds this copy as its module's ``__builtins__``, so a target that deletes or replaces
builtins (``del builtins.len``, a sandbox that removes ``open``) cannot break the agent
or make its error guards raise ``NameError`` into the target::

    from heapwatch._builtins import BUILTINS as __builtins__  # noqa: F401

CPython looks builtins up through the ``__builtins__`` of a function's module globals
(3.10: at each frame; 3.11+: captured when the function is created), so the line must
come before the module's first ``def`` or ``class``.
"""

from __future__ import annotations

import builtins
from typing import Any

BUILTINS: dict[str, Any] = dict(builtins.__dict__)
