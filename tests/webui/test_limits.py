"""Limits on what a client can make the web server do: request bodies cut
at 1 MiB on every route (413 at once, the server's memory unchanged), request
heads at 64 KiB, and numbers in any field (JSON, form, query, path) that are
not plain ASCII whole numbers of a sane size answered 4xx, never 500."""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from appliance.errors import ApplianceError
from appliance.host import HostPaths
from appliance.web.auth import COOKIE, Auth
from appliance.web.server import parse_listen

from .conftest import Account, Server, login, start_server, stop_server

MiB = 1 << 20
UPLOAD = 200 * MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, account: Account) -> Iterator[Server]:
    """`appliance web serve` as its own process (its memory is what we watch)."""
    tmp = tmp_path_factory.mktemp("limits")
    paths = HostPaths(tmp / "etc", tmp / "state")
    paths.ensure()
    srv = start_server(paths, account.group, tmp / "server.log")
    try:
        yield srv
    finally:
        stop_server(srv)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak RSS) of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def tls_connect(url: str) -> ssl.SSLSocket:
    parts = urlsplit(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return ctx.wrap_socket(raw)


def read_answer(s: ssl.SSLSocket, first: bytes = b"") -> tuple[int, bytes]:
    """(status, head and what came of the body) of an HTTP answer."""
    s.setblocking(True)
    s.settimeout(30)
    data = first
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    head, _, body = data.partition(b"\r\n\r\n")
    length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
              if line.startswith(b"content-length:")]
    while length and len(body) < length[0]:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(data[9:12]), head + b"\r\n\r\n" + body


def stream(url: str, head: bytes, body: Iterator[bytes]) -> tuple[int, bytes, int]:
    """Send `head`, then `body` piece by piece until the server answers (or
    the body ends); returns (status, answer, body bytes sent)."""
    with tls_connect(url) as s:
        s.sendall(head)
        sent = 0
        for piece in body:
            s.setblocking(False)
            try:
                early = s.recv(65536)  # has the server answered already?
            except ssl.SSLWantReadError:
                early = b""  # nothing, or only a TLS session ticket
            s.setblocking(True)
            if early:
                return (*read_answer(s, early), sent)
            if not select.select([], [s], [], 30)[1]:
                raise AssertionError(f"the server stopped reading after {sent} bytes, "
                                     "without an answer")
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            sent += len(piece)
        return (*read_answer(s), sent)


def chunked(first: bytes, filler: bytes, total: int) -> Iterator[bytes]:
    """A chunked body of `total` bytes: `first`, then `filler` repeated."""
    yield b"%x\r\n%s\r\n" % (len(first), first)
    n = len(first)
    while n < total:
        yield b"%x\r\n%s\r\n" % (len(filler), filler)
        n += len(filler)
    yield b"0\r\n\r\n"


def plain(first: bytes, filler: bytes, total: int) -> Iterator[bytes]:
    yield first
    n = len(first)
    while n < total:
        yield filler
        n += len(filler)


def credentials(server: Server, account: Account) -> dict[str, str]:
    """A login session's cookie and CSRF token, and an API token, as headers."""
    with httpx.Client(base_url=server.url, verify=False) as c:
        csrf = login(c, account)
        ticket = c.cookies[COOKIE]
    tokenid, secret = Auth(server.paths).create_token(f"{account.name}@pam",
                                                      f"limits{time.monotonic_ns()}")
    return {"cookie": f"{COOKIE}={ticket}", "CSRFPreventionToken": csrf,
            "authorization": f"ApplianceToken {tokenid}={secret}"}


ROUTES = {
    # name: (path, content type, first bytes, filler, needs which credential)
    "api-login-json": ("/api/login", "application/json", b'{"username": "', b"a" * 65536, None),
    "login-page-form": ("/login", "application/x-www-form-urlencoded", b"username=",
                        b"a" * 65536, None),
    "api-create-json-token": ("/api/vms", "application/json", b'{"name": "', b"a" * 65536,
                              "authorization"),
    "page-create-form-session": ("/guests/new-vm", "application/x-www-form-urlencoded",
                                 b"csrf_token=x&description=", b"a" * 65536, "cookie"),
}


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_200_mib_body_gets_413_at_once_and_the_server_does_not_grow(
    server: Server, account: Account, route: str, framing: str
) -> None:
    path, ctype, first, filler, cred = ROUTES[route]
    extra = ""
    if cred is not None:
        creds = credentials(server, account)
        extra = f"{cred}: {creds[cred]}\r\n"
        if cred == "cookie":
            extra += f"CSRFPreventionToken: {creds['CSRFPreventionToken']}\r\n"
    # warm up: the same route with a small body (imports, caches, TLS buffers)
    small = first + b'x"}' if ctype == "application/json" else first + b"x"
    with tls_connect(server.url) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {ctype}\r\n"
                  f"{extra}content-length: {len(small)}\r\nconnection: close\r\n\r\n".encode()
                  + small)
        status, _ = read_answer(s)
        assert status < 500
    before = memory_kib(server.proc.pid)

    framing_head = ("transfer-encoding: chunked" if framing == "chunked"
                    else f"content-length: {UPLOAD}")
    head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {ctype}\r\n{extra}"
            f"{framing_head}\r\n\r\n").encode()
    body = (chunked if framing == "chunked" else plain)(first, filler, UPLOAD)
    status, answer, sent = stream(server.url, head, body)

    after = memory_kib(server.proc.pid)
    grew = (after["VmHWM"] - before["VmHWM"]) >> 10
    assert grew <= 8, f"the server's peak RSS grew by {grew} MiB ({before} -> {after})"
    assert status == 413, answer[:500]
    assert b"request body too large: at most 1 MiB" in answer
    assert b"connection: close" in answer.lower()
    assert sent < 32 * MiB, f"the server read {sent >> 20} MiB before it said 413"
    assert server.proc.poll() is None


def test_a_body_just_under_the_limit_still_reaches_the_route(
    server: Server, account: Account
) -> None:
    creds = credentials(server, account)
    body = b'{"name": "big", "template": "none", "memory_mib": 64, "description": "' + (
        b"d" * (MiB - 200)) + b'"}'
    r = httpx.post(f"{server.url}/api/vms", content=body, verify=False,
                   headers={"authorization": creds["authorization"],
                            "content-type": "application/json"})
    assert r.status_code == 400, r.text  # read and checked by the route, not cut off
    assert "description: longer than 1000 characters" in r.json()["error"]


def test_an_endless_request_head_gets_431_and_the_server_does_not_grow(server: Server) -> None:
    with tls_connect(server.url) as s:  # warm up
        s.sendall(b"GET /login HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        assert read_answer(s)[0] == 200
    before = memory_kib(server.proc.pid)
    head = b"GET /login HTTP/1.1\r\nhost: 127.0.0.1\r\nx-filler: "
    status, answer, sent = stream(server.url, head, plain(b"", b"a" * 65536, UPLOAD))
    after = memory_kib(server.proc.pid)
    grew = (after["VmHWM"] - before["VmHWM"]) >> 10
    assert grew <= 8, f"the server's peak RSS grew by {grew} MiB ({before} -> {after})"
    assert status == 431, answer[:300]
    assert sent < 32 * MiB


# --- numbers ------------------------------------------------------------------------

BAD_NUMBERS = ["²", "١٢", "٣٢٠", "9" * 5000, "99999999999999999999", "-5", "1.5", "1e3", "0x40",
               "+64"]


def short(value: object) -> str:
    text = str(value)
    return text.encode("unicode_escape").decode() if len(text) < 24 else f"{text[:4]}...{len(text)}"


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=short)
def test_a_bad_number_in_an_api_field_is_400(session: TestClient, value: str) -> None:
    r = session.post("/api/vms", json={"name": "n1", "template": "testguest",
                                       "memory_mib": value})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("memory_mib: expected a whole number, got '")
    r = session.post("/api/vms", json={"name": "n1", "template": "testguest",
                                       "memory_mib": 64, "disks": [value]})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "disks[0]: expected a size in MiB from 1 to 4194304"


@pytest.mark.parametrize("raw", [b"-5", b"1.5", b"1e400", b"NaN", b"Infinity", b"true",
                                 b"9" * 4000, b"9" * 5000], ids=short)
def test_a_bad_json_number_is_400(session: TestClient, raw: bytes) -> None:
    r = session.post("/api/vms", content=b'{"name": "n1", "template": "testguest", '
                     b'"memory_mib": ' + raw + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith(("memory_mib: ", "request body: not valid JSON")), error
    assert len(error) < 200, error


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=short)
def test_a_bad_number_in_a_web_form_is_400_on_the_form(session: TestClient,
                                                       value: str) -> None:
    csrf = session.headers["CSRFPreventionToken"]
    for field, message in (("memory_mib", "memory_mib: expected a whole number"),
                           ("cpus", "cpus: expected a whole number"),
                           ("disks", "disks[0]: expected a size in MiB")):
        form = {"csrf_token": csrf, "name": "n1", "template": "testguest", "memory_mib": "64",
                field: value}
        r = session.post("/guests/new-vm", data=form, follow_redirects=False)
        assert r.status_code == 400, (field, r.status_code, r.text[:300])
        assert message in r.text, (field, r.text[:2000])


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=short)
def test_a_bad_number_in_a_query_is_400(session: TestClient, value: str) -> None:
    for name in ("limit", "guest"):
        r = session.get("/api/tasks", params={name: value})
        assert r.status_code == 400, r.text
        assert "expected a whole number from" in r.json()["error"]


@pytest.mark.parametrize("gid", ["9" * 5000, "9" * 19, "99999999999", "²", "١٢"], ids=short)
def test_a_huge_or_foreign_guest_id_in_a_path_is_404(session: TestClient, gid: str) -> None:
    for path in (f"/api/guests/{gid}", f"/api/guests/{gid}/start", f"/guests/{gid}"):
        method = "POST" if path.endswith("/start") else "GET"
        r = session.request(method, path, follow_redirects=False)
        assert r.status_code == 404, (path[:40], r.status_code, r.text[:300])


@pytest.mark.parametrize("port", ["²", "١٢", "9" * 5000, "-1", "0", "65536", "80.0", ""],
                         ids=short)
def test_a_bad_listen_port_is_a_clear_error(port: str) -> None:
    with pytest.raises(ApplianceError, match=r"expected HOST:PORT \(port 1 to 65535\)") as e:
        parse_listen(f"127.0.0.1:{port}")
    assert len(str(e.value)) < 150
    assert parse_listen("[::]:8006") == ("::", 8006)
