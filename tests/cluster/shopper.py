"""A shopper that runs inside the cluster (in a Pod with the checkout image's Python).

    python shopper.py flow     --inventory URL --checkout URL
    python shopper.py traffic  --inventory URL --checkout URL --seconds S --max-flows N
    python shopper.py verify   --checkout URL --orders JSON_OR_@FILE
    python shopper.py reach    --checkout URL

`flow`: one shop flow (session, add one unit of an item in stock, checkout, read the order).
`traffic`: shop flows one after another until S seconds or N flows have passed, each request
with a bounded timeout; failures are counted (never retried in place) and the loop goes on.
`verify`: read back every acknowledged order, each with its own session token.
`reach`: whether GET URL/healthz answers within --attempts tries, 1 s apart (NetworkPolicy).

The last line on stdout is one JSON object (the report); tests/cluster parses it from the
Pod's log. Standard library only. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TIMEOUT_SECONDS = 5.0


class Failed(Exception):
    """A request answered something else than expected (or nothing)."""


def call(method: str, url: str, *, token: str | None, body: object, expect: int) -> Any:
    """The decoded JSON answer; Failed with the status (or error) otherwise."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        raise Failed(f"{method} {url}: {exc}") from exc
    if status != expect:
        raise Failed(f"{method} {url}: {status} {payload[:200]!r}")
    return json.loads(payload) if payload else None


def shop(inventory: str, checkout: str) -> dict[str, Any]:
    """One flow; the acknowledged order with the token that can read it."""
    session = call("POST", f"{inventory}/sessions", token=None, body=None, expect=201)
    token = session["token"]
    listing = call("GET", f"{inventory}/items", token=token, body=None, expect=200)
    # The item with the most stock: the listing may be a few seconds stale (catalog cache).
    item = max(listing["items"], key=lambda item: item["stock"])
    if item["stock"] < 1:
        raise Failed("no item in stock")
    item_id = item["id"]
    call(
        "POST",
        f"{inventory}/cart/items",
        token=token,
        body={"item": {"id": item_id}, "quantity": 1},
        expect=201,
    )
    result = call(
        "POST",
        f"{checkout}/checkout",
        token=token,
        body={"payment": {"token": "tok_visa"}},
        expect=200,
    )
    order_id = result["order"]["id"]
    order = call("GET", f"{checkout}/orders/{order_id}", token=token, body=None, expect=200)
    if order["id"] != order_id or [line["id"] for line in order["items"]] != [item_id]:
        raise Failed(f"order {order_id} reads back as {order}")
    return {"order_id": order_id, "token": token, "item_id": item_id}


def traffic(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.seconds
    flows, orders, failures = 0, [], []
    while flows < args.max_flows and time.monotonic() < deadline:
        flows += 1
        started = time.time()
        try:
            orders.append({**shop(args.inventory, args.checkout), "at": time.time()})
        except Failed as exc:
            failures.append({"at": started, "error": str(exc)})
            time.sleep(0.2)
        else:
            time.sleep(args.pause)
    return {"flows": flows, "orders": orders, "failures": failures}


def verify(args: argparse.Namespace) -> dict[str, Any]:
    orders = json.loads(
        Path(args.orders[1:]).read_text() if args.orders[:1] == "@" else args.orders
    )
    missing = []
    for order in orders:
        try:
            call(
                "GET",
                f"{args.checkout}/orders/{order['order_id']}",
                token=order["token"],
                body=None,
                expect=200,
            )
        except Failed as exc:
            missing.append({"order_id": order["order_id"], "error": str(exc)})
    return {"checked": len(orders), "missing": missing}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["flow", "traffic", "verify", "reach"])
    parser.add_argument("--inventory", default="")
    parser.add_argument("--checkout", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-flows", type=int, default=10_000)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between flows")
    parser.add_argument(
        "--attempts", type=int, default=15, help="tries, 1 s apart (flow: readiness; reach)"
    )
    parser.add_argument(
        "--orders", default="[]", help="JSON list of acknowledged orders, or @FILE holding it"
    )
    args = parser.parse_args(argv)
    if args.mode == "flow":
        # A new pod may start before the network (policies) knows it: the services' readiness
        # is polled first, a bounded number of times.
        for attempt in range(args.attempts):
            try:
                for base in (args.inventory, args.checkout):
                    call("GET", f"{base}/readyz", token=None, body=None, expect=200)
                break
            except Failed:
                if attempt + 1 == args.attempts:
                    break
                time.sleep(1)
        try:
            report: dict[str, Any] = {"ok": True, **shop(args.inventory, args.checkout)}
        except Failed as exc:
            report = {"ok": False, "error": str(exc)}
    elif args.mode == "reach":
        report = {"reachable": False, "errors": []}
        for _ in range(args.attempts):
            try:
                call("GET", f"{args.checkout}/healthz", token=None, body=None, expect=200)
            except Failed as exc:
                report["errors"].append(str(exc))
                time.sleep(1)
            else:
                report = {"reachable": True, "attempts": len(report["errors"]) + 1}
                break
    elif args.mode == "traffic":
        report = traffic(args)
    else:
        report = verify(args)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
