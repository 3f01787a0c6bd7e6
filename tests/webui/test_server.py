"""`appliance web serve` as a real process: HTTPS with a self-signed
certificate made on first start (and kept), VMs that outlive a restart of
the web service, and a prompt stop on SIGTERM whatever the clients do."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from appliance.host import Host, HostPaths
from appliance.host import vm as vmbackend
from appliance.web.auth import COOKIE

from ..host.conftest import add_templates
from .conftest import Account, login, start_server, stop_server, wait_task

pytestmark = pytest.mark.e2e


def fingerprint(crt: Path) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                           str(crt)], capture_output=True, text=True, check=True).stdout


def test_vm_keeps_running_across_a_restart_of_the_web_service(
    tmp_path: Path, test_guest_files: dict[str, Path], account: Account
) -> None:
    paths = HostPaths(tmp_path / "etc", tmp_path / "state")
    paths.ensure()
    add_templates(paths, test_guest_files, None)
    server = start_server(paths, account.group, tmp_path / "server.log")
    crt = paths.web / "server.crt"
    try:
        first = fingerprint(crt)
        assert oct((paths.web / "server.key").stat().st_mode & 0o777) == "0o600"
        # the server really speaks TLS with that certificate
        ctx = ssl.create_default_context(cafile=str(crt))
        ctx.check_hostname = False
        with httpx.Client(base_url=server.url, verify=ctx) as c:
            csrf = login(c, account)
            c.headers["CSRFPreventionToken"] = csrf
            r = c.post("/api/vms", json={"name": "keep", "template": "testguest",
                                         "memory_mib": 64})
            assert wait_task(c, r.json()["data"]["task"])["status"] == "OK"
            r = c.post("/api/guests/100/start")
            assert wait_task(c, r.json()["data"]["task"])["status"] == "OK"
        pid = vmbackend.pid_of(paths, 100)
        assert pid is not None
    finally:
        stop_server(server)

    assert vmbackend.pid_of(paths, 100) == pid  # the VM did not go with the server
    os.kill(pid, 0)
    server = start_server(paths, account.group, tmp_path / "server.log")
    try:
        assert fingerprint(crt) == first  # the certificate is made once, then kept
        with httpx.Client(base_url=server.url, verify=False) as c:
            c.headers["CSRFPreventionToken"] = login(c, account)
            assert c.get("/api/guests/100").json()["data"]["status"] == "running"
            r = c.post("/api/guests/100/shutdown")
            assert wait_task(c, r.json()["data"]["task"])["status"] == "OK"
            assert c.get("/api/guests/100").json()["data"]["status"] == "stopped"
    finally:
        stop_server(server)
        host = Host(paths)
        if host.guest(100).status == "running":
            host.stop(100)


def test_sigterm_stops_the_server_within_5_s_despite_an_idle_client_and_an_open_console(
    tmp_path: Path, test_guest_files: dict[str, Path], account: Account
) -> None:
    """A restart of the service must not hang on its clients: an idle HTTPS
    keep-alive connection (a browser tab) and an open console WebSocket.
    The console is told (close frame 1012, service restart); the VM runs on."""
    paths = HostPaths(tmp_path / "etc", tmp_path / "state")
    paths.ensure()
    add_templates(paths, test_guest_files, None)
    log = tmp_path / "server.log"
    server = start_server(paths, account.group, log)
    idle = httpx.Client(base_url=server.url, verify=False)
    try:
        idle.headers["CSRFPreventionToken"] = login(idle, account)
        r = idle.post("/api/vms", json={"name": "term", "template": "testguest",
                                        "memory_mib": 64})
        assert wait_task(idle, r.json()["data"]["task"])["status"] == "OK"
        listed = idle.get("/api/guests").json()["data"]
        assert [(g["id"], g["status"]) for g in listed] == [(100, "stopped")]
        r = idle.post("/api/guests/100/start")
        assert wait_task(idle, r.json()["data"]["task"])["status"] == "OK"
        listed = idle.get("/api/guests").json()["data"]
        assert [(g["id"], g["status"]) for g in listed] == [(100, "running")]

        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ws = connect(f"{server.url.replace('https', 'wss')}/api/guests/100/console", ssl=ctx,
                     additional_headers={"Cookie": f"{COOKIE}={idle.cookies[COOKIE]}"})
        seen = b""
        deadline = time.monotonic() + 20
        while b"test=1" not in seen and time.monotonic() < deadline:
            msg = ws.recv(timeout=20)
            seen += msg if isinstance(msg, bytes) else msg.encode()
        assert b"test=1" in seen, seen[-500:]
        assert idle.get("/api/version").status_code == 200  # the keep-alive stays open, idle

        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=10)
        took = time.monotonic() - start
        assert server.proc.returncode is not None, "still running 10 s after SIGTERM"
        assert took < 5, f"the web server took {took:.1f} s to stop"
        with pytest.raises(ConnectionClosed, match="1012") as closed:
            while True:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # restart
        ws.close()
        output = log.read_text()
        assert "Warning" not in output, output  # e.g. uvicorn's DeprecationWarning
        assert "[uvloop.Loop, LimitedHttpTools]" in output, output  # the fast stack
        assert vmbackend.pid_of(paths, 100) is not None  # the VM did not go with it
    finally:
        idle.close()
        stop_server(server)
        host = Host(paths)
        if host.guest(100).status == "running":
            host.stop(100)
