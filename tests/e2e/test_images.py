"""The built images, run as the Helm chart runs them: the shop flow across two containers,
the chart's smoke test, the non-root read-only runtime, graceful SIGTERM, and no secrets in
logs or image metadata."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    HARDENING,
    IMAGES,
    LOADGENERATOR_IMAGE,
    PORTS,
    ImageStack,
    ServiceContainer,
    require_loadgenerator_image,
)

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "charts" / "storefront" / "files" / "smoke.py"
UID = 10001
# Everything the images set in their environment: no configuration, let alone a secret.
IMAGE_ENV = {"PATH", "LANG", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "HOST"}


def new_session(stack: ImageStack) -> dict[str, str]:
    response = httpx.post(f"{stack.inventory.url}/sessions", timeout=5)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def put_item(stack: ImageStack, item_id: str, *, stock: int, price_cents: int) -> None:
    response = httpx.put(
        f"{stack.inventory.url}/items/{item_id}",
        json={"name": item_id.title(), "price_cents": price_cents, "stock": stock},
        headers={"X-Admin-Token": stack.secrets.admin_token},
        timeout=5,
    )
    assert response.status_code == 200, response.text


def add(stack: ImageStack, auth: dict[str, str], item_id: str, quantity: int) -> None:
    response = httpx.post(
        f"{stack.inventory.url}/cart/items",
        json={"item": {"id": item_id}, "quantity": quantity},
        headers=auth,
        timeout=5,
    )
    assert response.status_code == 201, response.text


def test_the_shop_flow_across_the_two_containers(image_stack: ImageStack) -> None:
    stack = image_stack
    put_item(stack, "e2e-mug", stock=5, price_cents=1299)
    auth = new_session(stack)
    add(stack, auth, "e2e-mug", 2)

    with httpx.Client(timeout=5, headers=auth) as checkout:
        cart = checkout.get(f"{stack.checkout.url}/cart").json()
        assert cart["items"] == [{"id": "e2e-mug", "quantity": 2}]

        paid = checkout.post(
            f"{stack.checkout.url}/checkout", json={"payment": {"token": "tok_visa"}}
        )
        assert paid.status_code == 200, paid.text
        order = paid.json()["order"]
        assert order["status"] == "paid"
        assert order["total_cents"] == 2 * 1299

        assert checkout.get(f"{stack.checkout.url}/cart").json()["items"] == []
        assert checkout.get(f"{stack.checkout.url}/orders/{order['id']}").json() == order
    stock = httpx.get(f"{stack.inventory.url}/items/e2e-mug", timeout=5).json()["stock"]
    assert stock == 3


def test_a_declined_payment_is_402_and_keeps_cart_and_stock(image_stack: ImageStack) -> None:
    stack = image_stack
    put_item(stack, "e2e-cap", stock=4, price_cents=500)
    auth = new_session(stack)
    add(stack, auth, "e2e-cap", 1)
    with httpx.Client(timeout=5, headers=auth) as checkout:
        declined = checkout.post(
            f"{stack.checkout.url}/checkout", json={"payment": {"token": "tok_declined"}}
        )
        assert declined.status_code == 402, declined.text
        assert checkout.get(f"{stack.checkout.url}/cart").json()["items"] == [
            {"id": "e2e-cap", "quantity": 1}
        ]
    assert httpx.get(f"{stack.inventory.url}/items/e2e-cap", timeout=5).json()["stock"] == 4


def _smoke_session_id(output: str) -> str:
    match = re.search(r"guest session (\w+) started", output)
    assert match, output
    return match.group(1)


def test_the_smoke_script_passes_from_this_machine(image_stack: ImageStack) -> None:
    stack = image_stack
    done = subprocess.run(
        [sys.executable, str(SMOKE), "--inventory", stack.inventory.url],
        env={"CHECKOUT_URL": stack.checkout.url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("smoke test passed")
    # It left no cart behind (an emptied cart is no key) and bought nothing.
    session_id = _smoke_session_id(done.stdout)
    assert stack.redis_cli("EXISTS", f"sf:cart:{{{session_id}}}") == "0"


def test_the_smoke_script_fails_clearly_when_a_service_is_wrong(image_stack: ImageStack) -> None:
    done = subprocess.run(
        [sys.executable, str(SMOKE), "--ready-attempts", "1"],
        env={
            "INVENTORY_URL": image_stack.inventory.url,
            "CHECKOUT_URL": f"{image_stack.inventory.url}/no-such-prefix",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("FAIL "), done.stderr
    assert "not ready" in done.stderr


def test_the_smoke_script_passes_inside_the_image_as_helm_test_runs_it(
    image_stack: ImageStack,
) -> None:
    stack = image_stack
    runner = stack.run(
        IMAGES["checkout"],
        f"{stack.prefix}-smoke",
        entrypoint=["python", "/smoke/smoke.py"],
        environment={
            "INVENTORY_URL": stack.inventory.internal_url,
            "CHECKOUT_URL": stack.checkout.internal_url,
        },
        volumes={str(SMOKE): {"bind": "/smoke/smoke.py", "mode": "ro"}},
        **HARDENING,
    )
    status = runner.wait(timeout=120)["StatusCode"]
    output = runner.logs().decode()
    assert status == 0, output
    assert output.rstrip().endswith("smoke test passed")
    assert stack.redis_cli("EXISTS", f"sf:cart:{{{_smoke_session_id(output)}}}") == "0"


@pytest.mark.parametrize("service", ["inventory", "checkout"])
def test_runs_as_the_non_root_user_on_a_read_only_root(
    image_stack: ImageStack, service: str
) -> None:
    container = getattr(image_stack, service).container
    # The server process itself (PID 1), not only what `docker exec` starts.
    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    assert re.search(rf"^Uid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}$", status, re.MULTILINE), status
    assert re.search(rf"^Gid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}$", status, re.MULTILINE), status
    assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), status
    assert container.exec_run(["id", "-u"]).output.decode().strip() == str(UID)

    for path in ("/x", "/app/x", "/opt/venv/x"):
        denied = container.exec_run(["python", "-c", f"open({path!r}, 'w')"])
        assert denied.exit_code != 0
        assert "Read-only file system" in denied.output.decode(), denied.output
    # Read-only, not merely not permitted: root in the container cannot write either.
    as_root = container.exec_run(["python", "-c", "open('/x', 'w')"], user="0")
    assert "Read-only file system" in as_root.output.decode(), as_root.output
    # /tmp is the one writable place (a tmpfs, as the chart's emptyDir).
    assert container.exec_run(["python", "-c", "open('/tmp/x', 'w')"]).exit_code == 0
    container.reload()
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _in_flight_request(
    service: ServiceContainer, method: str, path: str, body: Any, auth: dict[str, str]
) -> tuple[socket.socket, bytes]:
    """Open a request whose body is held back, and return once the app is running it: uvicorn
    answers `Expect: 100-continue` only when the application first asks for the body."""
    payload = json.dumps(body).encode()
    host, port = service.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nExpect: 100-continue\r\n"
        f"Authorization: {auth['Authorization']}\r\n\r\n"
    )
    sock.sendall(head.encode())
    interim = sock.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    return sock, payload


@pytest.mark.parametrize(
    ("service", "method", "path", "body", "status"),
    [
        ("inventory", "POST", "/cart/items", {"item": {"id": "e2e-sock"}, "quantity": 1}, 201),
        ("checkout", "POST", "/checkout", {"payment": {"token": "tok_visa"}}, 200),
    ],
    ids=["inventory-add", "checkout-pay"],
)
def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(
    image_stack: ImageStack, service: str, method: str, path: str, body: Any, status: int
) -> None:
    stack = image_stack
    put_item(stack, "e2e-sock", stock=10, price_cents=300)
    auth = new_session(stack)
    add(stack, auth, "e2e-sock", 1)  # something to pay for in the checkout case
    target = stack.start_service(service, suffix="-sigterm")

    sock, payload = _in_flight_request(target, method, path, body, auth)
    with sock:
        # `docker stop` sends SIGTERM, and SIGKILL only if the process is still there after
        # the timeout; an exit code of 0 (not 137) says it ended by itself.
        stopping = threading.Thread(target=target.container.stop, kwargs={"timeout": 15})
        stopping.start()
        try:
            _wait_for_log(target, "Shutting down")
            sock.sendall(payload)
            response = _read_response(sock)
        finally:
            stopping.join(timeout=30)
    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:500]
    assert b"connection: close" in response.lower()  # the last answer of this server

    target.container.reload()
    assert target.container.attrs["State"]["ExitCode"] == 0
    logs = target.logs()
    for message in ("Shutting down", "Application shutdown complete", "Finished server process"):
        assert message in logs, logs


def _wait_for_log(service: ServiceContainer, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in service.logs():
        assert time.monotonic() < deadline, f"no {text!r} in the logs:\n{service.logs()}"
        time.sleep(0.05)


def test_logs_are_json_lines_without_secrets(image_stack: ImageStack) -> None:
    stack = image_stack
    httpx.get(f"{stack.inventory.url}/items/no-such-item", timeout=5)
    httpx.get(f"{stack.checkout.url}/cart", headers={"Authorization": "Bearer bad"}, timeout=5)
    # An access line is written once the response is sent, so it may trail the response.
    _wait_for_log(stack.inventory, '"status":404')
    _wait_for_log(stack.checkout, '"status":401')
    for service in (stack.inventory, stack.checkout):
        logs = service.logs()
        lines = [line for line in logs.splitlines() if line.strip()]
        assert lines, f"{service.service} logged nothing"
        for line in lines:
            entry = json.loads(line)
            assert {"ts", "level", "logger", "message"} <= entry.keys(), line
        for secret in stack.secrets.values():
            assert secret not in logs, f"a secret in the logs of {service.service}"


@pytest.mark.parametrize("service", ["inventory", "checkout"])
def test_the_image_metadata(image_stack: ImageStack, service: str) -> None:
    image = image_stack.client.images.get(IMAGES[service])
    config = image.attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["python", "-m", service]
    assert config["ExposedPorts"] == {f"{PORTS[service]}/tcp": {}}
    assert {entry.split("=", 1)[0] for entry in config["Env"]} <= IMAGE_ENV

    labels = config["Labels"]
    with (REPO / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert labels["org.opencontainers.image.title"] == f"storefront-{service}"
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.description"]

    # Nothing secret went into the image's configuration or build steps.
    metadata = json.dumps(image.attrs) + json.dumps(image.history())
    for secret in image_stack.secrets.values():
        assert secret not in metadata
    assert not re.search(r"(?i)(secret|password|passwd|token|credential)\w*=", metadata)
    assert "BEGIN" not in metadata  # no key or certificate material


def _locked_versions(requirements: Path) -> dict[str, str]:
    """`name==version` pins of a hashed requirements file, names normalised (PEP 503)."""
    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", requirements.read_text(), re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


_LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


@pytest.mark.parametrize(
    ("image_name", "requirements"),
    [
        (IMAGES["inventory"], "runtime.txt"),
        (IMAGES["checkout"], "runtime.txt"),
        (LOADGENERATOR_IMAGE, "loadgen.txt"),
    ],
)
def test_the_image_holds_exactly_the_locked_packages(
    image_stack: ImageStack, image_name: str, requirements: str
) -> None:
    """Every distribution in the image's venv is one of the lock's pins, at its version."""
    if image_name == LOADGENERATOR_IMAGE:
        require_loadgenerator_image(image_stack)
    output = image_stack.client.containers.run(
        image_name, ["-c", _LIST_DISTRIBUTIONS], entrypoint="python", remove=True, **HARDENING
    )
    installed = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in json.loads(output).items()
    }
    locked = _locked_versions(REPO / "requirements" / requirements)
    installed.pop("storefront", None)  # the project's own wheel, not a dependency
    assert installed, "no distributions found in the image"
    unlocked = {name: v for name, v in installed.items() if locked.get(name) != v}
    assert not unlocked, f"installed but not at a locked version: {unlocked}"
