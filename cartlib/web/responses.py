"""`JSONBytes`: a response for JSON that is already encoded (by a Lua script or orjson), and
the cart answers built around the store's bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse

from cartlib.store import LineChange


class JSONBytes(JSONResponse):
    """Sends its bytes as they are.

    A `JSONResponse` rather than a plain `Response`: FastAPI documents a route's
    `response_model` only for JSON response classes, and documented any other class's body
    as `{"type": "string"}`, so the OpenAPI schema contradicted every answer of these routes.
    """

    def __init__(
        self,
        content: bytes,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if headers is None and media_type is None and background is None:
            # Every route's answer: its two headers written here rather than by the generic
            # `init_headers` (which looks for headers to keep and encodes each).
            self.status_code = status_code
            self.background = None
            self.body = content
            self.raw_headers = [
                (b"content-length", b"%d" % len(content)),
                (b"content-type", b"application/json"),
            ]
            return
        super().__init__(content, status_code, headers, media_type, background)

    def render(self, content: Any) -> bytes:
        encoded: bytes = content
        return encoded


def cart_json(session_id: str, lines: bytes) -> bytes:
    """The cart as the API shows it (`Cart`): `{"session_id": ..., "items": [...]}`."""
    return b'{"session_id":' + orjson.dumps(session_id) + b',"items":' + lines + b"}"


def line_change_json(session_id: str, change: LineChange) -> bytes:
    """A cart write's answer as the API shows it (`CartLineChange`)."""
    return orjson.dumps(
        {
            "session_id": session_id,
            "line": {"id": change.item_id, "quantity": change.quantity},
            "line_count": change.line_count,
        }
    )
