"""Log output as plain text or one JSON object per line (FMNIST_LOG_FORMAT), and the id of the
request being served, for log lines to name."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from typing import Any, Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The X-Request-Id of the request being served, set by `service.middleware.ResponseHeaders`.
# Each request runs in its own task, so its context holds its own id; worker threads that
# FastAPI and `run_in_threadpool` start get a copy. None outside a request.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def logging_config(
    log_format: Literal["text", "json"], loggers: tuple[str, ...] = ("service", *UVICORN_LOGGERS)
) -> dict[str, Any]:
    """A `logging.config.dictConfig` giving `loggers` one handler in the chosen format."""
    formatter = {"()": JSONFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "default"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            name: {"handlers": ["default"], "level": "INFO", "propagate": False} for name in loggers
        },
    }
