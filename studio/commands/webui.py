"""``studio webui``: the same as ``python launch.py``."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("webui", help="open the browser studio (same as python launch.py)", add_help=False)
    p.add_argument("rest", nargs="*")
    p.set_defaults(run=run)


def run(args) -> int:
    import sys

    from studio.ui.app import main

    return int(main(sys.argv[sys.argv.index("webui") + 1:] if "webui" in sys.argv else args.rest) or 0)
