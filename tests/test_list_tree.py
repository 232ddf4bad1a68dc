"""``vfctl list --tree``: golden text (plain and colored) and JSON on the fixture hosts with leases in every state.

When an intended change alters the output, regenerate the expected files and review the diff in git:

    VFPLUGIN_REGENERATE=1 .venv/bin/python -m pytest tests/test_list_tree.py -q
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.hosts import write_config
from tests.test_metrics import seed
from vfplugin.cli import main
from vfplugin.commands.list_vfs import use_color

pytestmark = pytest.mark.fixtures

GOLDEN = ROOT / "tests" / "data" / "tree"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VFPLUGIN_REGENERATE") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert actual == path.read_text(), f"{name} differs; VFPLUGIN_REGENERATE=1 rewrites it (then review the diff)"


def tree_of(tmp_path: Path, host: str, *extra: str, capsys: Any) -> tuple[int, str]:
    config = write_config(tmp_path, host)
    if host == "example":
        seed(tmp_path / "ledger.sqlite3")
    code = main(["--config", str(config), "list", "--tree", *extra])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("host", ["example", "intel", "noiommu"])
def test_tree_text_is_the_golden_one(tmp_path: Path, host: str, capsys: Any) -> None:
    code, out = tree_of(tmp_path, host, capsys=capsys)
    assert code == (0 if host == "example" else 1)  # intel: a PF with 0 VFs; noiommu: a missing PF
    assert "\033[" not in out  # not a terminal: no color
    check_golden(f"{host}.txt", out)


def test_tree_json_is_the_same_tree(tmp_path: Path, capsys: Any) -> None:
    code, out = tree_of(tmp_path, "example", "--json", capsys=capsys)
    assert code == 0
    check_golden("example.json", out)
    tree = json.loads(out)
    eth2 = tree["numa_nodes"][0]["pfs"][0]
    assert (eth2["pf"], eth2["vfs_used"], eth2["vfs_total"], eth2["eswitch"]) == ("eth2", 2, 4, "legacy")
    assert tree["numa_nodes"][1]["pfs"][0]["eswitch"] == "switchdev"
    web1 = tree["numa_nodes"][1]["pfs"][0]["vfs"][0]["domain"]
    assert web1 == {"name": "web1", "uuid": "11111111-2222-4333-8444-555555555555", "state": "active",
                    "mac": "52:54:00:aa:bb:cc", "vlan": 100}


def test_a_filter_shows_fewer_vfs_but_the_pf_counts_all(tmp_path: Path, capsys: Any) -> None:
    code, out = tree_of(tmp_path, "example", "--free", "--pf", "eth2", capsys=capsys)
    assert code == 0
    check_golden("example-free-eth2.txt", out)


def test_color_on_a_terminal_only_and_never_with_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_color(Tty(), {}) is True
    assert use_color(Tty(), {"NO_COLOR": "1"}) is False
    assert use_color(Tty(), {"NO_COLOR": ""}) is True  # no-color.org: set and not empty
    assert use_color(io.StringIO(), {}) is False


def test_colored_tree_on_a_real_terminal(tmp_path: Path) -> None:
    """Through a pseudo-terminal, as a user runs it: colored; the same run with NO_COLOR: plain."""
    import pty

    config = write_config(tmp_path, "example")
    seed(tmp_path / "ledger.sqlite3")

    def run(env: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        done = subprocess.run([sys.executable, "-m", "vfplugin.cli", "--config", str(config), "list", "--tree"],
                              stdout=follower, stderr=subprocess.PIPE, cwd=ROOT, env=env, timeout=60)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert done.returncode == 0, done.stderr
        return b"".join(chunks).decode().replace("\r\n", "\n")

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    colored = run(env)
    check_golden("example-color.txt", colored)
    plain = run({**env, "NO_COLOR": "1"})
    assert plain == (GOLDEN / "example.txt").read_text()
