"""The shell front (hooks/front): it lets through to Python exactly the events the Python hook would act on,
and hands them over intact.

The real front runs as the packages run it: sourced by the real conffiles (packaging/libvirt-hook and
packaging/network-hook, with /usr/libexec/vfplugin replaced), from a temporary directory whose ``<kind>-hook``
is a stub that records its argv and every byte of its stdin; the older form, ``/bin/sh <libexec>/front KIND
ARG...`` (the conffiles of 0.1.0, kept over an upgrade when edited), must decide the same. Each
document of the corpus (the golden domains, the hostile ones, generated variants) goes through every kind of
operation; the front must pass it on iff the Python hook's own rule (``vfplugin.hook._HANDLERS`` and
``concerns_vfplugin``) says it concerns vfplugin, and then byte for byte with the same arguments, and the
Python hook's stdout, stderr and exit status must come back unchanged. The network front: the same, by the
network hook's rule (``vfplugin.nethook.may_concern_vfplugin``), for every network operation.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hookrun import LIBVIRT_PATH
from tests.test_domxml_hostile import CASES as HOSTILE
from vfplugin.hook import _HANDLERS, concerns_vfplugin
from vfplugin.nethook import may_concern_vfplugin

pytestmark = pytest.mark.hook

ROOT = Path(__file__).resolve().parent.parent
FRONT = ROOT / "hooks" / "front"
CONFFILES = {"qemu": ROOT / "packaging" / "libvirt-hook", "network": ROOT / "packaging" / "network-hook"}
LIBEXEC_LINE = "vfplugin_libexec=/usr/libexec/vfplugin\n"
GOLDEN = sorted((ROOT / "tests" / "data" / "domxml").glob("*.xml"))

# What libvirt runs (DESIGN.md section 1) and a few it does not, with the handled ones first.
QEMU_OPS = sorted(_HANDLERS) + [
    ("prepare", "end"), ("start", "end"), ("started", "end"), ("stopped", "begin"), ("release", "begin"),
    ("migrate", "end"), ("attach", "begin"), ("shutdown", "end"), ("", ""),
]
NETWORK_OPS = [(op, sub) for op in ("start", "started", "stopped", "port-created", "port-deleted", "updated")
               for sub in ("begin", "end")]

STUB = """\
import sys
data = sys.stdin.buffer.read()
with open(sys.argv[0] + ".seen", "wb") as f:
    f.write(repr(sys.argv[1:]).encode() + b"\\n" + data)
sys.stdout.write("stdout of the hook\\n")
sys.stderr.write("stderr of the hook\\n")
sys.exit(3)
"""


def network_rule(data: bytes) -> bool:
    """The network front's rule, agreed with the network hook: hostdev, a character reference or a declaration
    (the Python network hook's own pre-check must say the same)."""
    rule = b"hostdev" in data or b"&#" in data or b"encoding" in data
    assert may_concern_vfplugin(data) == rule
    return rule


@pytest.fixture(scope="module")
def libexec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real front next to stub Python hooks, as the packages lay out /usr/libexec/vfplugin, and
    the conffiles pointing at it in ``conf/``."""
    where = tmp_path_factory.mktemp("libexec")
    shutil.copy2(FRONT, where / "front")
    (where / "conf").mkdir()
    for kind, source in CONFFILES.items():
        (where / f"{kind}-hook").write_text(STUB)
        text = source.read_text()
        assert text.count(LIBEXEC_LINE) == 1
        conffile = where / "conf" / kind
        conffile.write_text(text.replace(LIBEXEC_LINE, f"vfplugin_libexec={where}\n"))
        conffile.chmod(0o755)
    return where


def run_front(
    libexec: Path, kind: str, args: list[str], data: bytes, direct: bool = False
) -> tuple[bytes | None, subprocess.CompletedProcess[bytes]]:
    """(what the stub received or None, the front's process): the conffile run as libvirt runs it, or with
    ``direct`` the front run as ``/bin/sh front KIND ARG...``."""
    seen = libexec / f"{kind}-hook.seen"
    seen.unlink(missing_ok=True)
    argv = ["/bin/sh", str(libexec / "front"), kind] if direct else [str(libexec / "conf" / kind)]
    done = subprocess.run(
        [*argv, *args], input=data, capture_output=True,
        env={"LC_ALL": "C", "PATH": LIBVIRT_PATH}, timeout=60, check=False,
    )
    return (seen.read_bytes() if seen.exists() else None), done


def check(
    libexec: Path, kind: str, op: tuple[str, str], data: bytes, name: str = "dom1", direct: bool = False
) -> bool:
    args = [name, op[0], op[1], "-"]
    expected = (op in _HANDLERS and concerns_vfplugin(data)) if kind == "qemu" else network_rule(data)
    received, done = run_front(libexec, kind, args, data, direct)
    if not expected:
        assert received is None, f"{kind} {op}: the front let through a document Python would skip"
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        return False
    assert received is not None, f"{kind} {op}: the front blocked a document Python acts on"
    assert received == repr(args).encode() + b"\n" + data, "the XML or the arguments were not passed on intact"
    assert (done.returncode, done.stdout, done.stderr) == (3, b"stdout of the hook\n", b"stderr of the hook\n")
    return True


def variants(base: bytes) -> list[bytes]:
    """The base document and edits of it that a byte search must not get wrong."""
    head, sep, tail = base.partition(b"<devices>")
    if not sep:
        head, sep, tail = base.partition(b"</domain>")
    edits = [
        b"", b"\n", b"\n\n\n", b"\r\n", b"<!-- hostdev -->", b"<!-- urn:vfplugin:1 -->",
        b"<metadata><v:nics xmlns:v='urn:vfplugin&#58;1'/></metadata>", b"<description>&#104;ostdev</description>",
        b"<description>hostde</description>", b"<description>urn:vfplugin:2</description>",
        b"<description>&amp; # encodin</description>", b"<title>\\ $(id) `id` ${x} * ? [a] %s %b \\n</title>",
        b"<title>\xff\xfe caf\xc3\xa9</title>", b"<description>" + b"x" * 300_000 + b"</description>",
    ]
    out = [base, base.rstrip(b"\n"), base + b"\n\n", base.replace(b"\n", b"\r\n")]
    out += [head + e + sep + tail for e in edits]
    out.append(b"<?xml version='1.0' encoding='ISO-8859-1'?>\n" + base)
    return out


def corpus() -> list[tuple[str, bytes]]:
    """Golden and hostile documents. Not the ones with a NUL byte (the UTF-16 one): libvirt's hook input is a C
    string (virCommandSetInputBuffer), so it never holds a NUL, and a shell variable could not carry one."""
    docs = [(p.name, p.read_bytes()) for p in GOLDEN]
    docs += [(f"hostile {k}", v if isinstance(v, bytes) else v.encode()) for k, (v, _) in sorted(HOSTILE.items())]
    return [(name, data) for name, data in docs if b"\0" not in data]


def test_the_corpus_has_documents_on_both_sides_of_the_rule():
    docs = [d for _, base in corpus() for d in variants(base)]
    assert sum(map(concerns_vfplugin, docs)) > 50
    assert len(docs) - sum(map(concerns_vfplugin, docs)) > 20


@pytest.mark.parametrize("name", [name for name, _ in corpus()])
def test_qemu_front_passes_exactly_what_python_would_act_on(libexec, name):
    base = dict(corpus())[name]
    rng = random.Random(name)  # every document meets a handled and an unhandled operation, the same each run
    documents = variants(base) if name.endswith(".xml") else [base, base + b"\n"]  # hostile: as they are
    for i, data in enumerate(documents):
        check(libexec, "qemu", QEMU_OPS[i % len(_HANDLERS)], data)
        check(libexec, "qemu", rng.choice(QEMU_OPS[len(_HANDLERS):]), data)


def test_qemu_front_decides_every_operation_by_the_python_table(libexec):
    managed = (GOLDEN[0].parent / "minimal-pool-out.xml").read_bytes()
    assert [op for op in QEMU_OPS if check(libexec, "qemu", op, managed)] == sorted(_HANDLERS)
    assert not any(check(libexec, "qemu", op, b"<domain><name>plain</name></domain>\n") for op in QEMU_OPS)


def test_arguments_reach_python_unchanged(libexec):
    for name in ("web 1", "*", "$(id)", "-n", "a'b\"c\\d", ""):
        check(libexec, "qemu", ("prepare", "begin"), b"<domain><hostdev/></domain>", name=name)


def test_an_empty_or_unterminated_stdin_is_decided_like_any_other(libexec):
    for data in (b"", b"\n", b"hostdev", b"encoding\n\n", b"&#"):
        check(libexec, "qemu", ("release", "end"), data)
        check(libexec, "network", ("port-created", "begin"), data)


PORT = (
    b"<hookData><network connections='1'><name>pool0</name><forward mode='%s'/></network><networkport>"
    b"<uuid>2f2b6c8e-1b86-4b53-8b3b-5a8f1e0c4c9a</uuid><owner><name>web1</name>"
    b"<uuid>6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f</uuid></owner><mac address='52:54:00:12:34:56'/>%s"
    b"</networkport></hookData>\n"
)


def test_network_front_passes_hostdev_networks_and_skips_the_rest(libexec):
    hostdev = PORT % (b"hostdev", b"<plug type='hostdev-pci' managed='yes'><address domain='0x0000' bus='0x0a'"
                      b" slot='0x10' function='0x0'/></plug>")
    bridge = PORT % (b"bridge", b"<plug type='bridge' bridge='br0'/>")
    for op in NETWORK_OPS:
        assert check(libexec, "network", op, hostdev)
        assert not check(libexec, "network", op, bridge)
    for data in variants(bridge) + variants(hostdev):
        check(libexec, "network", ("port-created", "begin"), data)


def test_the_front_run_directly_decides_like_the_conffile(libexec):
    """The conffiles of 0.1.0 ran ``exec /bin/sh front KIND "$@"``; an edited one survives an upgrade."""
    managed = (GOLDEN[0].parent / "minimal-pool-out.xml").read_bytes()
    plain = b"<domain><name>plain</name></domain>\n"
    for op in QEMU_OPS:
        for data in (managed, plain, managed.rstrip(b"\n") + b"\n\n"):
            assert check(libexec, "qemu", op, data, direct=True) == check(libexec, "qemu", op, data)
    for op in NETWORK_OPS:
        for data in (PORT % (b"hostdev", b""), PORT % (b"bridge", b"")):
            assert check(libexec, "network", op, data, direct=True) == check(libexec, "network", op, data)


def test_an_unknown_kind_never_fails_the_event(libexec):
    received, done = run_front(libexec, "lxc", ["dom1", "prepare", "begin", "-"], b"<domain><hostdev/></domain>",
                               direct=True)
    assert received is None and done.returncode == 0 and b"unknown hook kind 'lxc'" in done.stderr


FRAGMENTS = [b"hostdev", b"hostde", b"urn:vfplugin:1", b"urn:vfplugin:", b"&#", b"&", b"#", b"encoding", b"enc",
             b"<", b">", b"'", b'"', b"\n", b"\r", b"\\", b"%", b"$", b"*", b"\xc3\xa9", b"\xff", b" ", b"x"]


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.sampled_from(QEMU_OPS[:len(_HANDLERS)] + QEMU_OPS[-2:]))
def test_generated_documents_are_decided_like_python(libexec, parts, op):
    data = b"<domain>" + b"".join(parts) + b"</domain>" + (b"\n" if len(parts) % 2 else b"")
    check(libexec, "qemu", op, data)
