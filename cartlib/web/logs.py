"""JSON-lines logging with the current request id on every line."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import orjson

request_id_var: ContextVar[str] = ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service and uvicorn's own loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": handler},
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.error": {"level": level.upper()},
            # Access lines come from the telemetry middleware, with the request id.
            "uvicorn.access": {"level": "WARNING", "propagate": False},
        },
    }
