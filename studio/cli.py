"""The ``studio`` command line: ``studio train|chat|webui|export|eval|...``; also ``python -m studio``.

Each sub-command lives in ``studio/commands/<name>.py`` with ``add_parser(subparsers)`` and ``run(args) -> int``; this file
only assembles them, so ``studio --help`` starts without importing torch.
"""

from __future__ import annotations

import argparse
import sys

from studio.commands import chat, data, eval as eval_cmd, export, serve, train, webui
from studio.paths import prepare_home

COMMANDS = (train, chat, webui, export, eval_cmd, data, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description="Tuning Studio: fine-tune small LLMs from the browser or the shell.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.own_process = argv is None  # a real `studio ...` process (not a call from Python): it may re-execute itself
    prepare_home()
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
