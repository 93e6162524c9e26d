"""Child processes of a local stack: each leads its own process group, is stopped in order,
and is waited on until it answers; a stop signal cuts every wait short.

`make run`, the benchmarks and the service tests start Redis and the services through this
module, so a process is started, watched and stopped one way everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

# Set by a stop signal (see `devstack.__main__`); every wait below polls it, so a signal is
# acted on within ~1 s.
STOP = threading.Event()
# Set by a second signal: skip the graceful waits and kill what is left.
FORCE = threading.Event()


class StartupError(Exception):
    """The stack could not be brought up; the message says why."""


class Interrupted(Exception):
    """A stop signal arrived while the stack was starting."""


def say(message: str) -> None:
    """A status line of the launcher, told apart from the children's JSON log lines."""
    print(f"devstack: {message}", flush=True)


@dataclass
class Child:
    """A process this launcher started, leader of its own process group."""

    name: str
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def group_alive(self) -> bool:
        """Whether anything is left in its process group (e.g. uvicorn workers)."""
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """On Linux, a pre-exec hook so that a child gets SIGTERM if this launcher is killed -9."""
    if not sys.platform.startswith("linux"):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path = REPO,
    output: IO[bytes] | None = None,
) -> Child:
    """Start a child in its own process group, so that the terminal's Ctrl-C reaches only
    this launcher, which then stops the children in order. Its output goes to `output`
    (stdout and stderr both), or to our terminal."""
    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    except OSError as exc:
        raise StartupError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    return Child(name, proc)


def stop_children(children: Sequence[Child], timeout: float) -> None:
    """SIGTERM each child's process group, wait up to `timeout`, then SIGKILL what is left."""
    running = [c for c in children if c.exit_code() is None or c.group_alive()]
    if not running:
        return
    hint = "" if FORCE.is_set() else f" (up to {timeout:.0f} s; a second Ctrl-C kills now)"
    say("stopping " + ", ".join(f"{c.name} (pid {c.pid})" for c in running) + hint)
    for child in running:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not FORCE.is_set():
        if all(c.exit_code() is not None and not c.group_alive() for c in running):
            return
        time.sleep(0.1)
    for child in running:
        if child.exit_code() is None or child.group_alive():
            say(
                f"killing {child.name}"
                if FORCE.is_set()
                else f"{child.name} did not stop in time; killing it"
            )
            child.signal_group(signal.SIGKILL)
    for child in running:
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            say(f"{child.name} (pid {child.pid}) survived SIGKILL")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port (SO_REUSEADDR, as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def pause(seconds: float) -> None:
    """Sleep, but raise Interrupted as soon as a stop signal arrives."""
    if STOP.wait(seconds):
        raise Interrupted


# Readiness checks go to loopback: a proxy from the environment must not see them.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def first_dead(children: Sequence[Child]) -> tuple[Child, int] | None:
    for child in children:
        if (code := child.exit_code()) is not None:
            return child, code
    return None


def wait_ready(url: str, timeout: float, child: Child, watch: Sequence[Child] = ()) -> None:
    """Until `GET url` answers 200, at most `timeout` seconds; fail early if `child`, or
    any of the other processes in `watch`, dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if dead := first_dead([child, *watch]):
            raise StartupError(f"{dead[0].name} {describe_exit(dead[1])} during startup")
        try:
            with _NO_PROXY.open(url, timeout=1) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise StartupError(f"{child.name}: {url} not ready after {timeout:.0f} s ({last})")
        pause(0.2)
