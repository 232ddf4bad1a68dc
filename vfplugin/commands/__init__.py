"""One module per ``vfctl`` command (see vfplugin/cli.py), plus the few helpers they share."""

from __future__ import annotations

import argparse

from ..config import Config, load


def config(args: argparse.Namespace) -> Config:
    """The configuration named by ``--config``, ``$VFPLUGIN_CONFIG`` or the default path."""
    return load(getattr(args, "config", None))
