"""The two services of a local stack: `python -m inventory` and `python -m checkout` on
loopback ports, configured through the environment as a deployment configures them."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cartlib.settings import Settings
from devstack.processes import (
    LOOPBACK,
    REPO,
    Child,
    StartupError,
    port_is_free,
    spawn,
    wait_ready,
)

SERVICES = ("inventory", "checkout")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 25.0  # uvicorn drains in-flight requests for up to 20 s
# Every variable a storefront process reads, upper-cased: what an isolated stack drops from
# the calling environment (so a developer's shell cannot change a benchmark or a test).
STOREFRONT_VARIABLES = frozenset(
    {
        *(name.upper() for name in Settings.model_fields),
        "INVENTORY_PORT",
        "CHECKOUT_PORT",
    }
)


@dataclass(frozen=True)
class ServiceProcess:
    """A service this stack started: its child process, port and log (None: the terminal)."""

    name: str
    port: int
    child: Child
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def service_env(
    port: int, base: Mapping[str, str] | None = None, **settings: str | None
) -> dict[str, str]:
    """`base` (default: this process's environment) with HOST and PORT set for loopback and
    `settings` on top; a None value leaves that variable unset."""
    env = dict(os.environ if base is None else base)
    env.update(HOST=LOOPBACK, PORT=str(port), PYTHONUNBUFFERED="1")
    for key, value in settings.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def isolated_env() -> dict[str, str]:
    """This process's environment without any storefront setting."""
    return {k: v for k, v in os.environ.items() if k.upper() not in STOREFRONT_VARIABLES}


def check_ports(ports: Mapping[str, int]) -> None:
    """Fail before starting anything if a service's port is taken: an old stack still
    running there would otherwise answer the readiness checks."""
    for name, port in ports.items():
        if not port_is_free(port):
            raise StartupError(
                f"port {port} for {name} is in use; stop what listens there or set "
                f"{name.upper()}_PORT"
            )


def start_service(
    name: str,
    port: int,
    env: Mapping[str, str],
    *,
    log: Path | None = None,
    cwd: Path = REPO,
    ready_path: str = "/readyz",
    watch: Sequence[Child] = (),
    argv: Sequence[str] | None = None,
    timeout: float = READY_TIMEOUT,
) -> ServiceProcess:
    """Start `python -m <name>` (or `argv`) and return once `GET <ready_path>` answers 200.

    Its output goes to `log` (appended) or to this terminal. Fails early, with the end of
    its log, if it or a process in `watch` dies first.
    """
    command = list(argv) if argv is not None else [sys.executable, "-m", name]
    if log is None:
        child = spawn(name, command, env, cwd=cwd)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:
            child = spawn(name, command, env, cwd=cwd, output=output)
    service = ServiceProcess(name, port, child, log)
    try:
        wait_ready(f"{service.url}{ready_path}", timeout, child, watch)
    except StartupError as exc:
        if log is None:
            raise
        raise StartupError(f"{exc}; its log: {log}\n{tail(log)}") from exc
    return service


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
