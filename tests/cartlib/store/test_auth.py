"""Session tokens (no Redis involved: a token is verified by CPU alone)."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import orjson
import pytest

from cartlib.store import Stores
from cartlib.store.auth import SessionTokens, check_admin_token
from cartlib.store.errors import Forbidden, InvalidSession
from tests.cartlib.conftest import make_settings

SECRET = "s" * 64
tokens = SessionTokens(SECRET, ttl_seconds=3600)


def signed(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_a_minted_token_verifies_to_its_session() -> None:
    issued = tokens.mint()
    session = tokens.verify(issued.token)
    assert session == issued.session
    assert time.time() + 3500 < session.expires_at <= time.time() + 3600
    assert issued.token not in session.id


def test_each_session_is_new() -> None:
    assert tokens.mint().session.id != tokens.mint().session.id


def test_a_gateway_with_the_secret_can_mint_tokens() -> None:
    token = signed({"sub": "gateway-session-1", "exp": int(time.time()) + 60})
    assert tokens.verify(token).id == "gateway-session-1"


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _tampered() -> str:
    header, _, signature = tokens.mint().token.split(".")
    claims = {"sub": "someone-else-1", "exp": int(time.time()) + 60}
    body = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


LATER = int(time.time()) + 600
BAD_TOKENS = {
    "garbage": "not-a-jwt",
    "empty": "",
    "alg none": _unsigned({"sub": "session-0001", "exp": LATER}),
    "another key": signed({"sub": "session-0001", "exp": LATER}, key="k" * 64),
    "HS512": signed({"sub": "session-0001", "exp": LATER}, algorithm="HS512"),
    "no exp": signed({"sub": "session-0001"}),
    "expired": signed({"sub": "session-0001", "exp": int(time.time()) - 10}),
    "future nbf": signed({"sub": "session-0001", "exp": LATER, "nbf": LATER - 60}),
    "no sub": signed({"exp": LATER}),
    "sub not a string": signed({"sub": 12345678, "exp": LATER}),
    "sub with key syntax": signed({"sub": "a}:b{c*d?", "exp": LATER}),
    "sub too long": signed({"sub": "a" * 65, "exp": LATER}),
    "sub with a trailing newline": signed({"sub": "session-0001\n", "exp": LATER}),
    "tampered payload": _tampered(),
}


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidSession):
        tokens.verify(token)


def test_admin_token_checks() -> None:
    check_admin_token("a" * 40, "a" * 40)
    with pytest.raises(Forbidden, match="disabled"):
        check_admin_token("a" * 40, None)
    with pytest.raises(Forbidden):
        check_admin_token("b" * 40, "a" * 40)
    with pytest.raises(Forbidden):
        check_admin_token(None, "a" * 40)


def test_a_verified_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    issued = tokens.mint()
    assert tokens.verify(issued.token) == issued.session  # now cached
    monkeypatch.setattr(time, "time", lambda: issued.session.expires_at + 1)
    with pytest.raises(InvalidSession):
        tokens.verify(issued.token)


def test_the_cache_holds_as_many_sessions_used_in_turn_as_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sessions used one after another, round after round (the worst order for an LRU cache):
    every token is decoded once when they fit the cache, and on every use when they do not."""
    settings = make_settings("redis://127.0.0.1:1/0", cart_token_cache_size=50)
    fits = Stores.from_settings(settings).tokens
    tokens = [fits.mint().token for _ in range(50)]
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    for _ in range(3):
        for token in tokens:
            fits.verify(token)
    assert len(decoded) == 50
    decoded.clear()
    secret = settings.cart_token_secret.get_secret_value()
    too_small = SessionTokens(secret, ttl_seconds=3600, cache_size=49)
    for _ in range(3):
        for token in tokens:
            too_small.verify(token)
    assert len(decoded) == 150
