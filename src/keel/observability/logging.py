"""structlog, configured once per process: every process of the service logs the same way.

JSON lines in production, a readable console renderer in development. Standard-library loggers
(uvicorn, gunicorn, asyncpg, httpx, sqlalchemy, ...) are routed through the same processors, so a
line from uvicorn and a line from Keel carry the same fields (request_id, timestamp, ...).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, NamedTuple

import orjson
import structlog
from opentelemetry import trace  # feature: tracing

from keel.observability.context import request_id_var, user_id_var
from keel.settings import Environment, Settings

_current_request_id = request_id_var.get
_current_user_id = user_id_var.get


def add_request_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """request_id and user_id of the request being served (`keel.observability.context`).

    Read from the two ContextVars the middleware and `bind_user_id` set, so nothing is bound
    into structlog per request; a field the call passed itself wins, as with contextvars.
    """
    request_id = _current_request_id()
    if request_id is not None and "request_id" not in event_dict:
        event_dict["request_id"] = request_id
    user_id = _current_user_id()
    if user_id is not None and "user_id" not in event_dict:
        event_dict["user_id"] = user_id
    return event_dict


# feature: tracing
def add_trace_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """trace_id/span_id of the current span, when one is being recorded (tracing is on).

    Without tracing the current span is the invalid no-op span: one contextvar read, no fields.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


# end feature: tracing

# What every line gets from the context it is written in: structlog's contextvars, the
# request's id and user. Also used by the tests' log captures.
# feature: worker
# (The worker binds each job's job_id in structlog's contextvars.)
# end feature: worker
CONTEXT_PROCESSORS: tuple[structlog.types.Processor, ...] = (
    structlog.contextvars.merge_contextvars,
    add_request_context,
    add_trace_context,  # feature: tracing
)


class UtcTimestamper:
    """`timestamp` in ISO 8601 UTC with microseconds, e.g. `2026-12-01T18:47:56.227585Z`.

    structlog's `TimeStamper(fmt="iso", utc=True)` builds a datetime for every line (~19k
    instructions, a fifth of an access-log line); the date and time of day change once a second,
    so they are formatted once a second and only the microseconds per line.
    """

    __slots__ = ("_second",)

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")  # replaced as one tuple: safe across threads

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        cached, prefix = self._second
        if second != cached:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        event_dict["timestamp"] = f"{prefix}.{nanoseconds // 1000:06d}Z"
        return event_dict


_render_stack_info = structlog.processors.StackInfoRenderer()
_render_exception = structlog.processors.format_exc_info


def render_stack_and_exception(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog's StackInfoRenderer and format_exc_info, in that order, called only for the
    lines that ask for them (`stack_info=`, `exc_info=` / `log.exception`): most lines do not,
    and the two calls cost ~8k instructions a line."""
    if "stack_info" in event_dict:
        event_dict = _render_stack_info(logger, method, event_dict)
    if "exc_info" in event_dict:
        event_dict = _render_exception(logger, method, event_dict)
    return event_dict


def _json_default(value: object) -> object:
    """What orjson cannot serialize itself: bytes decoded (as structlog's UnicodeDecoder would,
    but only for the rare line that has them), anything else as its repr, never an error."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    *CONTEXT_PROCESSORS,
    structlog.processors.add_log_level,
    UtcTimestamper(),
]

# Chatty libraries stay at WARNING; their errors still come through.
_QUIET_LOGGERS = ("uvicorn.access", "httpx", "httpcore", "asyncio")
# Loggers that libraries give handlers of their own: strip them, let records reach the root.
_ROUTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "gunicorn.error",
    "gunicorn.access",
    "arq",  # feature: worker
    "alembic",
    "sqlalchemy",
    "asyncpg",
    "httpx",
)

_configured: tuple[bool, str, bool] | None = None


def _orjson_text(value: Any, **options: Any) -> str:
    return orjson.dumps(value, **options).decode()


class _Output(NamedTuple):
    """The last step of a line, and where it goes.

    structlog's own lines and stdlib records share the processors but not the last step: a
    logging.Formatter must return text (`text_renderer`), structlog's BytesLogger takes bytes.
    """

    renderer: structlog.types.Processor
    text_renderer: structlog.types.Processor
    logger_factory: structlog.types.WrappedLogger
    decoders: list[structlog.types.Processor]


def _json_output() -> _Output:
    # orjson straight to bytes, written to the byte stream: structlog's documented fast path
    # (the access log line of every request is rendered here: 0.75 us instead of 4.5 us).
    return _Output(
        renderer=structlog.processors.JSONRenderer(
            serializer=orjson.dumps, option=orjson.OPT_NON_STR_KEYS, default=_json_default
        ),
        text_renderer=structlog.processors.JSONRenderer(
            serializer=_orjson_text, option=orjson.OPT_NON_STR_KEYS, default=_json_default
        ),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        decoders=[],  # bytes: `_json_default`
    )


def _console_output() -> _Output:
    renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return _Output(
        renderer=renderer,
        text_renderer=renderer,
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        decoders=[structlog.processors.UnicodeDecoder()],
    )


def configure_logging(settings: Settings, *, force: bool = False) -> None:
    """Configure structlog and the stdlib root logger; a no-op when already configured alike.

    Each process calls it at start; calling it again with the same output settings (the
    tests build many apps) changes nothing.
    """
    global _configured
    # Tests capture structlog output with `structlog.testing.capture_logs`, which only works on
    # loggers that were not cached on first use.
    cache = settings.environment is not Environment.TEST
    key = (settings.log_as_json, settings.log_level, cache)
    if _configured == key and not force:
        return
    _configured = key

    output = _json_output() if settings.log_as_json else _console_output()
    _configure_structlog(settings, output, cache=cache)
    _route_stdlib_logging(settings, output.text_renderer)


def _configure_structlog(settings: Settings, output: _Output, *, cache: bool) -> None:
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            render_stack_and_exception,
            *output.decoders,
            output.renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level]
        ),
        # Our own lines skip the stdlib logging machinery: ~11 us a line instead of ~29 us.
        logger_factory=output.logger_factory,
        cache_logger_on_first_use=cache,
    )


def _stdlib_formatter(text_renderer: structlog.types.Processor) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED_PROCESSORS, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            text_renderer,
        ],
    )


def json_formatter() -> logging.Formatter:
    """A stdlib formatter writing the same JSON lines as `configure_logging`, for processes
    that never load Keel's settings (gunicorn's master: `keel.gunicorn_logging`)."""
    return _stdlib_formatter(_json_output().text_renderer)


def _route_stdlib_logging(settings: Settings, text_renderer: structlog.types.Processor) -> None:
    """Every stdlib record goes through the root logger's one handler, rendered as ours are."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_stdlib_formatter(text_renderer))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in _ROUTED_LOGGERS:
        named = logging.getLogger(name)
        named.handlers[:] = []
        named.propagate = True
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
