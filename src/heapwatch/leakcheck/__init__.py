"""Leak checks for a callable, run in-process: the engine of the pytest plugin.

A check has two stages, so that a test that does not leak costs little:

1. **Screen** (every checked test). The callable runs ``warmup`` times, then the objects
   alive so far are frozen (``gc.freeze()``: the collector and ``gc.get_objects()`` skip
   them), and after each further call the check collects the young garbage and takes a
   census of what is young: live objects by type, containers by length, and the
   allocator's live block count (which also sees ints or strings put into an old
   container). Census, collection and block count only touch what the calls left alive,
   so the census is the main cost. When nothing rises after ``SCREEN_MIN`` calls the test
   passes; when something rises but not clearly, the screen goes on (up to
   ``SCREEN_MAX`` calls); when something clearly grows, stage 2 runs.
2. **Diagnose** (only when something grew). The heap is unfrozen, tracemalloc is on, and
   the agent takes a snapshot after each of ``DIAGNOSE`` more calls; the same analysis as
   a recorded run names the growing container, its owner path (who holds it) and the
   allocation line of its newest items. Type findings are tied to the container that holds
   their newest objects (reached forward from the container, never by searching for
   referrers), so ignoring a holder also silences what it holds.

Ignore patterns (``fnmatch`` globs) are matched against holders (owner paths) and sites,
never against the type of the items held: a leak of ``collections.defaultdict`` items in
the user's list is still reported. Known interpreter and stdlib caches (re, typing,
linecache, logging's registries, bounded ``lru_cache`` s...) are holders that never fail a
test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from heapwatch.errors import UsageError
from heapwatch.leakcheck.diagnose import diagnose_growth, params_for
from heapwatch.leakcheck.holders import KNOWN_CACHES, holder_ignored
from heapwatch.leakcheck.screen import Screen, frozen_heap, growing
from heapwatch.model import Finding

SCREEN_MIN = 6       # measured calls before a test with nothing rising passes
SCREEN_CONFIRM = 10  # calls after which a rising series is judged with the trend test
SCREEN_MAX = 30      # calls after which an ambiguous rise is given up as noise
DIAGNOSE = 12        # calls of the diagnosis (the trend test needs 8 after warm-up)
WARMUP = 2
MIN_ITERATIONS = 8


@dataclass
class LeakResult:
    """Outcome of a leak check; ``message`` names what grew."""

    leaked: bool
    findings: list[Finding]
    iterations: int
    message: str
    # How the check went: calls screened, calls diagnosed, seconds spent on the check itself
    # (census, collections, analysis: not the calls), and why it stopped.
    screened: int = 0
    diagnosed: int = 0
    check_s: float = 0.0
    outcome: str = ""
    check_cpu_s: float = 0.0  # the same, in CPU time of this thread (a busy machine inflates wall time)

    def __bool__(self) -> bool:
        return self.leaked


@dataclass(frozen=True)
class Settings:
    """What a check does: ``iterations`` None means adaptive."""

    iterations: int | None = None
    warmup: int = WARMUP
    ignore: tuple[str, ...] = ()
    enabled: bool = True


_MARKER_ARGS = ("iterations", "warmup", "ignore", "enabled")


def parse_marker(args: Sequence[Any], kwargs: dict[str, Any]) -> Settings:
    """``leakcheck(iterations=None, warmup=2, ignore=(), enabled=True)``, positionally or by
    keyword; a bad argument raises :class:`UsageError` with a one-line message."""
    usage = ("use @pytest.mark.leakcheck(iterations=N, warmup=N, ignore=[patterns], "
             "enabled=True|False)")
    if len(args) > len(_MARKER_ARGS):
        raise UsageError(f"leakcheck takes at most {len(_MARKER_ARGS)} arguments, got "
                         f"{len(args)}: {usage}")
    values: dict[str, Any] = {}
    for name, value in zip(_MARKER_ARGS, args, strict=False):
        values[name] = value
    for name, value in kwargs.items():
        if name not in _MARKER_ARGS:
            raise UsageError(f"leakcheck has no argument {name!r}: {usage}")
        if name in values:
            raise UsageError(f"leakcheck got {name!r} twice (positionally and by keyword)")
        values[name] = value
    return settings_from(values, "leakcheck")


def settings_from(values: dict[str, Any], where: str, base: Settings | None = None
                  ) -> Settings:
    base = base or Settings()
    it = values.get("iterations", base.iterations)
    if it is not None and (type(it) is not int or it < MIN_ITERATIONS):
        raise UsageError(f"{where}: iterations must be a whole number of at least "
                         f"{MIN_ITERATIONS} (a trend needs that many points), not {it!r}")
    wu = values.get("warmup", base.warmup)
    if type(wu) is not int or wu < 0:
        raise UsageError(f"{where}: warmup must be a whole number of 0 or more, not {wu!r}")
    ig = values.get("ignore", ())
    if isinstance(ig, str):
        ig = (ig,)
    if not isinstance(ig, (list, tuple, set, frozenset)) or not all(isinstance(p, str)
                                                                  for p in ig):
        raise UsageError(f"{where}: ignore must be a glob pattern or a list of them, "
                         f"not {ig!r}")
    en = values.get("enabled", base.enabled)
    if not isinstance(en, bool):
        raise UsageError(f"{where}: enabled must be True or False, not {en!r}")
    return Settings(it, wu, (*base.ignore, *ig), en)


class Stop(Exception):
    """Raised by a step to end the check early without a verdict (a skip, say)."""


# -- the check -------------------------------------------------------------------------------

def _describe(f: Finding) -> str:
    per_it = f.growth.per_hour / 3600
    held = f" of {f.items[0]['type']}" if f.items else ""
    site = (f"allocated at {f.site}" + (f" (inside {f.alloc_site})" if f.alloc_site else "")
            if f.site else "allocation site not traced")
    if f.kind == "container":
        return (f"{f.path} ({f.type}{held}) grows {per_it:+.2f} {f.growth.unit}/iteration, "
                f"{site} [{f.growth.grew_in}]")
    if f.kind == "type":
        return (f"{f.type} objects accumulate {per_it:+.2f}/iteration, {site}; held by no "
                f"container reachable from module globals [{f.growth.grew_in}]")
    what = f.site or f.path or f.type or f.kind
    return f"{what} ({f.kind}) grows {per_it:+.2f} {f.growth.unit}/iteration [{f.growth.grew_in}]"


def _screen(screen: Screen, call: Callable[[], None], fixed: int | None
            ) -> tuple[int, bool, str]:
    """Stage 1: (calls screened, whether something clearly grows, what)."""
    screen_max = fixed if fixed is not None else SCREEN_MAX
    outcome = "nothing rose"
    screen.measure()
    while screen.n - 1 < screen_max:
        call()
        screen.measure()
        measured = screen.n - 1
        if fixed is None and measured < SCREEN_MIN:
            continue
        rising = screen.rising()
        if not rising:
            if fixed is None:
                break
            continue
        confirm_at = SCREEN_CONFIRM if fixed is None else min(SCREEN_CONFIRM, fixed)
        grew = ([label for label, v in rising if growing(v)]
                   if measured >= confirm_at else [])
        if grew:
            return measured, True, "grew: " + ", ".join(grew[:5])
        outcome = "rose, not clearly"
    return screen.n - 1, False, outcome


def run_check(step: Callable[[int], None], settings: Settings, name: str,
              fixtures_note: str = "") -> LeakResult:
    """Run ``step(i)`` (the i-th call, from 0) as the check decides; see the module doc.

    ``step`` raises to end the check: any exception propagates (the test failed on that
    call), :class:`Stop` ends it without a verdict."""
    t_total, c_total = time.perf_counter(), time.thread_time()
    in_calls = [0.0, 0.0]  # wall, CPU
    calls = 0

    def call() -> None:
        nonlocal calls
        t, c = time.perf_counter(), time.thread_time()
        try:
            step(calls)
        finally:
            calls += 1
            in_calls[0] += time.perf_counter() - t
            in_calls[1] += time.thread_time() - c

    def cost() -> tuple[float, float]:
        return (time.perf_counter() - t_total - in_calls[0],
                time.thread_time() - c_total - in_calls[1])

    fixed = settings.iterations
    for _ in range(settings.warmup):
        call()
    screen = Screen()
    with frozen_heap() as froze:
        screened, confirmed, outcome = _screen(screen, call, fixed)
        if not confirmed:
            wall, cpu = cost()
            return LeakResult(False, [], calls, f"{name}: nothing kept growing over "
                              f"{screened} calls (after {settings.warmup} warm-up)", screened,
                              0, wall, outcome, cpu)
        bad, done = diagnose_growth(screen, call, max(DIAGNOSE, fixed or 0), settings.ignore,
                                    froze)
    del screen
    wall, cpu = cost()
    if not bad:
        return LeakResult(False, [], calls, f"{name}: the screen saw growth ({outcome}) but "
                          f"the diagnosis over {done} calls found nothing that grows without "
                          f"bound", screened, done, wall, "diagnosed: nothing", cpu)
    lines = [f"{name} leaks: after {settings.warmup} warm-up calls and {screened} screened, "
             f"{done} calls under the agent found:"]
    lines += [f"  {_describe(f)}" for f in bad[:5]]
    if fixtures_note:
        lines.append(f"  ({fixtures_note})")
    return LeakResult(True, bad, calls, "\n".join(lines), screened, done, wall,
                      "diagnosed: leak", cpu)


def check(fn: Callable[[], Any], iterations: int | None = None, warmup: int = WARMUP,
          ignore: Iterable[str] = (), name: str | None = None) -> LeakResult:
    """Run ``fn`` repeatedly and report what keeps growing (see the module doc).

    ``iterations``: None for adaptive (screen 6 to 30 calls, diagnose 12), or at least 8:
    the screen runs that many calls and the diagnosis at least that many."""
    settings = settings_from({"iterations": iterations, "warmup": warmup,
                              "ignore": tuple(ignore)}, "leakcheck")
    label = name or str(getattr(fn, "__qualname__", "the function"))
    return run_check(lambda i: fn(), settings, label)


__all__ = ["KNOWN_CACHES", "LeakResult", "Settings", "Stop", "check", "holder_ignored",
           "params_for", "parse_marker", "run_check", "settings_from"]
