"""Secrets never reach a log line: API keys in query strings (``?token=``), in
``Authorization: Bearer`` values, and any configured key appearing anywhere in a message are
replaced by ``[redacted]``.

:func:`install` puts :class:`RedactFilter` on uvicorn's loggers (the access log prints the
full request target, query string included) and the service's, and on their handlers, so a
record is cleaned whichever way it travels. uvicorn's access formatter unpacks
``record.args``, so arguments are cleaned one by one and keep their shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "tracekws", "tracekws.service")
_QUERY = re.compile(r"(?i)((?:[?&;]|%3F|%26)(?:token|access_token|api_key|apikey|key)(?:=|%3D))"
                    r"[^&;\s\"']*")
_JSON = re.compile(r"""(?i)(["']?(?:token|api_key|authorization)["']?\s*:\s*["'])[^"']*""")
_BEARER = re.compile(r"(?i)(bearer(?:\s+|%20|\+))[A-Za-z0-9._~+/=%-]+")


class RedactFilter(logging.Filter):
    """Cleans records in place; never drops one."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        super().__init__()
        self.keys: set[str] = set()
        self.add_keys(keys)

    def add_keys(self, keys: Iterable[str]) -> None:
        self.keys |= {k for k in keys if k}

    def clean(self, text: str) -> str:
        text = _QUERY.sub(lambda m: m.group(1) + REDACTED, text)
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        text = _JSON.sub(lambda m: m.group(1) + REDACTED, text)
        for k in self.keys:
            if k in text:
                text = text.replace(k, REDACTED)
        return text

    def _arg(self, a):
        if isinstance(a, str):
            return self.clean(a)
        if isinstance(a, bytes):
            return self.clean(a.decode("latin-1")).encode("latin-1")
        if a is None or isinstance(a, int | float):
            return a
        text = str(a)  # e.g. a websockets Frame logged with %s: its text may hold a key
        cleaned = self.clean(text)
        return a if cleaned == text else cleaned

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:  # tracebacks can quote URLs too
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        return True


_FILTER = RedactFilter()


def install(keys: Iterable[str] = ()) -> RedactFilter:
    """Attach the (process-wide) filter to the uvicorn and service loggers and handlers."""
    _FILTER.add_keys(keys)
    targets: list[logging.Filterer] = []
    for name in LOGGERS:
        lg = logging.getLogger(name)
        targets.append(lg)
        targets.extend(lg.handlers)
    targets.extend(logging.getLogger().handlers)
    for t in targets:
        if _FILTER not in t.filters:
            t.addFilter(_FILTER)
    return _FILTER
