"""The one subprocess wrapper: argv lists only, an explicit timeout, stderr captured into the error.

Never a shell. Every command vfplugin runs (ovs-vsctl, devlink, ethtool, ip) goes through ``run``, or, on the
hooks' path, through ``spawn``: the same contract (argv with an absolute program, timeout, stderr kept) with
``os.posix_spawn`` and ``select.poll`` instead of the ``subprocess`` module, whose import (selectors, signal,
threading, locale...) costs a hook process about as much as an ``ip`` run itself. shlex (it imports ``re``) is
imported only to show a command in a message.
"""

from __future__ import annotations

from .errors import CommandFailed
from .log import LOG

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing (see hook.py)
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping, Sequence


def _shown(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def run(
    argv: Sequence[str], timeout: float = 10.0, check: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise CommandFailed (with argv and stderr, one line) on a non-zero exit or a time-out.
    ``env``: the command's whole environment (default: this process's)."""
    import subprocess

    argv = [str(a) for a in argv]
    if LOG.verbose:
        LOG.debug("run: %s", _shown(argv))
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=None if env is None else dict(env)
        )
    except FileNotFoundError:
        raise CommandFailed(
            argv=_shown(argv), status="not installed", stderr=f"{argv[0]} not found in PATH"
        ) from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(argv=_shown(argv), status="timeout", stderr=f"no answer within {timeout:g}s") from None
    if check and result.returncode != 0:
        shown = _shown(argv)
        LOG.warning("command failed (%d): %s: %s", result.returncode, shown, result.stderr.strip())
        stderr = result.stderr.strip() or "(no stderr)"
        raise CommandFailed(argv=shown, status=f"exit {result.returncode}", stderr=stderr)
    return result


def spawn(
    argv: Sequence[str], timeout: float = 10.0, input: str = "", env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``argv`` (``argv[0]`` an absolute path: no PATH search) with ``input`` on its stdin; return (exit
    status, stdout, stderr). CommandFailed when it cannot start or gives no answer within ``timeout`` (then it
    is killed). A non-zero exit is the caller's to judge: stderr says why."""
    import os
    import select
    import time

    argv = [str(a) for a in argv]
    if LOG.verbose:
        LOG.debug("run: %s", _shown(argv))
    child_in, feed = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # os.pipe() descriptors are not inheritable: the child keeps only what is dup2'ed onto 0, 1 and 2.
    actions = [(os.POSIX_SPAWN_DUP2, child_in, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ if env is None else env, file_actions=actions)
    except OSError as e:
        for fd in (child_in, feed, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise CommandFailed(argv=_shown(argv), status="not started", stderr=f"{argv[0]}: {e.strerror}") from None
    for fd in (child_in, out_w, err_w):
        os.close(fd)
    try:
        if input:
            os.write(feed, input.encode())
    except BrokenPipeError:  # it did not read its input: its exit status and stderr say why
        pass
    finally:
        os.close(feed)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    reading = set(chunks)
    try:
        while reading:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)  # SIGKILL, without importing signal
                os.waitpid(pid, 0)
                raise CommandFailed(argv=_shown(argv), status="timeout", stderr=f"no answer within {timeout:g}s")
            for fd, _ in poller.poll(left * 1000):
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    reading.discard(fd)
    finally:
        for fd in chunks:
            os.close(fd)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out, err = (b"".join(chunks[fd]).decode("utf-8", "replace") for fd in (out_r, err_r))
    if status != 0:  # the caller judges it; the log keeps what was said (an ip refusal, a missing PF...)
        LOG.info("exit %d: %s: %s", status, " ".join(argv), err.strip())
    return status, out, err
