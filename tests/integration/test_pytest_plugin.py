"""The pytest plugin, tested with pytester in a fresh pytest run per case."""

from __future__ import annotations

import pytest
from helpers import marker_line

pytest_plugins = ["pytester"]

LEAKY = '''
import pytest

_REGISTRY = []

class Subscriber:
    def __init__(self, n):
        self.n = n

@pytest.mark.leakcheck(iterations=30, warmup=3)
def test_subscribe():
    _REGISTRY.append(Subscriber(len(_REGISTRY)))  # ALLOC
'''

STEADY = '''
import pytest

_CACHE = {}

@pytest.mark.leakcheck(iterations=30, warmup=3)
def test_cache(tmp_path):
    for i in range(20):
        _CACHE[i % 10] = [i] * 5
    assert len(_CACHE) == 10
'''

STDLIB_HEAVY = '''
import logging, re, typing, functools, linecache, json, dataclasses
import pytest

counter = {"n": 0}

@pytest.mark.leakcheck(iterations=30, warmup=3)
def test_uses_stdlib_caches():
    counter["n"] += 1
    n = counter["n"]
    assert re.compile(f"item-{n}-[a-z]+").match(f"item-{n}-abc")
    typing.get_type_hints(json.JSONDecoder.__init__)
    alias = typing.List[typing.Tuple[int, str]]
    logging.getLogger(f"app.module{n % 7}").debug("x %s", n)
    linecache.getline(json.__file__, n % 50 + 1)
    dataclasses.make_dataclass(f"D{n % 5}", [("a", int)])
    assert alias
'''

FIXTURE = '''
_SEEN = set()

def test_with_fixture(leakcheck):
    def handler():
        _SEEN.add(object())
    leakcheck(handler, iterations=25, warmup=2)
'''


def test_a_leaking_body_fails_naming_the_container(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "test_leaky._REGISTRY" in text, text
    assert "items/iteration" in text and "test_leaky.Subscriber" in text


def test_a_steady_body_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_steady=STEADY)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_stdlib_caches_do_not_fail_a_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stdlib=STDLIB_HEAVY)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixture=FIXTURE)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "test_fixture._SEEN" in result.stdout.str()


def test_disabled_and_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY, test_steady=STEADY)
    off = pytester.runpytest_subprocess("-q", "--no-leakcheck", "-p", "no:cacheprovider")
    off.assert_outcomes(passed=2)
    xdist = pytester.runpytest_subprocess("-q", "-n", "2", "-p", "no:cacheprovider")
    xdist.assert_outcomes(passed=1, failed=1)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-o",
                                         "asyncio_default_fixture_loop_scope=function", *args)


PLANTED = '''
import collections, unittest
import pytest

_MEMO = {}
_LOG = []
_DD = []

def _make_registry():
    handlers = []
    def register(h):
        handlers.append(h)  # CLOSURE
    return register

register = _make_registry()

def memo(n):
    if n not in _MEMO:
        _MEMO[n] = n * 3  # MEMO
    return _MEMO[n]

_n = [1000]

def test_memo():
    _n[0] += 1
    memo(_n[0])

def test_appended(tmp_path):
    _LOG.append(f"call in {tmp_path}")  # LIST

def test_closure(monkeypatch):
    register(lambda: None)

def test_defaultdict_items():
    _DD.append(collections.defaultdict(list))  # DD

class TestCase(unittest.TestCase):
    def test_unittest_leak(self):
        register(object())

def test_steady(tmp_path, monkeypatch):
    monkeypatch.setenv("HEAPWATCH_X", "1")
    (tmp_path / "f").write_text("x")
'''


@pytest.mark.slow  # six tests, five of them diagnosed: ~12 s, more on a busy machine
def test_leakcheck_all_names_holder_and_site_of_every_planted_leak(pytester: pytest.Pytester
                                                                   ) -> None:
    path = pytester.makepyfile(test_planted=PLANTED)
    result = run(pytester, "--leakcheck-all")
    result.assert_outcomes(failed=5, passed=1)
    text = result.stdout.str()
    lines = {m: marker_line(str(path), f"# {m}") for m in ("MEMO", "LIST", "CLOSURE", "DD")}
    assert "test_planted._MEMO (dict of int) grows" in text, text
    assert f"test_planted.py:{lines['MEMO']}" in text
    assert "test_planted._LOG (list of str)" in text and f"test_planted.py:{lines['LIST']}" in text
    assert "test_planted.register.<closure>.handlers" in text
    # the defaultdict items are named by their holder; their type is never an ignore key
    assert "test_planted._DD (list of collections.defaultdict)" in text, text
    assert f"test_planted.py:{lines['DD']}" in text
    assert "test_unittest_leak" in text.split("heapwatch leakcheck")[-1]
    summary = text.split("heapwatch leakcheck")[-1]
    assert "checked 6 test(s): 5 leak" in summary
    assert summary.count("LEAK ") == 5


def test_ignoring_a_holder_silences_its_contents(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ign='''
import pytest
class Item:
    def __init__(self):
        self.payload = {"a": [1, 2]}
_HELD = []

@pytest.mark.leakcheck(ignore=["test_ign._HELD"])
def test_ignored():
    _HELD.append(Item())

@pytest.mark.leakcheck
def test_reported():
    _HELD.append(Item())
''')
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "test_reported" in text and "test_ign._HELD" in text
    assert "test_ignored" not in text.split("FAILURES")[-1].split("short test summary")[0]


def test_typing_bounded_caches_do_not_fail_a_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_typing='''
import typing, functools
import pytest

@functools.lru_cache(maxsize=64)
def cached(cls):
    return [cls]

@pytest.mark.leakcheck(iterations=20)
def test_new_generic_aliases_each_call():
    class C:
        pass
    typing.List[C]; typing.Optional[C]; typing.Tuple[C, int]
    cached(C)
''')
    run(pytester).assert_outcomes(passed=1)


def test_fixtures_are_set_up_afresh_for_each_call(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fix='''
import os, pytest
SETUPS = []

@pytest.fixture
def counted():
    SETUPS.append(1)
    yield len(SETUPS)
    SETUPS.pop()

@pytest.mark.leakcheck
def test_delattr_needs_a_fresh_monkeypatch(monkeypatch, counted):
    monkeypatch.delattr(os, "getcwd")  # raises on a monkeypatch reused from the last call
    assert counted == 1
''')
    run(pytester).assert_outcomes(passed=1)


def test_a_failure_on_a_later_call_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_later='''
import pytest
CALLS = []

@pytest.mark.leakcheck
def test_third_call_fails():
    CALLS.append(1)
    assert len(CALLS) < 3
''')
    result = run(pytester)
    result.assert_outcomes(failed=1)
    assert "failed on iteration 3 of the leak check" in result.stdout.str()


@pytest.mark.parametrize("marker", ["leakcheck(5)", "leakcheck(iterations=5)",
                                    "leakcheck(iterations='x')", "leakcheck(warmup=-1)",
                                    "leakcheck(itterations=20)", "leakcheck(20, iterations=20)"])
def test_bad_marker_arguments_are_a_usage_error(pytester: pytest.Pytester, marker: str) -> None:
    pytester.makepyfile(test_bad=f'''
import pytest
@pytest.mark.{marker}
def test_x():
    pass
''')
    result = run(pytester)
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "usage error: leakcheck" in text or "usage error: @pytest.mark.leakcheck" in text, text
    assert "Traceback" not in text and "heapwatch/leakcheck.py" not in text


def test_positional_iterations_are_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pos='''
import pytest
N = []
@pytest.mark.leakcheck(9, 0)
def test_x():
    N.append([])  # LEAK
''')
    result = run(pytester, "-rA")
    result.assert_outcomes(failed=1)
    assert "after 0 warm-up calls and 9 screened" in result.stdout.str()


def test_a_returned_value_still_gets_pytests_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ret='''
import pytest
@pytest.mark.leakcheck
def test_returns():
    return 42
''')
    result = run(pytester, "-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    assert "PytestReturnNotNoneWarning" in result.stdout.str()


ASYNC = '''
import pytest
_TASKS = []

class Job:
    pass

@pytest.mark.asyncio
async def test_asyncio_leak():
    _TASKS.append(Job())

@pytest.mark.asyncio
async def test_asyncio_steady():
    x = [Job() for _ in range(10)]

@pytest.mark.anyio
async def test_anyio_leak():
    _TASKS.append(Job())

@pytest.fixture
def anyio_backend():
    return "asyncio"
'''


def test_async_tests_are_checked(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytest.importorskip("anyio")
    pytester.makepyfile(test_async=ASYNC)
    result = run(pytester, "--leakcheck-all")
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert text.count("test_async._TASKS (list of test_async.Job)") >= 2, text


def test_leakcheck_all_from_the_ini_and_opting_out(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nleakcheck_all = true\n")
    pytester.makepyfile(test_ini='''
import pytest
_L = []
def test_leaks():
    _L.append(object())

@pytest.mark.leakcheck(enabled=False)
def test_opted_out():
    _L.append(object())
''')
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert "test_leaks" in result.stdout.str().split("short test summary")[-1]
