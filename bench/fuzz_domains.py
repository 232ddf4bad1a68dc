#!/usr/bin/env python3
"""Mutation fuzz of the domain XML readers and the rewriter (a local run, not CI): ``bench/fuzz_domains.py``.

    .venv/bin/python bench/fuzz_domains.py [--seeds DIR] [--count 10000] [--keep tests/data/fuzz] [--seed N]

Seeds: vfplugin's own domain documents (requests, materialized interfaces, hand-written hostdevs) plus every
``*.xml`` of ``--seeds`` (e.g. a local copy of libvirt's tests/qemuxml2argvdata: read them, never commit them).
Each mutant (bytes inserted from a dictionary of the constructs that broke things before, ranges deleted or
repeated, bytes flipped) must satisfy:
  - expat (domread.read_domain) and lxml (domxml.parse_domain) give equal facts or both refuse, in one line;
    nothing else escapes (a crash is any exception that is not a VfpluginError);
  - domread.read_uuid names the domain as the full read does;
  - the hook's byte pre-check (hook.concerns_vfplugin) never skips a document read as having a request or a
    passed-through device;
  - a document with requests rewrites (a VF and a MAC per nic) into an output both readers read, that a second
    rewrite leaves byte-identical, or the rewriter refuses in one line;
  - no read takes more than a second.
A mutant that breaks one is written to ``--keep`` (if small) and reported; the test suite reads every case kept
there (tests/test_fuzz_findings.py).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vfplugin.addresses import PciAddress  # noqa: E402
from vfplugin.domread import read_domain, read_uuid  # noqa: E402
from vfplugin.domxml import parse_domain  # noqa: E402
from vfplugin.errors import VfpluginError  # noqa: E402
from vfplugin.hook import concerns_vfplugin  # noqa: E402

UUID = "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"
OWN_SEEDS = [
    f"""<domain type='kvm'>
  <name>web1</name>
  <uuid>{UUID}</uuid>
  <metadata>
    <vfp:nics xmlns:vfp="urn:vfplugin:1">
      <vfp:nic id="net0" pool="fast" vlan="100" trust="off"/>
      <vfp:nic id="net1" vf="0000:0a:10.4" mac="52:54:00:12:34:56"/>
    </vfp:nics>
  </metadata>
  <numatune><memory nodeset='0-1'/></numatune>
  <vcpu cpuset='0-3,^2'>2</vcpu>
  <devices>
    <interface type='hostdev' managed='yes'>
      <mac address='52:54:00:00:00:01'/>
      <source><address type='pci' domain='0x0000' bus='0x0a' slot='0x10' function='0x0'/></source>
      <vlan><tag id='100'/></vlan>
      <alias name='ua-vfplugin-net0'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x0a' slot='0x10' function='0x4'/></source>
    </hostdev>
  </devices>
</domain>
""",
    f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- WARNING: THIS IS AN AUTO-GENERATED FILE. -->
<domain type='qemu'><name>one</name><uuid>{UUID}</uuid><metadata><x:n xmlns:x="urn:vfplugin:1"><x:nic id="a"
 pf="eth2"/></x:n></metadata><devices/></domain>""",
]
DICTIONARY = [
    b"<uuid>", b"</uuid>", b"<uuid></uuid>", b"<!-- <uuid>11111111-1111-1111-1111-111111111111</uuid> -->",
    b"&#58;", b"&#x3a;", b"&amp;", b"&#0;", b"&#xFEFF;", b"\xef\xbb\xbf", "\ufeff".encode(),
    b'<?xml version="1.0" encoding="ISO-8859-1"?>', b'<?xml version="1.0" encoding="UTF8"?>',
    b'<?xml version="1.0" encoding="EBCDIC-US"?>', b'<?xml version="1.1"?>', b"\xe9", b"\xc3\xa9", b"\xff",
    b'xmlns:vfp="urn:vfplugin:1"', b'xmlns:v="%%"', b'xmlns="urn:vfplugin:1"', b'xmlns:x="a b"',
    b'<vfp:nic id="n9" pool="fast"/>', b'<vfp:nic id="net0" vf="0000:0a:11.0"/>', b"<vfp:nics>",
    b"<interface type='hostdev'><source><address type='pci' domain='0x0000' bus='0x0a' slot='0x11' "
    b"function='0x4'/></source></interface>",
    b"<hostdev mode='subsystem' type='pci'><source><address bus='0x0a' slot='0x11' function='0x0'/></source>"
    b"</hostdev>",
    b"<alias name='ua-vfplugin-net0'/>", b"<alias name='ua-vfplugin-net1'/>", b"<mac address='52:54:00:00:00:01'/>",
    b"<vlan><tag id='4095'/></vlan>", b"<devices>", b"</devices>", b"<metadata>", b"</metadata>", b"text",
    b"<![CDATA[<uuid>x</uuid>]]>", b"<?pi data?>", b"<!DOCTYPE domain>", b"\r\n", b"\t", b" ", b"\x00", b"\x0c",
    b"<name>", b"</name>", b"<name/>", b"cpuset='0-16383'", b"nodeset='^1'",
]
ADDRESSES = [PciAddress.parse(f"0000:3b:{slot:02x}.{fn}") for slot in range(4) for fn in range(8)]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.choice((1, 1, 2, 3))):
        pos = rng.randint(0, len(data))
        if rng.random() < 0.6:  # at an element boundary: more mutants stay well-formed and reach the rewriter
            pos = data.find(b">", pos) + 1 or pos
        kind = rng.random()
        if kind < 0.5:
            data = data[:pos] + rng.choice(DICTIONARY) + data[pos:]
        elif kind < 0.7:
            end = min(len(data), pos + rng.randint(1, 40))
            data = data[:pos] + data[end:]
        elif kind < 0.85:
            end = min(len(data), pos + rng.randint(1, 200))
            data = data[:pos] + data[pos:end] * rng.randint(2, 4) + data[end:]
        elif data:
            i = rng.randrange(len(data))
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
    return data


def outcome(read, raw: bytes):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        result = ("ok", read(raw))
    except VfpluginError as e:
        result = ("refused", "\n" in str(e))  # True: a refusal of more than one line
    except Exception as e:  # noqa: BLE001 - a crash is what the fuzzer looks for
        result = ("crash", f"{type(e).__name__}: {e}")
    return result, time.monotonic() - started


def rewrite(raw: bytes) -> bytes:
    """A VF and a MAC for every nic, as the rewriter would: a nic keeps the VF and MAC it has (sticky)."""
    domain = parse_domain(raw, "fuzz")
    refs = domain.hostdevs()
    current = {ref.nic_id: ref for ref in refs if ref.nic_id}
    free = iter(a for a in ADDRESSES if a not in {ref.address for ref in refs})
    if domain.uuid is None:
        domain.set_uuid(UUID)
    domain.drop_stale()
    for i, nic in enumerate(domain.requests()):
        ref = current.get(nic.id)
        address = ref.address if ref is not None else next(free)
        mac = nic.mac or (ref.mac if ref is not None and ref.mac else f"52:54:00:99:00:{i:02x}")
        domain.materialize(nic, address, mac)
    return domain.to_bytes()


def check(raw: bytes) -> str | None:
    """The first property ``raw`` breaks, or None."""
    a, ta = outcome(lambda r: read_domain(r, "fuzz"), raw)
    b, tb = outcome(lambda r: parse_domain(r, "fuzz").facts, raw)
    if "crash" in (a[0], b[0]):
        return f"crash: expat {a}, lxml {b}"
    if max(ta, tb) > 1.0:
        return f"slow: {ta:.2f}s / {tb:.2f}s"
    if a[0] == "refused" and a[1] or b[0] == "refused" and b[1]:
        return "a refusal of more than one line"
    if a[0] != b[0] or (a[0] == "ok" and a[1] != b[1]):
        return f"readers disagree: expat {a[0]}, lxml {b[0]}"
    if a[0] != "ok":
        return None
    facts = a[1]
    try:
        if read_uuid(raw, "fuzz") != facts.uuid:
            return "read_uuid differs from the full read"
    except VfpluginError:
        return "read_uuid refuses what the full read reads"
    if (facts.requests or facts.hostdevs) and not concerns_vfplugin(raw):
        return "the hook's pre-check skips a document that is vfplugin's"
    if not facts.requests:
        return None
    try:
        once = rewrite(raw)
    except VfpluginError as e:
        return "a refusal of more than one line" if "\n" in str(e) else None
    except Exception as e:  # noqa: BLE001
        return f"rewrite crash: {type(e).__name__}: {e}"
    for read in (lambda r: read_domain(r, "out"), lambda r: parse_domain(r, "out").facts):
        (kind, _), _ = outcome(read, once)
        if kind != "ok":
            return f"the rewriter's output is not readable ({kind})"
    try:
        if rewrite(once) != once:
            return "rewriting twice changes the output"
    except Exception as e:  # noqa: BLE001
        return f"second rewrite fails: {type(e).__name__}: {e}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=Path, help="a directory of *.xml seeds (e.g. libvirt's test XMLs)")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=ROOT / "tests" / "data" / "fuzz")
    args = parser.parse_args()
    seeds = [s.encode() for s in OWN_SEEDS]
    if args.seeds:
        seeds += [p.read_bytes() for p in sorted(args.seeds.glob("*.xml"))]
    base_failures = [(i, why) for i, s in enumerate(seeds) if (why := check(s))]
    for i, why in base_failures:
        print(f"seed {i} fails as it is: {why}")
    rng = random.Random(args.seed)
    found: dict[str, int] = {}
    started = time.monotonic()
    for n in range(args.count):
        raw = mutate(rng, rng.choice(seeds))
        why = check(raw)
        if why is None:
            continue
        key = why.split(":")[0]
        found[key] = found.get(key, 0) + 1
        if found[key] <= 3 and len(raw) <= 8192:
            args.keep.mkdir(parents=True, exist_ok=True)
            name = f"{key.replace(' ', '-').replace(chr(39), '')}-{hashlib.sha256(raw).hexdigest()[:12]}.xml"
            (args.keep / name).write_bytes(raw)
            print(f"#{n}: {why} -> {args.keep / name}")
    elapsed = time.monotonic() - started
    print(f"{args.count} mutants of {len(seeds)} seeds in {elapsed:.1f}s; findings: {found or 'none'}")
    return 1 if found or base_failures else 0


if __name__ == "__main__":
    sys.exit(main())
