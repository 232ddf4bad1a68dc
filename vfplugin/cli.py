"""``vfctl``: the command line. Parses argv, dispatches to one module per command, turns errors into one line.

Each command lives in ``vfplugin/commands/<module>.py`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; those modules import their heavy dependencies (lxml, libvirt, pyroute2) inside ``run``,
so ``vfctl --help`` and the completion stay fast. A VfpluginError prints ``vfctl: <one line>`` and exits with
its code; anything else is a bug: one line on stderr, the traceback in the system log.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import VfpluginError
from .log import LOG, setup

# command -> module under vfplugin.commands (order is the order of `vfctl --help`)
COMMANDS = {
    "list": "list_vfs",
    "doctor": "doctor",
    "pf": "pf",
    "host": "host_state",
    "explain": "explain",
    "rewrite": "rewrite",
    "define": "define",
    "start": "start",
    "attach": "attach",
    "detach": "detach",
    "history": "history",
    "metrics": "metrics",
    "release": "release",
    "reconcile": "reconcile",
    "network": "network",
    "install-hook": "install_hook",
}


_GLOBAL_WITH_VALUE = ("--config", "-c", "--connect")


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (skipping global options and their values), if it is one of COMMANDS."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) one that imports just that command's module: importing all of them
    costs a third of `vfctl list --json` on a thousand VFs (bench/bench_list.py)."""
    parser = argparse.ArgumentParser(
        prog="vfctl",
        description="SR-IOV virtual functions for libvirt/QEMU domains: inventory, allocation, ledger.",
    )
    parser.add_argument("--version", action="version", version=f"vfctl {__version__}")
    parser.add_argument(
        "--config", metavar="PATH",
        help="configuration file (default: $VFPLUGIN_CONFIG, else /etc/vfplugin/vfplugin.yaml)",
    )
    parser.add_argument(
        "-c", "--connect", metavar="URI", default="qemu:///system", help="libvirt URI (default: qemu:///system)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name)  # still a valid choice; never parsed in this run
            continue
        module = importlib.import_module(f"vfplugin.commands.{module_name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(chosen_command(argv)).parse_args(argv)
    setup("vfctl", operation=args.command, verbose=args.verbose)
    try:
        return int(args.run(args) or 0)
    except VfpluginError as e:
        LOG.error("%s", e)
        print(f"vfctl: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vfctl list | head`
        return 0
    except Exception as e:  # a bug: keep the traceback out of the user's terminal, but never lose it
        LOG.exception("internal error in vfctl %s", args.command)
        print(f"vfctl: internal error: {type(e).__name__}: {e} (traceback in the system log)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
