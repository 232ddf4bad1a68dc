"""PLACEHOLDER: to be written (see the issue)."""

HELP = "(not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("start")
