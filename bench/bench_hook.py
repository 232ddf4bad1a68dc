"""The hook's cost per lifecycle event, as a ratio against ``python3 -I -c pass`` measured in the same run.

- unmanaged: ``prepare begin`` of a domain that does not use vfplugin (every other VM on the host pays this on
  every event). Target <= 1.3x.
- managed: ``prepare begin`` (claim) + ``release end`` (release) of a domain with one VF and no netlink setting,
  on the example fixture host with a real ledger file. Target <= 3x, per event.

The hook is the script `vfctl install-hook` writes, run with libvirt's scrubbed environment.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, baseline, figure, hook_run, python

sys.path.insert(0, str(ROOT))

from tests.hookrun import LIBVIRT_PATH, domain_xml, install  # noqa: E402
from tests.hosts import write_config  # noqa: E402

RUNS = 21


def main() -> None:
    interpreter = python()
    work = Path(tempfile.mkdtemp(prefix="vfplugin-bench-hook-"))
    hook = str(install(work, interpreter))
    config = write_config(work, ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})
    env = {"LC_ALL": "C", "PATH": LIBVIRT_PATH, "VFPLUGIN_CONFIG": str(config),
           "VFPLUGIN_CONFIG_CACHE": str(work / "config-cache")}  # as the installed hook caches /etc's

    base = baseline(interpreter, RUNS)
    plain = domain_xml("plain").encode()
    unmanaged = statistics.median(hook_run([hook, "plain", "prepare", "begin", "-"], plain, env) for _ in range(RUNS))
    print(figure("hook, unmanaged domain", unmanaged, base, 1.3, "prepare begin"))

    source = work / "web1.xml"
    source.write_text(domain_xml("web1", nics='<vfp:nic id="net0" pool="i350"/>'))
    rewritten = subprocess.run(
        [interpreter, "-m", "vfplugin.cli", "--config", str(config), "rewrite", str(source)],
        capture_output=True,
        check=True,
    ).stdout
    for op, sub in (("prepare", "begin"), ("release", "end")):  # creates the ledger outside the timing
        hook_run([hook, "web1", op, sub, "-"], rewritten, env)
    per_event = []
    for _ in range(RUNS):
        claim = hook_run([hook, "web1", "prepare", "begin", "-"], rewritten, env)
        release = hook_run([hook, "web1", "release", "end", "-"], rewritten, env)
        per_event.append((claim + release) / 2)
    print(figure("hook, managed domain", statistics.median(per_event), base, 3.0, "prepare/release, per event"))


if __name__ == "__main__":
    main()
