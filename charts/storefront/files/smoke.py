"""Smoke test of a running storefront: one shopper's flow across both services.

    python smoke.py --inventory http://inventory:8001 --checkout http://checkout:8002

(or INVENTORY_URL and CHECKOUT_URL in the environment). The chart's `helm test` hook runs it
inside a service image, and tests/e2e runs it against the built images. Standard library
only, so it runs in any image with Python 3.11+.

Steps: wait until both services are ready (10 tries, 3 s apart; --ready-attempts), start a
guest session, pick the first item in stock, add one unit through inventory, read the cart
through checkout and find the line, then remove the line again. Nothing is checked out and
no cart is left behind (an emptied cart is no Redis key; stock is only taken at checkout).
One line per step on stdout; exit 0 on success, 1 with the failed step and the reason on
stderr, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

TIMEOUT_SECONDS = 5.0
READY_ATTEMPTS = 10
READY_INTERVAL_SECONDS = 3.0


class SmokeFailure(Exception):
    """A step of the smoke test failed; the message says what was expected and what came."""


class Client:
    """JSON over HTTP with a bounded timeout per call, and the session's bearer token."""

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.token: str | None = None

    def call(self, method: str, url: str, *, expect: int, body: object = None) -> Any:
        """The decoded JSON answer of `method url`; SmokeFailure unless the status is `expect`."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SmokeFailure(f"{method} {url}: no answer ({reason})") from exc
        if status != expect:
            excerpt = payload[:300].decode(errors="replace")
            raise SmokeFailure(f"{method} {url}: HTTP {status}, expected {expect}: {excerpt}")
        try:
            return json.loads(payload)
        except ValueError as exc:
            excerpt = payload[:300].decode(errors="replace")
            raise SmokeFailure(f"{method} {url}: the answer is not JSON: {excerpt}") from exc


def say(message: str) -> None:
    print(message, flush=True)


def wait_until_ready(client: Client, name: str, base_url: str, attempts: int) -> None:
    """Poll `/readyz` (200 once the service answers and reaches Redis) a few times."""
    last_problem = ""
    for attempt in range(1, attempts + 1):
        try:
            client.call("GET", f"{base_url}/readyz", expect=200)
        except SmokeFailure as exc:
            last_problem = str(exc)
            if attempt < attempts:
                say(f"  {name} not ready yet (attempt {attempt}/{attempts}): {exc}")
                time.sleep(READY_INTERVAL_SECONDS)
        else:
            say(f"ok   {name} is ready at {base_url}")
            return
    raise SmokeFailure(f"{name} not ready after {attempts} attempt(s): {last_problem}")


def find_line(cart: Any, item_id: str) -> dict[str, Any] | None:
    items = cart.get("items") if isinstance(cart, dict) else None
    if not isinstance(items, list):
        raise SmokeFailure(f"not a cart (no 'items' list): {cart!r}")
    return next((line for line in items if line.get("id") == item_id), None)


def run(inventory: str, checkout: str, *, ready_attempts: int = READY_ATTEMPTS) -> None:
    client = Client()
    wait_until_ready(client, "inventory", inventory, ready_attempts)
    wait_until_ready(client, "checkout", checkout, ready_attempts)

    session = client.call("POST", f"{inventory}/sessions", expect=201)
    client.token = session["token"]  # never printed: it is a credential
    say(f"ok   guest session {session['session_id']} started (inventory)")

    listing = client.call("GET", f"{inventory}/items", expect=200)
    in_stock = [item for item in listing.get("items", []) if item.get("stock", 0) > 0]
    if not in_stock:
        raise SmokeFailure(f"GET {inventory}/items: no item in stock among {listing!r:.300}")
    item_id = in_stock[0]["id"]
    say(f"ok   item {item_id} chosen ({in_stock[0]['stock']} in stock)")

    added = client.call(
        "POST", f"{inventory}/cart/items", expect=201, body={"item": {"id": item_id}, "quantity": 1}
    )
    if added.get("line", {}).get("id") != item_id:
        raise SmokeFailure(f"inventory did not put {item_id} in the cart: {added!r:.300}")
    say(f"ok   1 x {item_id} added to the cart (inventory)")

    remove = f"{inventory}/cart/items/{urllib.parse.quote(item_id, safe='')}"
    try:
        cart = client.call("GET", f"{checkout}/cart", expect=200)
        line = find_line(cart, item_id)
        if line is None or line.get("quantity", 0) < 1:
            raise SmokeFailure(f"checkout does not see {item_id} in the cart: {cart!r:.300}")
        if cart.get("session_id") != session["session_id"]:
            raise SmokeFailure(f"checkout read another session's cart: {cart!r:.300}")
        say(f"ok   the cart holds {line['quantity']} x {item_id} (checkout)")
    except SmokeFailure:
        # Leave nothing behind even so; the first failure is the one to report.
        with contextlib.suppress(SmokeFailure):
            client.call("DELETE", remove, expect=200)
        raise
    client.call("DELETE", remove, expect=200)
    emptied = client.call("GET", f"{inventory}/cart", expect=200)
    if find_line(emptied, item_id) is not None:
        raise SmokeFailure(f"the line {item_id} is still in the cart: {emptied!r:.300}")
    say(f"ok   the line {item_id} removed again; nothing bought, no cart left (inventory)")


def base_url(value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for name, default_port in (("inventory", 8001), ("checkout", 8002)):
        env = f"{name.upper()}_URL"
        parser.add_argument(
            f"--{name}",
            type=base_url,
            default=os.environ.get(env),
            help=f"base URL of {name}, e.g. http://{name}:{default_port} (default: ${env})",
        )
    parser.add_argument(
        "--ready-attempts",
        type=int,
        default=READY_ATTEMPTS,
        metavar="N",
        help=f"readiness checks per service, {READY_INTERVAL_SECONDS:g} s apart "
        f"(default: {READY_ATTEMPTS})",
    )
    # argparse passes a string default (from the environment) through `type` too.
    args = parser.parse_args(argv)
    for name in ("inventory", "checkout"):
        if getattr(args, name) is None:
            parser.error(f"give --{name} or set {name.upper()}_URL")
    if args.ready_attempts < 1:
        parser.error("--ready-attempts must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args.inventory, args.checkout, ready_attempts=args.ready_attempts)
    except SmokeFailure as exc:
        print(f"FAIL {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyError, TypeError, AttributeError) as exc:
        # A 2xx answer of another shape than the API documents.
        print(f"FAIL unexpected answer: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    say("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
