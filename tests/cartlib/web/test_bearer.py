"""`BearerToken`: the token of `Authorization: Bearer <token>`, read as FastAPI's `HTTPBearer`
reads it (scheme case-insensitive, the first header, surrounding spaces dropped), or None."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.security import HTTPBearer
from starlette.requests import Request

from cartlib.web.deps import BearerToken

bearer = BearerToken(description="a session token")
fastapi_bearer = HTTPBearer(auto_error=False)


def request(*values: bytes) -> Request:
    headers = [(b"authorization", value) for value in values]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("values", "token"),
    [
        ((b"Bearer abc.def.ghi",), "abc.def.ghi"),
        ((b"bearer abc",), "abc"),
        ((b"BEARER  abc ",), "abc"),
        ((b"Bearer first", b"Bearer second"), "first"),
        ((), None),
        ((b"",), None),
        ((b"Bearer",), None),
        ((b"Bearer ",), None),
        ((b"Basic dXNlcjpwYXNz",), None),
        ((b"Token abc",), None),
    ],
)
def test_reads_the_token_as_httpbearer_does(values: tuple[bytes, ...], token: str | None) -> None:
    assert asyncio.run(bearer(request(*values))) == token
    credentials = asyncio.run(fastapi_bearer(request(*values)))
    assert (credentials.credentials if credentials else None) == token


def test_documented_as_httpbearer() -> None:
    assert bearer.scheme_name == fastapi_bearer.scheme_name == "HTTPBearer"
    assert bearer.model.model_dump(mode="json", by_alias=True, exclude_none=True) == {
        "type": "http",
        "scheme": "bearer",
        "description": "a session token",
    }
