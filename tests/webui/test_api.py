"""The REST API: auth on every endpoint, CSRF on writes, tickets, tokens,
rate-limited logins, bad input as 4xx, a VM driven through it."""

from __future__ import annotations

import re
import time

import pytest
from starlette.testclient import TestClient

from appliance.host import HostPaths
from appliance.host.guests import host_memory_mib
from appliance.web.api import ENDPOINTS
from appliance.web.auth import COOKIE, CSRF_HEADER

from .conftest import Account, login, wait_task

VM = {"name": "vm1", "template": "testguest", "memory_mib": 64}


def concrete(path: str) -> str:
    return (path.replace("{id:int}", "100").replace("{upid}", "UPID:x:00000001:0000000000000001:"
                                                     "vmstart:100:root@pam:")
            .replace("{name}", "t1"))


@pytest.mark.parametrize("ep", [e for e in ENDPOINTS if not e.public],
                         ids=lambda e: f"{e.method} {e.path}")
def test_every_endpoint_but_login_refuses_without_auth(client: TestClient, ep: object) -> None:
    r = client.request(ep.method, concrete(ep.path), json={})  # type: ignore[attr-defined]
    assert r.status_code == 401, r.text
    assert "authentication required" in r.json()["error"]


def test_pages_and_console_refuse_without_auth(client: TestClient) -> None:
    for path in ("/dashboard", "/guests", "/guests/100", "/tasks", "/guests/new-vm"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as e, \
            client.websocket_connect("/api/guests/100/console") as ws:  # noqa: PT011
        ws.receive_bytes()
    assert e.value.code == 1008, "a console without a login closes as a policy violation"


def test_login_sets_a_secure_http_only_same_site_ticket_cookie(client: TestClient,
                                                               account: Account) -> None:
    r = client.post("/api/login", json={"username": account.name, "password": account.password})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=APPL:{account.name}:")
    for attr in ("HttpOnly", "Secure", "SameSite=strict", "Max-Age=7200", "Path=/"):
        assert attr.lower() in cookie.lower(), cookie
    data = r.json()["data"]
    assert data["username"] == f"{account.name}@pam" and data["CSRFPreventionToken"]
    assert client.get("/api/version").json()["data"]["user"] == f"{account.name}@pam"


def test_writes_need_the_csrf_token(client: TestClient, account: Account) -> None:
    csrf = login(client, account)
    r = client.post("/api/vms", json=VM)
    assert r.status_code == 403 and CSRF_HEADER in r.json()["error"]
    r = client.post("/api/vms", json=VM, headers={CSRF_HEADER: "forged"})
    assert r.status_code == 403
    r = client.post("/api/vms", json=VM, headers={CSRF_HEADER: csrf})
    assert r.status_code == 200, r.text
    assert client.get("/api/guests").json()["data"][0]["name"] == "vm1"


def test_tampered_and_expired_tickets_are_refused(client: TestClient, account: Account) -> None:
    login(client, account)
    ticket = client.cookies[COOKIE]
    auth = client.app.state.auth  # type: ignore[attr-defined]
    client.cookies.clear()
    forged = ticket.replace(f"APPL:{account.name}:", "APPL:root:")
    assert client.get("/api/version", cookies={COOKIE: forged}).status_code == 401
    expired = auth.make_ticket(f"{account.name}@pam", now=time.time() - 3 * 3600)
    assert client.get("/api/version", cookies={COOKIE: expired}).status_code == 401
    assert client.get("/api/version", cookies={COOKIE: ticket}).status_code == 200


def test_api_token_works_its_secret_is_shown_once_and_stored_hashed(
    session: TestClient, web_paths: HostPaths, account: Account
) -> None:
    r = session.post("/api/access/tokens", json={"name": "ci", "comment": "tests"})
    assert r.status_code == 200, r.text
    made = r.json()["data"]
    assert made["tokenid"] == f"{account.name}@pam!ci"
    stored = (web_paths.priv / "tokens.json").read_text()
    assert made["secret"] not in stored and "sha256" in stored
    assert oct((web_paths.priv / "tokens.json").stat().st_mode & 0o777) == "0o600"
    listed = session.get("/api/access/tokens").json()["data"]
    assert [t["tokenid"] for t in listed] == [made["tokenid"]] and "secret" not in listed[0]

    token = {"Authorization": f"ApplianceToken {made['tokenid']}={made['secret']}"}
    fresh = TestClient(session.app, base_url="https://testserver")
    assert fresh.get("/api/guests", headers=token).status_code == 200
    # a token needs no CSRF token: no cookie is involved
    assert fresh.post("/api/vms", json=VM, headers=token).status_code == 200
    wrong = {"Authorization": f"ApplianceToken {made['tokenid']}=nope"}
    assert fresh.get("/api/guests", headers=wrong).status_code == 401
    # pages are for tickets: a token client is shown the login form, not sent
    # round between /login and /dashboard
    r = fresh.get("/login", headers=token, follow_redirects=False)
    assert r.status_code == 200 and 'name="password"' in r.text, r.headers
    # a token cannot make more tokens
    assert fresh.post("/api/access/tokens", json={"name": "x"}, headers=token).status_code == 403
    assert session.delete("/api/access/tokens/ci").status_code == 200
    assert fresh.get("/api/guests", headers=token).status_code == 401


def test_failed_logins_are_rate_limited_and_logged(client: TestClient, account: Account,
                                                   web_paths: HostPaths) -> None:
    bad = {"username": account.name, "password": "wrong"}
    for _ in range(3):  # settings: 3 failures a minute
        r = client.post("/api/login", json=bad)
        assert r.status_code == 401 and "login failed" in r.json()["error"]
    good = {"username": account.name, "password": account.password}
    r = client.post("/api/login", json=good)
    assert r.status_code == 429 and "too many failed logins" in r.json()["error"]
    log = (web_paths.logs / "auth.log").read_text()
    assert log.count(f"login failed for '{account.name}'") == 3
    assert "rate limit" in log


def test_only_root_and_the_admin_group_may_log_in(client: TestClient) -> None:
    import secrets
    import subprocess

    name, password = f"applout{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}", text=True, check=True)
        # a right password, but not an admin: refused like a wrong one
        r = client.post("/api/login", json={"username": name, "password": password})
        assert r.status_code == 401 and "login failed" in r.json()["error"]
    finally:
        subprocess.run(["userdel", name], check=False)
    r = client.post("/api/login", json={"username": "no such user", "password": "x"})
    assert r.status_code == 401


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/vms", {**VM, "name": "no spaces"}, 400, "name:"),
    ("/api/vms", {**VM, "memory_mib": 10**9}, 400, "this host has"),
    ("/api/vms", {**VM, "template": "missing"}, 400, "no VM template 'missing'"),
    ("/api/cts", {**VM, "template": "missing"}, 400, "no container template 'missing'"),
    ("/api/vms", {**VM, "cpus": "many"}, 400, "cpus:"),
    ("/api/vms", {"name": "x"}, 400, "template: required"),
    ("/api/vms", {**VM, "bridge": "nobr0"}, 400, "no bridge 'nobr0'"),
    ("/api/guests/100/start", None, 404, "no guest 100"),
    ("/api/guests/100/stop", None, 404, "no guest 100"),
])
def test_bad_input_is_a_4xx_with_a_message(session: TestClient, path: str, body: object,
                                           status: int, message: str) -> None:
    r = session.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_not_json_and_not_an_object_are_400(session: TestClient) -> None:
    r = session.post("/api/vms", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert session.post("/api/vms", json=[1]).status_code == 400


def test_vm_through_the_api_with_its_console(session: TestClient) -> None:
    r = session.post("/api/vms", json={**VM, "id": 120})
    assert r.status_code == 200
    assert wait_task(session, r.json()["data"]["task"])["status"] == "OK"
    r = session.post("/api/vms", json={**VM, "id": 120})
    assert r.status_code == 409 and "exists already" in r.json()["error"]

    r = session.post("/api/guests/120/start")
    done = wait_task(session, r.json()["data"]["task"])
    assert done["status"] == "OK" and "running" in str(done["log"])
    assert session.get("/api/guests/120").json()["data"]["status"] == "running"
    r = session.post("/api/guests/120/start")
    assert r.status_code == 409 and "already running" in r.json()["error"]
    r = session.delete("/api/guests/120")
    assert r.status_code == 409

    # (the test client's cookie jar does not send the Secure cookie over ws://)
    cookie = {"cookie": f"{COOKIE}={session.cookies[COOKIE]}"}
    with session.websocket_connect("/api/guests/120/console", headers=cookie) as ws:
        got = b""
        while b"ready> " not in got:
            got += ws.receive_bytes()
        assert b"cmdline: console=ttyS0 test=1" in got
        ws.send_bytes(b"web")
        while b"WEB" not in got:
            got += ws.receive_bytes()

    r = session.post("/api/guests/120/stop")
    assert wait_task(session, r.json()["data"]["task"])["status"] == "OK"
    r = session.delete("/api/guests/120")
    assert wait_task(session, r.json()["data"]["task"])["status"] == "OK"
    assert session.get("/api/guests/120").status_code == 404
    tasks = session.get("/api/tasks?guest=120").json()["data"]
    assert [t["type"] for t in tasks] == ["vmdelete", "vmstop", "vmstart", "vmcreate"]


def test_host_summary_templates_storage(session: TestClient) -> None:
    host = session.get("/api/host").json()["data"]
    assert host["verdict"] and host["status"] and host["detection"]["checks"]
    assert host["memory"]["total_bytes"] // 2**20 >= host_memory_mib()
    tpl = session.get("/api/templates").json()["data"]
    assert [(t["kind"], t["name"]) for t in tpl] == [("vm", "testguest")]
    st = session.get("/api/storage").json()["data"]
    assert st["total_bytes"] >= st["used_bytes"] > 0


def test_openapi_description_lists_every_endpoint(session: TestClient) -> None:
    doc = session.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for ep in ENDPOINTS:
        path = re.sub(r"\{(\w+):int\}", r"{\1}", ep.path)
        assert ep.method.lower() in doc["paths"][path]


def test_console_from_another_origin_is_refused(session: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    session.post("/api/vms", json={**VM, "id": 130})
    headers = {"cookie": f"{COOKIE}={session.cookies[COOKIE]}",
               "origin": "https://elsewhere.invalid"}
    with pytest.raises(WebSocketDisconnect) as e, \
            session.websocket_connect("/api/guests/130/console", headers=headers) as ws:  # noqa: PT011
        ws.receive_bytes()
    assert e.value.code == 1008


def test_page_forms_need_the_csrf_token(client: TestClient, account: Account) -> None:
    login(client, account)
    page = client.get("/guests/new-vm")
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {"name": "f1", "template": "testguest", "memory_mib": "64"}
    r = client.post("/guests/new-vm", data=form, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/guests/new-vm", data={**form, "csrf_token": "forged"},
                    follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/api/guests").json()["data"] == []
    r = client.post("/guests/new-vm", data={**form, "csrf_token": token.group(1)},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/tasks/UPID")
    assert client.post("/logout", follow_redirects=False).status_code == 403
    r = client.post("/logout", data={"csrf_token": token.group(1)}, follow_redirects=False)
    assert r.status_code == 303


def test_form_errors_are_shown_with_a_4xx(client: TestClient, account: Account) -> None:
    login(client, account)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/guests/new-vm").text)
    assert token is not None
    r = client.post("/guests/new-vm", data={"csrf_token": token.group(1), "name": "ok",
                                            "template": "testguest", "memory_mib": "99999999"})
    assert r.status_code == 400
    assert "memory_mib: 99999999 is more than the" in r.text.replace("&#39;", "'")
    assert 'value="ok"' in r.text  # what was typed stays in the form
