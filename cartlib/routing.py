"""`LeanRoute`: FastAPI routes served without FastAPI's general-purpose request pipeline.

Measured on add-to-cart (bench/README.md, py-spy): FastAPI's per-request work around the
endpoint (generic dependency solving, parsing the query string and cookies of routes that
declare none, cache keys, sub-dependency bookkeeping) cost about as much service CPU as
everything else in the request together; the same endpoint behind a bare route took half the
CPU. A `LeanRoute` serves a route whose parameters are path and header parameters, at most
one JSON body model, the `Request`, and `async def` dependencies that need only the `Request`
and other such dependencies (cached per request, as FastAPI does). It validates with FastAPI's
own functions, so answers, 422 bodies included, are the same, but for three refusals FastAPI
does not make: a JSON body with a duplicate key is a 422 (see `DuplicateKey`), a body without
a JSON Content-Type a 415, and dependencies (credentials) are checked before the body is read,
so a caller who may not use the route gets 401 or 403 for any body. OpenAPI comes from the same
signature as for any route. A route it cannot serve gets FastAPI's handler, and so does every
request while `app.dependency_overrides` is in use.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cartlib.errors import UnsupportedMediaType

try:  # Which inclusion of a route is being built (FastAPI >= 0.163): its dependant may differ.
    from fastapi.routing import _effective_route_context_var
except ImportError:  # pragma: no cover - another FastAPI: every route falls back
    _effective_route_context_var = None  # type: ignore[assignment]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    """Use as `APIRouter(route_class=LeanRoute)`; `served_lean` says whether it could."""

    served_lean = False

    def get_route_handler(self) -> Handler:
        fallback = super().get_route_handler()
        route: Any = self
        if _effective_route_context_var is None:
            return fallback
        context = _effective_route_context_var.get()
        if context is not None and context.original_route is self:
            route = context
        lean = _lean_handler(route, fallback)
        if lean is None:
            return fallback
        self.served_lean = True
        return lean


def _lean_handler(route: Any, fallback: Handler) -> Handler | None:
    dependant: Dependant = route.dependant
    if not _servable(dependant) or route.is_sse_stream or route.is_json_stream:
        return None
    if dependant.query_params or dependant.cookie_params or len(dependant.body_params) > 1:
        return None
    if route.body_field is not None and not _is_json_body(route.body_field):
        return None
    if not _returns_response(dependant.call):
        return None
    endpoint = typing.cast(Callable[..., Coroutine[Any, Any, Response]], dependant.call)
    body_params = dependant.body_params
    embed = route._embed_body_fields
    overrides = route.dependency_overrides_provider

    async def handle(request: Request) -> Response:
        if overrides is not None and getattr(overrides, "dependency_overrides", None):
            return await fallback(request)
        cache: dict[Any, Any] = {}
        # Dependencies (the credentials checks) first: a request that may not call the route
        # gets 401 or 403 whatever its body, which is not read for it.
        values = await _solve_all(dependant, request, cache)
        body = await _json_body(request) if body_params else PydanticUndefined
        errors: list[Any] = []
        for params, received in (
            (dependant.path_params, request.path_params),
            (dependant.header_params, request.headers),
        ):
            if params:
                param_values, param_errors = request_params_to_args(params, received)
                values.update(param_values)
                errors += param_errors
        if body_params:
            body_values, body_errors = await request_body_to_args(
                body_fields=body_params, received_body=body, embed_body_fields=embed
            )
            values.update(body_values)
            errors += body_errors
        if errors:
            raise RequestValidationError(errors, body=body)
        if dependant.request_param_name:
            values[dependant.request_param_name] = request
        return await endpoint(**values)

    return handle


def _servable(endpoint: Dependant) -> bool:
    """Whether the endpoint takes nothing a LeanRoute does not supply."""
    return (
        _is_async_function(endpoint.call)
        and not (
            endpoint.response_param_name
            or endpoint.background_tasks_param_name
            or endpoint.security_scopes_param_name
            or endpoint.http_connection_param_name
        )
        and all(_servable_dependency(sub) for sub in endpoint.dependencies)
    )


def _servable_dependency(dependency: Dependant) -> bool:
    """An `async def` taking only the request and servable dependencies."""
    return (
        _is_async_function(dependency.call)
        and dependency.concurrency is None
        and not (
            dependency.path_params
            or dependency.query_params
            or dependency.header_params
            or dependency.cookie_params
            or dependency.body_params
            or dependency.response_param_name
            or dependency.background_tasks_param_name
            or dependency.security_scopes_param_name
            or dependency.websocket_param_name
        )
        and all(_servable_dependency(sub) for sub in dependency.dependencies)
    )


async def _solve_all(
    dependant: Dependant, request: Request, cache: dict[Any, Any]
) -> dict[str, Any]:
    """Run every dependency of `dependant`, in order; the values of the named ones. The
    unnamed ones (a path operation's `dependencies=[...]`, such as the admin check) run for
    what they check."""
    values: dict[str, Any] = {}
    for sub in dependant.dependencies:
        value = await _solve(sub, request, cache)
        if sub.name is not None:
            values[sub.name] = value
    return values


async def _solve(dependant: Dependant, request: Request, cache: dict[Any, Any]) -> Any:
    key = dependant.call
    if dependant.use_cache and key in cache:
        return cache[key]
    kwargs = await _solve_all(dependant, request, cache)
    for name in (dependant.request_param_name, dependant.http_connection_param_name):
        if name:
            kwargs[name] = request
    assert dependant.call is not None
    value = await dependant.call(**kwargs)
    cache[key] = value
    return value


async def _json_body(request: Request) -> Any:
    """The body as JSON: a body whose Content-Type does not say JSON (or that has none) is a
    415, one that is not valid JSON a 422, and one that cannot be read at all a 400."""
    try:
        raw = await request.body()
        if not raw:
            return PydanticUndefined
        content_type = request.headers.get("content-type", "")
        media_type = content_type.partition(";")[0].strip().lower()
        if not (media_type == "application/json" or media_type.endswith("+json")):
            raise HTTPException(UnsupportedMediaType.status_code, UnsupportedMediaType.detail)
        return json.loads(raw, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise _json_invalid(("body", exc.pos), exc.msg, exc.doc) from exc
    except DuplicateKey as exc:
        raise _json_invalid(("body",), str(exc), raw) from exc
    except HTTPException:  # 415 above, 413 from the body size limit
        raise
    except Exception as exc:
        raise HTTPException(400, "There was an error parsing the body") from exc


def _json_invalid(loc: tuple[str | int, ...], reason: str, body: Any) -> RequestValidationError:
    """The 422 FastAPI answers for a body that is not valid JSON."""
    error = {
        "type": "json_invalid",
        "loc": loc,
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": reason},
    }
    return RequestValidationError([error], body=body)


class DuplicateKey(ValueError):
    """A JSON object with a key twice. `json.loads` keeps the last value, but a proxy, a WAF
    or a log in front may have read the first: refused (422) rather than guessed at. Only
    here: FastAPI's own handler (routes that fall back to it) keeps the last."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"Duplicate key {key!r}")
            seen.add(key)
    return mapping


def _is_async_function(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - an instance with async __call__
    )


def _is_json_body(field: Any) -> bool:
    from fastapi import params

    return not isinstance(field.field_info, params.Form | params.File)


def _returns_response(call: Any) -> bool:
    try:
        returned = typing.get_type_hints(call).get("return")
    except Exception:  # unresolvable hints: let FastAPI serve it
        return False
    return isinstance(returned, type) and issubclass(returned, Response)
