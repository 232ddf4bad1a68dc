"""Lint and types run as tests: ruff (style, imports, no shell=True) and mypy over the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.lint


def _tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)


def test_ruff_finds_nothing():
    done = _tool("ruff", "check", "vfplugin", "tests", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    done = _tool("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_checked_in_hook_is_the_one_vfctl_installs():
    from vfplugin.hook import script

    assert (ROOT / "hooks" / "qemu").read_text() == script("/usr/bin/python3")
