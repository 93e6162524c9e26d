"""Redis's own counts of what a scenario cost it, from `INFO all` taken just before and just
after the measured wrk run, so seeding, prefilling, warm-ups and readiness checks are not
counted. Before each snapshot the harness waits until Redis is quiet, so the requests still
in flight when a wrk run stops are counted in the run they belong to; the figures are
divided by the requests wrk *sent* (completed ones plus those in flight at the end).

Two counts, because Redis counts the commands a Lua script runs in `commandstats` (and in
`total_commands_processed`) exactly like commands sent by clients:

- **commands**: the sum of `cmdstat_*` calls over every command (EVALSHA, EVAL, and the
  HGET, HSET, PEXPIRE... that a script runs inside), less the harness's own INFO. This is
  work done by Redis, not trips to it.
- **round trips**: `total_reads_processed`, the read events Redis handled on client
  sockets, less the harness's own. A client that sends a command (or a pipeline) and waits
  for the answer costs one read event per trip as long as the request fits Redis's read
  buffer (16 KB; every request in these scenarios is far smaller), whatever the commands
  are. The EVALSHA + EVAL count is given too: for a cart operation it equals the round
  trips; the floor's pipelined HINCRBY + EXPIRE is 2 commands in 1 round trip.

And what a request costs Redis in time: its CPU (`used_cpu_user` + `used_cpu_sys`: commands,
scripts, network) and the time spent running scripts (`usec` of EVALSHA and EVAL), per
request. On a 2-core machine Redis shares the cores with the service and wrk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

SCRIPT_COMMANDS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"})
_HARNESS_COMMANDS = frozenset({"info"})


@dataclass(frozen=True)
class Snapshot:
    reads: int
    commands: dict[str, int]
    usec: dict[str, int]  # time Redis spent in each command (a script's includes its calls)
    cpu_s: float  # Redis's CPU time, user + system: scripts, commands, network, everything
    harness_calls: int  # INFO calls the harness had made, this one included


class RedisCounter:
    """The harness's one connection to Redis, counting its own calls so that they can be
    taken out of the deltas."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.calls = 0

    def info(self, section: str) -> dict[str, Any]:
        self.calls += 1
        info: dict[str, Any] = self.client.info(section)
        return info

    def settle(self, quiet_s: float = 0.25, timeout_s: float = 10.0) -> None:
        """Wait until Redis runs no command but ours for `quiet_s` (at most `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        last = int(self.info("stats")["total_commands_processed"])
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = int(self.info("stats")["total_commands_processed"])
            if now - last <= 1:  # only our own INFO
                return
            last = now

    def snapshot(self) -> Snapshot:
        info = self.info("all")
        stats = {k.removeprefix("cmdstat_"): v for k, v in info.items() if k.startswith("cmdstat_")}
        return Snapshot(
            reads=int(info["total_reads_processed"]),
            commands={name: int(value["calls"]) for name, value in stats.items()},
            usec={name: int(value["usec"]) for name, value in stats.items()},
            cpu_s=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            harness_calls=self.calls,
        )


@dataclass(frozen=True)
class Delta:
    """What happened in Redis between two snapshots; deltas of several runs add up."""

    reads: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    script_usec: int = 0
    cpu_s: float = 0.0

    def __add__(self, other: Delta) -> Delta:
        calls = dict(self.calls)
        for name, count in other.calls.items():
            calls[name] = calls.get(name, 0) + count
        return Delta(
            self.reads + other.reads,
            calls,
            self.script_usec + other.script_usec,
            self.cpu_s + other.cpu_s,
        )

    def per_request(self, requests: int) -> dict[str, Any]:
        """Per-request figures, `requests` being the requests sent."""
        commands = sum(self.calls.values())
        scripts = sum(count for name, count in self.calls.items() if name in SCRIPT_COMMANDS)
        per = 1 / requests if requests else 0.0
        return {
            "requests_sent": requests,
            "round_trips_per_request": self.reads * per,
            "commands_per_request": commands * per,
            "script_calls_per_request": scripts * per,
            # Redis's own CPU per request (includes the harness's few INFO calls: negligible).
            "cpu_us_per_request": self.cpu_s * 1e6 * per,
            "script_us_per_request": self.script_usec * per,
            "read_events": self.reads,
            "commands": commands,
            "calls_per_request": {
                name: count * per
                for name, count in sorted(self.calls.items(), key=lambda kv: -kv[1])
            },
        }


def delta(before: Snapshot, after: Snapshot) -> Delta:
    """The difference between two snapshots taken by the same RedisCounter."""
    calls = {
        name: count - before.commands.get(name, 0)
        for name, count in after.commands.items()
        if name not in _HARNESS_COMMANDS and count - before.commands.get(name, 0) > 0
    }
    # Each INFO the harness sent after the first snapshot is one read event in the window.
    reads = after.reads - before.reads - (after.harness_calls - before.harness_calls)
    script_usec = sum(
        after.usec.get(name, 0) - before.usec.get(name, 0) for name in SCRIPT_COMMANDS
    )
    return Delta(reads, calls, script_usec, after.cpu_s - before.cpu_s)
