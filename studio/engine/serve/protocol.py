"""The OpenAI chat-completions protocol as plain data: request checking with the server's bounds, response and chunk
shapes, and errors in OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``). Pure standard library;
``server.py`` does the HTTP and the model.

Accepted request fields: ``model``, ``messages`` (roles system/developer/user/assistant; content text or a list of text
parts), ``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``top_p``, ``stream``, ``stream_options.include_usage``,
``stop`` (a string or up to 4), ``n`` (1 only). Other fields (``seed``, ``user``, penalties, ...) are accepted and ignored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may be in flight (generating or waiting for the model)."""
    max_tokens: int = 1024        # largest max_tokens accepted
    default_max_tokens: int = 256  # when the request names none
    max_request_bytes: int = 1_000_000
    max_concurrency: int = 4
    max_messages: int = 256


class ApiError(Exception):
    """An error the client gets in OpenAI's shape, with its HTTP status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stream: bool = False
    include_usage: bool = False
    stop: list[str] = field(default_factory=list)


def parse_chat_request(body, served: list[str], limits: Limits) -> ChatRequest:
    """Check a decoded JSON body; ApiError (400/404) naming the field otherwise."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, f"'model' is required: one of {', '.join(served)}", param="model")
    if model not in served:
        raise ApiError(404, f"The model '{model}' does not exist on this server (served: {', '.join(served)})",
                       param="model", code="model_not_found")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = limits.default_max_tokens if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= limits.max_tokens:
        raise ApiError(400, f"max_tokens={max_tokens!r}: must be a whole number from 1 to {limits.max_tokens} (this "
                            "server's limit; `studio serve --max-tokens-limit N` raises it)", param="max_tokens")
    n = body.get("n", 1)
    if n not in (1, None):
        raise ApiError(400, f"n={n!r}: this server returns one choice per request (n=1)", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, "'stream' must be true or false", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object", param="stream_options")
    return ChatRequest(model=model, messages=parse_messages(body.get("messages"), limits), max_tokens=max_tokens,
                       temperature=_number(body, "temperature", 1.0, 0.0, 2.0), top_p=_number(body, "top_p", 1.0, 0.0, 1.0,
                                                                                              open_low=True),
                       stream=bool(stream), include_usage=bool(options.get("include_usage")), stop=_stop(body.get("stop")))


def parse_messages(messages, limits: Limits) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content}", param="messages")
    if len(messages) > limits.max_messages:
        raise ApiError(400, f"'messages': at most {limits.max_messages} messages", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(400, f"{where}: needs a 'role' of {', '.join(ROLES)}", param=where)
        out.append({"role": ROLES[m["role"]], "content": _content(m.get("content"), where)})
    if out[-1]["role"] == "assistant":
        raise ApiError(400, "the last message must be from the user (or system), not the assistant", param="messages")
    return out


def _content(content, where: str) -> str:
    """Text, or OpenAI's list of parts of which only text parts are accepted."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"{where}.content: only text parts are supported", param=f"{where}.content")
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where}.content: must be text or a list of text parts", param=f"{where}.content")


def _number(body: dict, key: str, default: float, lo: float, hi: float, open_low: bool = False) -> float:
    value = body.get(key)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > hi or value < lo or (open_low and value <= lo):
        low = f"above {lo:g}" if open_low else f"{lo:g}"
        raise ApiError(400, f"{key}={value!r}: must be a number from {low} to {hi:g}", param=key)
    return float(value)


def _stop(stop) -> list[str]:
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or len(items) > 4 or not all(isinstance(s, str) and s for s in items):
        raise ApiError(400, "'stop': a non-empty string or a list of at most 4", param="stop")
    return items


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """(text up to the first stop string, True) when one occurs, else (text, False)."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


# -- responses ---------------------------------------------------------------------------------------------------------


def models_list(served: list[str], created: int) -> dict:
    return {"object": "list", "data": [model_card(m, created) for m in served]}


def model_card(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "tuning-studio"}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(req_id: str, model: str, text: str, finish: str, use: dict) -> dict:
    return {"id": req_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish}], "usage": use}


def chunk(req_id: str, model: str, delta: dict | None, finish: str | None = None, use: dict | None = None) -> dict:
    """One streamed chunk; ``delta`` None makes the usage-only chunk (no choices) that include_usage asks for."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    out = {"id": req_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": choices}
    if use is not None:
        out["usage"] = use
    return out
