"""The ``studio webui`` / ``python launch.py`` flags, in a module that imports nothing heavy (no gradio), so the
``studio`` CLI can list them in ``--help`` without starting the UI.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
AUTH_ENV = "STUDIO_AUTH"  # USER:PASS, so a password need not appear in the shell history or `ps`
LANGS = ("en", "zh")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--host", default=os.environ.get("STUDIO_HOST", DEFAULT_HOST),
                   help=f"address to bind (default {DEFAULT_HOST}: this machine only); any other address needs --auth "
                        "(or --insecure-no-login)")
    p.add_argument("--port", type=int, default=int(os.environ.get("STUDIO_PORT", DEFAULT_PORT)), help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (password-protected)")
    p.add_argument("--auth", default=os.environ.get(AUTH_ENV, ""), metavar="USER:PASS",
                   help=f"require this login (or set {AUTH_ENV}=USER:PASS); the password needs at least 8 characters")
    p.add_argument("--lang", choices=LANGS, default=os.environ.get("STUDIO_LANG", "en"),
                   help="UI language (switchable in the page)")
    p.add_argument("--runs-dir", default="", help="where run folders live (default $STUDIO_HOME/runs)")
    p.add_argument("--allow-code", action="store_true",
                   help="let the page run code: custom metric files from $STUDIO_HOME/metrics/ and model.trust_remote_code "
                        "(off by default; the CLI always may)")
    p.add_argument("--allow-path", action="append", default=[], metavar="DIR",
                   help="let the page read and write under DIR too (repeatable); by default only $STUDIO_HOME, the "
                        "studio's assets/ and presets/, and ./data")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also accept requests addressed to this host name (repeatable), e.g. a reverse proxy's name; "
                        "requests to any other name are refused (DNS rebinding)")
    p.add_argument("--insecure-no-login", action="store_true",
                   help="with a non-loopback --host, start without a login anyway (anyone who can reach the port "
                        "can train, read and write under the allowed folders)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="studio webui", description="Open the Tuning Studio in the browser.")
    return add_arguments(p).parse_args(argv)
