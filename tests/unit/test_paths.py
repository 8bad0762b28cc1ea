"""Owner paths on hand-built object graphs, inside a throwaway module."""

from __future__ import annotations

import sys
import types
from collections import defaultdict, deque
from collections.abc import Iterator

import pytest

from heapwatch.agent.naming import key_part
from heapwatch.agent.paths import discover, resolve


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    mod = types.ModuleType("hw_fixture_mod")
    mod.__file__ = "/srv/app/hw_fixture_mod.py"
    sys.modules[mod.__name__] = mod
    try:
        yield mod
    finally:
        del sys.modules[mod.__name__]


def paths_of(floor: int = 20) -> dict[str, object]:
    found = discover(floor, budget_s=5.0, max_nodes=10**7)
    try:
        return {p: found.objects[i] for i, p in found.paths.items() if p.startswith("hw_fixture")}
    finally:
        found.clear()


def test_untracked_dict_on_an_instance(module: types.ModuleType) -> None:
    class Tracker:
        def __init__(self) -> None:
            self._pending = {i: float(i) for i in range(50)}

    Tracker.__module__ = module.__name__
    module.TRACKER = Tracker()
    found = paths_of()
    assert found["hw_fixture_mod.TRACKER._pending"] is module.TRACKER._pending


def _has_own_dict(obj: object) -> bool:
    """Whether the interpreter created a ``__dict__`` for ``obj`` (3.11, 3.12: gc then visits
    that dict instead of the attribute values kept beside the object)."""
    import gc

    return any(type(r) is dict and {"name", "routes"} <= r.keys() for r in gc.get_referents(obj))


@pytest.mark.skipif(not (3, 11) <= sys.version_info[:2] < (3, 13),
                    reason="3.11 and 3.12 show a created __dict__ to gc; 3.10 has none to "
                           "create, 3.13 keeps the values inline beside it")
def test_the_walk_creates_no_instance_dict(module: types.ModuleType) -> None:
    """A created ``__dict__`` stays for the object's life and slows every attribute access on
    it (3.7x on 3.11): the walk and resolve read the attributes without one."""
    from heapwatch.agent import core

    if core.load_native()[0] is None:
        pytest.skip(f"the pure-Python core reads __dict__: {core.load_native()[1]}")

    class Router:
        def __init__(self) -> None:
            self.name = "api"
            self.routes = {f"/r{i}": i for i in range(40)}

    Router.__module__ = module.__name__
    module.ROUTER = Router()
    assert not _has_own_dict(module.ROUTER)
    found = discover(20, 5.0, 10**7)
    oid = next(i for i, p in found.paths.items() if p == "hw_fixture_mod.ROUTER.routes")
    steps = found.steps[oid]
    found.clear()
    assert steps is not None and resolve(steps) is module.ROUTER.routes
    assert not _has_own_dict(module.ROUTER)
    vars(module.ROUTER)  # once the target itself asks for it, it is read from there
    assert _has_own_dict(module.ROUTER)
    assert resolve(steps) is module.ROUTER.routes


def test_class_attribute_nested_dict_and_defaultdict(module: types.ModuleType) -> None:
    class SessionManager:
        _sessions = {f"s{i}": i for i in range(40)}  # noqa: RUF012 - the class attribute is the test

    SessionManager.__module__ = module.__name__
    module.SessionManager = SessionManager
    module.APP = types.SimpleNamespace(caches={"users": list(range(30))})
    bus = defaultdict(list)
    bus["tick"].extend(range(25))
    module.BUS = bus
    found = paths_of()
    assert "hw_fixture_mod.SessionManager._sessions" in found
    assert "hw_fixture_mod.APP.caches['users']" in found
    assert "hw_fixture_mod.BUS['tick']" in found


def test_slots_and_deque(module: types.ModuleType) -> None:
    class Queue:
        __slots__ = ("items",)

        def __init__(self) -> None:
            self.items = deque(range(60))

    module.Q = Queue()
    assert "hw_fixture_mod.Q.items" in paths_of()


def test_secret_looking_keys_are_hidden(module: types.ModuleType) -> None:
    module.CACHE = {"api_token": list(range(30)), "a3f9c2e1b4d5e6f7a8b9": list(range(30))}
    found = paths_of()
    assert "hw_fixture_mod.CACHE[…]" in found
    assert not any("api_token" in p or "a3f9" in p for p in found)


@pytest.mark.parametrize(("key", "shown"), [
    ("users", "['users']"), ("tick", "['tick']"), ("session_id", "[…]"), ("password", "[…]"),
    (42, "[…]"), ("has space", "[…]"), ("x" * 40, "[…]"), ("deadbeefdeadbeef", "[…]"),
])
def test_key_part(key: object, shown: str) -> None:
    assert key_part(key) == shown


def test_no_user_code_runs(module: types.ModuleType) -> None:
    calls = []

    class Sneaky:
        def __getattr__(self, name: str) -> object:
            calls.append(name)
            raise AttributeError(name)

        @property
        def items(self) -> list[int]:
            calls.append("items")
            return list(range(100))

    module.S = Sneaky()
    module.S.data = list(range(30))
    found = paths_of()
    assert "hw_fixture_mod.S.data" in found
    assert calls == []


def test_no_sequence_subclass_code_runs(module: types.ModuleType) -> None:
    """platform.uname()'s result is a tuple subclass whose __iter__ runs ``uname -p`` in a
    subprocess: the walk, resolve and item sampling read tuples and deques through their
    base types only."""
    from heapwatch.agent import items

    calls: list[str] = []

    class Uname(tuple):  # type: ignore[type-arg]
        def __iter__(self) -> Iterator[object]:
            calls.append("__iter__")
            return super().__iter__()

        def __len__(self) -> int:
            calls.append("__len__")
            return super().__len__()

        def __getitem__(self, key: object) -> object:
            calls.append("__getitem__")
            return super().__getitem__(key)  # type: ignore[index]

    class Log(deque):  # type: ignore[type-arg]
        def __iter__(self) -> Iterator[object]:
            calls.append("deque.__iter__")
            return super().__iter__()

        def __reversed__(self) -> Iterator[object]:
            calls.append("deque.__reversed__")
            return super().__reversed__()

        def __len__(self) -> int:
            calls.append("deque.__len__")
            return super().__len__()

        def __getitem__(self, key: object) -> object:
            calls.append("deque.__getitem__")
            return super().__getitem__(key)  # type: ignore[index]

    module.U = Uname((list(range(30)), "x"))
    module.L = Log([list(range(30)), 1])
    found = discover(20, 5.0, 10**7)
    steps = {p: found.steps[i] for i, p in found.paths.items() if p.startswith("hw_fixture")}
    found.clear()
    assert set(steps) >= {"hw_fixture_mod.U[0]", "hw_fixture_mod.L[0]"}
    assert resolve(steps["hw_fixture_mod.U[0]"]) is tuple.__getitem__(module.U, 0)
    assert resolve(steps["hw_fixture_mod.L[0]"]) is deque.__getitem__(module.L, 0)
    assert items.sample_items("hw_fixture_mod.L", module.L, 8, "app", False)
    assert calls == []


def test_resolve_follows_a_rebinding(module: types.ModuleType) -> None:
    module.HOLDER = types.SimpleNamespace(cache={"k": list(range(30))})
    found = discover(20, 5.0, 10**7)
    oid = next(i for i, p in found.paths.items() if p == "hw_fixture_mod.HOLDER.cache['k']")
    steps = found.steps[oid]
    found.clear()
    assert steps is not None
    module.HOLDER.cache = {"k": [1, 2]}
    assert resolve(steps) == [1, 2]
    module.HOLDER.cache = {}
    assert resolve(steps) is None


def test_lru_cache_of_a_function_and_a_method(module: types.ModuleType) -> None:
    import functools

    @functools.cache
    def lookup(n: int) -> list[int]:
        return [n]

    class Pricer:
        @functools.cache  # noqa: B019 - the leak shape under test
        def quote(self, n: int) -> int:
            return n

    Pricer.__module__ = module.__name__
    module.lookup = lookup
    module.Pricer = Pricer
    p = Pricer()
    for i in range(30):
        lookup(i)
        p.quote(i)
    found = discover(20, 5.0, 10**7)
    try:
        by_path = {path: found.objects[i] for i, path in found.paths.items()}
        assert len(by_path["hw_fixture_mod.lookup.<lru_cache>"]) == 30
        assert len(by_path["hw_fixture_mod.Pricer.quote.<lru_cache>"]) == 30
        oid = next(i for i, path in found.paths.items() if path == "hw_fixture_mod.lookup.<lru_cache>")
        steps = found.steps[oid]
    finally:
        found.clear()
    assert steps is not None and resolve(steps) is not None
    assert len(resolve(steps)) == 30


def test_closure_cell(module: types.ModuleType) -> None:
    def make_recorder():  # type: ignore[no-untyped-def]
        chunks: list[bytes] = []

        def record(data: bytes) -> None:
            chunks.append(data)

        return record

    module.RECORD = make_recorder()
    for _i in range(25):
        module.RECORD(b"x")
    assert "hw_fixture_mod.RECORD.<closure>.chunks" in paths_of()


def test_object_held_only_by_a_thread_stack() -> None:
    import threading

    ready, done = threading.Event(), threading.Event()

    def poll_loop() -> None:
        seen = [object() for _ in range(40)]
        ready.set()
        done.wait(10)
        del seen

    t = threading.Thread(target=poll_loop, name="poller", daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        found = discover(20, 5.0, 10**7)
        try:
            paths = set(found.paths.values())
            assert "<thread poller>.poll_loop.seen" in paths, sorted(p for p in paths if "thread" in p)
            oid = next(i for i, p in found.paths.items() if p == "<thread poller>.poll_loop.seen")
            assert found.steps[oid] is None  # a stack is not a stable path: found by the walk only
        finally:
            found.clear()
    finally:
        done.set()
        t.join()


def test_a_module_listed_under_two_names_is_walked_under_its_own(
        module: types.ModuleType) -> None:
    """3.13 lists ``_collections_abc`` also as ``collections.abc`` (its ``__name__``): walked
    under the alias, which sorts first, its classes were skipped as imported from elsewhere
    and ``collections.abc.Hashable._abc_impl.<abc cache>`` was never reached."""
    registry = type("Registry", (), {"__module__": module.__name__,
                                     "handlers": {f"h{i}": [i] for i in range(30)}})
    module.Registry = registry
    sys.modules["_hw_fixture_alias"] = module  # sorts before "hw_fixture_mod"
    try:
        found = paths_of()
    finally:
        del sys.modules["_hw_fixture_alias"]
    assert found.get("hw_fixture_mod.Registry.handlers") is registry.handlers, sorted(found)


def test_the_main_module_keeps_its_name_when_spawn_lists_it_as_mp_main() -> None:
    """A spawned multiprocessing child lists its main module as ``__main__`` and as
    ``__mp_main__`` (its ``__name__``): paths start with the script's stem, as in the
    parent, not ``__mp_main__``."""
    main = types.ModuleType("__mp_main__")
    main.__file__ = "/srv/hw_fixture_svc.py"
    main.SEEN = {f"k{i}": [i] for i in range(30)}  # type: ignore[attr-defined]
    saved = sys.modules["__main__"], sys.modules.get("__mp_main__")
    sys.modules["__main__"] = sys.modules["__mp_main__"] = main
    try:
        found = paths_of()
    finally:
        sys.modules["__main__"] = saved[0]
        if saved[1] is None:
            del sys.modules["__mp_main__"]
        else:
            sys.modules["__mp_main__"] = saved[1]
    assert found.get("hw_fixture_svc.SEEN") is main.SEEN, sorted(found)  # type: ignore[attr-defined]
