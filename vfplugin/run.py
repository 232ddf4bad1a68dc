"""The one subprocess wrapper: argv lists only, an explicit timeout, stderr captured into the error.

Never a shell. Every command vfplugin runs (ovs-vsctl, devlink, ethtool, ip) goes through ``run``. The hooks
run ``ip`` through it for VF settings, so it imports nothing it does not need on success (shlex, which
imports ``re``, only to show a command in a message).
"""

from __future__ import annotations

import subprocess

from .errors import CommandFailed
from .log import LOG

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing (see hook.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Optional


def _shown(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def run(
    argv: Sequence[str], timeout: float = 10.0, check: bool = True, env: Optional[Mapping[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise CommandFailed (with argv and stderr, one line) on a non-zero exit or a time-out.
    ``env``: the command's whole environment (default: this process's)."""
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
