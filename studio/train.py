"""``python -m studio.train CONFIG.yaml [--set k=v ...] [--output-dir RUN] [--resume]``: the command the UI starts.

Identical to ``studio train``; kept as a module so a child process needs no console script on PATH.
"""

from __future__ import annotations

import argparse
import sys

from studio.commands import train as train_command
from studio.paths import prepare_home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.train", description=__doc__)
    train_command.configure(parser)
    args = parser.parse_args(argv)
    args.own_process = argv is None  # `python -m studio.train ...` itself: it may re-execute itself (studio/allocator.py)
    prepare_home()
    return train_command.run(args)


if __name__ == "__main__":
    sys.exit(main())
