"""A multiprocessing pool whose worker function fills a module-level dict.

``python mp_pool.py --start fork|spawn [--duration S] [--mode leak|steady]``: two pool
workers handle batches of jobs every 0.05 s; each job stores its result in ``SEEN``
under the job's own id (leak: ``mp_pool.SEEN`` grows in every worker) or under one of
200 keys (steady). Prints ``ready`` once the pool runs; exits 0 after --duration or on
SIGINT.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time

SEEN: dict[int, str] = {}
MODE = "leak"


def init(mode: str) -> None:
    global MODE
    MODE = mode


def job(n: int) -> int:
    key = n if MODE == "leak" else n % 200
    SEEN[key] = f"result of job {n}"  # LEAK-SITE
    return len(SEEN)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", choices=["fork", "spawn", "forkserver"], default="fork")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--mode", choices=["leak", "steady"], default="leak")
    args = ap.parse_args()
    ctx = mp.get_context(args.start)
    n = 0
    try:
        with ctx.Pool(2, initializer=init, initargs=(args.mode,)) as pool:
            pool.map(job, range(4))
            print("ready", flush=True)
            start = next_t = time.monotonic()
            while args.duration is None or time.monotonic() - start < args.duration:
                pool.map(job, range(n, n + 40), chunksize=2)
                n += 40
                next_t += 0.05
                time.sleep(max(0.0, next_t - time.monotonic()))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
