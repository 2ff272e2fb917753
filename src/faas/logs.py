"""Structured (JSON lines) logging with the invocation's request id on every line.

Every line is bounded: a message longer than ``MAX_MESSAGE`` characters and a
traceback longer than ``MAX_TRACEBACK`` are cut (a hostile client decides
what some messages quote; ``clip()`` shortens a quoted value at the call
site), and a warning or error (or any line about connections) repeated
more than ``BURST`` times within ``WINDOW_S`` seconds is dropped until the
window ends, when one line says how many copies were suppressed (a flood of
failing connections must not fill the disk). The per-invocation info lines
are never dropped.

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
import threading
import time

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000
BURST = 20
WINDOW_S = 10.0
#: Loggers whose lines a client can multiply at will (connections): limited at
#: every level. Elsewhere only warnings and errors are limited.
NOISY_LOGGERS = ("faas.gateway.guard", "uvicorn", "asyncio")


def clip(value: object, limit: int = 120) -> str:
    """``repr``-free text of ``value`` cut to ``limit`` characters, saying how long it was."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text)} chars]"


class RepeatFilter(logging.Filter):
    """Let at most ``burst`` records of one (logger, level, template) through per window.

    Records beyond that are dropped; the first record of the same kind after
    the window carries ``suppressed`` (how many were dropped).
    """

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._lock = threading.Lock()
        # key -> [window start, count in window, suppressed in window]
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not record.name.startswith(NOISY_LOGGERS):
            return True  # one line per invocation is the point of those
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self.window_s:
                suppressed = int(state[2]) if state is not None else 0
                self._seen[key] = [now, 1, 0]
                if len(self._seen) > 10_000:  # bound the table itself
                    self._seen = {key: self._seen[key]}
                if suppressed:
                    record.suppressed = suppressed
                return True
            if state[1] < self.burst:
                state[1] += 1
                return True
            state[2] += 1
            return False

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
            "msg": clip(record.getMessage(), MAX_MESSAGE),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            entry["suppressed_before"] = suppressed
        if record.exc_info:
            entry["exc"] = clip(self.formatException(record.exc_info), MAX_TRACEBACK)
        return json.dumps(entry, default=str)


def configure(spec: str) -> None:
    default, per_module = parse_levels(spec)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(default)
    for name, level in per_module.items():
        logging.getLogger(name).setLevel(level)
