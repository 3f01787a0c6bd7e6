"""Login limits, session ends, crafted credentials and file modes of the
web layer's authentication (issue 19, items 4-7): through the real PAM stack
with throwaway accounts, over a real server where concurrency matters."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from appliance.errors import HostError
from appliance.host import HostPaths
from appliance.web.app import make_app
from appliance.web.auth import (
    COOKIE,
    CSRF_HEADER,
    Auth,
    AuthSettings,
    LoginLimiter,
    client_key,
)

from .conftest import Account, login, serve_in_thread

VM = {"name": "vm1", "template": "testguest", "memory_mib": 64}


@pytest.fixture
def non_admin() -> Iterator[Account]:
    """A local account with a password, in no admin group."""
    acct = Account(f"applout{secrets.token_hex(3)}", secrets.token_urlsafe(12), "")
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", acct.name], check=True)
    subprocess.run(["chpasswd"], input=f"{acct.name}:{acct.password}", text=True, check=True)
    try:
        yield acct
    finally:
        subprocess.run(["userdel", acct.name], check=False)


class CountingPam:
    """The real PAM check, counted."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, user: str, password: str) -> bool:
        with self.lock:
            self.calls += 1
        return bool(self.real(user, password))  # type: ignore[operator]


# -- item 4: login limits ------------------------------------------------------------


def test_parallel_wrong_passwords_reach_pam_no_more_than_the_limit(
        web_paths: HostPaths, settings: AuthSettings, account: Account) -> None:
    app = make_app(web_paths, settings, secure_cookie=False)
    pam = CountingPam(app.state.auth.authenticate)
    app.state.auth.authenticate = pam
    tries = 20
    start = threading.Barrier(tries)
    codes: list[int] = []

    with serve_in_thread(app) as url:
        def guess(i: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                start.wait()
                r = c.post("/api/login", json={"username": account.name,
                                               "password": f"wrong{i}"})
                codes.append(r.status_code)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(tries)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pam.calls == settings.max_failures, codes
        assert sorted(codes) == [401] * 3 + [429] * (tries - 3)
        # the right password from this address waits too; PAM was not asked
        with httpx.Client(base_url=url) as c:
            r = c.post("/api/login", json={"username": account.name,
                                           "password": account.password})
        assert r.status_code == 429 and pam.calls == 3


def test_the_failure_tables_stay_bounded_and_forget_old_failures() -> None:
    limiter = LoginLimiter.from_settings(AuthSettings(max_failures=3, failure_window=0.5,
                                                      max_tracked=1000))
    started = time.monotonic()
    for i in range(100_000):
        wait, _ = limiter.reserve(f"client:10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
                                  f"user:u{i}")
        assert wait == 0
    assert len(limiter.clients) <= 1000 and len(limiter.users) <= 1000
    assert time.monotonic() - started < 20
    # the newest failures are the ones kept: a client that just failed 3 times waits
    for _ in range(3):
        limiter.reserve("client:192.0.2.1", "user:x")
    assert limiter.reserve("client:192.0.2.1", "user:y")[0] > 0
    time.sleep(0.6)  # past the window: everything is forgotten, not only kept small
    assert limiter.reserve("client:192.0.2.1", "user:y")[0] == 0
    assert len(limiter.clients) == 1 and len(limiter.users) == 1


def test_unknown_and_non_admin_users_take_as_long_as_a_wrong_password(
        web_paths: HostPaths, settings: AuthSettings, account: Account,
        non_admin: Account) -> None:
    s = replace(settings, max_user_failures=100, min_failure_delay=2.0, failure_jitter=1.0)
    auth = Auth(web_paths, s)
    n = 5

    async def timed(user: str, password: str, client: str) -> float:
        t = time.monotonic()
        with pytest.raises(HostError, match="login failed") as e:
            await auth.login(user, password, client)
        assert e.value.http_status == 401
        return time.monotonic() - t

    async def measure() -> dict[str, list[float]]:
        kinds = {"wrong password": (account.name, "wrong"),
                 "not an admin": (non_admin.name, non_admin.password),
                 "unknown": ("nosuchuser", "x")}
        jobs = {kind: [timed(user, pw, f"192.0.2.{10 * k + i}") for i in range(n)]
                for k, (kind, (user, pw)) in enumerate(kinds.items())}
        return {kind: list(await asyncio.gather(*js)) for kind, js in jobs.items()}

    times = asyncio.run(measure())
    medians = {kind: statistics.median(ts) for kind, ts in times.items()}
    # every kind of failure takes at least the configured time ...
    for kind, m in medians.items():
        assert m >= s.min_failure_delay, (kind, medians)
    # ... and about the same (before: an unknown user 50x faster than a wrong password;
    # the bound is loose for a busy machine, where PAM's own check may take longer)
    assert max(medians.values()) / min(medians.values()) < 2, medians


def test_an_ipv6_64_is_one_client_and_a_user_is_limited_from_anywhere(
        web_paths: HostPaths, settings: AuthSettings) -> None:
    s = replace(settings, max_failures=3, max_user_failures=4, min_failure_delay=0,
                failure_jitter=0)
    pam = CountingPam(lambda user, password: False)
    auth = Auth(web_paths, s, authenticate=pam)

    def attempt(user: str, client: str) -> int:
        try:
            asyncio.run(auth.login(user, "x", client))
        except HostError as e:
            return e.http_status
        return 200

    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:1:2:3")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7")
    for i in range(3):
        assert attempt(f"nouser{i}", "2001:db8:1:2::1") == 401
    assert attempt("nouser9", "2001:db8:1:2:abcd::99") == 429  # same /64
    assert attempt("nouser9", "2001:db8:1:3::1") == 401  # the next /64
    # one user name, from four addresses, then a fifth: the user's limit
    for i in range(4):
        assert attempt("root", f"198.51.100.{i}") == 401
    assert attempt("root", "198.51.100.200") == 429
    assert pam.calls == 4  # only root is an admin; the unknown users never reach PAM


def test_login_with_the_right_password_after_a_few_failures(
        client: TestClient, account: Account) -> None:
    for _ in range(2):
        bad = client.post("/api/login", json={"username": account.name, "password": "no"})
        assert bad.status_code == 401
    login(client, account)
    assert client.get("/api/version").status_code == 200


# -- item 5: sessions ---------------------------------------------------------------


def test_a_ticket_is_refused_after_logout_and_after_a_restart(
        client: TestClient, account: Account, web_paths: HostPaths,
        settings: AuthSettings) -> None:
    csrf = login(client, account)
    ticket = client.cookies[COOKIE]
    assert client.post("/api/logout", headers={CSRF_HEADER: csrf}).status_code == 200
    client.cookies.clear()
    r = client.get("/api/version", cookies={COOKIE: ticket})
    assert r.status_code == 401, r.text
    assert (web_paths.priv / "revoked.json").stat().st_mode & 0o777 == 0o600
    # the page's logout button too
    login(client, account)
    ticket = client.cookies[COOKIE]
    page = client.get("/dashboard").text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    r = client.get("/dashboard", cookies={COOKIE: ticket}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # revoked stays revoked when the server starts again
    with TestClient(make_app(web_paths, settings), base_url="https://testserver") as again:
        assert again.get("/api/version", cookies={COOKIE: ticket}).status_code == 401


def ticket_and_token(c: TestClient, admin: Account) -> tuple[str, dict[str, str]]:
    """Log in, make an API token; the client keeps no cookie afterwards.
    Returns the ticket and the token's Authorization header."""
    csrf = login(c, admin)
    ticket = c.cookies[COOKIE]
    made = c.post("/api/access/tokens", json={"name": "ci"},
                  headers={CSRF_HEADER: csrf}).json()["data"]
    c.cookies.clear()
    return ticket, {"Authorization": f"ApplianceToken {made['tokenid']}={made['secret']}"}


def test_leaving_the_admin_group_ends_tickets_and_tokens(
        web_paths: HostPaths, settings: AuthSettings, other_admin: Account) -> None:
    s = replace(settings, account_cache=1.0)
    with TestClient(make_app(web_paths, s), base_url="https://testserver") as c:
        ticket, token = ticket_and_token(c, other_admin)
        assert c.get("/api/version", cookies={COOKIE: ticket}).status_code == 200
        assert c.get("/api/version", headers=token).status_code == 200
        subprocess.run(["gpasswd", "-d", other_admin.name, other_admin.group], check=True,
                       capture_output=True)
        time.sleep(s.account_cache + 0.1)
        assert c.get("/api/version", cookies={COOKIE: ticket}).status_code == 401
        assert c.get("/api/version", headers=token).status_code == 401
        assert c.get("/dashboard", cookies={COOKIE: ticket},
                     follow_redirects=False).status_code == 303
        subprocess.run(["gpasswd", "-a", other_admin.name, other_admin.group], check=True,
                       capture_output=True)
        time.sleep(s.account_cache + 0.1)
        assert c.get("/api/version", headers=token).status_code == 200


def test_a_password_change_ends_tickets_but_not_tokens(
        web_paths: HostPaths, settings: AuthSettings, other_admin: Account) -> None:
    s = replace(settings, account_cache=0)
    with TestClient(make_app(web_paths, s), base_url="https://testserver") as c:
        ticket, token = ticket_and_token(c, other_admin)
        assert c.get("/api/version", cookies={COOKIE: ticket}).status_code == 200
        new = secrets.token_urlsafe(12)
        subprocess.run(["chpasswd"], input=f"{other_admin.name}:{new}", text=True, check=True)
        assert c.get("/api/version", cookies={COOKIE: ticket}).status_code == 401
        assert c.get("/api/version", headers=token).status_code == 200
        # a locked account (passwd -l) changes the password hash too
        login(c, replace(other_admin, password=new))
        ticket = c.cookies[COOKIE]
        subprocess.run(["usermod", "-L", other_admin.name], check=True)
        c.cookies.clear()
        assert c.get("/api/version", cookies={COOKIE: ticket}).status_code == 401


def test_an_expired_token_is_refused(session: TestClient) -> None:
    past = session.post("/api/access/tokens", json={"name": "old", "expire": 1000})
    assert past.status_code == 400 and "expire" in past.json()["error"]
    text = session.post("/api/access/tokens", json={"name": "old", "expire": "soon"})
    assert text.status_code == 400
    expire = int(time.time()) + 2
    made = session.post("/api/access/tokens", json={"name": "short", "expire": expire})
    assert made.status_code == 200, made.text
    data = made.json()["data"]
    token = {"Authorization": f"ApplianceToken {data['tokenid']}={data['secret']}"}
    fresh = TestClient(session.app, base_url="https://testserver")
    assert fresh.get("/api/version", headers=token).status_code == 200
    listed = session.get("/api/access/tokens").json()["data"]
    assert listed[0]["expire"] == expire
    time.sleep(max(expire - time.time(), 0) + 0.2)
    assert fresh.get("/api/version", headers=token).status_code == 401


def test_a_tokens_last_use_is_recorded(session: TestClient, web_paths: HostPaths) -> None:
    data = session.post("/api/access/tokens", json={"name": "ci"}).json()["data"]
    token = {"Authorization": f"ApplianceToken {data['tokenid']}={data['secret']}"}
    assert session.get("/api/access/tokens").json()["data"][0]["last_used"] is None
    fresh = TestClient(session.app, base_url="https://testserver")
    before = time.time()
    assert fresh.get("/api/version", headers=token).status_code == 200
    listed = session.get("/api/access/tokens").json()["data"][0]
    assert before <= listed["last_used"] <= time.time()
    stored = json.loads((web_paths.priv / "tokens.json").read_text())
    assert before <= stored[data["tokenid"]]["last_used"] <= time.time()
    # later uses are noted in memory; the file is not rewritten on every request
    mtime = (web_paths.priv / "tokens.json").stat().st_mtime_ns
    time.sleep(0.05)
    assert fresh.get("/api/guests", headers=token).status_code == 200
    again = session.get("/api/access/tokens").json()["data"][0]["last_used"]
    assert again > listed["last_used"]
    assert (web_paths.priv / "tokens.json").stat().st_mtime_ns == mtime


# -- item 6: crafted credentials ----------------------------------------------------

CRAFTED = {
    "non-ASCII": "\u00e9t\u00e9".encode(),
    "non-ASCII signature": b"APPL:root:7FFFFFFF:00112233:-:\xc3\xa9\xc3\xa9",
    "latin-1 byte": b"APPL:root:7FFFFFFF:00112233:-:\xff",
    "old format, non-ASCII signature": b"APPL:root:7FFFFFFF:00112233:\xc3\xa9",
    "overlong": b"APPL:root:7FFFFFFF:00112233:-:" + b"A" * 100_000,
    "empty": b"",
    "garbage base64": b"APPL:root:7FFFFFFF:00112233:-:%%%%===/+",
    "too many fields": b"APPL:root:1:2:3:4:5:6:7",
}


@pytest.mark.parametrize("value", CRAFTED.values(), ids=CRAFTED.keys())
@pytest.mark.parametrize("header", ["cookie", "authorization"])
def test_crafted_cookies_and_tokens_are_refused_before_login(client: TestClient, value: bytes,
                                                            header: str) -> None:
    if header == "cookie":
        headers = {"cookie": COOKIE.encode() + b"=" + value}
    else:
        headers = {"authorization": b"ApplianceToken root@pam!x=" + value}
    assert client.get("/api/version", headers=headers).status_code == 401
    assert client.post("/api/vms", json=VM, headers=headers).status_code == 401
    r = client.get("/dashboard", headers=headers, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert client.get("/login", headers=headers).status_code == 200
    r = client.post("/guests/new-vm", data={"csrf_token": "x"}, headers=headers,
                    follow_redirects=False)
    assert r.status_code == 303
    assert client.post("/logout", headers=headers, follow_redirects=False).status_code == 303
    assert console_close_code(client, headers) == 1008


def console_close_code(client: TestClient, headers: dict[str, bytes]) -> int:
    try:
        with client.websocket_connect("/api/guests/100/console", headers=headers) as ws:
            ws.receive_bytes()
    except WebSocketDisconnect as e:
        return e.code
    return 0


@pytest.mark.parametrize("value", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_csrf_and_token_headers_are_refused(session: TestClient, account: Account,
                                                    value: bytes) -> None:
    """Logged in: a crafted CSRF header or form field is a 403, a crafted
    token header a 401 (the token is checked first), on the API and the pages."""
    ok = session.headers[CSRF_HEADER]
    del session.headers[CSRF_HEADER]
    r = session.post("/api/vms", json=VM, headers={CSRF_HEADER: value})
    assert r.status_code == 403, r.text
    for field in ("csrf_token", "csrf_token\u00e9"):
        r = session.post("/guests/new-vm", follow_redirects=False,
                         data={field: value.decode("latin-1"), **VM})
        assert r.status_code == 403, r.text
    r = session.post("/logout", data={"csrf_token": value.decode("latin-1")},
                     follow_redirects=False)
    assert r.status_code == 403
    for auth in (value or b"Bearer", b"ApplianceToken " + value,
                 b"ApplianceToken root@pam!x=" + value,
                 f"ApplianceToken {account.name}@pam!ci=".encode() + value):
        r = session.get("/api/version", headers={"authorization": auth})
        assert r.status_code == 401, (auth[:60], r.text)
        r = session.get("/dashboard", headers={"authorization": auth}, follow_redirects=False)
        assert r.status_code == 303
        r = session.post("/api/vms", json=VM, headers={"authorization": auth, CSRF_HEADER: ok})
        assert r.status_code == 401
    assert session.get("/api/guests").json()["data"] == []  # nothing was made


@pytest.mark.parametrize("password", ["a\x00b", "\ud800", "\u00e9" * 5000, ""])
def test_crafted_passwords_are_a_failed_login(client: TestClient, account: Account,
                                              password: str) -> None:
    body = json.dumps({"username": account.name, "password": password})
    r = client.post("/api/login", content=body.encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text
    form = f"username={account.name}&password={quote(password, errors='surrogatepass')}"
    r = client.post("/login", content=form.encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401 and "login failed" in r.text


# -- item 7: file modes -------------------------------------------------------------


def test_secret_and_account_files_are_made_0600(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path / "etc", tmp_path / "state")
    old = os.umask(0)  # the modes must not depend on the caller's umask
    try:
        auth = Auth(paths, AuthSettings(min_failure_delay=0, failure_jitter=0),
                    authenticate=lambda user, password: False)
        with pytest.raises(HostError, match="login failed"):
            asyncio.run(auth.login("root", "wrong", "192.0.2.1"))
        auth.create_token("root@pam", "t1")
        auth.revoke(auth.make_ticket("root@pam"))
    finally:
        os.umask(old)
    assert paths.priv.stat().st_mode & 0o777 == 0o700
    for path in (paths.priv / "ticket.key", paths.priv / "tokens.json",
                 paths.priv / "revoked.json", paths.logs / "auth.log"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert "login failed for 'root'" in (paths.logs / "auth.log").read_text()


def test_an_old_world_readable_auth_log_is_tightened(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path / "etc", tmp_path / "state")
    paths.logs.mkdir(parents=True)
    (paths.logs / "auth.log").write_text("old\n")
    (paths.logs / "auth.log").chmod(0o644)
    auth = Auth(paths, authenticate=lambda user, password: False)
    auth.create_token("root@pam", "t1")
    assert (paths.logs / "auth.log").stat().st_mode & 0o777 == 0o600
    assert (paths.logs / "auth.log").read_text().startswith("old\n")
