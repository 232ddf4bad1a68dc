"""Logging to syslog/journald: every message carries the program and, in the hook, the domain and operation.

Users see one line on stderr (printed by the caller); the log gets the detail, tracebacks included. Where
there is no /dev/log (a container, a test), records go nowhere unless ``VFPLUGIN_LOG_STDERR`` is set.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from typing import Optional

LOG = logging.getLogger("vfplugin")


class _Context(logging.Filter):
    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = self.context
        return True


def setup(program: str, domain: Optional[str] = None, operation: Optional[str] = None, verbose: bool = False) -> None:
    """Send vfplugin's log records to syslog tagged ``program``, each prefixed with the domain and operation."""
    context = " ".join(p for p in (f"domain={domain}" if domain else "", f"op={operation}" if operation else "") if p)
    LOG.handlers.clear()
    LOG.filters.clear()
    LOG.addFilter(_Context(f"{context}: " if context else ""))
    LOG.setLevel(logging.DEBUG if verbose else logging.INFO)
    LOG.propagate = False
    if os.path.exists("/dev/log"):
        try:
            handler: logging.Handler = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
            handler.setFormatter(logging.Formatter(f"{program}[%(process)d]: %(context)s%(message)s"))
            LOG.addHandler(handler)
        except OSError:
            pass
    if os.environ.get("VFPLUGIN_LOG_STDERR") or verbose:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(f"{program}: %(levelname)s %(context)s%(message)s"))
        LOG.addHandler(stream)
    if not LOG.handlers:
        LOG.addHandler(logging.NullHandler())
