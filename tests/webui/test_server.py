"""`appliance web serve` as a real process: HTTPS with a self-signed
certificate made on first start (and kept), and VMs that outlive a restart
of the web service."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from appliance.host import Host, HostPaths
from appliance.host import vm as vmbackend

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
