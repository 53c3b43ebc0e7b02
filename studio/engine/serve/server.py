"""The HTTP side of ``studio serve``: an OpenAI-compatible server (``/v1/models``, ``/v1/chat/completions`` with and without
streaming) over one loaded ``ChatModel``, on the standard library's threading HTTP server.

    from studio.engine.serve.server import load_served, make_server
    server = make_server(load_served("default", "runs/RUN", access=FULL), "127.0.0.1", 8000, api_key="sk-...")
    server.serve_forever()

Safe by default: it binds what the caller gives (the CLI's default is 127.0.0.1), every ``/v1`` request needs
``Authorization: Bearer <key>`` (compared in constant time), a body over ``Limits.max_request_bytes`` is refused (413)
before it is read, a request past ``Limits.max_concurrency`` in flight gets 429 at once, ``max_tokens`` is bounded, a
client that is slow to send its request is dropped after ``READ_TIMEOUT_S``, and no CORS header is ever sent (a web page
cannot read the answers). Generation is one at a time (the model's own lock); streaming stops generating as soon as the
client goes away or a stop string appears. Errors use OpenAI's shape (``protocol.ApiError``).
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from studio.engine.access import Access
from studio.engine.serve import protocol as P

READ_TIMEOUT_S = 30.0  # a connection that sends nothing for this long is closed


@dataclass
class Served:
    id: str            # the name clients pass as "model"
    chat: object       # studio.engine.generate.ChatModel
    use_adapter: bool  # the tuned side of ``chat`` (False: its base, adapter switched off)


def served_ids(model: str, adapter: str = "") -> list[str]:
    """The model names a server offers: the tuned model (run, adapter, merged folder or GGUF) and, for an adapter, its
    base as ``base`` (the same copy in memory, adapter switched off); without an adapter the base model's name."""
    if not adapter:
        return [Path(model).name if Path(model).is_absolute() else (model or "default")]
    p = Path(adapter)
    name = p.stem if p.suffix == ".gguf" else (p.parent.name if p.name in ("adapter", "model", "merged") else p.name)
    return [name or "tuned"]


def load_served(model: str, adapter: str = "", *, access: Access) -> list[Served]:
    """Load the model (checked against ``access``) and name what is served."""
    from studio.engine.generate import open_chat

    chat = open_chat(model or "default", adapter or None, access=access)
    ids = served_ids(chat.model_name if not adapter else model, adapter)
    served = [Served(ids[0], chat, bool(adapter))]
    if adapter and not chat.tuned_separate:
        served.append(Served("base", chat, False))
    return served


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, served: list[Served], api_key: str, limits: P.Limits = P.Limits()):
        if not api_key:
            raise ValueError("an API key is required")
        super().__init__(address, Handler)
        self.served = {s.id: s for s in served}
        self.api_key = api_key.encode()
        self.limits = limits
        self.slots = threading.BoundedSemaphore(limits.max_concurrency)
        self.created = int(time.time())

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1"


def make_server(served: list[Served], host: str, port: int, api_key: str, limits: P.Limits = P.Limits()) -> OpenAIServer:
    return OpenAIServer((host, int(port)), served, api_key, limits)


def new_api_key() -> str:
    return "sk-studio-" + secrets.token_urlsafe(24)


class Handler(BaseHTTPRequestHandler):
    server: OpenAIServer
    server_version = "TuningStudio"
    timeout = READ_TIMEOUT_S

    # -- routing ------------------------------------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802 (the standard library's names)
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self):  # noqa: N802
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/health" and method == "GET":
                return self._json(200, {"status": "ok"})
            if not path.startswith("/v1/"):
                raise P.ApiError(404, f"no such route: {method} {path or '/'} (this server has /v1/models and "
                                 "/v1/chat/completions)", code="unknown_route")
            self._authorize()
            if path == "/v1/models":
                self._only(method, "GET")
                return self._json(200, P.models_list(list(self.server.served), self.server.created))
            if path.startswith("/v1/models/"):
                self._only(method, "GET")
                name = path[len("/v1/models/"):]
                if name not in self.server.served:
                    raise P.ApiError(404, f"The model '{name}' does not exist", code="model_not_found")
                return self._json(200, P.model_card(name, self.server.created))
            if path == "/v1/chat/completions":
                self._only(method, "POST")
                return self._chat()
            raise P.ApiError(404, f"no such route: {method} {path}", code="unknown_route")
        except P.ApiError as err:
            self._json(err.status, err.body())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _only(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise P.ApiError(405, f"{method} is not allowed here (use {allowed})", code="method_not_allowed")

    def _authorize(self) -> None:
        given = self.headers.get("Authorization", "")
        token = given[7:].strip().encode() if given[:7].lower() == "bearer " else b""
        if not hmac.compare_digest(token, self.server.api_key):
            raise P.ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>' with the key "
                             "`studio serve` printed", code="invalid_api_key")

    def _body(self) -> dict:
        limit = self.server.limits.max_request_bytes
        if self.headers.get("Transfer-Encoding"):
            raise P.ApiError(411, "send the body with a Content-Length (chunked uploads are not accepted)")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise P.ApiError(411, "a Content-Length header is required") from None
        if length > limit or length < 0:
            raise P.ApiError(413, f"request body of {length} bytes is over this server's limit of {limit} bytes",
                             code="request_too_large")
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise P.ApiError(400, f"the body is not valid JSON: {exc}") from None

    # -- chat ---------------------------------------------------------------------------------------------------------

    def _chat(self) -> None:
        body = self._body()
        req = P.parse_chat_request(body, list(self.server.served), self.server.limits)
        if not self.server.slots.acquire(blocking=False):
            raise P.ApiError(429, f"the server is busy: {self.server.limits.max_concurrency} requests are in flight; "
                             "retry shortly", "rate_limit_error", code="server_busy")
        try:
            served = self.server.served[req.model]
            counts: dict = {}
            gen = served.chat.stream(req.messages, use_adapter=served.use_adapter, temperature=req.temperature,
                                     top_p=req.top_p, max_new_tokens=req.max_tokens, usage=counts)
            req_id = "chatcmpl-" + secrets.token_hex(12)
            if req.stream:
                self._stream(req, req_id, gen, counts)
            else:
                self._complete(req, req_id, gen, counts)
        finally:
            self.server.slots.release()

    def _complete(self, req: P.ChatRequest, req_id: str, gen, counts: dict) -> None:
        text, stopped = "", False
        try:
            for text in gen:
                text, stopped = P.cut_at_stop(text, req.stop)
                if stopped:
                    break
        except Exception as exc:  # a generation failure is the server's, not the client's
            raise P.ApiError(500, f"generation failed: {exc}", "server_error") from None
        finally:
            gen.close()
        use = P.usage(counts.get("prompt_tokens", 0), counts.get("completion_tokens", 0))
        self._json(200, P.completion(req_id, req.model, text, _finish(stopped, counts, req), use))

    def _stream(self, req: P.ChatRequest, req_id: str, gen, counts: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self._event(P.chunk(req_id, req.model, {"role": "assistant", "content": ""}))
        sent, stopped = "", False
        try:
            for text in gen:
                text, stopped = P.cut_at_stop(text, req.stop)
                # hold back a tail that could still grow into a stop string
                safe = len(text) - max((len(s) - 1 for s in req.stop), default=0) if not stopped else len(text)
                if safe > len(sent):
                    self._event(P.chunk(req_id, req.model, {"content": text[len(sent):safe]}))
                    sent = text[:safe]
                if stopped:
                    break
            if len(text) > len(sent):
                self._event(P.chunk(req_id, req.model, {"content": text[len(sent):]}))
            use = P.usage(counts.get("prompt_tokens", 0), counts.get("completion_tokens", 0))
            self._event(P.chunk(req_id, req.model, {}, _finish(stopped, counts, req)))
            if req.include_usage:
                self._event(P.chunk(req_id, req.model, None, use=use))
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away: closing the generator below stops the generation
        except Exception as exc:  # headers are sent: the error goes into the stream, in OpenAI's shape
            self._event(P.ApiError(500, f"generation failed: {exc}", "server_error").body())
        finally:
            gen.close()
        self.close_connection = True

    # -- writing ------------------------------------------------------------------------------------------------------

    def _event(self, data: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, data: dict) -> None:
        raw = json.dumps(data, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if status in (401,):
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(raw)


def _finish(stopped: bool, counts: dict, req: P.ChatRequest) -> str:
    return "length" if not stopped and counts.get("completion_tokens", 0) >= req.max_tokens else "stop"
