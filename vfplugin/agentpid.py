"""vfplugind's pid file: one agent per ledger, and whether one is running (the hook asks on a refusal).

The agent holds an exclusive ``flock`` on ``<ledger directory>/vfplugind.pid`` (its pid written inside, for
people) for as long as it runs. The kernel drops the lock when the process ends, however it ends (``kill -9``
included), so a file left behind never reads as a running agent and a reused pid never fools the check. The
file sits next to the ledger because an agent serves one ledger (tests run one per temporary ledger).
Standard library only, ``fcntl`` imported on use: the hook imports this module on its refusal path only.
"""

from __future__ import annotations

import os

NAME = "vfplugind.pid"


def path(ledger: str) -> str:
    return os.path.join(os.path.dirname(ledger) or ".", NAME)


def running(ledger: str) -> bool:
    """Whether an agent holds the lock for this ledger now (a missing or unreadable file: no)."""
    import fcntl

    try:
        fd = os.open(path(ledger), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # EWOULDBLOCK: the agent holds it
    finally:
        os.close(fd)  # also drops the shared lock taken when no agent held it
    return False


def hold(ledger: str) -> int:
    """Take the lock for this process (the agent), write its pid; the returned fd must stay open.
    AgentRunning if another agent holds it."""
    import fcntl
    import time

    from .errors import AgentRunning

    where = path(ledger)
    fd = os.open(where, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    for attempt in range(20):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt < 19:  # a hook's probe holds a shared lock for microseconds: not an agent
                time.sleep(0.05)
                continue
            other = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise AgentRunning(ledger=ledger, pid=other, path=where) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd
