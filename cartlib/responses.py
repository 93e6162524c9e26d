"""`JSONBytes`: a response for JSON that is already encoded (by a Lua script or orjson)."""

from __future__ import annotations

from starlette.responses import Response


class JSONBytes(Response):
    media_type = "application/json"
