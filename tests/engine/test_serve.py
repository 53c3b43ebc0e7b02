"""``studio serve`` (issue 17, item 2): the OpenAI-compatible server over a tiny random Llama with a LoRA, on loopback, driven
by the real ``openai`` client (streaming and not) and by plain HTTP for every refusal: no key, a wrong key, a body over
the limit, no Content-Length, bad JSON, max_tokens over the bound, an unknown model, route or method, a full server.
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from studio.engine.access import FULL
from studio.engine.serve import protocol as P
from studio.engine.serve.server import load_served, make_server, served_ids

KEY = "sk-test-" + "x" * 16


# -- the protocol, no model ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, status, param", [
    ([], 400, None),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
    ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ({"model": "m", "messages": []}, 400, "messages"),
    ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}, 400,
     "messages"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}, 400, "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2.5}, 400, "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, 400, "temperature"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_p": 0}, 400, "top_p"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["a"] * 5}, 400, "stop"),
])
def test_bad_requests_are_named_in_openais_error_shape(body, status, param):
    with pytest.raises(P.ApiError) as info:
        P.parse_chat_request(body, ["m"], P.Limits(max_tokens=1024))
    err = info.value
    assert err.status == status and err.param == param
    assert set(err.body()["error"]) == {"message", "type", "param", "code"}


def test_good_request_defaults_and_parts():
    req = P.parse_chat_request({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                                                     {"type": "text", "text": "there"}]}],
        "stop": "END", "stream": True, "stream_options": {"include_usage": True}, "seed": 3}, ["m"], P.Limits())
    assert req.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    assert (req.max_tokens, req.temperature, req.stop, req.stream, req.include_usage) == (256, 1.0, ["END"], True, True)
    assert P.cut_at_stop("abcENDdef", ["END", "c"]) == ("ab", True) and P.cut_at_stop("abc", ["x"]) == ("abc", False)


def test_served_names():
    assert served_ids("default") == ["default"] and served_ids("/models/SmolLM") == ["SmolLM"]
    assert served_ids("default", "/runs/20250101-dpo/adapter") == ["20250101-dpo"]
    assert served_ids("default", "/exports/nova/gguf/model-q8_0.gguf") == ["model-q8_0"]


# -- a real server --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """The tiny Llama with larger random weights (so greedy answers are words, not a newline repeated) and a strong
    random LoRA (so the tuned and base answers differ), served on a free loopback port from a thread."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = tmp_path_factory.mktemp("serve")
    torch.manual_seed(5)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(tmp / "base")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp / "base")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(tmp / "my-run")
    served = load_served(str(tmp / "base"), str(tmp / "my-run"), access=FULL)
    srv = make_server(served, "127.0.0.1", 0, KEY, P.Limits(max_tokens=64, max_request_bytes=20_000, max_concurrency=2))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def raw(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Authorization": f"Bearer {KEY}", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def client(srv, key: str = KEY):
    from openai import OpenAI

    return OpenAI(base_url=srv.url, api_key=key, max_retries=0)


def test_openai_client_lists_models_and_completes(server):
    c = client(server)
    assert [m.id for m in c.models.list()] == ["my-run", "base"]
    msgs = [{"role": "user", "content": "Say hi."}]
    tuned = c.chat.completions.create(model="my-run", messages=msgs, max_tokens=6, temperature=0)
    base = c.chat.completions.create(model="base", messages=msgs, max_tokens=6, temperature=0)
    assert tuned.object == "chat.completion" and tuned.choices[0].message.role == "assistant"
    assert tuned.usage.prompt_tokens > 0 and 1 <= tuned.usage.completion_tokens <= 6
    assert tuned.choices[0].finish_reason in ("length", "stop")
    again = c.chat.completions.create(model="my-run", messages=msgs, max_tokens=6, temperature=0)
    assert again.choices[0].message.content == tuned.choices[0].message.content  # greedy
    # the adapter switched off is another model: its greedy tokens differ on this random LoRA
    assert base.choices[0].message.content != tuned.choices[0].message.content


def test_openai_client_streams_the_same_answer(server):
    c = client(server)
    msgs = [{"role": "user", "content": "Count."}]
    whole = c.chat.completions.create(model="my-run", messages=msgs, max_tokens=8, temperature=0)
    chunks = list(c.chat.completions.create(model="my-run", messages=msgs, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stop_strings_cut_streamed_and_whole_answers(server):
    c = client(server)
    msgs = [{"role": "user", "content": "Go on."}]
    full = c.chat.completions.create(model="base", messages=msgs, max_tokens=12, temperature=0).choices[0].message.content
    stop = full[3:5]
    assert stop
    cut = c.chat.completions.create(model="base", messages=msgs, max_tokens=12, temperature=0, stop=[stop])
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="base", messages=msgs, max_tokens=12, temperature=0, stop=stop, stream=True) if ch.choices)
    assert cut.choices[0].message.content == full[:full.find(stop)] == streamed
    assert cut.choices[0].finish_reason == "stop"


def test_errors_reach_the_openai_client_as_its_own_exceptions(server):
    import openai

    with pytest.raises(openai.AuthenticationError):
        client(server, "sk-wrong").models.list()
    with pytest.raises(openai.BadRequestError, match="from 1 to 64"):
        client(server).chat.completions.create(model="base", messages=[{"role": "user", "content": "x"}], max_tokens=65)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(server).chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


def test_plain_http_refusals(server):
    chat = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}).encode()
    status, headers, body = raw(server, "GET", "/v1/models", headers={"Authorization": ""})
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    assert raw(server, "POST", "/v1/chat/completions", chat, {"Authorization": "Bearer " + KEY[:-1]})[0] == 401
    assert raw(server, "POST", "/v1/chat/completions", chat, {"Authorization": KEY})[0] == 401  # no "Bearer"
    status, _, body = raw(server, "POST", "/v1/chat/completions", b"x" * 20_001)
    assert status == 413 and "20000 bytes" in json.loads(body)["error"]["message"]
    assert raw(server, "POST", "/v1/chat/completions", b"{not json")[0] == 400
    assert raw(server, "GET", "/v1/chat/completions")[0] == 405
    assert raw(server, "GET", "/v1/nothing")[0] == 404 and raw(server, "GET", "/")[0] == 404
    status, headers, body = raw(server, "POST", "/v1/chat/completions", chat, {"Origin": "http://evil.example"})
    assert status == 200 and json.loads(body)["object"] == "chat.completion"
    assert not any(h.startswith("access-control-") for h in headers)  # a web page cannot read the answer
    assert raw(server, "GET", "/health", headers={"Authorization": ""})[0] == 200


def test_no_content_length_is_refused(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Authorization", f"Bearer {KEY}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"0\r\n\r\n")
    assert conn.getresponse().status == 411
    conn.close()


def test_requests_beyond_the_concurrency_bound_get_429(server):
    held = [server.slots.acquire(blocking=False) for _ in range(2)]  # two requests in flight
    try:
        chat = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}).encode()
        status, _, body = raw(server, "POST", "/v1/chat/completions", chat)
        assert all(held) and status == 429 and json.loads(body)["error"]["code"] == "server_busy"
    finally:
        for _ in held:
            server.slots.release()
    assert raw(server, "POST", "/v1/chat/completions", chat)[0] == 200


def test_the_server_keeps_serving_after_a_client_leaves_mid_stream(server):
    """A client that closes the connection mid-stream leaves the server (and the model) ready for the next request."""
    import socket
    import time

    body = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x"}], "max_tokens": 64,
                       "stream": True, "temperature": 1.0}).encode()
    s = socket.create_connection(("127.0.0.1", server.server_address[1]))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert b"200" in s.recv(64)
    s.close()
    time.sleep(0.5)
    chat = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}).encode()
    assert raw(server, "POST", "/v1/chat/completions", chat)[0] == 200


def test_closing_a_stream_early_stops_the_generation(server):
    """What the server relies on when a client leaves or a stop string appears: the generation ends after the current
    token, before the model is handed to the next request (1,500 tokens would take seconds; closing takes one)."""
    chat = server.served["base"].chat
    counts: dict = {}
    gen = chat.stream([{"role": "user", "content": "x"}], temperature=1.0, max_new_tokens=1500, usage=counts)
    next(gen)
    gen.close()
    assert 1 <= counts["completion_tokens"] < 200 and not chat.lock.locked()
