"""[first-boot] and [post-installation-webhook] of an answer."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from appliance.installer import hooks
from appliance.installer.source import SourceError
from tests.installer.test_target import make_plan


def test_first_boot_from_iso_is_read_from_the_medium(tmp_path: Path) -> None:
    (tmp_path / "appliance").mkdir()
    (tmp_path / "appliance/first-boot").write_bytes(b"#!/bin/sh\necho hi\n")
    plan = make_plan(first_boot={"source": "from-iso", "ordering": "network-online"})
    assert hooks.first_boot_script(plan, tmp_path) == b"#!/bin/sh\necho hi\n"


def test_first_boot_from_iso_missing_is_named_before_any_write(tmp_path: Path) -> None:
    plan = make_plan(first_boot={"source": "from-iso", "ordering": "fully-up"})
    with pytest.raises(SourceError, match="prepare-iso --on-first-boot"):
        hooks.first_boot_script(plan, tmp_path)


@pytest.mark.parametrize(("ordering", "dep", "wanted_by"), [
    ("before-network", "Before=network-pre.target", "sysinit.target"),
    ("network-online", "After=network-online.target", "multi-user.target"),
    ("fully-up", "After=multi-user.target", "multi-user.target"),
])
def test_first_boot_unit_runs_once_in_the_asked_order(tmp_path: Path, ordering: str, dep: str,
                                                      wanted_by: str) -> None:
    plan = make_plan(first_boot={"source": "from-iso", "ordering": ordering})
    hooks.install_first_boot(tmp_path, plan, b"#!/bin/sh\ntrue\n")
    script = tmp_path / hooks.SCRIPT
    assert script.read_bytes() == b"#!/bin/sh\ntrue\n" and script.stat().st_mode & 0o777 == 0o700
    unit = (tmp_path / "etc/systemd/system" / hooks.UNIT).read_text()
    assert dep in unit and f"ExecStartPost=/bin/rm -f /{hooks.SCRIPT}" in unit
    link = tmp_path / f"etc/systemd/system/{wanted_by}.wants/{hooks.UNIT}"
    assert link.readlink() == Path(f"/etc/systemd/system/{hooks.UNIT}")


class Hook(http.server.BaseHTTPRequestHandler):
    got: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        Hook.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()


def test_webhook_posts_what_was_installed(tmp_path: Path, hook_url: str) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA host\n")
    plan = make_plan(webhook=(hook_url, None), allow_insecure=True)  # plain http
    assert hooks.post_webhook(plan, tmp_path) == f"post-installation webhook: sent to {hook_url}"
    body = Hook.got[-1]
    assert body["fqdn"] == "pve1.example.org" and body["disk"] == "/dev/vdb"
    assert body["ssh-host-keys"] == {"ed25519": "ssh-ed25519 AAAA host"}
    assert body["network"]["cidr"] == "10.0.2.15/24"


def test_failing_webhook_is_reported_not_fatal(tmp_path: Path) -> None:
    plan = make_plan(webhook=("http://127.0.0.1:9/hook", None), allow_insecure=True)
    msg = hooks.post_webhook(plan, tmp_path)
    assert msg.startswith("post-installation webhook to http://127.0.0.1:9/hook failed")
    assert "Connection refused" in msg


def test_plain_http_webhook_is_refused_without_allow_insecure(tmp_path: Path,
                                                              hook_url: str) -> None:
    sent = len(Hook.got)
    msg = hooks.post_webhook(make_plan(webhook=(hook_url, None)), tmp_path)
    assert "over plain http:// is refused" in msg and len(Hook.got) == sent
