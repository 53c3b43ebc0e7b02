"""The studio's front door: one ASGI layer, outermost from the first request on, that

- refuses (403, no CORS headers) a request whose ``Host`` is not an address the studio serves, or whose ``Origin`` (when
  sent; ``null`` too) is not one: a page on another site cannot drive the studio through DNS rebinding or CORS;
- throttles failed logins per client address (429 with ``Retry-After`` once ``LOGIN_FAILURES`` fail within a minute);
- caps the files in one upload request (gradio itself takes 1000).

``installer(guard)`` is a lifespan for ``launch(app_kwargs={"lifespan": ...})``: Starlette builds its middleware stack
before the lifespan runs, and uvicorn runs the lifespan before it listens, so wrapping the built stack there puts this
layer outside gradio's CORS middleware (which answers preflights by itself) before any request can arrive.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from studio.ui import limits

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::")
LOGIN_PATHS = ("/login", "/login/")


def normalize(name: str | None) -> str:
    """A host name or address in one spelling: lower case, no brackets, zone or trailing dot; IPs in canonical form."""
    name = (name or "").strip().lower().strip("[]").split("%")[0].rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def machine_names() -> set[str]:
    """This machine's host names and interface addresses (what a browser may use to reach a studio bound to 0.0.0.0)."""
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        import psutil  # installed with accelerate; without it, the addresses the host name resolves to

        names |= {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                  if a.family in (socket.AF_INET, socket.AF_INET6)}
    except ImportError:
        pass
    for name in list(names):
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            continue
    return {normalize(n) for n in names if n}


class HostPolicy:
    """Which names a request may be addressed to.

    ``served``: loopback names and the bound host (and, for 0.0.0.0/::, the machine's names and addresses). A browser
    on one of them sends ``Host`` with the port it used (an ssh tunnel may change it), and an ``Origin`` from one of them
    must have that same port: another local web server (another port) is another site.
    ``proxies``: ``--allow-host`` names and the share link's host; a proxy in front may use any port.
    """

    def __init__(self, bind_host: str = "127.0.0.1", allow_hosts: tuple[str, ...] | list[str] = ()):
        self.served = {normalize(n) for n in LOOPBACK_NAMES}
        host = normalize(bind_host)
        if host in WILDCARDS:
            self.served |= machine_names()
        else:
            self.served.add(host)
        self.served -= {*WILDCARDS, ""}  # a browser sent to 0.0.0.0 reaches this machine: never a name to accept
        self.proxies = {normalize(n) for n in allow_hosts if normalize(n)}

    def add_proxy(self, url_or_name: str) -> None:
        """Accept requests addressed to this name too (the share link's host, once it exists)."""
        self.proxies.add(normalize(urlsplit(url_or_name).hostname if "//" in url_or_name else url_or_name))

    def refusal(self, host_header: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused (None when it is allowed)."""
        if not host_header:
            return "the request names no Host"
        try:
            parts = urlsplit("//" + host_header)
            host, port = normalize(parts.hostname), parts.port
        except ValueError:
            return f"Host {host_header!r} is not a host name"
        if host not in self.served and host not in self.proxies:
            return (f"Host {host_header!r} is not an address this studio serves (if the name is yours, e.g. a reverse "
                    f"proxy's, allow it with --allow-host {host})")
        return None if origin is None else self._origin_refusal(origin, port)

    def _origin_refusal(self, origin: str, host_port: int | None) -> str | None:
        try:
            parts = urlsplit(origin)
            name, port = normalize(parts.hostname), parts.port
        except ValueError:
            name, port, parts = "", None, None
        if not name or parts.scheme not in ("http", "https"):
            return f"Origin {origin!r} is not a site this studio serves"
        default = 443 if parts.scheme == "https" else 80
        if name in self.proxies or (name in self.served and (port or default) == (host_port or default)):
            return None
        return f"Origin {origin!r} is another site: only the studio's own pages may call it"


@dataclass
class LoginThrottle:
    """Failed logins per client address: after ``failures`` attempts without a success within ``window_s`` seconds,
    that address waits ``lockout_s``. An attempt counts from the moment it is admitted (so parallel guesses count too)
    and a success clears the address's record."""

    failures: int = limits.LOGIN_FAILURES
    window_s: float = limits.LOGIN_WINDOW_S
    lockout_s: float = limits.LOGIN_LOCKOUT_S
    clock: object = time.monotonic
    _attempts: dict = field(default_factory=dict)  # client -> list of attempt times
    _locked: dict = field(default_factory=dict)  # client -> locked until

    def admit(self, client: str) -> float:
        """0 to go ahead (the attempt is counted), else the seconds this client must wait."""
        now = self.clock()
        if self._locked.get(client, 0) > now:
            return self._locked[client] - now
        self._locked.pop(client, None)
        recent = [t for t in self._attempts.get(client, []) if now - t < self.window_s]
        if len(recent) >= self.failures:
            self._locked[client] = now + self.lockout_s
            self._attempts.pop(client, None)
            return self.lockout_s
        self._attempts[client] = recent + [now]
        if len(self._attempts) > 4096:  # many addresses (IPv6): forget the ones whose attempts are all old
            self._attempts = {c: ts for c, ts in self._attempts.items() if now - ts[-1] < self.window_s}
        return 0.0

    def succeeded(self, client: str) -> None:
        self._attempts.pop(client, None)


def boundary_of(content_type: str) -> bytes | None:
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    return match.group(1).encode("latin-1") if match else None


def count_parts(receive, boundary: bytes, limit: int):
    """``receive`` that raises starlette's MultiPartException (which gradio answers with 400 and its message) once the
    body holds more than ``limit`` parts. Counts delimiter lines; a chunk may split one, so a short tail carries over."""
    from starlette.formparsers import MultiPartException

    delimiter = b"--" + boundary
    state = {"seen": 0, "tail": b""}

    async def counted():
        message = await receive()
        if message.get("type") == "http.request":
            chunk = state["tail"] + message.get("body", b"")
            state["seen"] += chunk.count(delimiter)
            state["tail"] = chunk[-(len(delimiter) - 1):]
            if state["seen"] - 1 > limit:  # n parts have n delimiters plus the closing one
                raise MultiPartException(f"too many files in one upload: more than {limit} (the studio takes at most "
                                         f"{limit} per request)")
        return message

    return counted


class WebGuard:
    """The ASGI layer; ``inner`` is set when ``installer`` wraps the built middleware stack."""

    def __init__(self, policy: HostPolicy, throttle: LoginThrottle | None = None,
                 max_upload_parts: int = limits.MAX_FILES_PER_UPLOAD, say=None):
        self.policy, self.throttle, self.max_upload_parts = policy, throttle or LoginThrottle(), max_upload_parts
        self.inner = None
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._told: set[str] = set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.inner(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        why = self.policy.refusal(headers.get("host"), headers.get("origin"))
        if why:
            self._tell(why)
            return await respond(scope, send, 403, f"refused: {why}")
        if scope["type"] == "http" and scope["method"] == "POST":
            if scope["path"] in LOGIN_PATHS:
                return await self._login(scope, receive, send)
            boundary = boundary_of(headers.get("content-type", ""))
            if boundary and headers.get("content-type", "").lower().startswith("multipart/"):
                receive = count_parts(receive, boundary, self.max_upload_parts)
        await self.inner(scope, receive, send)

    async def _login(self, scope, receive, send) -> None:
        client = (scope.get("client") or ("unknown",))[0]
        wait = self.throttle.admit(client)
        if wait:
            seconds = math.ceil(wait)
            self._tell(f"too many failed logins from {client}")
            return await respond(scope, send, 429, f"too many failed logins from {client}: try again in {seconds} s",
                                 {"retry-after": str(seconds)})
        status = {}

        async def watched(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.inner(scope, receive, watched)
        if status.get("code") == 200:  # gradio answers a wrong password with 400
            self.throttle.succeeded(client)

    def _tell(self, why: str) -> None:
        """Say each kind of refusal once in the studio's log (a reverse proxy's name shows up here)."""
        if why not in self._told and len(self._told) < 100:
            self._told.add(why)
            self.say(f"[studio] refused a request: {why}")


async def respond(scope, send, status: int, text: str, headers: dict | None = None) -> None:
    """A plain-text answer with no CORS headers (or, for a websocket, a refusal before it opens)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": text[:120]})
        return
    body = text.encode("utf-8")
    raw = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def installer(guard: WebGuard):
    """A lifespan that puts ``guard`` outside the app's whole built middleware stack (see the module docstring)."""

    @asynccontextmanager
    async def install(app):
        stack = app.middleware_stack or app.build_middleware_stack()
        if stack is not guard:
            guard.inner = stack
            app.middleware_stack = guard
        yield

    return install
