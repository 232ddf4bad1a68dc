"""contrib/ansible/roles/vfplugin without touching the machine: the playbook passes ansible-playbook's
syntax check, and the role writes every configuration key from a variable. The real run against this machine
(twice, the second changing nothing) is tests/ansible/run, a stage of ./run-tests."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, require_tool
from vfplugin.config import _KEYS

pytestmark = pytest.mark.fixtures

ROLE = ROOT / "contrib" / "ansible" / "roles" / "vfplugin"


def test_the_playbook_and_role_pass_the_syntax_check() -> None:
    require_tool("ansible-playbook")
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROLE.parent), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "localhost,", "tests/ansible/site.yml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_configuration_key_has_a_role_variable_and_reaches_the_file() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    template = (ROLE / "templates" / "vfplugin.yaml.j2").read_text()
    for key in _KEYS:
        assert f"vfplugin_{key}" in defaults, key
        assert f'"{key}": vfplugin_{key}' in template, key


def test_service_tasks_run_only_under_systemd() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    tasks += yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    for task in tasks:
        if "ansible.builtin.systemd" in task:
            assert 'ansible_service_mgr == "systemd"' in str(task.get("when", "")), task["name"]
