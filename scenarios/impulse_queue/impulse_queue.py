"""Multi-agent controller feeding sensor impulses to agents (leaking scenario).

Every tick a handful of simulated sensor readings are broadcast to the three
agents in ``registry.REGISTRY``; each agent appends an ``Impulse`` to its
``impulses`` inbox but never consumes it, so each inbox grows by ~80 items/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import registry

TICK = 0.05
READINGS_PER_TICK = 4  # -> ~80 impulses per agent per second
SENSORS = ("lidar", "sonar", "camera", "imu")


def handle_batch() -> None:
    for _ in range(READINGS_PER_TICK):
        sensor = random.choice(SENSORS)
        registry.REGISTRY.broadcast("reading", random.random(), sensor)
    registry.REGISTRY.step()


def run(duration: float | None) -> None:
    print("ready", flush=True)
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    next_tick = start
    while deadline is None or time.monotonic() < deadline:
        handle_batch()
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
