"""Report service that leaves its temporary files behind (leaking scenario).

Each request renders a small CSV report into
``tempfile.NamedTemporaryFile(delete=False)`` so that it can be handed to an
uploader by name.  The uploader never deletes the file afterwards, so the
temp dir gains ~20 files per second.  Every file is closed after writing, so
open file descriptors stay flat.

To keep the real ``/tmp`` clean, the service points ``tempfile.tempdir`` at a
private directory made with ``tempfile.mkdtemp(prefix="hwscenario-")`` when it
starts, and removes that directory when it exits (``--duration`` or SIGINT).
On SIGTERM it removes the directory too and then dies of SIGTERM as usual.
After ``MAX_FILES`` (10,000, ~8 min) it stops writing new files.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time

TICK = 0.05
REPORTS_PER_TICK = 1  # -> ~20 leaked temp files per second
MAX_FILES = 10_000
PREFIX = "hwscenario-"

REGIONS = ("emea", "apac", "amer")


def render_report(req_id: int) -> str:
    lines = ["region,orders,revenue"]
    for region in REGIONS:
        lines.append(f"{region},{random.randint(0, 500)},{random.uniform(0, 1e5):.2f}")
    lines.append(f"# request {req_id}")
    return "\n".join(lines) + "\n"


def upload(path: str) -> None:
    """Stand-in for the uploader: it only reads the file back."""
    with open(path, encoding="utf-8") as f:
        f.read()


def handle_request(req_id: int) -> str:
    with tempfile.NamedTemporaryFile("w", delete=False, prefix=PREFIX, suffix=".csv") as tmp:  # LEAK-SITE
        tmp.write(render_report(req_id))
    upload(tmp.name)
    # BUG: missing ``os.unlink(tmp.name)`` once the upload is done.
    return tmp.name


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    req_id = 0
    while deadline is None or time.monotonic() < deadline:
        for _ in range(REPORTS_PER_TICK):
            if req_id < MAX_FILES:
                req_id += 1
                handle_request(req_id)
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
    private_tmp = tempfile.mkdtemp(prefix=PREFIX)
    tempfile.tempdir = private_tmp  # everything below lands in the private dir

    def on_term(signum: int, frame: object) -> None:
        # Do not leave the private dir behind, then die of SIGTERM as usual.
        shutil.rmtree(private_tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    try:
        run(args.duration)
    except KeyboardInterrupt:
        return 0
    finally:
        tempfile.tempdir = None
        shutil.rmtree(private_tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
