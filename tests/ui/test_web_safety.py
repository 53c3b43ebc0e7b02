"""The web layer's safety rules without a server: which Host/Origin names the guard accepts, the login throttle on a
fake clock, the upload part counter across chunk borders, the declared ranges (sliders and API read the same table), the
launch rules (short password, network bind without login, the share login file) and that every browser event is private.
The same rules against a real launched studio: tests/security/test_attacks.py.

Run: ``pytest tests/ui/test_web_safety.py`` (a few seconds: one page build).
"""

from __future__ import annotations

import asyncio
import stat

import pytest

from studio.ui import api, app, guard, limits
from studio.ui.context import AppContext


def _args(*argv):
    return app.parse_args(list(argv))


# -- Host and Origin ---------------------------------------------------------------------------------------------------------

def test_loopback_policy_accepts_only_loopback_names():
    policy = guard.HostPolicy("127.0.0.1")
    for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "LOCALHOST", "localhost.:8080"):
        assert policy.refusal(host, None) is None, host
    for host in ("rebind.attacker.example:7860", "0.0.0.0:7860", "192.0.2.99", "", None, "[::1"):
        why = policy.refusal(host, None)
        assert why and "Host" in why, host


def test_origin_must_be_the_page_the_request_came_to():
    policy = guard.HostPolicy("127.0.0.1", ["studio.example.org"])
    assert policy.refusal("127.0.0.1:7860", "http://127.0.0.1:7860") is None
    assert policy.refusal("localhost:8080", "http://localhost:8080") is None  # an ssh tunnel moves both ports alike
    assert policy.refusal("127.0.0.1:7860", "https://studio.example.org") is None  # the named proxy, any port
    assert policy.refusal("studio.example.org", "https://studio.example.org:8443") is None
    for origin in ("http://localhost:3000", "null", "", "file://", "http://evil.example", "http://127.0.0.1:7861"):
        assert policy.refusal("127.0.0.1:7860", origin), origin


def test_wildcard_bind_accepts_this_machines_names_but_never_the_wildcard():
    policy = guard.HostPolicy("0.0.0.0")
    names = guard.machine_names()
    assert names and names <= policy.served
    assert policy.refusal("0.0.0.0:7860", None) and policy.refusal("[::]:7860", None)
    assert policy.refusal(f"{sorted(names)[0]}:7860", None) is None
    assert policy.refusal("rebind.attacker.example", None)
    policy.add_proxy("https://abc123.gradio.live")
    assert policy.refusal("abc123.gradio.live", "https://abc123.gradio.live") is None


# -- login throttle and upload cap -------------------------------------------------------------------------------------------

def test_login_throttle_locks_out_after_five_attempts_and_recovers():
    now = [1000.0]
    throttle = guard.LoginThrottle(failures=5, window_s=60, lockout_s=60, clock=lambda: now[0])
    assert [throttle.admit("10.0.0.1") for _ in range(5)] == [0.0] * 5
    assert throttle.admit("10.0.0.1") == 60  # the 6th waits
    assert throttle.admit("10.0.0.2") == 0.0  # another address is not affected
    now[0] += 30
    assert throttle.admit("10.0.0.1") == pytest.approx(30)
    now[0] += 31
    assert throttle.admit("10.0.0.1") == 0.0  # lockout over
    throttle.succeeded("10.0.0.1")
    assert all(throttle.admit("10.0.0.1") == 0.0 for _ in range(5))  # a success clears the record


def test_upload_part_counter_sees_delimiters_split_across_chunks():
    from starlette.formparsers import MultiPartException

    boundary = b"XyZ"
    body = b"".join(b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a\"\r\n\r\nx\r\n" for _ in range(4))
    body += b"--XyZ--\r\n"

    def run(limit: int, chunk: int) -> int:
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        messages = iter([{"type": "http.request", "body": p, "more_body": True} for p in pieces])

        async def receive():
            return next(messages)

        counted = guard.count_parts(receive, boundary, limit)

        async def drain():
            for _ in pieces:
                await counted()
            return len(pieces)

        return asyncio.run(drain())

    assert run(limit=4, chunk=3) > 0  # exactly at the limit: fine, even with a delimiter split over chunks
    with pytest.raises(MultiPartException, match="too many files in one upload: more than 3"):
        run(limit=3, chunk=3)
    assert guard.boundary_of('multipart/form-data; boundary="a b"') == b"a b" and guard.boundary_of("text/plain") is None


# -- ranges ------------------------------------------------------------------------------------------------------------------

def test_ranges_name_the_argument_and_its_range():
    limits.check(max_new_tokens=2048, batch_size=1, temperature=0.0, top_p=1.0, changed_rows=0)
    for kwargs, says in (({"max_new_tokens": 2049}, "max_new_tokens=2049 is out of range (allowed 1 to 2048)"),
                         ({"batch_size": 2.5}, "batch_size=2.5 must be a whole number"),
                         ({"temperature": float("nan")}, "temperature=nan is out of range"),
                         ({"top_p": True}, "top_p=True is not a number"),
                         ({"batch_size": "8"}, "batch_size='8' is not a number")):
        with pytest.raises(limits.OutOfRange, match=says.replace("(", r"\(").replace(")", r"\)")):
            limits.check(**kwargs)
    with pytest.raises(api.gr.Error, match="max_new_tokens=0.*; batch_size=999"):
        api.bounded(max_new_tokens=0, batch_size=999)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    ctx = AppContext.create(runs_root=tmp_path_factory.mktemp("web_safety") / "runs", start_jobs=False)
    return app.build(ctx)


def test_sliders_and_api_read_the_same_ranges(refs):
    for slider, name in ((refs.chat.max_new_tokens, "max_new_tokens"), (refs.chat.temperature, "temperature"),
                         (refs.chat.top_p, "top_p"), (refs.evaluate.max_new, "max_new_tokens"),
                         (refs.evaluate.batch, "batch_size"), (refs.evaluate.temperature, "temperature")):
        rng = limits.RANGES[name]
        assert (slider.minimum, slider.maximum, slider.step) == (rng.minimum, rng.maximum, rng.step), name


def test_every_browser_event_is_private_and_only_the_api_is_public(refs):
    public = {fn.name for fn in refs.demo.fns.values() if fn.api_visibility == "public"}
    assert public == set(api.ENDPOINTS)
    others = [fn.name for fn in refs.demo.fns.values() if fn.name not in api.ENDPOINTS]
    assert len(others) > 50 and all(fn.api_visibility == "private" for fn in refs.demo.fns.values()
                                    if fn.name not in api.ENDPOINTS), others
    assert refs.demo.delete_cache == limits.UPLOAD_CACHE


# -- launch rules ------------------------------------------------------------------------------------------------------------

def test_short_passwords_and_open_binds_are_refused(capsys):
    with pytest.raises(app.LaunchRefused, match="the password has 1 characters; use at least 8"):
        app.resolve_auth(_args("--auth", "bob:x"))
    with pytest.raises(app.LaunchRefused, match=r"--auth USER:PASS .*--insecure-no-login"):
        app.resolve_auth(_args("--host", "192.0.2.2"))
    assert app.resolve_auth(_args("--host", "192.0.2.2", "--auth", "bob:eight-chars")) == ("bob", "eight-chars")
    assert app.serve(_args("--auth", "bob:short")) == 2
    assert "refusing to start" in capsys.readouterr().err


def test_share_login_is_written_for_the_user_only(studio_home, capsys):
    target = studio_home / "share-login.txt"
    target.write_text("old\n")
    target.chmod(0o644)  # a file left readable by others must not stay so
    user, password = app.resolve_auth(_args("--share"))
    assert target.read_text() == f"user: {user}\npassword: {password}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert str(target) in capsys.readouterr().out
