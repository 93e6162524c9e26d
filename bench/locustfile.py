"""A load generator in the manner of Online Boutique's: simulated shoppers walk the shop.

Each user opens a session (`POST /sessions`), then, with the same task weights as Online
Boutique's loadgenerator, browses the catalog, looks at items, adds them to the cart, views
the cart in the checkout service, and checks out; one checkout in five pays with a card
that is declined (402, which is a correct answer, not a failure). A paid order is read
back (`GET /orders/{id}`). Every checkout carries an `Idempotency-Key`.

    locust -f bench/locustfile.py --host http://127.0.0.1:8001   # inventory
    CHECKOUT_URL=http://127.0.0.1:8002                            # checkout (default: the
                                                                  # host with port 8002)

With LOADGEN_CHECKOUT=false the shoppers never check out: they browse, add and view their
carts, and in place of a checkout they abandon the cart and open a new session. Stock is
then never sold, so a long-running generator (the chart's loadgenerator) does not sell the
catalog out, after which every add and checkout answers 409.

The file imports only locust and the standard library, so the load generator image needs
nothing else (Dockerfile target `loadgenerator`).

`make loadgen` (python -m bench.loadgen) starts a local stack and runs this headless, bounded
in users and time, against loopback only. Statuses that are right answers under load (409
when an item is sold out) count as successes; anything else unexpected is a failure.
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from locust import HttpUser, between, task

DECLINED_SHARE = 0.2
MAX_LINE_QUANTITY = 99  # CART_MAX_QUANTITY's default: a line never goes past it here


def checkout_enabled() -> bool:
    """LOADGEN_CHECKOUT: false, 0 or no turns the checkouts off (default: on)."""
    return os.environ.get("LOADGEN_CHECKOUT", "true").strip().lower() not in {"false", "0", "no"}


def checkout_url(inventory_url: str) -> str:
    """CHECKOUT_URL, else the inventory URL with port 8002."""
    configured = os.environ.get("CHECKOUT_URL")
    if configured:
        return configured.rstrip("/")
    parts = urlsplit(inventory_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit(parts._replace(netloc=f"{host}:8002", path="")).rstrip("/")


class Shopper(HttpUser):
    """One guest shopper with their own session and cart."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.checkout = checkout_url(self.host or "http://127.0.0.1:8001")
        self.checks_out = checkout_enabled()
        self.item_ids: list[str] = []
        self.open_session()
        self.browse()

    def open_session(self) -> None:
        """A new guest session, with an empty cart."""
        self.cart: dict[str, int] = {}
        self.auth: dict[str, str] = {}
        with self.client.post("/sessions", name="/sessions", catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"POST /sessions answered {response.status_code}")
                return
            self.auth = {"Authorization": f"Bearer {response.json()['token']}"}

    @task(1)
    def browse(self) -> None:
        """The catalog (Online Boutique's index)."""
        response = self.client.get("/items", name="/items")
        if response.status_code == 200:
            self.item_ids = [item["id"] for item in response.json()["items"]]

    @task(10)
    def view_item(self) -> None:
        if self.item_ids:
            self.client.get(f"/items/{random.choice(self.item_ids)}", name="/items/[id]")

    @task(2)
    def add_to_cart(self) -> None:
        if not self.item_ids:
            return
        item_id = random.choice(self.item_ids)
        quantity = random.randint(1, 3)
        if self.cart.get(item_id, 0) + quantity > MAX_LINE_QUANTITY:
            return
        self.client.get(f"/items/{item_id}", name="/items/[id]")
        body = {"item": {"id": item_id}, "quantity": quantity}
        with self.client.post(
            "/cart/items", json=body, headers=self.auth, name="/cart/items", catch_response=True
        ) as response:
            if response.status_code == 201:
                self.cart[item_id] = self.cart.get(item_id, 0) + quantity
            elif response.status_code == 409:  # sold out: a right answer
                response.success()
            else:
                response.failure(f"add to cart answered {response.status_code}")

    @task(3)
    def view_cart(self) -> None:
        self.client.get(f"{self.checkout}/cart", headers=self.auth, name="/cart (checkout)")

    @task(1)
    def check_out(self) -> None:
        if not self.checks_out:  # LOADGEN_CHECKOUT=false: abandon the cart instead
            self.open_session()
            return
        if not self.cart:
            self.add_to_cart()
            if not self.cart:
                return
        declined = random.random() < DECLINED_SHARE
        body = {"payment": {"token": "tok_declined" if declined else "tok_visa"}}
        headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
        name = "/checkout (declined card)" if declined else "/checkout"
        with self.client.post(
            f"{self.checkout}/checkout", json=body, headers=headers, name=name, catch_response=True
        ) as response:
            expected = 402 if declined else 200
            if response.status_code == expected:
                response.success()
                if not declined:
                    self.cart.clear()
                    self.read_order(response.json())
            elif response.status_code == 409:  # not enough stock: a right answer
                response.success()
            else:
                response.failure(f"checkout answered {response.status_code}, not {expected}")

    def read_order(self, paid: dict[str, Any]) -> None:
        order_id = paid["order"]["id"]
        self.client.get(
            f"{self.checkout}/orders/{order_id}", headers=self.auth, name="/orders/[id]"
        )
