"""The gateway's diagnostic log (logger ``gatehouse``): level and JSON or text format."""

from __future__ import annotations

import logging
import sys
import time

import orjson

from observability.config import LoggingConfig

_HANDLER_NAME = "gatehouse-diagnostic"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(fields).decode()


def configure(config: LoggingConfig) -> None:
    """Install one handler on the ``gatehouse`` logger (idempotent per process)."""
    logger = logging.getLogger("gatehouse")
    logger.setLevel(config.level.upper())
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
