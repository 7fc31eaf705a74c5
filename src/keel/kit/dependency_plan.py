"""An endpoint's parameters and dependencies, solved by a plan compiled once per route.

FastAPI re-derives, on every request and for every parameter and dependency, what it could
have decided once: the parameter's aliases, whether its type is a sequence or a model, whether
a dependency is a coroutine or a generator, its cache key. That work grows with every
`Header()` parameter and every `Depends` an endpoint declares, so plain endpoints pay for being
plain (measured). A `DependencyPlan` makes those decisions when the route is built
and keeps only the per-request work: look the value up, validate it with the field's own
pydantic validator, call the dependency.

Only what the plan reproduces exactly is compiled (`compile_plan` answers None otherwise, and
the route keeps FastAPI's own solver): path, query, header and cookie parameters of scalar
types with a plain alias; dependencies that are coroutine functions, async callables or plain
functions and classes (run in the thread pool, as FastAPI does); `Request`, `HTTPConnection`
and `Response` parameters. Generators (`yield` dependencies), bodies, background tasks,
security scopes, websockets and dependency concurrency limits are left to FastAPI. The values
and errors are FastAPI's: the same validators, the same error entries (`tests/kit` compares
both solvers on every supported shape).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import fastapi
from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_validation_alias
from fastapi.exceptions import RequestValidationError
from pydantic import AliasChoices, AliasPath, Json
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

_SCALARS: tuple[type, ...] = (
    str,
    int,
    float,
    bool,
    bytes,
    uuid.UUID,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    enum.Enum,
    type(None),
)


class _Unsupported(Exception):
    """The dependant uses something only FastAPI's own solver handles."""


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    key: str
    location: str
    field: Any  # fastapi's ModelField: its validator and its default
    required: bool
    validate_default: bool
    many: bool  # a list: every occurrence of a query parameter or header line

    def read(self, request: Request) -> Any:
        location = self.location
        if location == "path":
            return request.path_params.get(self.key)
        if location == "query":
            source: Any = request.query_params
        elif location == "header":
            source = request.headers
        else:
            return request.cookies.get(self.key)
        if self.many:
            return source.getlist(self.key) or None  # none at all: the default, as FastAPI
        return source.get(self.key)

    def solve(self, request: Request, values: dict[str, Any], errors: list[Any]) -> None:
        loc = (self.location, self.key)
        raw = self.read(request)
        if raw is None:
            if self.required:
                errors.append(_missing(loc))
                return
            value = deepcopy(self.field.default)
            if not self.validate_default:
                values[self.name] = value
                return
            raw = value
        value, field_errors = self.field.validate(raw, values, loc=loc)
        if field_errors:
            errors.extend(field_errors)
        else:
            values[self.name] = value


def _missing(loc: tuple[str, str]) -> dict[str, Any]:
    """FastAPI's entry for a required parameter that was not sent."""
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": None}


def _list_of_scalars(annotation: Any) -> bool:
    """`list[X]` or `list[X] | None` with X a scalar."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        arguments = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return len(arguments) == 1 and _list_of_scalars(arguments[0])
    return origin is list and all(_is_scalar(arg) for arg in typing.get_args(annotation))


def _is_scalar(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_scalar(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_is_scalar(argument) for argument in typing.get_args(annotation))
    if origin is typing.Literal:
        return True
    return inspect.isclass(annotation) and issubclass(annotation, _SCALARS)


def _parameter(field: Any, location: str) -> _Parameter:
    info = field.field_info
    if isinstance(info.validation_alias, (AliasChoices, AliasPath)) or field.config:
        raise _Unsupported(f"{field.name}: alias choices")
    if any(item is Json or type(item) is Json for item in info.metadata):
        raise _Unsupported(f"{field.name}: a Json parameter")
    many = location in ("query", "header") and _list_of_scalars(info.annotation)
    if not (many or _is_scalar(info.annotation)):
        raise _Unsupported(f"{field.name}: {info.annotation!r} is not a scalar")
    return _Parameter(
        name=field.name,
        key=get_validation_alias(field),
        location=location,
        field=field,
        required=info.is_required(),
        validate_default=bool(info.validate_default),
        many=many,
    )


def _parameters(dependant: Dependant) -> tuple[_Parameter, ...]:
    groups = (
        ("path", dependant.path_params),
        ("query", dependant.query_params),
        ("header", dependant.header_params),
        ("cookie", dependant.cookie_params),
    )
    for _, fields in groups:
        for field in fields:
            if not isinstance(field.field_info, params.Param):
                raise _Unsupported(f"{field.name}: not a request parameter")
    return tuple(_parameter(field, location) for location, fields in groups for field in fields)


# What a dependant may hold for a plan to reproduce FastAPI 0.165's solver. A FastAPI release that
# adds a field, or another version altogether, is left to FastAPI until tests/kit passes on it
# and the version is added here.
_KNOWN_FIELDS = frozenset(
    {
        *("path_params", "query_params", "header_params", "cookie_params", "body_params"),
        *("dependencies", "name", "call", "request_param_name", "websocket_param_name"),
        *("http_connection_param_name", "response_param_name", "background_tasks_param_name"),
        *("security_scopes_param_name", "own_oauth_scopes", "parent_oauth_scopes", "use_cache"),
        *("path", "scope", "concurrency"),
    }
)
TESTED_FASTAPI = ("0.165.",)


def planning_applies() -> bool:
    """True on the FastAPI this module was tested against (tests/kit), with its Dependant."""
    fields = {field.name for field in dataclasses.fields(Dependant)}
    return fastapi.__version__.startswith(TESTED_FASTAPI) and fields == _KNOWN_FIELDS


def _check_supported(dependant: Dependant) -> None:
    unsupported = {
        "body": dependant.body_params,
        "background tasks": dependant.background_tasks_param_name,
        "security scopes": dependant.security_scopes_param_name
        or dependant.own_oauth_scopes
        or dependant.parent_oauth_scopes,
        "websocket": dependant.websocket_param_name,
        "concurrency limit": dependant.concurrency,
    }
    for what, used in unsupported.items():
        if used:
            raise _Unsupported(what)


def _calling_convention(call: Callable[..., Any]) -> bool:
    """True to await the call, False to run it in the thread pool (FastAPI's rule for a
    function or a class); generators, wrapped or partial callables and anything else unusual
    are FastAPI's (its rules look through wrappers in ways a plan need not copy)."""
    target = call
    if inspect.unwrap(call) is not call or isinstance(call, functools.partial):
        raise _Unsupported(f"wrapped callable {call!r}")
    if isinstance(target, types.FunctionType | types.MethodType):
        if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
            raise _Unsupported("generator dependency")
        return inspect.iscoroutinefunction(target)
    if inspect.isclass(target):
        return False
    method = getattr(type(target), "__call__", None)  # noqa: B004 - the instance's call
    if isinstance(method, types.FunctionType) and not (
        inspect.isgeneratorfunction(method) or inspect.isasyncgenfunction(method)
    ):
        return inspect.iscoroutinefunction(method)
    raise _Unsupported(f"callable {call!r}")


@dataclass(frozen=True, slots=True)
class _Node:
    """One dependant: its own parameters, its sub-dependencies, what it passes through."""

    call: Callable[..., Any]
    name: str | None
    awaited: bool
    use_cache: bool
    cache_key: tuple[Any, ...]
    parameters: tuple[_Parameter, ...]
    dependencies: tuple[_Node, ...]
    request_names: tuple[str, ...]
    response_name: str | None

    async def solve_values(
        self, request: Request, response: Response, cache: dict[Any, Any], errors: list[Any]
    ) -> dict[str, Any]:
        """The keyword arguments of this node's call (FastAPI's order: dependencies first)."""
        values: dict[str, Any] = {}
        for dependency in self.dependencies:
            await dependency.solve_into(values, request, response, cache, errors)
        for parameter in self.parameters:
            parameter.solve(request, values, errors)
        for name in self.request_names:
            values[name] = request
        if self.response_name is not None:
            values[self.response_name] = response
        return values

    async def solve_into(
        self,
        values: dict[str, Any],
        request: Request,
        response: Response,
        cache: dict[Any, Any],
        errors: list[Any],
    ) -> None:
        key = self.cache_key
        if self.use_cache and key in cache:
            solved = cache[key]
        else:
            found = len(errors)
            arguments = await self.solve_values(request, response, cache, errors)
            if len(errors) > found:
                return  # like FastAPI: a dependency whose inputs failed is not called
            if self.awaited:
                solved = await self.call(**arguments)
            else:
                solved = await run_in_threadpool(self.call, **arguments)
            cache.setdefault(key, solved)
        if self.name is not None:
            values[self.name] = solved


def _node(dependant: Dependant) -> _Node:
    _check_supported(dependant)
    call = dependant.call
    if call is None:
        raise _Unsupported("a dependant without a call")
    request_names = tuple(
        name
        for name in (dependant.request_param_name, dependant.http_connection_param_name)
        if name is not None
    )
    return _Node(
        call=call,
        name=dependant.name,
        awaited=_calling_convention(call),
        use_cache=dependant.use_cache,
        cache_key=(call, dependant.scope or ""),
        parameters=_parameters(dependant),
        dependencies=tuple(_node(sub) for sub in dependant.dependencies),
        request_names=request_names,
        response_name=dependant.response_param_name,
    )


@dataclass(frozen=True, slots=True)
class DependencyPlan:
    """The endpoint's keyword arguments for one request, or a RequestValidationError."""

    root: _Node
    calls: frozenset[Any]  # every dependency it calls: an override of one of them is FastAPI's
    endpoint_context: dict[str, Any]  # where the endpoint is, for validation errors

    async def solve(self, request: Request, response: Response) -> dict[str, Any]:
        errors: list[Any] = []
        values = await self.root.solve_values(request, response, {}, errors)
        if errors:
            raise RequestValidationError(errors, endpoint_ctx=self.endpoint_context)  # type: ignore[arg-type]
        return values


def compile_plan(dependant: Dependant) -> DependencyPlan | None:
    """The plan for an endpoint's dependant, or None when FastAPI must solve it itself (or
    there is nothing to solve)."""
    if not _has_inputs(dependant) or not planning_applies():
        return None
    try:
        root = _node(dependant)
    except _Unsupported:
        return None
    if not root.awaited:
        return None  # a sync endpoint runs in FastAPI's thread pool path
    return DependencyPlan(root, frozenset(_calls(root.dependencies)), _where(root.call))


def _calls(nodes: Sequence[_Node]) -> Iterator[Any]:
    for node in nodes:
        yield node.call
        yield from _calls(node.dependencies)


def _where(endpoint: Callable[..., Any]) -> dict[str, Any]:
    """What FastAPI tells of an endpoint in a validation error: its file, line and name."""
    try:
        return {
            "file": inspect.getsourcefile(endpoint),
            "line": inspect.getsourcelines(endpoint)[1],
            "function": endpoint.__name__,
        }
    except (OSError, TypeError):
        return {"function": getattr(endpoint, "__name__", repr(endpoint))}


def _has_inputs(dependant: Dependant) -> bool:
    inputs: Sequence[object] = (
        *dependant.dependencies,
        *dependant.path_params,
        *dependant.query_params,
        *dependant.header_params,
        *dependant.cookie_params,
    )
    return bool(inputs)
