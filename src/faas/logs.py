"""Structured (JSON lines) logging with the invocation's request id on every line.

The level comes from ``FAAS_LOG`` or, as the seed promised, a ``RUST_LOG``
style value: ``info``, ``debug``, or ``faas_gateway=debug,warn`` (per-module
levels; ``faas_x`` and ``faas.x`` name the same logger, a bare level sets the
default).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
           "off": logging.CRITICAL + 1}


def parse_levels(spec: str) -> tuple[int, dict[str, int]]:
    """Parse a RUST_LOG-style spec into (default level, {logger name: level})."""
    default, per_module = logging.INFO, {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        target, sep, level = part.rpartition("=")
        value = _LEVELS.get(level.lower())
        if value is None:
            raise ValueError(f"unknown log level {level!r} in {spec!r}")
        if sep:
            per_module[target.replace("_", ".").replace("::", ".")] = value
        else:
            default = value
    return default, per_module


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(spec: str) -> None:
    default, per_module = parse_levels(spec)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(default)
    for name, level in per_module.items():
        logging.getLogger(name).setLevel(level)
