"""The network hook's cost per event, as a ratio against ``python3 -I -c pass`` measured in the same run.

- unguarded: ``port-created`` on a NAT network (every bridge/NAT network's port pays this). Target <= 1.3x.
- guarded: ``port-created`` (claim) + ``port-deleted`` (release) on a hostdev network over the example fixture
  host's managed PF, for a domain without settings, with a real ledger file. Target <= 3x, per event.

The Python hook as `vfctl install-hook` writes it (hooks/network), run with libvirt's scrubbed environment; the
packaged conffile puts the shell front before it, which lets unguarded events through faster still.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from common import ROOT, baseline, figure, hook_run, python

sys.path.insert(0, str(ROOT))

from tests.hookrun import LIBVIRT_PATH  # noqa: E402
from tests.hosts import write_config  # noqa: E402
from vfplugin.nethook import script  # noqa: E402

RUNS = 21
PORT = ("<networkport><uuid>11111111-2222-3333-4444-555555555555</uuid><owner><name>l2n</name>"
        "<uuid>00000000-0000-0000-0000-000000000001</uuid></owner><mac address='52:54:00:00:00:01'/>{plug}"
        "</networkport>")
NAT = ("<hookData><network connections='1'><name>default</name><forward mode='nat'/><bridge name='virbr0'/>"
       "</network>" + PORT.format(plug="<plug type='bridge' bridge='virbr0'/>") + "</hookData>")
GUARDED = ("<hookData><network connections='1'><name>vfnet</name><forward mode='hostdev' managed='yes'>"
           "<pf dev='eth2'/></forward></network>"
           + PORT.format(plug="<plug type='hostdev-pci' managed='yes'><address domain='0x0000' bus='0x0a' "
                         "slot='0x10' function='0x0'/></plug>") + "</hookData>")


def main() -> None:
    interpreter = python()
    work = Path(tempfile.mkdtemp(prefix="vfplugin-bench-nethook-"))
    hook = work / "network.d" / "vfplugin"
    hook.parent.mkdir()
    hook.write_text(script(interpreter))
    hook.chmod(0o755)
    config = write_config(work, ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})
    env = {"LC_ALL": "C", "PATH": LIBVIRT_PATH, "VFPLUGIN_CONFIG": str(config),
           "VFPLUGIN_CONFIG_CACHE": str(work / "config-cache")}  # as the installed hook caches /etc's

    base = baseline(interpreter, RUNS)
    nat, guarded = NAT.encode(), GUARDED.encode()
    argv = [str(hook), "default", "port-created", "begin", "-"]
    unguarded = statistics.median(hook_run(argv, nat, env) for _ in range(RUNS))
    print(figure("network hook, unguarded network", unguarded, base, 1.3, "port-created"))

    created = [str(hook), "vfnet", "port-created", "begin", "-"]
    deleted = [str(hook), "vfnet", "port-deleted", "begin", "-"]
    hook_run(created, guarded, env)  # creates the ledger and the config cache outside the timing
    hook_run(deleted, guarded, env)
    per_event = []
    for _ in range(RUNS):
        claim = hook_run(created, guarded, env)
        release = hook_run(deleted, guarded, env)
        per_event.append((claim + release) / 2)
    print(figure("network hook, guarded network", statistics.median(per_event), base, 3.0,
                 "port-created/port-deleted, per event"))


if __name__ == "__main__":
    main()
