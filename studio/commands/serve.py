"""``studio serve [--model M] [--adapter A] [--host H] [--port P] [--api-key K]``: an OpenAI-compatible HTTP server.

    studio serve --adapter runs/RUN                       # http://127.0.0.1:8000/v1, a key is generated and printed
    studio serve --adapter exports/nova/gguf/model-q8_0.gguf --port 8001
    STUDIO_API_KEY=sk-mine studio serve --model default     # the key from the environment (kept out of `ps`)

Serves a base model, an adapter or run (also as ``base``: the adapter switched off), a merged folder or a GGUF file at
``/v1/models`` and ``/v1/chat/completions`` (streaming too). Loopback by default; every request needs the API key;
``max_tokens``, requests in flight and request size are bounded (``--max-tokens-limit``, ``--max-concurrency``,
``--max-request-bytes``). The last line printed before serving is ``serving URL`` (the Chat tab reads it from the log
and ``--ready-file``). Ctrl-C or SIGTERM stops it. A bad model or a taken port prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys

KEY_ENV = "STUDIO_API_KEY"


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server for a base model, adapter, run, merged folder or GGUF",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="base model: 'default', a local folder or a hub id")
    p.add_argument("--adapter", default="", help="a run folder, a LoRA adapter, a merged model folder or a .gguf file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default="", help=f"the key clients must send (default: ${KEY_ENV}, else a generated one, "
                   "printed)")
    p.add_argument("--max-tokens-limit", type=int, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--max-concurrency", type=int, default=4, help="requests in flight at once (more get HTTP 429)")
    p.add_argument("--max-request-bytes", type=int, default=1_000_000, help="largest request body (more get HTTP 413)")
    p.add_argument("--ready-file", default="", help="write {url, models, pid} here as JSON once serving")
    p.set_defaults(run=run)


def run(args) -> int:
    from studio.engine.models import skip_bitsandbytes

    skip_bitsandbytes()  # serving never quantizes
    from studio.engine.access import FULL
    from studio.engine.models import ModelLoadError
    from studio.engine.serve.protocol import Limits
    from studio.engine.serve.server import load_served, make_server, new_api_key

    problem = _check_args(args)
    if problem:
        print(f"studio serve: {problem}", file=sys.stderr)
        return 2
    key, generated = args.api_key or os.environ.get(KEY_ENV, ""), False
    if not key:
        key, generated = new_api_key(), True
    limits = Limits(max_tokens=args.max_tokens_limit, default_max_tokens=min(256, args.max_tokens_limit),
                    max_request_bytes=args.max_request_bytes, max_concurrency=args.max_concurrency)
    try:
        served = load_served(args.model, args.adapter, access=FULL)
        server = make_server(served, args.host, args.port, key, limits)
    except (ModelLoadError, OSError) as exc:  # OSError: the port is taken, the address is not ours
        print(f"studio serve: {exc}", file=sys.stderr)
        return 2
    _announce(server, served, key if generated else "", args)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("studio serve: stopped", file=sys.stderr)
    return 0


def _check_args(args) -> str:
    for name, lo, hi in (("max_tokens_limit", 1, 32768), ("max_concurrency", 1, 256),
                         ("max_request_bytes", 1024, 100_000_000), ("port", 0, 65535)):
        value = getattr(args, name)
        if not lo <= value <= hi:
            return f"--{name.replace('_', '-')}={value}: allowed {lo} to {hi}"
    return ""


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _announce(server, served, generated_key: str, args) -> None:
    names = ", ".join(s.id for s in served)
    print(f"models: {names}", flush=True)
    if generated_key:
        print(f"API key (generated; pass --api-key or ${KEY_ENV} to choose one): {generated_key}", flush=True)
    else:
        print("API key: the one given (--api-key or $" + KEY_ENV + ")", flush=True)
    if not _loopback(args.host):
        print(f"studio serve: listening on {args.host}, reachable from other machines; anyone with the key can use it",
              file=sys.stderr, flush=True)
    if args.ready_file:
        from studio.engine.jobs.child import write_json

        write_json(args.ready_file, {"url": server.url, "models": [s.id for s in served], "pid": os.getpid()})
    print(f"serving {server.url}", flush=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
