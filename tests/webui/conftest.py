"""Fixtures of the web UI and API tests: a throwaway local account (made and
removed here) that logs in through the real PAM stack, the app on temporary
host roots with the test VM template, a real HTTPS server on 127.0.0.1 (its
own process) and a real HTTP server in a thread (to reach into the app)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from appliance.host import Host, HostPaths
from appliance.web.app import make_app
from appliance.web.auth import CSRF_HEADER, AuthSettings

from ..host.conftest import add_templates, cleanup_guests, ct_tarball, test_guest_files

__all__ = ["ct_tarball", "test_guest_files"]


@dataclass(frozen=True)
class Account:
    name: str
    password: str
    group: str


def add_user(acct: Account) -> None:
    """A local user without a home or a shell, in the account's group."""
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", acct.group, acct.name],
                   check=True)
    subprocess.run(["chpasswd"], input=f"{acct.name}:{acct.password}", text=True, check=True)


@pytest.fixture(scope="session")
def account() -> Iterator[Account]:
    """A local user in a fresh admin group, with a random password."""
    suffix = secrets.token_hex(3)
    acct = Account(f"appltest{suffix}", secrets.token_urlsafe(12), f"appladm{suffix}")
    subprocess.run(["groupadd", acct.group], check=True)
    add_user(acct)
    try:
        yield acct
    finally:
        subprocess.run(["userdel", acct.name], check=False)
        subprocess.run(["groupdel", acct.group], check=False)


@pytest.fixture
def other_admin(account: Account) -> Iterator[Account]:
    """One more member of the admin group, for tests that change the account."""
    acct = Account(f"appltest{secrets.token_hex(3)}", secrets.token_urlsafe(12), account.group)
    add_user(acct)
    try:
        yield acct
    finally:
        subprocess.run(["userdel", acct.name], check=False)


@pytest.fixture
def settings(account: Account) -> AuthSettings:
    return AuthSettings(admin_group=account.group, max_failures=3, failure_window=60)


@pytest.fixture
def web_paths(tmp_path: Path, test_guest_files: dict[str, Path]) -> Iterator[HostPaths]:
    paths = HostPaths(tmp_path / "etc", tmp_path / "state")
    paths.ensure()
    add_templates(paths, test_guest_files, None)
    yield paths
    cleanup_guests(Host(paths))


@pytest.fixture
def client(web_paths: HostPaths, settings: AuthSettings) -> Iterator[TestClient]:
    with TestClient(make_app(web_paths, settings), base_url="https://testserver") as c:
        yield c


def login(c: TestClient | httpx.Client, account: Account) -> str:
    """Log in; the client keeps the cookie; returns the CSRF token."""
    r = c.post("/api/login", json={"username": account.name, "password": account.password})
    assert r.status_code == 200, r.text
    token: str = r.json()["data"]["CSRFPreventionToken"]
    return token


@pytest.fixture
def session(client: TestClient, account: Account) -> TestClient:
    """A logged-in client that sends the CSRF token on every request."""
    client.headers[CSRF_HEADER] = login(client, account)
    return client


def wait_task(c: TestClient | httpx.Client, upid: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, object] = c.get(f"/api/tasks/{upid}").json()["data"]
        if data["status"] != "running" or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    paths: HostPaths
    proc: subprocess.Popen[bytes]


def start_server(paths: HostPaths, group: str, log: Path) -> Server:
    """`appliance web serve` as its own process, HTTPS on a free loopback port."""
    port = free_port()
    env = {**os.environ, "APPLIANCE_ETC_DIR": str(paths.etc),
           "APPLIANCE_STATE_DIR": str(paths.state), "APPLIANCE_ADMIN_GROUP": group}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "web", "serve", "--listen",
                                 f"127.0.0.1:{port}"], env=env, stdout=out, stderr=out)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/login", verify=False, timeout=2)
            return Server(url, paths, proc)
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(f"web server exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"web server did not answer: {log.read_text()[-2000:]}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@contextlib.contextmanager
def serve_in_thread(app: Starlette, loop: str = "auto") -> Iterator[str]:
    """uvicorn (plain HTTP, WebSockets) on a free loopback port in a thread
    of this process; yields its URL. `loop`: "auto" (uvloop, as the service
    runs) or "asyncio"."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                            ws="websockets-sansio", lifespan="off", loop=loop,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the threaded web server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
