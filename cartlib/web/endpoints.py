"""`Endpoints`: FastAPI-style endpoint functions served as plain Starlette routes.

An endpoint is written as for FastAPI (`Annotated` `Depends`, `Path` and `Header` parameters,
at most one pydantic body model, the `Request`) and returns a `Response`. Each is registered
twice: on a `fastapi.APIRouter` that only documents it (the app's OpenAPI schema is built
from those routes with the public `get_openapi`), and as a `starlette.routing.Route` whose
handler is compiled once from the function's signature. Only public names of FastAPI,
Starlette and pydantic are used.

Served, not generically solved: FastAPI's per-request solver costs about as much CPU as the
rest of a cart write (bench/README.md). The answers are FastAPI's, 422 bodies included (the
same errors, raised as `RequestValidationError`), with three refusals FastAPI does not make:
a JSON body with a key twice is a 422 (`DuplicateKey`), a body whose Content-Type is not JSON
a 415, and dependencies (the credentials) run before the body is read, so a caller who may
not use the route gets 401 or 403 whatever it sends. Every dependency is looked up in
`app.dependency_overrides` on every request, however the route joined the app.

A dependency marked with `reads_scope(reader)` is, while `app.dependency_overrides` is
empty, not solved but read: `reader(scope)`, a plain function that gives what the dependency
and its own dependencies would. An endpoint whose every dependency is read that way is called
without the solver and without a `Request` (what that saves: bench/README.md); any override
puts every route back on the solver.

`create_app` serves the routes that lead its table from the top of the stack (`ServedFirst`);
a handler answers its own errors with `app.exception_handlers`, so it answers alike there and
behind FastAPI's exception middlewares.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, params
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cartlib.web.errors import UnsupportedMediaType, status_of

Endpoint = Callable[..., Coroutine[Any, Any, Response]]
ScopeReader = Callable[[Scope], Any]
_MISSING: Any = object()
_D = typing.TypeVar("_D", bound=Callable[..., Any])

# Dependency -> the reader that gives its value from the scope (`reads_scope`).
_READERS: dict[Any, ScopeReader] = {}


def reads_scope(reader: ScopeReader) -> Callable[[_D], _D]:
    """Mark a dependency as given by `reader(scope)`: the same value, or the same exception,
    as solving it and its own dependencies would give, for every request. `Endpoints` then
    read it rather than solve it while `app.dependency_overrides` is empty (see the module)."""

    def mark(dependency: _D) -> _D:
        _READERS[dependency] = reader
        return dependency

    return mark


class Endpoints:
    """A router of endpoints served by `create_app` as plain routes (see the module).

    `prefix`, `tags`, `responses` and `dependencies` are those of `fastapi.APIRouter`; the
    decorators take the keyword arguments of `APIRouter.api_route` (`status_code`,
    `response_model`, `responses`, `dependencies`, `summary`, ...), which document the route.
    """

    def __init__(
        self,
        *,
        prefix: str = "",
        tags: list[str] | None = None,
        responses: dict[int | str, dict[str, Any]] | None = None,
        dependencies: Sequence[params.Depends] = (),
    ) -> None:
        self.prefix = prefix
        self.docs = APIRouter(
            prefix=prefix, tags=list(tags or []), responses=responses, dependencies=dependencies
        )
        self.routes: list[Route] = []
        self._dependencies = tuple(dependencies)

    def api_route(
        self, path: str, *, methods: list[str], **documented: Any
    ) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.docs.add_api_route(path, endpoint, methods=methods, **documented)
            checks = (*self._dependencies, *(documented.get("dependencies") or ()))
            handler = _Handler(endpoint, checks)
            name = documented.get("name") or endpoint.__name__
            self.routes.append(
                _ServedRoute(self.prefix + path, handler, methods=methods, name=name)
            )
            return endpoint

        return register

    def get(self, path: str, **documented: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["GET"], **documented)

    def post(self, path: str, **documented: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["POST"], **documented)

    def put(self, path: str, **documented: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["PUT"], **documented)

    def patch(self, path: str, **documented: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["PATCH"], **documented)

    def delete(self, path: str, **documented: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["DELETE"], **documented)


class _ServedRoute(Route):
    """A Starlette route that names itself in the scope (`scope["route"]`) as FastAPI's do:
    the HTTP metrics are labelled with its path template."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


@dataclass(frozen=True, slots=True)
class _Param:
    """A path or header parameter: where it is read, and how it is validated."""

    name: str
    key: str
    loc: tuple[str, str]
    adapter: TypeAdapter[Any]
    default: Any


@dataclass(frozen=True, slots=True)
class _Dependency:
    name: str | None  # None: run for what it checks (`dependencies=[...]`)
    call: Callable[..., Any]
    use_cache: bool


@dataclass(frozen=True, slots=True)
class _Body:
    """The body model's validator, and each key name it reads, quoted as in JSON (None if
    they cannot be listed: a model that takes extra fields, or a mapping field)."""

    adapter: TypeAdapter[Any]
    keys: tuple[bytes, ...] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What calling one function takes, read once from its signature."""

    call: Callable[..., Any]
    is_async: bool
    request_names: tuple[str, ...]
    dependencies: tuple[_Dependency, ...]
    path: tuple[_Param, ...]
    headers: tuple[_Param, ...]
    body_name: str | None
    body: _Body | None
    # Takes nothing but the request (if that): called as it is, without a `_call` of its own.
    leaf: bool = False


class _Handler:
    """The ASGI app of one endpoint: dependencies, then path and header parameters and the
    body, then the endpoint, whose `Response` it sends."""

    def __init__(self, endpoint: Endpoint, checks: Sequence[params.Depends]) -> None:
        plan = _plan(endpoint, allow_body=True)
        if not _returns_response(endpoint):
            raise TypeError(f"{endpoint.__name__} must be annotated to return a Response")
        if not plan.is_async:
            raise TypeError(f"{endpoint.__name__} must be an async def")
        extra = tuple(_Dependency(None, _dependency_call(d, None), d.use_cache) for d in checks)
        self.plan = _Plan(
            plan.call,
            True,
            plan.request_names,
            extra + plan.dependencies,
            plan.path,
            plan.headers,
            plan.body_name,
            plan.body,
        )
        # Each dependency's name and reader, in the order the solver runs them; None unless
        # every one of them has a reader.
        readers = tuple((d.name, _READERS.get(d.call)) for d in self.plan.dependencies)
        self.readers: tuple[tuple[str | None, ScopeReader], ...] | None = (
            typing.cast(tuple[tuple[str | None, ScopeReader], ...], readers)
            if all(reader is not None for _, reader in readers)
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        overrides = app.dependency_overrides
        try:
            if self.readers is not None and not overrides:
                # Inline rather than in functions of their own: each call here cost more than
                # a micro-benchmark shows (bench/README.md), and every coroutine between the
                # server and the endpoint is resumed again at each wait for Redis.
                plan = self.plan
                kwargs: dict[str, Any] = {}
                for name, reader in self.readers:
                    value = reader(scope)
                    if name is not None:
                        kwargs[name] = value
                if plan.request_names:
                    request = Request(scope, receive, send)
                    kwargs.update(dict.fromkeys(plan.request_names, request))
                errors = _parameters(plan, kwargs, scope) if plan.path or plan.headers else []
                body = None if plan.body is None else await _json_body(scope, receive, plan.body)
                _take_body(plan, kwargs, errors, body)
                response: Response = await plan.call(**kwargs)
            else:
                request = Request(scope, receive, send)
                response = await _call(self.plan, request, {}, overrides)
        except Exception as exc:
            # Answered here, by the app's exception handlers, as Starlette's exception
            # middlewares would: `ServedFirst` serves this route without them.
            request = Request(scope, receive, send)
            response, unexpected = await _error_response(app.exception_handlers, request, exc)
            await response(scope, receive, send)
            if unexpected:
                raise  # as ServerErrorMiddleware does: the server logs it, test clients raise it
            return
        if response.background is None and type(response).__call__ is Response.__call__:
            # What `Response.__call__` sends, without its per-call checks (a response of
            # another kind, a streamed one or one with a background task, is called as usual).
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        await response(scope, receive, send)


class ServedFirst:
    """The ASGI app on top of FastAPI's: a request that one of `routes` (the `Endpoints`'
    routes, which lead the app's table) matches is served by it straight away; any other goes
    down `fallback`, FastAPI's middleware stack and router, which try the whole table.

    The layers skipped (exception middlewares, FastAPI's exit stack, the router) cost a call,
    a closure or an object each per request; an `Endpoints` handler answers its own errors.
    """

    def __init__(self, routes: Sequence[Route], fallback: ASGIApp) -> None:
        self.routes = tuple(routes)
        self.fallback = fallback
        # A path without parameters is found by a dict lookup rather than a regex per route,
        # unless a route before it in the table matches that path too (the loop decides).
        self.static: dict[tuple[str, str], Route] = {}
        for index, route in enumerate(self.routes):
            if "{" in route.path or route.methods is None:
                continue
            if any(earlier.path_regex.match(route.path) for earlier in self.routes[:index]):
                continue
            for method in route.methods:
                self.static[route.path, method] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            static = None if scope.get("root_path") else self.static.get((scope["path"], method))
            if static is not None:
                path_params = scope.get("path_params")
                scope["endpoint"] = static.endpoint
                scope["path_params"] = dict(path_params) if path_params else {}
                scope["route"] = static
                await static.app(scope, receive, send)
                return
            for route in self.routes:
                if route.methods is not None and method not in route.methods:
                    continue  # never a FULL match: no regex run for it
                match, child_scope = route.matches(scope)
                if match is Match.FULL:  # PARTIAL (another method): the router decides
                    scope.update(child_scope)
                    await route.app(scope, receive, send)
                    return
        await self.fallback(scope, receive, send)


async def _error_response(
    handlers: Mapping[Any, Callable[..., Any]], request: Request, exc: Exception
) -> tuple[Response, bool]:
    """The answer of the handler registered for `exc` (an `HTTPException` by its status
    first, then by the nearest class), and whether it is the unexpected-error one (500)."""
    handler = None
    if isinstance(exc, HTTPException):
        handler = handlers.get(exc.status_code)
    unexpected = False
    if handler is None:
        cls = next((cls for cls in type(exc).__mro__ if cls in handlers), None)
        if cls is None or cls is Exception:
            handler, unexpected = handlers.get(Exception) or handlers.get(500), True
        else:
            handler = handlers[cls]
    if handler is None:
        raise exc
    response = handler(request, exc)
    if inspect.isawaitable(response):
        response = await response
    return typing.cast(Response, response), unexpected


async def _call(
    plan: _Plan, request: Request, cache: dict[Any, Any], overrides: dict[Any, Any]
) -> Any:
    kwargs: dict[str, Any] = dict.fromkeys(plan.request_names, request)
    for dependency in plan.dependencies:
        call = overrides.get(dependency.call, dependency.call) if overrides else dependency.call
        if dependency.use_cache and call in cache:
            value = cache[call]
        else:
            sub = _PLANS.get(call) or _plan(call, allow_body=False)
            if sub.leaf:
                value = await call(**dict.fromkeys(sub.request_names, request))
            else:
                value = await _call(sub, request, cache, overrides)
            cache[call] = value
        if dependency.name is not None:
            kwargs[dependency.name] = value
    errors = _parameters(plan, kwargs, request.scope)
    body = (
        None if plan.body is None else await _json_body(request.scope, request.receive, plan.body)
    )
    _take_body(plan, kwargs, errors, body)
    if plan.is_async:
        return await plan.call(**kwargs)
    return await run_in_threadpool(plan.call, **kwargs)


def _parameters(plan: _Plan, kwargs: dict[str, Any], scope: Scope) -> list[Any]:
    """Add `plan`'s path and header parameters to `kwargs`, validated; the errors found."""
    errors: list[Any] = []
    if plan.path:
        _validate(plan.path, scope.get("path_params") or {}, kwargs, errors)
    if plan.headers:
        _validate(plan.headers, Headers(scope=scope), kwargs, errors)
    return errors


def _take_body(plan: _Plan, kwargs: dict[str, Any], errors: list[Any], body: Any) -> None:
    """Add the body (as `_json_body` gave it) to `kwargs`, validated; or raise a
    `RequestValidationError` with it and every problem found."""
    if plan.body is not None:
        if type(body) is _Validated:
            kwargs[typing.cast(str, plan.body_name)] = body.value
            body = None  # not parsed into a dict: a 422 for the path or headers carries none
        elif body is _MISSING:
            errors.append(_missing(("body",)))
            body = None
        else:
            try:
                kwargs[typing.cast(str, plan.body_name)] = plan.body.adapter.validate_python(
                    body, from_attributes=True
                )
            except ValidationError as exc:
                errors += _located(exc, ("body",))
    if errors:
        raise RequestValidationError(errors, body=body)


def _validate(
    declared: tuple[_Param, ...], received: Any, kwargs: dict[str, Any], errors: list[Any]
) -> None:
    for param in declared:
        value = received.get(param.key)
        if value is None:
            if param.default is _MISSING:
                errors.append(_missing(param.loc))
            else:
                kwargs[param.name] = param.default
            continue
        try:
            kwargs[param.name] = param.adapter.validate_python(value)
        except ValidationError as exc:
            errors += _located(exc, param.loc)


def _missing(loc: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": None}


def _located(exc: ValidationError, loc: tuple[str, ...]) -> list[Any]:
    return [{**error, "loc": loc + error["loc"]} for error in exc.errors(include_url=False)]


# --- reading a signature once ------------------------------------------------------------

_PLANS: dict[Any, _Plan] = {}


def _plan(call: Callable[..., Any], *, allow_body: bool) -> _Plan:
    """The plan of `call`, compiled on first use (an override too) and kept."""
    known = _PLANS.get(call)
    if known is not None:
        return known
    if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        raise TypeError(f"{_name(call)}: dependencies with yield are not supported here")
    hints = _hints(call)
    request_names: list[str] = []
    dependencies: list[_Dependency] = []
    path: list[_Param] = []
    headers: list[_Param] = []
    body_name: str | None = None
    body: _Body | None = None
    for name, parameter in inspect.signature(call).parameters.items():
        annotation = hints.get(name, Any)
        base, metadata = _split(annotation)
        default = parameter.default
        if isinstance(default, params.Depends | params.Param):  # `x: str = Header()`
            metadata = [*metadata, default]
            annotation = Annotated[annotation, default]
            default = getattr(default, "default", inspect.Parameter.empty)
            if default is PydanticUndefined or default is Ellipsis:
                default = inspect.Parameter.empty
        marker = next((m for m in metadata if isinstance(m, params.Depends | params.Param)), None)
        if isinstance(marker, params.Depends):
            dependencies.append(_Dependency(name, _dependency_call(marker, base), marker.use_cache))
        elif isinstance(base, type) and issubclass(base, HTTPConnection):
            request_names.append(name)
        elif isinstance(marker, params.Path | params.Header):
            param = _param(name, annotation, marker, default)
            (path if isinstance(marker, params.Path) else headers).append(param)
        elif marker is None and isinstance(base, type) and issubclass(base, BaseModel):
            if not allow_body or body is not None:
                raise TypeError(f"{_name(call)}: one body, in the endpoint only ({name})")
            body_name, body = name, _Body(TypeAdapter(annotation), _json_keys(base))
        else:
            raise TypeError(f"{_name(call)}: parameter {name!r} is not supported here")
    is_async = _is_async(call)
    plan = _Plan(
        call,
        is_async,
        tuple(request_names),
        tuple(dependencies),
        tuple(path),
        tuple(headers),
        body_name,
        body,
        leaf=is_async and not (dependencies or path or headers or body is not None),
    )
    _PLANS[call] = plan
    return plan


def _param(name: str, annotation: Any, info: params.Param, default: Any) -> _Param:
    if isinstance(info, params.Header):
        key = info.alias or (name.replace("_", "-") if info.convert_underscores else name)
        loc = ("header", info.alias or key)
    else:
        key = info.alias or name
        loc = ("path", key)
    return _Param(
        name=name,
        key=key,
        loc=loc,
        adapter=TypeAdapter(annotation),
        default=_MISSING if default is inspect.Parameter.empty else default,
    )


def _dependency_call(marker: params.Depends, annotation: Any) -> Callable[..., Any]:
    call = marker.dependency if marker.dependency is not None else annotation
    if not callable(call):
        raise TypeError(f"Depends() needs a callable, got {call!r}")
    return typing.cast(Callable[..., Any], call)


def _split(annotation: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        return base, metadata
    return annotation, []


def _hints(call: Callable[..., Any]) -> dict[str, Any]:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else type(call).__call__
    return typing.get_type_hints(target, include_extras=True)


def _is_async(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


def _returns_response(call: Any) -> bool:
    returned = _hints(call).get("return")
    return isinstance(returned, type) and issubclass(returned, Response)


def _name(call: Any) -> str:
    return getattr(call, "__qualname__", None) or type(call).__qualname__


# --- the body ----------------------------------------------------------------------------


class _Validated:
    """A body as the model validated it (a plain class: made on every request)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


async def _json_body(scope: Scope, receive: Receive, model: _Body) -> Any:
    """The body as JSON (`_MISSING` if empty), or as `model` validated it (`_Validated`): a
    body whose Content-Type does not say JSON (or that has none) is a 415, one that is not
    valid JSON a 422, one that cannot be read a 400.

    A body in which each of the model's key names appears once at most is parsed and
    validated at once by pydantic (`validate_json`, its own parser, which allocates less than
    `json` with the duplicate-key hook, bench/README.md); if pydantic refuses it, or any other
    body, it is parsed with `json`, so that what is refused is refused as FastAPI refuses it,
    a key twice included."""
    raw = b""
    try:
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            raw = message.get("body", b"")  # the whole body in one message: the usual case
        else:
            raw = await _read(receive, message)
        if not raw:
            return _MISSING
        if not _says_json(scope["headers"]):
            raise HTTPException(status_of(UnsupportedMediaType), UnsupportedMediaType.detail)
        if model.keys is not None and _each_key_once(raw, model.keys):
            try:
                # The adapter's documented `validator`: `validate_json` with no options, less
                # the adapter's own argument checks.
                return _Validated(model.adapter.validator.validate_json(raw))
            except ValidationError:
                pass  # answered below, as FastAPI answers it
        # What json.loads(raw, object_pairs_hook=...) does, without a new decoder per call.
        return _JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except json.JSONDecodeError as exc:
        raise _json_invalid(("body", exc.pos), exc.msg, exc.doc) from exc
    except DuplicateKey as exc:
        raise _json_invalid(("body",), str(exc), raw) from exc
    except HTTPException:  # 415 above, 413 from the body size limit
        raise
    except Exception as exc:
        raise HTTPException(400, "There was an error parsing the body") from exc


def _says_json(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the (first) Content-Type is JSON: `application/json` or a `+json` type."""
    for name, value in headers:
        if name == b"content-type":
            if value == b"application/json":
                return True
            media_type = value.partition(b";")[0].strip().lower().decode("latin-1")
            return media_type == "application/json" or media_type.endswith("+json")
    return False


async def _read(receive: Receive, message: Message) -> bytes:
    """The whole body, from its first message on, straight from ASGI `receive`: no stream
    generator per request."""
    chunks: list[bytes] = []
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        message = await receive()


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


def _each_key_once(raw: bytes, keys: tuple[bytes, ...]) -> bool:
    """Whether each of the model's key names appears at most once in `raw`, and nothing is
    escaped (two spellings may be one name). Any other key is refused by the model (extra
    fields are forbidden), so then no object of a body it accepts has a key twice."""
    if b"\\" in raw:
        return False
    for key in keys:  # noqa: SIM110 - a loop, not all(...): no generator per request
        if raw.count(key) > 1:
            return False
    return True


def _json_keys(annotation: Any) -> tuple[bytes, ...] | None:
    """Every key name a body of `annotation` may hold, quoted as in JSON; None if a model
    takes extra fields or a field is a mapping (any key)."""
    names: set[str] = set()

    def visit(annotation: Any) -> bool:
        base, _ = _split(annotation)
        if isinstance(base, type) and issubclass(base, BaseModel):
            if base.model_config.get("extra") != "forbid":
                return False
            for name, field in base.model_fields.items():
                if field.validation_alias is not None:
                    return False
                names.add(field.alias or name)
                if not visit(field.annotation):
                    return False
            return True
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Mapping):
            return False
        return all(visit(argument) for argument in typing.get_args(base))

    if not visit(annotation):
        return None
    return tuple(json.dumps(name).encode() for name in sorted(names))


class DuplicateKey(ValueError):
    """A JSON object with a key twice. `json.loads` keeps the last value, but a proxy, a WAF
    or a log in front may have read the first: refused (422) rather than guessed at."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"Duplicate key {key!r}")
            seen.add(key)
    return mapping


_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)
