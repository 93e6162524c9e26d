"""`JSONBytes`: a response for JSON that is already encoded (by a Lua script or orjson)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class JSONBytes(JSONResponse):
    """Sends its bytes as they are.

    A `JSONResponse` rather than a plain `Response`: FastAPI documents a route's
    `response_model` only for JSON response classes, and documented any other class's body
    as `{"type": "string"}`, so the OpenAPI schema contradicted every answer of these routes.
    """

    def render(self, content: Any) -> bytes:
        encoded: bytes = content
        return encoded
