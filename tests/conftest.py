"""Shared test plumbing: where the fixtures are, and how a missing component is reported.

A test that needs a component (a binary, root, a daemon) calls ``require(...)``: it skips with the reason
printed, except under ``VFPLUGIN_NO_SKIP=1`` (set by ./run-tests), where a missing component fails the test,
so nothing can silently skip in CI.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))


def require(condition: bool, reason: str) -> None:
    """Skip (or, under VFPLUGIN_NO_SKIP=1, fail) unless ``condition`` holds."""
    if condition:
        return
    if os.environ.get("VFPLUGIN_NO_SKIP") == "1":
        pytest.fail(f"required component missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(*names: str) -> None:
    for name in names:
        require(shutil.which(name) is not None, f"{name} is not installed (./run-tests installs it)")


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, libvirtd, OVS)")
