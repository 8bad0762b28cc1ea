"""What counting the target's temp files costs the target: the audit hook.

CPython calls every audit hook for every audit event of every thread, and ``id()`` alone
raises ``builtins.id``. The agent counts the temp files the target creates with a hook in
C (``heapwatch._native``, ``_native/audit.c``); it used to do it with a hook in Python.
This benchmark runs the same workloads in fresh interpreters:

* ``plain``: no hook;
* ``c-noop``: a C hook that returns 0 at once (built here with gcc; skipped without it):
  the floor of any audit hook, as CPython builds the event's argument tuple for every
  event once any hook is installed;
* ``c-hook``: heapwatch's C hook, watching (``process.watch_files()``, native core);
* ``py-hook``: a Python hook doing what the old one did (``event`` and ``active`` tests
  first, then the ``open``/``os.mkdir`` filtering);
* ``py-empty``: the cheapest Python hook there is (``lambda event, args: None``) — the
  floor of any Python hook, since it cannot filter before being called.

Workloads: ``copy.deepcopy`` of 20k small dicts (calls ``id()`` per object), a
``json.dumps``/``json.loads`` round trip of the same data (no audit event), a tight loop
of 1M ``id()`` calls, and 500 ``tempfile.NamedTemporaryFile(delete=False)`` made and
deleted (the events the hook records). Rounds interleave the modes; each child times
every workload ``--repeat`` times and reports the best (the machine is shared: the best
of a few is the least disturbed); the table gives the median of those over the rounds
and its ratio to ``plain`` from the same run.

Run::

    python bench/audit_hook.py              # 5 rounds x best of 7 (~1.5 min)
    python bench/audit_hook.py --quick      # 2 rounds x 3 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MODES = ("plain", "c-noop", "c-hook", "py-hook", "py-empty")
WORKLOADS = ("deepcopy", "json", "id-loop", "tempfiles")

CHILD = r'''
import copy, json, os, sys, tempfile, threading, time

mode, repeat, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]

if mode == "c-noop":
    sys.path.insert(0, tmp)
    import hw_noop_hook
    hw_noop_hook.install()
elif mode == "c-hook":
    from heapwatch.agent import core, process
    core.use("native")
    process.watch_files()
    assert process.counts_created(), "the C hook does not run"
elif mode == "py-hook":
    # what heapwatch's Python hook did (before the C hook replaced it)
    roots = ("/tmp/", tempfile.gettempdir() + os.sep)
    created, lock, ignore = set(), threading.Lock(), set()

    def hook(event, args):
        if event != "open" and event != "os.mkdir":
            return
        try:
            if event == "open":
                flags = args[2]
                if not isinstance(flags, int) or not flags & os.O_CREAT:
                    return
            if threading.get_ident() in ignore:
                return
            path = args[0]
            if isinstance(path, str):
                text = path
            elif isinstance(path, bytes):
                text = os.fsdecode(path)
            else:
                return
            if not text.startswith(roots):
                return
            with lock:
                created.add(os.fsencode(text))
        except BaseException:
            pass

    sys.addaudithook(hook)
elif mode == "py-empty":
    sys.addaudithook(lambda event, args: None)

data = [{"id": i, "name": f"item-{i}", "tags": [i, i + 1], "price": i * 0.5}
        for i in range(20_000)]
objs = [object() for _ in range(1000)]


def deepcopy_():
    copy.deepcopy(data)


def json_():
    json.loads(json.dumps(data))


def id_loop():
    for _ in range(1000):
        for o in objs:
            id(o)


def tempfiles():
    names = []
    for _ in range(500):
        with tempfile.NamedTemporaryFile("w", delete=False, dir=tmp) as f:
            names.append(f.name)
    for n in names:
        os.unlink(n)


out = {}
for name, fn in (("deepcopy", deepcopy_), ("json", json_), ("id-loop", id_loop),
                 ("tempfiles", tempfiles)):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    out[name] = min(times)
print(json.dumps(out))
'''


NOOP_HOOK = r"""
#include <Python.h>
static int hook(const char *event, PyObject *args, void *data) { return 0; }
static PyObject *install(PyObject *self, PyObject *unused) {
    if (PySys_AddAuditHook(hook, NULL) < 0) { return NULL; }
    Py_RETURN_NONE;
}
static PyMethodDef methods[] = {{"install", install, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "hw_noop_hook", NULL, -1, methods};
PyMODINIT_FUNC PyInit_hw_noop_hook(void) { return PyModule_Create(&def); }
"""


def build_noop_hook(tmp: str) -> str | None:
    """Compile the no-op C hook into ``tmp``; the reason when it cannot be built."""
    import sysconfig

    src = os.path.join(tmp, "hw_noop_hook.c")
    with open(src, "w", encoding="utf-8") as f:
        f.write(NOOP_HOOK)
    out = os.path.join(tmp, "hw_noop_hook" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    cmd = ["gcc", "-O2", "-shared", "-fPIC", "-I" + sysconfig.get_paths()["include"], src,
           "-o", out]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except OSError as exc:
        return f"gcc: {exc.strerror}"
    return None if proc.returncode == 0 else proc.stderr.strip()[-300:]


def run_child(mode: str, repeat: int, tmp: str) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("HEAPWATCH_NO_NATIVE", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(repeat), tmp],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"audit_hook: the {mode} child failed: {proc.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="2 rounds x 3 repeats")
    args = ap.parse_args()
    rounds, repeat = (2, 3) if args.quick else (args.rounds, args.repeat)
    with tempfile.TemporaryDirectory(prefix="heapwatch-audit-bench-") as tmp:
        why = build_noop_hook(tmp)
        modes = MODES if why is None else tuple(m for m in MODES if m != "c-noop")
        if why is not None:
            print(f"audit_hook: no c-noop column ({why})", file=sys.stderr)
        got: dict[str, dict[str, list[float]]] = {m: {w: [] for w in WORKLOADS} for m in modes}
        for r in range(rounds):
            for mode in modes if r % 2 == 0 else reversed(modes):
                for w, t in run_child(mode, repeat, tmp).items():
                    got[mode][w].append(t)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    print(f"Python {sys.version.split()[0]}, {rounds} rounds x best of {repeat}; "
          "median seconds (ratio to plain)")
    print(f"{'workload':<11}" + "".join(f"{m:>22}" for m in modes))
    for w in WORKLOADS:
        base = statistics.median(got["plain"][w])
        cells = []
        for m in modes:
            med = statistics.median(got[m][w])
            cells.append(f"{med:>13.4f} ({med / base:4.2f}x)")
        print(f"{w:<11}" + "".join(f"{c:>22}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
