"""Logging set-up shared by both programs: human lines by default, JSON lines with a flag.

A filter scrubs bearer tokens and JWT-looking strings from every record, so a token that ends up
in an exception message or a library's debug line never reaches the log; both formatters scrub
what they add themselves (tracebacks, stack text) the same way. Secrets that look like nothing in
particular (the shared plugin token) are registered with ``add_secret`` and scrubbed verbatim.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time

_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"),
]


_KNOWN_SECRETS: set[str] = set()
_KNOWN_LOCK = threading.Lock()
# Shorter values would scrub ordinary words out of log lines.
_MIN_SECRET_LEN = 8


def add_secret(value: str) -> None:
    """Scrub ``value`` verbatim from every log line from now on (a token read from a file)."""
    value = value.strip()
    if len(value) >= _MIN_SECRET_LEN:
        with _KNOWN_LOCK:
            _KNOWN_SECRETS.add(value)


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    if _KNOWN_SECRETS:
        with _KNOWN_LOCK:
            known = sorted(_KNOWN_SECRETS, key=len, reverse=True)
        for secret in known:
            text = text.replace(secret, "[redacted]")
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class RedactingFormatter(logging.Formatter):
    """Human lines; the filter has scrubbed the message, this scrubs the traceback and stack
    text the formatter appends (an exception's message often quotes a request or a header)."""

    def formatException(self, ei: logging._SysExcInfoType) -> str:  # noqa: N802 (logging's name)
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return redact(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        # formatException's result is cached on the record as exc_text, which another
        # formatter may have filled unscrubbed: scrub the whole line as well.
        return redact(super().format(record))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("method", "path", "status", "duration_ms", "session", "pod"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        entry["msg"] = redact(entry["msg"])
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(*, json_lines: bool = False, verbose: bool = False,
                  errors_only: bool = False) -> None:
    level = logging.ERROR if errors_only else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JSONFormatter() if json_lines else RedactingFormatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # VerboseLogging is for our own loggers: the libraries' debug output (every Docker API
    # call, every connection) would bury them.
    logging.getLogger("interlink").setLevel(logging.DEBUG if verbose else logging.NOTSET)
    for noisy in ("httpx", "httpcore", "urllib3", "docker", "asyncio", "authlib"):
        # httpx logs every request URL at INFO.
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
