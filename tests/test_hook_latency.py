"""The hook's latency, from its own journal: a real hook process (tests/hookrun.py) records in each journal
entry how long its event had taken, in the write it makes anyway, and ``vfctl metrics`` turns that into the
``vfplugin_hook_duration_seconds`` histogram per operation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hookrun import install, run_hook
from tests.hosts import write_config
from tests.test_hook import rewritten
from tests.test_metrics import samples, value
from vfplugin.config import load
from vfplugin.ledger import Ledger
from vfplugin.metrics import gather, text

pytestmark = pytest.mark.hook


def test_each_hook_event_journals_its_duration_and_metrics_show_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})
    hook = install(tmp_path)
    xml = rewritten(tmp_path, config, "web1", '<vfp:nic id="net0" pool="i350"/>')
    for op, sub in (("prepare", "begin"), ("started", "begin"), ("release", "end")):
        done = run_hook(hook, "web1", op, sub, xml, config)
        assert done.status == 0, done.stderr
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        events = ledger.history()
    timed = {e.action: e.duration for e in events if e.duration is not None}
    assert set(timed) == {"claim", "started", "release"}  # vfctl's reservation carries none
    assert all(0 < d < 30 for d in timed.values())
    found = samples(text(gather(load(str(config)))))
    for operation in ("claim", "started", "release"):
        assert value(found, "vfplugin_hook_duration_seconds_count", operation=operation) == 1
        assert value(found, "vfplugin_hook_duration_seconds_bucket", operation=operation, le="+Inf") == 1
    assert not [k for k in found if k[0] == "vfplugin_hook_duration_seconds_count" and
                ("operation", "reserve") in k[1]]
