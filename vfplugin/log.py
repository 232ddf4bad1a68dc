"""Logging to syslog/journald: every message carries the program and, in the hook, the domain and operation.

Users see one line on stderr (printed by the caller); the log gets the detail, tracebacks included.
This is a small facade over the standard ``syslog`` module rather than ``logging``: the hook runs on every
lifecycle event of every domain, and ``logging`` + ``logging.handlers`` cost more to import than the rest of a
managed hook run (measured by bench/bench_hook.py). ``VFPLUGIN_LOG_STDERR=1`` (or ``vfctl -v``) echoes to stderr.
"""

from __future__ import annotations

import os
import sys
import syslog

_LEVELS = {"debug": syslog.LOG_DEBUG, "info": syslog.LOG_INFO, "warning": syslog.LOG_WARNING, "error": syslog.LOG_ERR}


class _Log:
    def __init__(self) -> None:
        self.program = "vfplugin"
        self.context = ""
        self.verbose = False
        self.echo = False

    def _emit(self, level: str, message: str, args: tuple[object, ...]) -> None:
        if level == "debug" and not self.verbose:
            return
        text = f"{self.context}{message % args if args else message}"
        for line in text.splitlines() or [""]:
            syslog.syslog(_LEVELS[level], line)
        if self.echo:
            print(f"{self.program}: {level.upper()} {text}", file=sys.stderr)

    def debug(self, message: str, *args: object) -> None:
        self._emit("debug", message, args)

    def info(self, message: str, *args: object) -> None:
        self._emit("info", message, args)

    def warning(self, message: str, *args: object) -> None:
        self._emit("warning", message, args)

    def error(self, message: str, *args: object) -> None:
        self._emit("error", message, args)

    def exception(self, message: str, *args: object) -> None:
        """``error`` plus the traceback of the exception being handled (a bug: keep every detail)."""
        import traceback

        self._emit("error", message + "\n" + traceback.format_exc().rstrip(), args)


LOG = _Log()


def setup(program: str, domain: str | None = None, operation: str | None = None, verbose: bool = False) -> None:
    """Tag vfplugin's messages with ``program``; prefix each with the domain and operation."""
    parts = [p for p in (f"domain={domain}" if domain else "", f"op={operation}" if operation else "") if p]
    LOG.program = program
    LOG.context = " ".join(parts) + ": " if parts else ""
    LOG.verbose = verbose
    LOG.echo = verbose or os.environ.get("VFPLUGIN_LOG_STDERR") == "1"
    syslog.openlog(program, syslog.LOG_PID, syslog.LOG_DAEMON)
