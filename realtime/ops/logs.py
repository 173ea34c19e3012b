"""Structured logs: a JSON formatter, connection and request ids, and secret redaction.

Wire them in ``LOGGING`` (``config/settings/base.py`` does, ``LOG_FORMAT=json``)::

    "filters": {
        "context": {"()": "realtime.ops.logs.ContextFilter"},
        "redact": {"()": "realtime.ops.logs.RedactFilter"},
    },
    "formatters": {"json": {"()": "realtime.ops.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                             "filters": ["context", "redact"]}},

The WebSocket consumer binds its ``connection_id`` for the whole connection and
:class:`realtime.ops.middleware.RequestIdMiddleware` binds a ``request_id`` per HTTP
request, so every line logged on their behalf carries the id (context
variables follow tasks and ``sync_to_async`` threads). Filters go on handlers,
not loggers: a handler's filters see the records of every logger under it.

Redaction is a safety net, not a licence: code should not log credentials.
It masks our API keys (``rt-`` + 32 URL-safe characters), JWTs, bearer tokens,
SigV4 signatures, the ``header-<base64url>`` WebSocket subprotocol (it carries
the authorization object), and the values of ``x-api-key``, ``authorization``
and similar keys, in the message, its arguments and any traceback.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import SyncToAsync

REDACTED = "[REDACTED]"

connection_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "realtime_connection_id", default=None
)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "realtime_request_id", default=None
)

_SECRET_KEYS = (
    r"x-api-key|api[_-]?key|authorization|x-amz-security-token|x-player-token|"
    r"secret[_-]?access[_-]?key|password|passwd|secret|token|sessionid|csrftoken|cookie"
)
# Order matters: whole-token shapes first, then "key: value" pairs.
_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"\brt-[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])"), "rt-" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b((?:x-amz-)?signature=)[0-9a-f]{16,}"), r"\1" + REDACTED),
    (re.compile(r"\bheader-[A-Za-z0-9_-]{8,}"), "header-" + REDACTED),
    (
        re.compile(
            r"(?i)(?P<key>[\"']?\b(?:" + _SECRET_KEYS + r")\b[\"']?\s*[:=]\s*)"
            r"(?:(?P<q>b?[\"'])(?:\\.|(?![\"']).)*[\"']|(?P<bare>[^\s,;&'\"}\])]+))"
        ),
        lambda m: m["key"] + (m["q"] + REDACTED + m["q"][-1] if m["q"] else REDACTED),
    ),
)


def redact(text: str) -> str:
    """``text`` with everything that looks like a credential masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def bind_connection(connection_id: str) -> None:
    """Tag every log line of the current task (a WebSocket connection) with its id."""
    connection_id_var.set(connection_id)


def background_context() -> contextvars.Context:
    """A copy of the current context for long-lived tasks a request starts: no ids, no request thread.

    Without the request's ``ThreadSensitiveContext`` too: an HTTP request's thread-sensitive
    calls run in a thread of that request's, gone (or another request's) once it ends, so a
    task that outlives it would get a thread of its own. Its thread-sensitive calls go to the
    process's one shared sync thread instead, whichever request or connection started it.
    """
    context = contextvars.copy_context()
    context.run(_clear)
    return context


def _clear() -> None:
    connection_id_var.set(None)
    request_id_var.set(None)
    SyncToAsync.thread_sensitive_context.set(None)  # type: ignore[arg-type]  # None: no request's


class ContextFilter(logging.Filter):
    """Adds ``connection_id`` and ``request_id`` (``None`` outside one) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "connection_id", None) is None:
            record.connection_id = connection_id_var.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class RedactFilter(logging.Filter):
    """Formats each record's message once, with credentials masked (see :func:`redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "connection_id",
    "request_id",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception.

    Extra attributes of simple types (``extra={"status_code": 404}``) are kept,
    redacted like the message; others (a request object, say) are left out.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("connection_id", "request_id"):
            value = getattr(record, name, None)
            if value is None:
                value = (connection_id_var if name == "connection_id" else request_id_var).get()
            if value is not None:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name in _STANDARD or name.startswith("_"):
                continue
            if isinstance(value, str):
                entry[name] = redact(value)
            elif value is None or isinstance(value, bool | int | float):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        entry["process"] = record.process
        return json.dumps(entry, ensure_ascii=False, default=str)
