"""Export requests that each start a watchdog thread that never ends (leaking scenario).

Every export request (one every 0.5 s) starts a ``threading.Thread`` that is
meant to cancel the export if it has not finished after a while.  The
watchdog waits on the export's ``finished`` event -- which the handler forgets
to set -- with no timeout, so the threads never exit.  The process gains ~2
threads per second (about 50 in 25 s).  The threads are daemons, so they do
not block the exit; after ``MAX_WATCHDOGS`` (300, ~150 s) no more are started,
so a forgotten run cannot exhaust the thread limit.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time

TICK = 0.05
TICKS_PER_REQUEST = 10  # -> one export request (and one stuck thread) every 0.5 s
MAX_WATCHDOGS = 300  # safety valve for long runs: ~150 s of growth, then no new threads


class Export:
    def __init__(self, export_id: int, rows: int) -> None:
        self.export_id = export_id
        self.rows = rows
        self.finished = threading.Event()
        self.cancelled = False

    def watchdog(self) -> None:
        # BUG: should be ``self.finished.wait(timeout)`` -- and run() should set it.
        self.finished.wait()
        if not self.finished.is_set():
            self.cancelled = True

    def run(self) -> int:
        checksum = 0
        for row in range(self.rows):
            checksum = (checksum * 31 + row) & 0xFFFFFFFF
        return checksum  # BUG: forgets ``self.finished.set()``


def handle_request(export_id: int) -> int:
    export = Export(export_id, random.randint(100, 2000))
    if export_id <= MAX_WATCHDOGS:
        name = f"export-watchdog-{export_id}"
        threading.Thread(target=export.watchdog, name=name, daemon=True).start()  # LEAK-SITE
    return export.run()


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    tick = 0
    export_id = 0
    while deadline is None or time.monotonic() < deadline:
        if tick % TICKS_PER_REQUEST == 0:
            export_id += 1
            handle_request(export_id)
        tick += 1
        next_tick += TICK
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="exit after this many seconds (default: run until interrupted)",
    )
    args = parser.parse_args(argv)
    try:
        run(args.duration)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
