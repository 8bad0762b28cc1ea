"""The pytest plugin on real suites: false flags, checking cost per test, time vs plain.

    python bench/leakcheck_suites.py [--suite toolz|attrs|planted|all] [--cache DIR]

Downloads the sdists of toolz and attrs with pip into the cache directory
(``$HEAPWATCH_BENCH_CACHE``, default ``~/.cache/heapwatch-bench``; never into the
repository), makes a venv there with the suites' test dependencies and this checkout of
heapwatch, then for each suite runs

* the plain suite (``pytest -p no:heapwatch``) and the same suite with ``--leakcheck-all``,
  side by side in one run: wall time of both, their ratio;
* per checked test, the checking cost (census, collections, analysis: the time the check
  adds besides calling the test again), its median and total, and which tests failed as
  leaking: on an unmodified suite every one of them is a false flag, or a growth the test
  really makes (the bench prints each so a person can judge);
* ``planted``: toolz with three leaks planted (a memo dict on an unbounded key, a list
  appended per call, a closure registry); every test that reaches one (found by running
  the suite once with counters) must fail naming the holder and the planted line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDISTS = {"toolz": "toolz==1.2.0", "attrs": "attrs==26.1.0"}
DEPS = ["pytest", "hypothesis", "pympler", "cloudpickle"]
SUITES = {"toolz": ["toolz/tests"], "attrs": ["tests/test_make.py", "tests/test_funcs.py"]}

PLANTS = {
    # file, anchor line (the plant goes right after it), code, holder the message must name
    "memo": ("toolz/itertoolz.py", "def get(ind, seq, default=no_default):",
             "    _PLANT_MEMO[(len(_PLANT_MEMO), repr(ind))] = id(seq)  # PLANT-MEMO",
             "toolz.itertoolz._PLANT_MEMO"),
    "list": ("toolz/dicttoolz.py", "def merge(*dicts, **kwargs):",
             "    _PLANT_LOG.append([len(dicts)])  # PLANT-LIST", "toolz.dicttoolz._PLANT_LOG"),
    "closure": ("toolz/functoolz.py", "def compose(*funcs):",
                "    _plant_register(lambda: funcs)  # PLANT-CLOSURE",
                "toolz.functoolz._plant_register.<closure>.handlers"),
}
HEADERS = {
    "memo": "_PLANT_MEMO = {}\n",
    "list": "_PLANT_LOG = []\n",
    "closure": ("def _plant_make():\n    handlers = []\n    def register(h):\n"
                "        handlers.append(h)\n    return register\n\n\n"
                "_plant_register = _plant_make()\n"),
}


def sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def prepare(cache: str) -> tuple[str, dict[str, str]]:
    os.makedirs(cache, exist_ok=True)
    venv = os.path.join(cache, "venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", *DEPS], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "-e", ROOT], check=True)
    trees = {}
    for name, spec in SDISTS.items():
        tar = next((f for f in os.listdir(cache) if f.startswith(name + "-") and
                    f.endswith(".tar.gz")), None)
        if tar is None:
            subprocess.run([py, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                            ":all:", spec, "-d", cache], check=True)
            tar = next(f for f in os.listdir(cache) if f.startswith(name + "-"))
        dest = os.path.join(cache, "src", tar[: -len(".tar.gz")])
        if not os.path.exists(dest):
            with tarfile.open(os.path.join(cache, tar)) as tf:
                tf.extractall(os.path.join(cache, "src"), filter="data")
        trees[name] = dest
    return py, trees


def run_suite(py: str, cwd: str, paths: list[str], extra: list[str], env: dict[str, str]
              ) -> tuple[float, str, str]:
    junit = os.path.join(cwd, ".bench-junit.xml")
    cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           f"--junitxml={junit}", "-o", "junit_family=xunit1", *extra, *paths]
    t = time.perf_counter()
    proc = sh(cmd, cwd=cwd, env=env)
    return time.perf_counter() - t, proc.stdout + proc.stderr, junit


def times(junit: str) -> dict[str, float]:
    """Wall time of each test's call (and setup/teardown) from a JUnit file."""
    return {f"{c.get('classname')}::{c.get('name')}": float(c.get("time") or 0.0)
            for c in ET.parse(junit).getroot().iter("testcase")}


def checks(junit: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        for prop in case.iter("property"):
            if prop.get("name") == "heapwatch_leakcheck":
                value = prop.get("value") or "{}"
                out.append((name, eval(value, {"__builtins__": {}}, {})))  # a dict literal
    return out


def outcome_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    return lines[-1].strip("= ") if lines else "(no summary)"


def bench(py: str, name: str, tree: str, env: dict[str, str]) -> dict[str, object]:
    src = os.path.join(tree, "src")
    if os.path.isdir(src):
        env = dict(env, PYTHONPATH=src)
    paths = SUITES[name]
    plain_s, plain_out, plain_junit = run_suite(py, tree, paths, ["-p", "no:heapwatch"], env)
    plain_times = times(plain_junit)
    checked_s, out, junit = run_suite(py, tree, paths, ["--leakcheck-all"], env)
    rows = checks(junit)
    checked_times = times(junit)
    added = [checked_times[n] - plain_times.get(n, 0.0) for n, _ in rows]
    costs = [float(v["check_s"]) for _, v in rows]  # type: ignore[arg-type]
    cpu = [float(v.get("check_cpu_s", 0.0)) for _, v in rows]  # type: ignore[arg-type]
    flagged = [(n, v) for n, v in rows if v.get("leaked")]
    diagnosed = sum(1 for _, v in rows if v.get("diagnosed"))
    print(f"\n== {name}: {len(rows)} tests checked ({outcome_line(plain_out)} plain; "
          f"{outcome_line(out)} checked)")
    print(f"   plain {plain_s:.1f} s | --leakcheck-all {checked_s:.1f} s | ratio "
          f"{checked_s / plain_s:.1f}x")
    if added:
        print(f"   time a test takes more when checked (its repeated calls, fixtures set up "
              f"again, the check): median {statistics.median(added):.3f} s, p90 "
              f"{sorted(added)[int(0.9 * (len(added) - 1))]:.3f} s")
    if costs:
        print(f"   checking cost per test (wall): median {statistics.median(costs):.3f} s, p90 "
              f"{sorted(costs)[int(0.9 * (len(costs) - 1))]:.3f} s, max {max(costs):.2f} s, "
              f"total {sum(costs):.1f} s; diagnosed {diagnosed}")
        print(f"   checking cost per test (CPU):  median {statistics.median(cpu):.3f} s, p90 "
              f"{sorted(cpu)[int(0.9 * (len(cpu) - 1))]:.3f} s, max {max(cpu):.2f} s, "
              f"total {sum(cpu):.1f} s")
    print(f"   flagged as leaking: {len(flagged)}")
    for n, v in flagged:
        print(f"     {n}: {v.get('first')}")
    return {"suite": name, "tests": len(rows), "plain_s": plain_s, "checked_s": checked_s,
            "median_cost_s": statistics.median(costs) if costs else None,
            "median_cost_cpu_s": statistics.median(cpu) if cpu else None,
            "median_added_s": statistics.median(added) if added else None,
            "flagged": [n for n, _ in flagged], "diagnosed": diagnosed}


def plant(tree: str, dest: str) -> dict[str, int]:
    """A copy of toolz with the three leaks; return {leak: planted line number}."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(tree, dest)
    lines: dict[str, int] = {}
    for key, (rel, anchor, code, _) in PLANTS.items():
        path = os.path.join(dest, rel)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        i = text.index(anchor)
        body_at = text.index('"""', text.index('"""', i) + 3) + 3  # after the docstring
        body_at = text.index("\n", body_at) + 1
        # the leak's holder at the end of the module (a global looked up at call time)
        text = text[:body_at] + code + "\n" + text[body_at:] + "\n\n" + HEADERS[key]
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        with open(path, encoding="utf-8") as f:
            lines[key] = next(n for n, ln in enumerate(f, 1) if ln.rstrip().endswith(
                f"# PLANT-{key.upper()}"))
    return lines


COUNTER_PLUGIN = '''
import json, os, pytest
import toolz.itertoolz as it, toolz.dicttoolz as dt, toolz.functoolz as ft
def _sizes():
    return {"memo": len(it._PLANT_MEMO), "list": len(dt._PLANT_LOG),
            "closure": len(ft._plant_register.__closure__[0].cell_contents)}
REACH = {}
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    # a leak reached per call, not once at an import: count the growth of a second call
    before = _sizes()
    try:
        item.runtest()
    except Exception:
        pass
    after = _sizes()
    REACH[item.nodeid] = [k for k in before if after[k] > before[k]]
def pytest_sessionfinish(session):
    with open(os.environ["PLANT_REACH"], "w") as f:
        json.dump(REACH, f)
'''


def planted(py: str, tree: str, cache: str, env: dict[str, str]) -> None:
    dest = os.path.join(cache, "src", "toolz-planted")
    lines = plant(tree, dest)
    with open(os.path.join(dest, "plant_counter.py"), "w", encoding="utf-8") as f:
        f.write(COUNTER_PLUGIN)
    reach_file = os.path.join(dest, "reach.json")
    env = dict(env, PYTHONPATH=dest, PLANT_REACH=reach_file)
    sh([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:heapwatch", "-p",
        "plant_counter", "toolz/tests"], cwd=dest, env=env)
    with open(reach_file, encoding="utf-8") as f:
        reach = {k: v for k, v in json.load(f).items() if v}
    t = time.perf_counter()
    proc = sh([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--leakcheck-all",
               "-rf", "toolz/tests"], cwd=dest, env=env)
    took = time.perf_counter() - t
    text = proc.stdout
    blocks = re.split(r"\n_{3,} (\S+) _{3,}\n", text)
    failures = {blocks[i]: blocks[i + 1] for i in range(1, len(blocks) - 1, 2)}
    ok, missed = 0, []
    for nodeid, leaks in sorted(reach.items()):
        short = nodeid.split("::", 1)[1].replace("::", ".")
        msg = failures.get(short, "")
        want = [(PLANTS[k][3], f"{PLANTS[k][0].split('/')[-1]}:{lines[k]}") for k in leaks]
        if msg and all(h in msg and s in msg for h, s in want):
            ok += 1
        else:
            missed.append((nodeid, leaks, msg.strip().splitlines()[:3]))
    print(f"\n== planted (toolz, 3 leaks): {len(reach)} tests reach a planted leak; "
          f"{ok} fail naming holder and site; {outcome_line(text)}; {took:.1f} s")
    for nodeid, leaks, msg in missed:
        print(f"   MISSED {nodeid} ({', '.join(leaks)}): {' | '.join(msg) or 'passed'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="all", choices=["toolz", "attrs", "planted", "all"])
    ap.add_argument("--cache", default=os.environ.get(
        "HEAPWATCH_BENCH_CACHE", os.path.expanduser("~/.cache/heapwatch-bench")))
    args = ap.parse_args()
    py, trees = prepare(args.cache)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    from heapwatch.agent import core as core_mod

    info = core_mod.info()
    core = info.name + (f" ({info.fallback})" if info.fallback else "")
    print(f"census: {core}; python {sys.version.split()[0]}; load {os.getloadavg()[0]:.1f}")
    for name in ("toolz", "attrs"):
        if args.suite in (name, "all"):
            bench(py, name, trees[name], env)
    if args.suite in ("planted", "all"):
        planted(py, trees["toolz"], args.cache, env)


if __name__ == "__main__":
    main()
