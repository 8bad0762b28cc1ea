"""The leak check engine, in this process: the screen, the diagnosis, holders and sites."""

from __future__ import annotations

import collections
import gc
import inspect
import sys
from typing import Any

import pytest

from heapwatch.errors import UsageError
from heapwatch.leakcheck import Screen, check, holder_ignored, parse_marker

REGISTRY: list[Any] = []
MEMO: dict[int, int] = {}
_COUNTER = [5000]


class Job:
    pass


def _make_registry() -> Any:
    handlers: list[Any] = []

    def register(h: Any) -> None:
        handlers.append(h)

    return register


register = _make_registry()


def in_gc_view(obj: Any) -> bool:
    """Whether ``obj`` is where the collector looks: ``gc.freeze()`` moves every tracked
    object out of ``gc.get_objects()``, so an object alive before a check that is back there
    after it shows the check unfroze the heap. (Not ``gc.get_freeze_count() == 0``: 3.12's
    collector itself parks immortal objects, the tuples of static types, in the permanent
    generation at every full collection.)"""
    return any(o is obj for o in gc.get_objects())


def line_of(fn: Any, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, ln in enumerate(lines) if text in ln)


def appends() -> None:
    REGISTRY.append(Job())


def memoizes() -> None:
    _COUNTER[0] += 1
    MEMO[_COUNTER[0]] = _COUNTER[0] * 3


def registers() -> None:
    register(lambda: None)


def holds_defaultdicts() -> None:
    REGISTRY.append(collections.defaultdict(list))


@pytest.fixture(autouse=True)
def _clean() -> Any:
    yield
    REGISTRY.clear()
    MEMO.clear()


@pytest.mark.parametrize(("fn", "holder", "text"), [
    (appends, "test_leakcheck.REGISTRY (list of test_leakcheck.Job)", "REGISTRY.append"),
    (memoizes, "test_leakcheck.MEMO (dict of int)", "MEMO[_COUNTER[0]]"),
    (registers, "test_leakcheck.register.<closure>.handlers (list of function)", "register("),
    (holds_defaultdicts, "test_leakcheck.REGISTRY (list of collections.defaultdict)",
     "REGISTRY.append"),
])
def test_each_planted_leak_is_named_with_holder_and_site(fn: Any, holder: str, text: str
                                                         ) -> None:
    alive = [Job()]
    result = check(fn)
    assert result.leaked, result.message
    assert holder in result.message, result.message
    assert f"test_leakcheck.py:{line_of(fn, text)}" in result.message, result.message
    assert in_gc_view(alive)  # the heap is unfrozen after a check


def test_a_heap_the_process_froze_itself_stays_frozen() -> None:
    """A process that called ``gc.freeze()`` (a pre-fork server does) keeps its frozen
    objects frozen through a check that diagnoses a leak: the check froze nothing, so it
    unfreezes nothing."""
    mine = [Job()]
    gc.freeze()
    try:
        result = check(appends)
        assert result.leaked, result.message  # the diagnosis, where the caches are read, ran
        assert not in_gc_view(mine), "the check unfroze objects the process froze"
    finally:
        gc.unfreeze()
    assert in_gc_view(mine)


def test_a_steady_function_passes_early_and_cheaply() -> None:
    cache: dict[int, list[int]] = {}

    def steady() -> None:
        for i in range(50):
            cache[i % 10] = [i]

    result = check(steady)
    assert not result.leaked, result.message
    assert result.screened == 6 and result.diagnosed == 0


def test_ignoring_the_holder_silences_it_and_its_contents() -> None:
    result = check(appends, ignore=["test_leakcheck.REGISTRY"])
    assert not result.leaked, result.message


def test_holder_patterns_never_match_item_types() -> None:
    assert holder_ignored("typing._caches[…].<lru_cache>", [])
    assert holder_ignored("re._cache", [])
    assert not holder_ignored("myapp.REGISTRY", ["collections.*"])
    assert holder_ignored("/x/site-packages/_pytest/fixtures.py:12", [])


def test_the_screen_does_not_count_its_own_bookkeeping() -> None:
    """Nothing allocated between measures: its block and object series stay flat."""
    screen = Screen()
    gc.freeze()
    try:
        for _ in range(12):
            screen.measure()
    finally:
        gc.unfreeze()
    assert max(screen.blocks) - min(screen.blocks) <= 2, list(screen.blocks)
    assert max(screen.objects[1:]) - min(screen.objects[1:]) <= 1, list(screen.objects)


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((5,), {}, "at least 8"),
    ((), {"iterations": 5}, "at least 8"),
    ((), {"iterations": "x"}, "whole number"),
    ((), {"warmup": -1}, "warmup"),
    ((), {"itterations": 20}, "no argument 'itterations'"),
    ((20,), {"iterations": 20}, "twice"),
    ((), {"ignore": 3}, "glob pattern"),
    ((), {"enabled": "no"}, "True or False"),
])
def test_marker_arguments_are_validated(args: tuple[Any, ...], kwargs: dict[str, Any],
                                        message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_marker(args, kwargs)


def test_positional_marker_arguments() -> None:
    s = parse_marker((20, 3), {"ignore": "app.*"})
    assert (s.iterations, s.warmup, s.ignore, s.enabled) == (20, 3, ("app.*",), True)


def test_a_fixed_number_of_iterations_is_honoured() -> None:
    result = check(appends, iterations=9, warmup=0)
    assert result.leaked and result.screened == 9, result.message


@pytest.mark.skipif(sys.version_info < (3, 11), reason="notes need 3.11")
def test_an_exception_in_a_call_propagates() -> None:
    calls = []

    def third_fails() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        check(third_fails)
    assert in_gc_view(calls)
