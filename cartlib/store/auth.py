"""Session tokens: HS256 JWTs whose `sub` is the session id, and the admin token check.

A token is all a session is: verifying one costs CPU, never a Redis round trip. An upstream
gateway holding `CART_TOKEN_SECRET` may mint tokens too.
"""

from __future__ import annotations

import functools
import hmac
import re
import time
import uuid
from dataclasses import dataclass

import jwt

from cartlib.store.errors import Forbidden, InvalidSession

ALGORITHM = "HS256"
# The session id becomes part of Redis key names, so only a safe alphabet is accepted: the
# whole id (fullmatch; `$` would let a trailing newline through).
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    session: Session


class SessionTokens:
    """Mints and verifies session tokens.

    **Parameters:**

    * **secret** - the HMAC key shared by every service (`CART_TOKEN_SECRET`).
    * **ttl_seconds** - how long a minted token is valid.
    * **cache_size** - how many verified tokens to keep (0: none).
    """

    def __init__(self, secret: str, *, ttl_seconds: int, cache_size: int = 32_768) -> None:
        self._secret = secret
        self._ttl_seconds = ttl_seconds
        # Decoding a JWT (base64, JSON, HMAC) is a visible share of an add-to-cart request
        # (bench/README.md), and a client sends the same token again and again. Only verified
        # tokens are cached, keyed by the whole token, and expiry is checked on every use.
        self._decode = functools.lru_cache(maxsize=cache_size)(self._decode_uncached)

    def mint(self) -> IssuedToken:
        """A token for a new guest session."""
        now = int(time.time())
        session = Session(id=uuid.uuid4().hex, expires_at=now + self._ttl_seconds)
        claims = {"sub": session.id, "iat": now, "exp": session.expires_at}
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), session)

    def verify(self, token: str) -> Session:
        """The session a token names; `InvalidSession` unless it is well formed, signed with
        the shared secret using HS256 (never `none`), and unexpired."""
        session = self._decode(token)
        if session.expires_at <= time.time():
            raise InvalidSession()
        return session

    def _decode_uncached(self, token: str) -> Session:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidSession() from exc
        session_id = claims["sub"]
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            raise InvalidSession()
        return Session(id=session_id, expires_at=int(claims["exp"]))


def check_admin_token(presented: str | None, expected: str | None) -> None:
    """Raise unless `presented` equals the configured admin token (in constant time)."""
    if expected is None:
        raise Forbidden("The admin API is disabled: set ADMIN_TOKEN to enable it")
    if presented is None:
        raise Forbidden("Missing X-Admin-Token header")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Forbidden("Invalid admin token")
