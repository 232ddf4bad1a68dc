"""Shared test plumbing: where the fixtures are, and how a missing component is reported.

A test that needs a component (a binary, root, a daemon) calls ``require(...)``: it skips with the reason
printed, except under ``VFPLUGIN_NO_SKIP=1`` (set by ./run-tests), where a missing component fails the test,
so nothing can silently skip in CI.

Property-based tests (Hypothesis) run under a profile named by ``HYPOTHESIS_PROFILE``: ``ci`` (the default) is
fixed and bounded (derandomized, no example database), so every CI run tries the same examples in bounded time;
``long`` tries many more, random each run, and keeps failures in ``.hypothesis/`` to replay them first next time:
``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests -m "pure or fixtures or sqlite"`` (or ``bench/properties``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))

# ci: the same examples every run (seeded from each test), no database, no timing-based failures on a busy runner
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
