"""The packages as built by packaging/build: contents, metadata and the files they ship.

Static checks of artefacts (``lint`` tier): the .deb and .rpm in dist/ (./run-tests runs packaging/build
first), the man page, the bash completion, the default configuration and the systemd units, each checked
with the real tool (dpkg-deb, rpm, groff/man, bash, systemd-analyze, systemd-tmpfiles). Installing the
package on the machine is packaging/test-upgrade's job, not this module's.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import vfplugin
from tests.conftest import ROOT, require, require_tool
from vfplugin.cli import COMMANDS, build_parser
from vfplugin.config import _KEYS, Config, parse

pytestmark = pytest.mark.lint

PACKAGING = ROOT / "packaging"
VERSION = vfplugin.__version__
DEB = ROOT / "dist" / f"vfplugin_{VERSION}_all.deb"
RPM = ROOT / "dist" / f"vfplugin-{VERSION}-1.noarch.rpm"
RUNTIME_DEPENDENCIES = {"python3-libvirt", "python3-lxml", "python3-pyroute2", "python3-yaml"}
FEDORA_DEPENDENCIES = {"python3-libvirt", "python3-lxml", "python3-pyroute2", "python3-pyyaml"}

# What both packages install besides the Python library, with its mode; a None mode is a directory.
COMMON_FILES = {
    "/usr/bin/vfctl": 0o755,
    "/usr/bin/vfplugind": 0o755,
    "/usr/libexec/vfplugin/front": 0o755,
    "/usr/libexec/vfplugin/qemu-hook": 0o755,
    "/usr/libexec/vfplugin/reload-libvirt": 0o755,
    "/etc/libvirt/hooks/qemu.d/vfplugin": 0o755,
    "/usr/libexec/vfplugin/network-hook": 0o755,
    "/etc/libvirt/hooks/network.d/vfplugin": 0o755,
    "/etc/vfplugin/vfplugin.yaml": 0o644,
    "/usr/lib/tmpfiles.d/vfplugin.conf": 0o644,
    "/usr/share/bash-completion/completions/vfctl": 0o644,
}
DEB_FILES = {
    **COMMON_FILES,
    "/lib/systemd/system/vfplugin-reconcile.service": 0o644,
    "/lib/systemd/system/vfplugind.service": 0o644,
    "/usr/share/man/man8/vfplugind.8.gz": 0o644,
    "/lib/systemd/system/vfplugin-netports.service": 0o644,
    "/lib/systemd/system/vfplugin-host.service": 0o644,
    "/lib/systemd/system/vfplugin-metrics.service": 0o644,
    "/lib/systemd/system/vfplugin-metrics.timer": 0o644,
    "/lib/systemd/system/libvirtd.service.d/vfplugin.conf": 0o644,
    "/lib/systemd/system/virtqemud.service.d/vfplugin.conf": 0o644,
    "/usr/share/man/man8/vfctl.8.gz": 0o644,
    "/usr/share/doc/vfplugin/copyright": 0o644,
}
RPM_FILES = {
    **COMMON_FILES,
    "/usr/lib/systemd/system/vfplugin-reconcile.service": 0o644,
    "/usr/lib/systemd/system/vfplugind.service": 0o644,
    "/usr/share/man/man8/vfplugind.8.gz": 0o644,
    "/usr/lib/systemd/system/vfplugin-netports.service": 0o644,
    "/usr/lib/systemd/system/vfplugin-host.service": 0o644,
    "/usr/lib/systemd/system/vfplugin-metrics.service": 0o644,
    "/usr/lib/systemd/system/vfplugin-metrics.timer": 0o644,
    "/usr/lib/systemd/system/libvirtd.service.d/vfplugin.conf": 0o644,
    "/usr/lib/systemd/system/virtqemud.service.d/vfplugin.conf": 0o644,
    "/usr/share/man/man8/vfctl.8.gz": 0o644,
    "/var/lib/vfplugin": 0o700,
}
CONFFILES = {"/etc/libvirt/hooks/qemu.d/vfplugin", "/etc/libvirt/hooks/network.d/vfplugin",
             "/etc/vfplugin/vfplugin.yaml"}


def run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A tool run the way a user would, from PATH (or an explicit path); text in and out."""
    tool = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    assert tool, f"{argv[0]} is not installed"
    return subprocess.run([tool, *argv[1:]], capture_output=True, text=True, timeout=60, check=False,
                          **kwargs)


def out(*argv: str, **kwargs: Any) -> str:
    done = run(*argv, **kwargs)
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}"
    return done.stdout


def library_modules() -> set[str]:
    """The vfplugin package's modules, relative to site-packages, as the checkout has them."""
    return {str(p.relative_to(ROOT)) for p in (ROOT / "vfplugin").rglob("*.py")}


def commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every (sub)command parser of vfctl, by its words: ('list',), ('pf', 'set-vfs'), ..."""
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        found[words] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, words + (name,))

    walk(build_parser(), ())
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}


@pytest.fixture(scope="module")
def deb() -> Path:
    require_tool("dpkg-deb")
    require(DEB.is_file(), f"{DEB.relative_to(ROOT)} is missing: run packaging/build")
    return DEB


@pytest.fixture(scope="module")
def rpm() -> Path:
    require_tool("rpm")
    require(RPM.is_file(), f"{RPM.relative_to(ROOT)} is missing: run packaging/build")
    return RPM


@pytest.fixture(scope="module")
def deb_tree(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("deb")
    out("dpkg-deb", "-x", str(deb), str(tree))
    return tree


@pytest.fixture(scope="module")
def deb_listing(deb: Path) -> dict[str, str]:
    """path -> permission string (``-rwxr-xr-x``) from ``dpkg-deb -c``."""
    listing = {}
    for line in out("dpkg-deb", "-c", str(deb)).splitlines():
        fields = line.split()
        path = fields[5][1:].rstrip("/") or "/"
        listing[path] = fields[0]
    return listing


def mode(perms: str) -> int:
    bits = 0
    for i, ch in enumerate(perms[1:10]):
        bits |= (ch != "-") << (8 - i)
    return bits


# ------------------------------------------------------------------------------------------ .deb


def test_deb_installs_library_command_hook_config_units_man_page(deb_listing: dict[str, str]) -> None:
    for path, expected in DEB_FILES.items():
        assert path in deb_listing, f"{path} is not in the .deb"
        assert deb_listing[path].startswith("-"), f"{path} is not a regular file: {deb_listing[path]}"
        assert mode(deb_listing[path]) == expected, f"{path}: {deb_listing[path]}, expected {expected:o}"
    shipped = {p.removeprefix("/usr/lib/python3/dist-packages/") for p in deb_listing if p.endswith(".py")}
    assert shipped == library_modules()


def test_deb_ships_no_ledger_and_nothing_outside_the_expected_trees(deb_listing: dict[str, str]) -> None:
    # /var/lib/vfplugin is made by tmpfiles.d/postinst (0700), never shipped (dpkg would make it 0755)
    assert not any(p.startswith("/var") for p in deb_listing)
    allowed = ("/etc/libvirt/hooks/qemu.d", "/etc/libvirt/hooks/network.d", "/etc/vfplugin",
               "/lib/systemd/system", "/usr/bin/vfctl", "/usr/bin/vfplugind",
               "/usr/lib/python3/dist-packages/vfplugin", "/usr/lib/tmpfiles.d/vfplugin.conf",
               "/usr/libexec/vfplugin", "/usr/share/bash-completion/completions/vfctl",
               "/usr/share/doc/vfplugin", "/usr/share/man/man8/vfctl.8.gz", "/usr/share/man/man8/vfplugind.8.gz")
    files = [p for p, perms in deb_listing.items() if not perms.startswith("d")]
    strays = [p for p in files if not p.startswith(allowed)]
    assert strays == []


def test_deb_control_fields_name_only_debian_packages(deb: Path) -> None:
    fields = dict(
        line.split(": ", 1) for line in out("dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture",
                                              "Depends", "Recommends").splitlines()
    )
    assert fields["Package"] == "vfplugin"
    assert fields["Version"] == VERSION
    assert fields["Architecture"] == "all"
    depends = {d.strip().split(" ")[0] for d in fields["Depends"].split(",")}
    assert RUNTIME_DEPENDENCIES <= depends
    assert depends - RUNTIME_DEPENDENCIES <= {"python3:any", "python3"}, depends
    recommends = {d.strip() for d in fields["Recommends"].split(",")}
    assert recommends == {"libvirt-daemon-system", "openvswitch-switch", "pciutils"}
    require_tool("apt-cache")
    for name in sorted({d.split(":")[0] for d in depends} | recommends):
        shown = run("apt-cache", "show", "--no-all-versions", name)
        assert shown.returncode == 0 and f"Package: {name}" in shown.stdout, f"{name} is not a Debian package"


def test_deb_conffiles_are_the_configuration_and_the_hook_shim(deb: Path, tmp_path: Path) -> None:
    out("dpkg-deb", "-e", str(deb), str(tmp_path / "control"))
    assert set((tmp_path / "control" / "conffiles").read_text().split()) == CONFFILES


def test_deb_maintainer_scripts_make_ledger_dir_reload_libvirt_and_purge(deb: Path, tmp_path: Path) -> None:
    out("dpkg-deb", "-e", str(deb), str(tmp_path / "control"))
    preinst = (tmp_path / "control" / "preinst").read_text()
    postinst = (tmp_path / "control" / "postinst").read_text()
    postrm = (tmp_path / "control" / "postrm").read_text()
    # a hook written by `vfctl install-hook` is replaced on first installation, not asked about
    assert "grep -qx 'from vfplugin.hook import main'" in preinst
    assert "install -d -m 0700 /var/lib/vfplugin" in postinst
    assert "systemd-tmpfiles" in postinst and "--create vfplugin.conf" in postinst
    assert "/usr/libexec/vfplugin/reload-libvirt" in postinst
    # dh_installsystemd --no-start: installing must not run reconcile
    assert "deb-systemd-invoke" not in postinst
    purge = postrm.split("\npurge)", 1)[1].split(";;", 1)[0]
    assert "rm -rf /var/lib/vfplugin" in purge and "rm -rf /etc/vfplugin" in purge
    for script in ("preinst", "postinst", "postrm"):
        out("sh", "-n", str(tmp_path / "control" / script))


def test_deb_ships_the_files_of_the_checkout(deb_tree: Path) -> None:
    same = {
        "usr/libexec/vfplugin/front": "hooks/front",
        "usr/libexec/vfplugin/qemu-hook": "hooks/qemu",
        "usr/libexec/vfplugin/reload-libvirt": "packaging/reload-libvirt",
        "etc/libvirt/hooks/qemu.d/vfplugin": "packaging/libvirt-hook",
        "usr/libexec/vfplugin/network-hook": "hooks/network",
        "etc/libvirt/hooks/network.d/vfplugin": "packaging/network-hook",
        "lib/systemd/system/vfplugin-netports.service": "packaging/systemd/vfplugin-netports.service",
        "etc/vfplugin/vfplugin.yaml": "packaging/vfplugin.yaml",
        "lib/systemd/system/vfplugin-reconcile.service": "packaging/systemd/vfplugin-reconcile.service",
        "lib/systemd/system/vfplugind.service": "packaging/systemd/vfplugind.service",
        "lib/systemd/system/vfplugin-host.service": "packaging/systemd/vfplugin-host.service",
        "lib/systemd/system/vfplugin-metrics.service": "packaging/systemd/vfplugin-metrics.service",
        "lib/systemd/system/vfplugin-metrics.timer": "packaging/systemd/vfplugin-metrics.timer",
        "usr/lib/tmpfiles.d/vfplugin.conf": "packaging/tmpfiles.d/vfplugin.conf",
        "usr/share/bash-completion/completions/vfctl": "packaging/bash-completion/vfctl",
    }
    for installed, source in same.items():
        assert (deb_tree / installed).read_bytes() == (ROOT / source).read_bytes(), installed
    man = gzip.decompress((deb_tree / "usr/share/man/man8/vfctl.8.gz").read_bytes())
    assert man == (PACKAGING / "vfctl.8").read_bytes()
    assert (deb_tree / "usr/bin/vfctl").read_text().startswith("#!/usr/bin/python3\n")


# ------------------------------------------------------------------------------------------ .rpm


def rpm_query(rpm: Path, *args: str) -> list[str]:
    return out("rpm", "-qp", *args, str(rpm)).splitlines()


def rpm_listing(rpm: Path) -> dict[str, tuple[str, str]]:
    """path -> (permission string, owner)."""
    listing = {}
    for line in rpm_query(rpm, "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]"):
        perms, user, path = line.split(" ", 2)
        listing[path] = (perms, user)
    return listing


def test_rpm_file_list_is_the_expected_one(rpm: Path) -> None:
    version = out("/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])").strip()
    sitelib = f"/usr/lib/python{version}/site-packages"
    listed = set(rpm_query(rpm, "-l"))
    modules = {p for p in listed if p.startswith(sitelib + "/vfplugin/") and p.endswith(".py")}
    assert {p.removeprefix(sitelib + "/") for p in modules} == library_modules()
    dist_info = f"{sitelib}/vfplugin-{VERSION}.dist-info"
    expected = (
        set(RPM_FILES)
        | modules
        | {f"{sitelib}/vfplugin", f"{sitelib}/vfplugin/commands", dist_info, "/usr/libexec/vfplugin",
           "/etc/vfplugin", "/etc/libvirt/hooks/qemu.d", "/etc/libvirt/hooks/network.d",
           "/usr/lib/systemd/system/libvirtd.service.d", "/usr/lib/systemd/system/virtqemud.service.d",
           f"/usr/share/doc/vfplugin-{VERSION}", f"/usr/share/doc/vfplugin-{VERSION}/README.md",
           f"/usr/share/doc/vfplugin-{VERSION}/packaging.md"}
        | {f"{dist_info}/{n}" for n in ("INSTALLER", "METADATA", "WHEEL", "entry_points.txt",
                                        "top_level.txt")}
    )
    compiled = {p for p in listed if "/__pycache__" in p}  # Fedora's brp-python-bytecompile adds these
    assert listed - compiled == expected


def test_rpm_modes_config_files_and_ledger_directory(rpm: Path) -> None:
    modes = rpm_listing(rpm)
    for path, expected in RPM_FILES.items():
        perms, user = modes[path]
        assert mode(perms) == expected, f"{path}: {perms}"
        assert user == "root"
    assert modes["/var/lib/vfplugin"][0].startswith("d")
    assert set(rpm_query(rpm, "-c")) == CONFFILES
    noreplace = rpm_query(rpm, "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]")
    assert {line.split(" ", 1)[1] for line in noreplace if "n" in line.split(" ", 1)[0]} == CONFFILES


def test_rpm_requires_fedora_names_and_nothing_unexpected(rpm: Path) -> None:
    requires = {line.strip() for line in rpm_query(rpm, "-R")}
    assert FEDORA_DEPENDENCIES <= requires
    assert "/usr/bin/python3" in requires  # the shebangs of vfctl and the hook
    generated = re.compile(
        r"rpmlib\(.*\).*|/bin/sh|config\(vfplugin\) = .*|python\(abi\) = 3\.\d+"
        r"|python3\.\d+dist\((libvirt-python|lxml|pyroute2|pyyaml)\)"
    )
    others = requires - FEDORA_DEPENDENCIES - {"/usr/bin/python3"}
    unexpected = {r for r in others if not generated.fullmatch(r)}
    assert unexpected == set()
    header = dict(line.split("=", 1) for line in rpm_query(rpm, "--qf", "name=%{NAME}\nversion=%{VERSION}\n"
                                                                          "arch=%{ARCH}\n"))
    assert header == {"name": "vfplugin", "version": VERSION, "arch": "noarch"}
    assert set(rpm_query(rpm, "--recommends")) == {"libvirt-daemon-driver-qemu", "openvswitch", "pciutils"}


def test_rpm_scriptlets_enable_the_unit_and_reload_libvirt_on_first_install(rpm: Path) -> None:
    scripts = "\n".join(rpm_query(rpm, "--scripts"))
    pre = scripts.split("preinstall scriptlet", 1)[1].split("postinstall scriptlet", 1)[0]
    assert "grep -qx 'from vfplugin.hook import main'" in pre
    post = scripts.split("postinstall scriptlet", 1)[1].split("preuninstall scriptlet", 1)[0]
    assert "preset vfplugin-reconcile.service" in post
    assert "/usr/libexec/vfplugin/reload-libvirt" in post
    assert "disable --now vfplugin-reconcile.service" in scripts.split("preuninstall scriptlet", 1)[1]
    assert "try-restart vfplugin-reconcile.service" in scripts.split("postuninstall scriptlet", 1)[1]


def test_spec_fallback_version_is_the_package_version() -> None:
    spec = (PACKAGING / "rpm" / "vfplugin.spec").read_text()
    assert f"%{{!?vf_version:%global vf_version {VERSION}}}" in spec
    assert "BuildArch:      noarch" in spec


def test_both_packages_install_the_same_files(deb_listing: dict[str, str], rpm: Path) -> None:
    def normal(paths: set[str]) -> set[str]:
        names = set()
        for p in paths:
            p = re.sub(r"^/usr/lib/python3(\.\d+)?/(dist|site)-packages/", "PY/", p)
            p = re.sub(r"^(/usr)?/lib/systemd/system/", "UNIT/", p)
            p = re.sub(r"^/usr/share/doc/vfplugin(-[^/]*)?(/|$)", "DOC/", p)
            if p.startswith(("PY/vfplugin-", "DOC/")) or "__pycache__" in p:
                continue  # packaging metadata and docs differ by design
            names.add(p.removesuffix(".gz"))
        return names

    deb_files = normal({p for p, perms in deb_listing.items() if not perms.startswith("d")})
    rpm_files = normal({p for p, (perms, _) in rpm_listing(rpm).items() if not perms.startswith("d")})
    assert deb_files == rpm_files


# ------------------------------------------------------------------------------------------ lintian, rpmlint

RPMLINT_CONFIG = PACKAGING / "rpm" / "rpmlint.toml"


def findings(output: str, levels: str) -> list[str]:
    """The lines of a lintian or rpmlint report at these levels (``E: ...``/``W: ...``)."""
    return [line for line in output.splitlines() if re.search(rf"(^|: )[{levels}]: ", line)]


def test_deb_passes_lintian(deb: Path) -> None:
    require_tool("lintian")
    done = run("lintian", "-I", "--pedantic", "--fail-on", "error,warning", str(deb))
    assert findings(done.stdout, "EW") == [] and done.returncode == 0, done.stdout + done.stderr


def test_rpm_passes_rpmlint_with_only_the_filters_it_gives_reasons_for(rpm: Path) -> None:
    require_tool("rpmlint")
    done = run("rpmlint", "-c", str(RPMLINT_CONFIG), str(rpm))
    assert findings(done.stdout, "EW") == [], done.stdout
    assert " 0 errors, 0 warnings" in done.stdout, done.stdout + done.stderr


def test_every_rpmlint_filter_says_why() -> None:
    lines = RPMLINT_CONFIG.read_text().splitlines()
    filters = [i for i, line in enumerate(lines) if re.match(r"\s+'vfplugin", line)]
    assert filters, "no filters found"
    for i in filters:
        above = lines[i - 1].strip()
        assert above.startswith("#") or re.match(r"'vfplugin", above), f"filter without a reason: {lines[i]}"


# ------------------------------------------------------------------------------------------ man page


def rendered_man_page() -> str:
    require_tool("man", "groff")
    env = {**os.environ, "LC_ALL": "C", "MANWIDTH": "200", "MAN_KEEP_FORMATTING": ""}
    text = out("man", "-l", str(PACKAGING / "vfctl.8"), env=env)
    return re.sub(r".\x08", "", text)  # overstrike bold/underline, if the pager formatting survived


def test_man_page_renders_without_groff_warnings() -> None:
    require_tool("groff")
    done = run("groff", "-man", "-ww", "-z", str(PACKAGING / "vfctl.8"))
    assert (done.returncode, done.stderr) == (0, "")
    assert rendered_man_page().startswith("VFCTL(8)")


def test_man_page_documents_every_command_and_its_options() -> None:
    text = rendered_man_page()
    assert "GLOBAL OPTIONS" in text and "COMMANDS" in text
    global_part = text.split("GLOBAL OPTIONS", 1)[1].split("\nCOMMANDS", 1)[0]
    sections = re.split(r"\n   (?=[a-z])", text.split("\nCOMMANDS", 1)[1].split("\nTHE HOOK", 1)[0])
    by_command = {tuple(s.split(" [", 1)[0].split(" (", 1)[0].split()[:2]): s for s in sections if s.strip()}
    for words, parser in commands().items():
        if not words:
            missing = {o for o in options(parser) if o not in global_part}
        else:
            section = next((s for key, s in by_command.items() if key[: len(words)] == words), None)
            assert section is not None, f"vfctl {' '.join(words)} has no section in vfctl(8)"
            missing = {o for o in options(parser) if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])",
                                                                    section)}
        assert missing == set(), f"vfctl {' '.join(words)}: options not in vfctl(8): {sorted(missing)}"
    assert set(COMMANDS) <= {key[0] for key in by_command}


# ------------------------------------------------------------------------------------------ completion


def complete(*lines: str) -> list[list[str]]:
    """What `vfctl <TAB>` offers for each command line (the cursor at its end)."""
    require_tool("bash")
    main = Path("/usr/share/bash-completion/bash_completion")
    require(main.is_file(), "bash-completion is not installed (./run-tests installs it)")
    script = [f"source {main}", f"source {PACKAGING / 'bash-completion' / 'vfctl'}"]
    for line in lines:
        script += [
            f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}",
            "read -ra COMP_WORDS <<<\"$COMP_LINE\"; [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')",
            "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _vfctl",
            "echo \"${COMPREPLY[*]}\"",
        ]
    result = out("bash", "--norc", "--noprofile", "-c", "\n".join(script))
    return [line.split() for line in result.splitlines()]


def test_completion_offers_every_command() -> None:
    offered, = complete("vfctl ")
    assert sorted(offered) == sorted(COMMANDS)
    assert complete("vfctl -c qemu:///system re")[0] == ["rewrite", "release", "reconcile"]


def test_completion_offers_every_option_of_every_command() -> None:
    parsers = commands()
    lines = ["vfctl -" if not words else f"vfctl {' '.join(words)} -" for words in parsers]
    for words, offered in zip(parsers, complete(*lines)):
        missing = options(parsers[words]) - set(offered)
        assert missing == set(), f"vfctl {' '.join(words)} -<TAB> misses {sorted(missing)}"
    for words in parsers:
        subcommands = {w[-1] for w in parsers if w[:-1] == words and w}
        if words and subcommands:
            assert subcommands <= set(complete(f"vfctl {' '.join(words)} ")[0])


def test_bash_completion_loads_vfctl_from_where_the_deb_installs_it(deb_tree: Path) -> None:
    require_tool("bash")
    main = Path("/usr/share/bash-completion/bash_completion")
    require(main.is_file(), "bash-completion is not installed (./run-tests installs it)")
    # bash-completion loads completions on first use from $XDG_DATA_DIRS/bash-completion/completions/<cmd>
    script = f"source {main}; _completion_loader vfctl; complete -p vfctl; shopt -s extdebug; declare -F _vfctl"
    env = {**os.environ, "XDG_DATA_DIRS": str(deb_tree / "usr/share"), "BASH_COMPLETION_USER_DIR": "/nonexistent"}
    registered, defined = out("bash", "--norc", "--noprofile", "-c", script, env=env).splitlines()
    assert registered == "complete -F _vfctl vfctl"
    assert defined.split(" ", 2)[2] == str(deb_tree / "usr/share/bash-completion/completions/vfctl")


def test_completion_values_for_options() -> None:
    trust, files = complete("vfctl attach web1 --trust ", f"vfctl define {PACKAGING}/rpm/")
    assert trust == ["on", "off"]
    assert files == []  # only *.xml files are offered; packaging/rpm has none


# ------------------------------------------------------------------------------------------ config


def default_config_text() -> str:
    return (PACKAGING / "vfplugin.yaml").read_text()


def test_default_config_parses_to_the_defaults() -> None:
    assert parse(yaml.safe_load(default_config_text())) == Config()


def test_default_config_sets_and_explains_every_key() -> None:
    lines = default_config_text().splitlines()
    for key in _KEYS:
        at = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), None)
        assert at is not None, f"{key} is not set in packaging/vfplugin.yaml"
        assert lines[at - 1].startswith("#"), f"{key} has no comment above it"


def test_default_config_examples_parse_when_uncommented() -> None:
    examples: dict[str, object] = {}
    block: list[str] = []
    for line in default_config_text().splitlines() + [""]:
        starts = re.match(r"# (\w+):", line)
        if (starts and starts.group(1) in _KEYS) or (block and line.startswith("#   ")):
            block.append(line[2:])
        elif block:
            examples.update(yaml.safe_load("\n".join(block)))
            block = []
    assert set(examples) >= {"sriov_nics", "ovs_offload_nics", "networks", "pools"}
    config = parse(examples)
    assert config.pools and config.networks and config.managed_pfs


# ------------------------------------------------------------------------------------------ systemd


def test_systemd_unit_verifies(deb_tree: Path, tmp_path: Path) -> None:
    require_tool("systemd-analyze")
    # verify checks that ExecStart= exists: point it at the packaged vfctl, installed or not
    unit = (deb_tree / "lib/systemd/system/vfplugin-reconcile.service").read_text()
    assert unit.count("ExecStart=/usr/bin/vfctl ") == 1
    copy = tmp_path / "vfplugin-reconcile.service"
    copy.write_text(unit.replace("ExecStart=/usr/bin/vfctl ", f"ExecStart={deb_tree}/usr/bin/vfctl "))
    done = run("systemd-analyze", "verify", "--man=no", str(copy))
    assert (done.returncode, done.stderr.strip()) == (0, "")


def test_systemd_unit_runs_reconcile_after_libvirt(deb_tree: Path) -> None:
    unit = (deb_tree / "lib/systemd/system/vfplugin-reconcile.service").read_text()
    settings = {tuple(line.split("=", 1)) for line in unit.splitlines() if "=" in line and line[0] != "#"}
    assert ("Type", "oneshot") in settings
    assert ("ExecStart", "/usr/bin/vfctl reconcile") in settings
    assert ("After", "libvirtd.service virtqemud.service") in settings
    assert ("PartOf", "libvirtd.service virtqemud.service") in settings
    assert ("RemainAfterExit", "yes") in settings  # without it PartOf= never restarts a finished oneshot
    assert ("WantedBy", "multi-user.target") in settings
    for daemon in ("libvirtd", "virtqemud"):
        dropin = (deb_tree / f"lib/systemd/system/{daemon}.service.d/vfplugin.conf").read_text()
        assert "Wants=vfplugin-reconcile.service" in dropin.splitlines()


def test_agent_unit_runs_vfplugind_after_libvirt_restarts_it_and_is_pulled_in_by_the_daemons(
    deb_tree: Path, tmp_path: Path
) -> None:
    unit = (deb_tree / "lib/systemd/system/vfplugind.service").read_text()
    settings = {tuple(line.split("=", 1)) for line in unit.splitlines() if "=" in line and line[0] != "#"}
    assert ("ExecStart", "/usr/bin/vfplugind") in settings
    assert ("After", "libvirtd.service virtqemud.service") in settings
    assert ("Restart", "on-failure") in settings
    assert ("WantedBy", "multi-user.target") in settings
    for daemon in ("libvirtd", "virtqemud"):
        dropin = (deb_tree / f"lib/systemd/system/{daemon}.service.d/vfplugin.conf").read_text()
        assert "Wants=vfplugind.service" in dropin.splitlines()
    require_tool("systemd-analyze")
    copy = tmp_path / "vfplugind.service"
    copy.write_text(unit.replace("ExecStart=/usr/bin/vfplugind", f"ExecStart={deb_tree}/usr/bin/vfplugind"))
    done = run("systemd-analyze", "verify", "--man=no", str(copy))
    assert (done.returncode, done.stderr.strip()) == (0, "")
    assert (deb_tree / "usr/bin/vfplugind").read_text().startswith("#!/usr/bin/python3\n")


def test_tmpfiles_entry_makes_a_root_only_ledger_directory(tmp_path: Path) -> None:
    require_tool("systemd-tmpfiles")
    conf = PACKAGING / "tmpfiles.d" / "vfplugin.conf"
    out("systemd-tmpfiles", "--create", f"--root={tmp_path}", str(conf))
    ledger_dir = tmp_path / "var/lib/vfplugin"
    assert ledger_dir.is_dir()
    assert ledger_dir.stat().st_mode & 0o7777 == 0o700


# ------------------------------------------------------------------------------------------ hook shim


def shim_pointing_at(tmp_path: Path, front: Path) -> Path:
    """packaging/libvirt-hook with another front directory (it hard-codes /usr/libexec/vfplugin)."""
    text = (PACKAGING / "libvirt-hook").read_text()
    assert text.count("vfplugin_libexec=/usr/libexec/vfplugin\n") == 1
    shim = tmp_path / "vfplugin"
    shim.write_text(text.replace("vfplugin_libexec=/usr/libexec/vfplugin\n", f"vfplugin_libexec={front.parent}\n"))
    shim.chmod(0o755)
    return shim


def test_hook_shim_passes_argv_stdin_stdout_and_status_through(tmp_path: Path) -> None:
    require(Path("/usr/bin/python3").exists(), "/usr/bin/python3 is missing")
    hook = tmp_path / "qemu-hook"  # next to the front, as in /usr/libexec/vfplugin
    hook.write_text("import sys\nprint(sys.argv[1:], sys.stdin.read(), sys.flags.isolated)\nsys.exit(3)\n")
    shutil.copy2(ROOT / "hooks" / "front", tmp_path / "front")
    shim = shim_pointing_at(tmp_path, tmp_path / "front")
    libvirt_env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin"}
    done = run(str(shim), "web1", "migrate", "begin", "-", input="<domain><hostdev/></domain>\n", env=libvirt_env)
    assert done.returncode == 3
    assert done.stdout == "['web1', 'migrate', 'begin', '-'] <domain><hostdev/></domain>\n 1\n"


def test_hook_shim_left_after_removal_lets_every_domain_start(tmp_path: Path) -> None:
    shim = shim_pointing_at(tmp_path, tmp_path / "removed" / "front")
    for operation in ("prepare", "reconnect"):
        done = run(str(shim), "web1", operation, "begin", "-", input="<domain/>")
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_packaging_scripts_are_valid_shell() -> None:
    for script in ("build", "libvirt-hook", "reload-libvirt", "test-upgrade"):
        path = PACKAGING / script
        assert os.access(path, os.X_OK), f"packaging/{script} is not executable"
        shell = "bash" if path.read_text().startswith("#!/bin/bash") else "sh"
        out(shell, "-n", str(path))
