"""Web attacks on a real ``python launch.py``, each sent as raw HTTP (or a real launch) and each expected to be refused:
DNS rebinding (foreign Host, with and without a login), foreign and ``null`` Origins, a foreign preflight, password
guessing, short passwords, a network-wide bind without a login, handlers listed as an API, out-of-range API arguments,
too many files in one upload. The session ends with ``attacks blocked N/N`` (tests/security/conftest.py).

Run: ``pytest tests/security`` (about a minute on 2 CPU cores: three launches of the studio and two refused ones).
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest

pytestmark = pytest.mark.attack

REBIND_HOST = "rebind.attacker.example"
CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods")


def assert_refused(reply, status: int = 403, says: str = "refused") -> None:
    assert reply.status == status, reply
    assert says in reply.body, reply.body
    assert not [h for h in CORS_HEADERS if h in reply.headers], reply.headers  # nothing a foreign page could read


# -- Host and Origin ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/config", "/gradio_api/info", "/gradio_api/call/list_runs"])
def test_rebinding_host_is_refused_without_login(studio, path):
    assert studio.request("GET", path).status in (200, 405)  # the same request, addressed to the studio, answers
    assert_refused(studio.request("GET", path, host=f"{REBIND_HOST}:{studio.port}"))


def test_rebinding_host_is_refused_with_login(studio_with_login):
    user, password = studio_with_login.auth
    host = f"{REBIND_HOST}:{studio_with_login.port}"
    assert_refused(studio_with_login.login(user, password, host=host))  # even the right password, from that page
    assert_refused(studio_with_login.request("GET", "/gradio_api/info", host=host))


@pytest.mark.parametrize("origin", ["http://evil.example", f"http://{REBIND_HOST}", "null", "http://localhost:1"])
def test_foreign_origin_is_refused(studio, origin):
    """A page on another site (or a sandboxed/local-file page: Origin null, or another local port) calling the API."""
    body = '{"data": []}'
    reply = studio.request("POST", "/gradio_api/call/list_runs", {"Origin": origin, "Content-Type": "application/json"}, body)
    assert_refused(reply)
    own = studio.request("POST", "/gradio_api/call/list_runs",
                         {"Origin": f"http://127.0.0.1:{studio.port}", "Content-Type": "application/json"}, body)
    assert own.status == 200, own  # the studio's own page still works


def test_preflight_from_foreign_origin_is_refused(studio):
    """Gradio's CORS layer answers preflights itself: the guard must sit outside it."""
    headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type"}
    assert_refused(studio.request("OPTIONS", "/gradio_api/call/start_run", headers))
    assert_refused(studio.request("OPTIONS", "/gradio_api/call/start_run", headers, host=f"{REBIND_HOST}:{studio.port}"))


@pytest.mark.parametrize("host", ["", "0.0.0.0:{port}", "localhost:{port}@evil.example", "127.0.0.1:notaport"])
def test_empty_or_malformed_host_is_refused(studio, host):
    assert_refused(studio.request("GET", "/gradio_api/info", host=host.format(port=studio.port)))


# -- logins ------------------------------------------------------------------------------------------------------------------

def test_forty_rapid_failed_logins_are_not_all_tried(studio_with_login):
    def guess(i: int) -> int:
        return studio_with_login.login("alice", f"guess-{i}").status

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(guess, range(40)))
    took = time.monotonic() - start
    tried = codes.count(400)
    print(f"40 failed logins in {took:.2f} s: {tried} tried, {codes.count(429)} refused with 429")
    assert tried <= 5 and codes.count(429) == 40 - tried, codes
    user, password = studio_with_login.auth
    locked = studio_with_login.login(user, password)  # even the right password waits out the lockout
    assert locked.status == 429 and int(locked.headers["retry-after"]) > 0, locked


def test_short_password_is_refused(launch_refused):
    rc, out = launch_refused("--auth", "bob:x")
    assert rc == 2 and "at least 8" in out and "Tuning Studio at" not in out, out
    rc, out = launch_refused(env={"STUDIO_AUTH": "bob:1234567"})  # the env var too
    assert rc == 2 and "STUDIO_AUTH" in out, out


def test_network_bind_without_login_is_refused(launch_refused):
    rc, out = launch_refused("--host", "0.0.0.0")
    assert rc == 2 and "--auth" in out and "--insecure-no-login" in out and "Tuning Studio at" not in out, out


# -- the API surface ---------------------------------------------------------------------------------------------------------

DOCUMENTED = {"/list_presets", "/start_run", "/stop_run", "/resume_run", "/cancel_run", "/run_status", "/list_runs",
              "/chat_compare", "/merge", "/export", "/evaluate", "/arena_round", "/arena_vote", "/arena_stats",
              "/arena_train_dpo"}


def test_only_documented_endpoints_are_listed(studio):
    info = studio.request("GET", "/gradio_api/info").json()
    assert set(info["named_endpoints"]) == DOCUMENTED and not info["unnamed_endpoints"], sorted(info["named_endpoints"])
    everything = studio.request("GET", "/gradio_api/info?all_endpoints=true").json()
    assert set(everything["named_endpoints"]) == DOCUMENTED, sorted(everything["named_endpoints"])


@pytest.mark.parametrize("endpoint, kwargs, named", [
    ("chat_compare", {"prompt": "hi", "max_new_tokens": 1_000_000}, "max_new_tokens=1000000 is out of range"),
    ("chat_compare", {"prompt": "hi", "temperature": -1}, "temperature=-1 is out of range"),
    ("chat_compare", {"prompt": "hi", "top_p": "lots"}, "top_p='lots' is not a number"),
    ("evaluate", {"batch_size": 100_000}, "batch_size=100000 is out of range"),
    ("evaluate", {"max_new_tokens": 0}, "max_new_tokens=0 is out of range"),
    ("evaluate", {"changed_rows": 10**9}, "changed_rows=1000000000 is out of range"),
    ("arena_round", {"prompt": "hi", "models": ["base", "base:default"], "max_new_tokens": 10**6},
     "max_new_tokens=1000000 is out of range"),
])
def test_out_of_range_api_arguments_are_refused(studio, endpoint, kwargs, named):
    events = studio.call_api(endpoint, **kwargs)
    assert "event: error" in events and named in events and "allowed" in events, events


def test_too_many_files_in_one_upload_are_refused(studio):
    boundary = "studioattack"
    parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="f{i}.txt"\r\n'
                    f"Content-Type: text/plain\r\n\r\nrow {i}\r\n" for i in range(50))
    body = parts + f"--{boundary}--\r\n"
    reply = studio.request("POST", "/gradio_api/upload", {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
    assert reply.status == 400 and "too many files in one upload" in reply.body, reply
    one = parts.split(f"--{boundary}\r\n")[1]
    ok = studio.request("POST", "/gradio_api/upload", {"Content-Type": f"multipart/form-data; boundary={boundary}"},
                        f"--{boundary}\r\n{one}--{boundary}--\r\n")
    assert ok.status == 200 and ok.json()[0].endswith("f0.txt"), ok
