"""gunicorn's logger, writing one JSON object per line like every other Keel process.

gunicorn's master never runs the application, so Keel's logging set-up never reaches it: its lines
("Starting gunicorn", "Booting worker", "Worker exiting", the connection budget warning) were
plain text between the workers' JSON, and a log pipeline parsing JSON dropped or mangled them.
The workers share these handlers until the application configures logging (uvicorn-worker hands
them to `uvicorn.error`), so the lines a worker writes while booting are JSON too.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from keel.observability.logging import json_formatter

__all__ = ["JsonLogger"]


class JsonLogger(Logger):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn.conf.py's `logger_class`: gunicorn's handlers, with Keel's JSON formatter."""

    def setup(self, cfg: Any) -> None:
        # gunicorn installs its own handlers here (and again on every HUP reload); only their
        # formatter changes, so errorlog, syslog and logconfig settings keep working.
        super().setup(cfg)
        formatter = json_formatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
