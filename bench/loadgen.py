"""`make loadgen`: locust walks the shop flow (bench/locustfile.py) against a local stack.

    python -m bench.loadgen [--users 20] [--spawn-rate 5] [--run-time 60]

Starts a private Redis and both services on loopback ports (one worker each, LOG_LEVEL
warning, the bundled badger catalog with stock raised so that it does not sell out), runs
locust headless against them, bounded in users (at most 200) and time (at most 600 s),
prints locust's summary, and stops everything. Locust's CSV statistics are kept in the
run folder under .run/bench/. Exits with locust's status: 1 when any request failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime

from bench import REPO, data
from bench.run import RUNS, say, start
from devstack.processes import StartupError

MAX_USERS = 200
MAX_RUN_TIME_S = 600
LOCUSTFILE = REPO / "bench" / "locustfile.py"


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--users", type=int, default=20, help=f"shoppers (at most {MAX_USERS})")
    parser.add_argument("--spawn-rate", type=float, default=5, help="shoppers started per second")
    parser.add_argument(
        "--run-time", type=int, default=60, help=f"seconds (at most {MAX_RUN_TIME_S})"
    )
    args = parser.parse_args()
    if not 1 <= args.users <= MAX_USERS:
        parser.error(f"--users must be from 1 to {MAX_USERS}")
    if not 1 <= args.run_time <= MAX_RUN_TIME_S:
        parser.error(f"--run-time must be from 1 to {MAX_RUN_TIME_S}")
    if importlib.util.find_spec("locust") is None:
        print(
            "bench.loadgen: locust is not installed: `make loadgen` installs the lock's loadgen "
            "group",
            file=sys.stderr,
        )
        return 1

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    run_dir = RUNS / f"loadgen-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        catalog = data.write_shop_catalog(run_dir / "catalog.json")
        stack = start(run_dir, catalog=catalog, floor=False)
    except StartupError as exc:
        print(f"bench.loadgen: error: {exc}", file=sys.stderr)
        return 1
    try:
        inventory, checkout = stack["inventory"], stack["checkout"]
        argv = [
            sys.executable, "-m", "locust",
            "-f", str(LOCUSTFILE),
            "--headless",
            "--users", str(args.users),
            "--spawn-rate", str(args.spawn_rate),
            "--run-time", f"{args.run_time}s",
            "--stop-timeout", "5",
            "--host", inventory.url,
            "--csv", str(run_dir / "locust"),
            "--only-summary",
        ]  # fmt: skip
        say(f"locust: {args.users} shoppers for {args.run_time} s against {inventory.url}")
        env = {**os.environ, "CHECKOUT_URL": checkout.url}
        try:
            completed = subprocess.run(argv, env=env, timeout=args.run_time + 60, check=False)
        except subprocess.TimeoutExpired:
            say("locust did not stop in time")
            return 1
        say(f"locust exited with {completed.returncode}; CSV statistics in {run_dir}")
        return completed.returncode
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
