"""Structured logs: one line per event, key=value for people, --log-format json for machines.

Call sites log a short event name and pass fields in ``extra={"kv": {...}}``. Secrets never
go into fields: keys and passphrases are not logged anywhere in the code base.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["LEVELS", "LogLevelError", "parse_levels", "setup_logging"]

LEVELS = ("debug", "info", "warning", "error", "critical")


class LogLevelError(ValueError):
    """A --log-level / [log] level that cannot be used; the message says why."""


def parse_levels(spec: str) -> tuple[str, dict[str, str]]:
    """``"info"``, ``"p2p=debug,rpc=warning"`` or both (``"warning,p2p=debug"``) -> (the
    default level, {logger name: level}). A module is a logger under ``muxer.`` (``p2p``,
    ``rpc``, ``node``, ``chain``, ``history``, ``events``, ...: the third field of a text
    line); a dotted name as is (``hypercorn``)."""
    default = "info"
    modules: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, level = part.rpartition("=")
        level = level.strip().lower()
        if level not in LEVELS:
            raise LogLevelError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        if not sep:
            default = level
            continue
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise LogLevelError(f"{part!r}: expected module=level")
        modules[name if name.startswith("muxer") or "." in name else f"muxer.{name}"] = level
    return default, modules


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    kv = getattr(record, "kv", None)
    return kv if isinstance(kv, dict) else {}


def _fmt_value(v: Any) -> str:
    s = v.hex() if isinstance(v, bytes) else str(v)
    return f'"{s}"' if (" " in s or not s) else s


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"{ts}.{int(record.msecs):03d}Z", record.levelname.lower(), record.name,
                 f"event={_fmt_value(record.getMessage())}"]
        parts += [f"{k}={_fmt_value(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": record.created, "level": record.levelname.lower(),
                               "logger": record.name, "event": record.getMessage()}
        for k, v in _fields(record).items():
            doc[k] = v.hex() if isinstance(v, bytes) else v
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """One handler on stderr; ``level`` as ``parse_levels`` reads it (raises
    LogLevelError before changing anything)."""
    default, modules = parse_levels(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(default.upper())
    logging.getLogger("hypercorn").setLevel(logging.WARNING)
    for name, lvl in modules.items():
        logging.getLogger(name).setLevel(lvl.upper())
