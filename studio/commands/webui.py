"""``studio webui [--host H] [--port P] [--share] [--auth USER:PASS] [--lang en|zh]``: the same as ``python launch.py``."""

from __future__ import annotations


def add_parser(sub) -> None:
    from studio.ui.flags import add_arguments  # plain argparse, no gradio import

    p = sub.add_parser("webui", help="open the browser studio (same as python launch.py)")
    add_arguments(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from studio.ui.app import serve

    return int(serve(args) or 0)
