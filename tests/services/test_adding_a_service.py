"""docs/adding-a-service.md stays true: its example service, written out from the page's code
blocks, is started as the page says (`python -m summary`) in front of a real Redis 7 and
answers over real HTTP, with what the page says every service gets."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cartlib.settings import Settings
from cartlib.store import Stores
from cartlib.web import ItemIn
from devstack import services
from devstack.processes import REPO, stop_children
from tests._redis import LocalRedisContainer, free_port
from tests.services._stack import LOGS, TOKEN_SECRET

PAGE = REPO / "docs" / "adding-a-service.md"
# A code block whose first line names its file: ```python\n# summary/app.py\n...```
FILE_BLOCK = re.compile(r"```python\n# (?P<path>[\w/]+\.py)\n(?P<body>.*?)```", re.DOTALL)
# Its own keys, so that the session-wide services' Redis needs no flush.
PREFIX = "sfdoc:"


def files_on_the_page() -> dict[str, str]:
    return {match["path"]: match["body"] for match in FILE_BLOCK.finditer(PAGE.read_text())}


def test_the_page_shows_a_whole_service() -> None:
    assert set(files_on_the_page()) == {"summary/app.py", "summary/__main__.py"}


@pytest.fixture
def summary_package(tmp_path: Path) -> Path:
    """The page's files, as a package in a folder of its own (the page says: with an empty
    `__init__.py`)."""
    for path, body in files_on_the_page().items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    (tmp_path / "summary" / "__init__.py").touch()
    return tmp_path


@pytest.fixture
def summary_url(summary_package: Path, redis7_container: LocalRedisContainer) -> Iterator[str]:
    """`python -m summary`, configured through the environment like the other services."""
    port = free_port()
    env = services.service_env(
        port,
        services.isolated_env(),
        REDIS_URL=redis7_container.url(),
        REDIS_KEY_PREFIX=PREFIX,
        CART_TOKEN_SECRET=TOKEN_SECRET,
        LOG_LEVEL="warning",
        PYTHONPATH=os.pathsep.join([str(summary_package), str(REPO)]),
    )
    process = services.start_service(
        "summary", port, env, log=LOGS / f"summary-{port}.log", cwd=summary_package
    )
    try:
        yield process.url
    finally:
        stop_children([process.child], services.STOP_TIMEOUT)


@pytest.fixture
async def stores(redis7_container: LocalRedisContainer) -> AsyncIterator[Stores]:
    """The same Redis and key prefix, through the store, to put a cart there."""
    settings = Settings(
        redis_url=redis7_container.url(),  # type: ignore[arg-type]
        redis_key_prefix=PREFIX,
        cart_token_secret=TOKEN_SECRET,  # type: ignore[arg-type]
    )
    stores = Stores.from_settings(settings)
    yield stores
    await stores.aclose()


async def test_the_example_service_answers_over_http(summary_url: str, stores: Stores) -> None:
    for item_id in ("mug", "pen"):
        await stores.catalog.put(item_id, ItemIn(name=item_id, price_cents=100, stock=10))
    issued = stores.tokens.mint()  # what inventory's POST /sessions hands out
    await stores.carts.add(issued.session.id, "mug", 3)
    await stores.carts.add(issued.session.id, "pen", 1)
    auth = {"Authorization": f"Bearer {issued.token}"}

    async with httpx.AsyncClient(base_url=summary_url, timeout=10) as client:
        summary = await client.get("/summary", headers=auth)
        assert summary.status_code == 200, summary.text
        assert summary.json() == {"lines": 2, "units": 4}
        assert (await client.get("/summary", headers=auth_of_new_session(stores))).json() == {
            "lines": 0,
            "units": 0,
        }

        anonymous = await client.get("/summary")
        assert anonymous.status_code == 401
        assert anonymous.json() == {"detail": "Missing bearer token"}
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert anonymous.headers["x-request-id"]

        for probe in ("/healthz", "/readyz"):
            assert (await client.get(probe)).json() == {"status": "ok"}
        schema = (await client.get("/openapi.json")).json()
        assert schema["info"]["title"] == "summary"
        operation = schema["paths"]["/summary"]["get"]
        assert {"200", "401", "503"} <= set(operation["responses"])
        scraped = (await client.get("/metrics")).text

    answered = {
        (sample.labels["handler"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(scraped)
        if family.name == "http_requests"
        for sample in family.samples
        if sample.name == "http_requests_total"
    }
    assert answered[("/summary", "200")] == 2
    assert answered[("/summary", "401")] == 1


def auth_of_new_session(stores: Stores) -> dict[str, str]:
    return {"Authorization": f"Bearer {stores.tokens.mint().token}"}
