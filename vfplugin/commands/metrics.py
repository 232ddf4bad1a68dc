"""``vfctl metrics [--textfile DIR]``: this host's Prometheus metrics, on stdout or as DIR/vfplugin.prom.

``--textfile`` is for node_exporter's textfile collector: the file is written under a temporary name in DIR
and renamed over ``vfplugin.prom`` (atomic: the collector never reads half a file; the temporary name does
not end in ``.prom``, so the collector never reads it either). A figure that cannot be read is a series saying
so (vfplugin/metrics.py), never a failure: the status is 0 unless the configuration or DIR is unusable.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import config as load_config

HELP = "Prometheus metrics of this host: VF states, traffic per domain, journal counters, hook latency"
TEXTFILE = "vfplugin.prom"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--textfile", metavar="DIR",
        help=f"write DIR/{TEXTFILE} atomically (node_exporter --collector.textfile.directory) instead of stdout",
    )


def write_textfile(directory: str, content: str) -> str:
    """Write ``content`` to ``directory``/vfplugin.prom atomically (0644: node_exporter runs unprivileged)."""
    from ..errors import HostError

    target = os.path.join(directory, TEXTFILE)
    tmp = os.path.join(directory, f".{TEXTFILE}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, content.encode("utf-8"))
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise HostError(problem=f"cannot write {target}: {e.strerror}; create {directory} or pick another "
                        "--textfile directory") from None
    return target


def run(args: argparse.Namespace) -> int:
    from ..metrics import gather, text

    cfg = load_config(args)
    content = text(gather(cfg))
    if args.textfile:
        write_textfile(args.textfile, content)
    else:
        sys.stdout.write(content)
    return 0
