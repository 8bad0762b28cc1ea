"""The census, run against both cores (native C and pure Python): same contract, same tests.

The contract: counts by type, the big containers by (id, type, base length), references
only to the containers asked for by id, no reference kept, no Python code of the
target's run (no __len__, __hash__ or __eq__), the gc switch left as it was found.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections import OrderedDict, defaultdict, deque
from typing import Any

import pytest

from heapwatch.agent import core


class Widget:
    pass


class Liar(list):  # type: ignore[type-arg]
    calls = 0

    def __len__(self) -> int:
        Liar.calls += 1
        return 0


class Meta(type):
    def __eq__(cls, other: object) -> bool:
        raise AssertionError("the census ran a metaclass __eq__")

    __hash__ = None  # type: ignore[assignment]  # classes of this metaclass are unhashable


class Odd(metaclass=Meta):
    pass


def counts(res: Any) -> dict[int, int]:
    return {id(t): n for t, n in res.type_counts}


def test_counts_objects_by_type(census_core: str) -> None:
    widgets = [Widget() for _ in range(321)]
    odd = [Odd() for _ in range(7)]
    res = core.census(10**9, set())
    by_id = counts(res)
    assert by_id[id(Widget)] == 321
    assert by_id[id(Odd)] == 7  # an unhashable class is counted, no metaclass code runs
    assert res.gc_objects == sum(n for _, n in res.type_counts)
    assert res.gc_objects >= len(widgets) + len(odd)
    assert res.big == [] and res.wanted == {}


def test_lists_big_containers_with_their_base_length(census_core: str) -> None:
    big_list = [[i] for i in range(150)]
    liar = Liar([object() for _ in range(120)])
    od = OrderedDict((i, [i]) for i in range(130))
    dd = defaultdict(list, {i: [i] for i in range(140)})
    dq = deque([i] for i in range(110))
    st = {Widget() for _ in range(105)}
    small = [[1]]
    atomic = {i: i for i in range(500)}  # gc tracks it only from 3.14 on
    Liar.calls = 0
    res = core.census(100, set())
    got = {oid: (t, n) for oid, t, n in res.big}
    assert got[id(big_list)] == (list, 150)
    assert got[id(liar)] == (Liar, 120)
    assert Liar.calls == 0, "the census called a user __len__"
    assert got[id(od)] == (OrderedDict, 130)
    assert got[id(dd)] == (defaultdict, 140)
    assert got[id(dq)] == (deque, 110)
    assert got[id(st)] == (set, 105)
    assert id(small) not in got
    assert (id(atomic) in got) == gc.is_tracked(atomic)  # untracked: the path walk finds it
    assert all(n >= 100 for n in (n for _, n in got.values()))


def test_excluded_ids_are_left_out(census_core: str) -> None:
    mine = [[i] for i in range(200)]
    theirs = [[i] for i in range(200)]
    ids = {oid for oid, _, _ in core.census(100, {id(mine)}).big}
    assert id(mine) not in ids
    assert id(theirs) in ids


def test_hands_out_only_the_containers_asked_for(census_core: str) -> None:
    asked = [[i] for i in range(200)]
    other = [[i] for i in range(200)]
    small_asked = {"a": [1]}
    tup = tuple([i] for i in range(200))  # never handed out, even when asked for
    res = core.census(100, set(), {id(asked), id(small_asked), id(tup), 12345})
    try:
        assert set(res.wanted) == {id(asked), id(small_asked)}
        assert res.wanted[id(asked)] is asked
        assert res.wanted[id(small_asked)] is small_asked
        assert id(other) in {oid for oid, _, _ in res.big}
    finally:
        res.wanted.clear()


def test_keeps_no_reference_to_any_object(census_core: str) -> None:
    big = [[i] for i in range(200)]
    newest = Widget()  # the newest objects are those a tuple being built would be among
    before = sys.getrefcount(big), sys.getrefcount(newest)
    res = core.census(100, set(), {id(big)})
    res.wanted.clear()
    del res
    assert (sys.getrefcount(big), sys.getrefcount(newest)) == before
    objs = [Widget() for _ in range(50)]
    refs = [weakref.ref(o) for o in objs]
    core.census(100, set())
    del objs
    assert all(r() is None for r in refs), "an object outlived its last reference"


def test_leaves_the_gc_switch_as_it_found_it(census_core: str) -> None:
    assert gc.isenabled()
    gc.disable()
    try:
        core.census(100, set())
        assert not gc.isenabled()
    finally:
        gc.enable()
    core.census(100, set())
    assert gc.isenabled()


def test_newest_of_type(census_core: str) -> None:
    gc.collect()
    made = [Widget() for _ in range(5)]
    assert core.newest_of_type(Widget, 3) == [made[4], made[3], made[2]]
    assert core.newest_of_type(Widget, 0) == []
    held = [tuple(range(i)) for i in range(10)]
    assert core.newest_of_type(tuple, 3) == [], "a tuple was handed out"
    del held


def test_info_names_the_core_that_runs(census_core: str) -> None:
    info = core.info()
    assert info.name == census_core
    assert (info.fallback is None) == (census_core == "native")
    assert info.as_meta() == {"core": census_core, "core_fallback": info.fallback}


def test_both_cores_agree_on_the_same_heap() -> None:
    mod, why = core.load_native()
    if mod is None:
        pytest.skip(f"the native core cannot run here: {why}")
    widgets = [Widget() for _ in range(77)]
    lists = [[[j] for j in range(100 + i)] for i in range(5)]
    mine = {id(x) for x in lists}
    results = {}
    try:
        for name in ("native", "python"):
            core.use(name)
            res = core.census(100, set())
            results[name] = (counts(res)[id(Widget)],
                             sorted((oid, t, n) for oid, t, n in res.big if oid in mine))
    finally:
        core.use(None)
    assert results["native"] == results["python"]
    assert results["native"][0] == len(widgets)
    assert len(results["native"][1]) == 5


def test_use_refuses_an_unknown_core() -> None:
    from heapwatch.errors import AgentError

    with pytest.raises(AgentError, match="core must be one of"):
        core.use("rust")


def test_the_python_core_names_a_class_it_could_not_list(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from heapwatch.agent import census

    monkeypatch.setattr(census, "_live_types", lambda: {})
    widgets = [Widget() for _ in range(5)]
    res = census.take_census(10**9, set())
    assert counts(res)[id(Widget)] == len(widgets)
    assert res.gc_objects == sum(n for _, n in res.type_counts)


class _Sentinel:
    """gc-tracked, not a container: only gc's object list ever holds it besides its owner."""


class _Watch:
    """An audit hook (they cannot be removed: inert when not armed) that notes whether it
    ever ran while a list held ``sentinel`` — i.e. Python code ran while a pass held gc's
    object list, when the GIL could pass to a thread building a tuple."""

    def __init__(self) -> None:
        self.armed = False
        self.sentinel = _Sentinel()
        self.base = 0
        self.calls = 0
        self.while_held: set[str] = set()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        self.calls += 1
        if sys.getrefcount(self.sentinel) > self.base:
            self.while_held.add(event)


_WATCH = _Watch()
sys.addaudithook(_WATCH)


@pytest.mark.parametrize("pass_", ["census", "newest_of_type"])
def test_no_python_code_runs_while_a_pass_holds_the_object_list(census_core: str,
                                                                pass_: str) -> None:
    w = _WATCH
    w.base = sys.getrefcount(w.sentinel)
    w.calls = 0
    w.while_held.clear()
    w.armed = True
    try:
        if pass_ == "census":
            core.census(1, set(), ())
        else:
            core.newest_of_type(list, 5)
    finally:
        w.armed = False
    assert w.calls > 0 or census_core == "native"  # the hook ran (gc.get_objects is audited)
    assert w.while_held == set(), f"audit hook ran while gc's list was held: {w.while_held}"
