"""The one subprocess wrapper: argv lists only, an explicit timeout, stderr captured into the error.

Never a shell. Every command vfplugin runs (ovs-vsctl, devlink, ethtool) goes through ``run``.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

from .errors import CommandFailed
from .log import LOG


def run(argv: Sequence[str], timeout: float = 10.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise CommandFailed (with argv and stderr, one line) on a non-zero exit or a time-out."""
    argv = [str(a) for a in argv]
    shown = shlex.join(argv)
    LOG.debug("run: %s", shown)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise CommandFailed(argv=shown, status="not installed", stderr=f"{argv[0]} not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(argv=shown, status="timeout", stderr=f"no answer within {timeout:g}s") from None
    if check and result.returncode != 0:
        LOG.warning("command failed (%d): %s: %s", result.returncode, shown, result.stderr.strip())
        stderr = result.stderr.strip() or "(no stderr)"
        raise CommandFailed(argv=shown, status=f"exit {result.returncode}", stderr=stderr)
    return result
