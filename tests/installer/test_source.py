"""Where the answer comes from: kernel command line, ISO, HTTP(S) with a
pinned certificate (a real TLS server on loopback)."""

from __future__ import annotations

import hashlib
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from appliance.installer import source
from appliance.installer.source import Fetch, SourceError

FP = "ab" * 32


def test_cmdline_url_and_fingerprint(tmp_path: Path) -> None:
    how = source.decide("quiet appliance.install appliance.answer=https://10.0.2.100/a "
                        f"appliance.answer-fingerprint={':'.join(['AB'] * 32)}", tmp_path)
    assert how == Fetch("http", "https://10.0.2.100/a", FP, "kernel command line")


def test_cmdline_mode_wins_over_the_medium(tmp_path: Path) -> None:
    (tmp_path / "appliance").mkdir()
    (tmp_path / "appliance/auto-install.toml").write_text('fetch-from = "iso"\n')
    assert source.decide("appliance.answer=partition", tmp_path).mode == "partition"
    assert source.decide("appliance.install", tmp_path).mode == "iso"


def test_no_answer_means_interactive(tmp_path: Path) -> None:
    assert source.decide("appliance.install", tmp_path).mode is None


@pytest.mark.parametrize(("cmdline", "message"), [
    ("appliance.answer=floppy", "expected one of iso, partition, http"),
    ("appliance.answer=iso appliance.answer-fingerprint=xyz", "not a SHA-256 fingerprint"),
])
def test_bad_cmdline_is_named(tmp_path: Path, cmdline: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        source.decide(cmdline, tmp_path)


def test_bad_auto_install_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "appliance").mkdir()
    auto = tmp_path / "appliance/auto-install.toml"
    auto.write_text('fetch-from = "http"\nurl = "ftp://x/a"\n')
    with pytest.raises(SourceError, match=r"auto-install.toml: url: 'ftp://x/a' is not an http"):
        source.decide("", tmp_path)


def test_iso_answer_missing_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no answer on the installer medium"):
        source.from_iso(tmp_path)


class Handler(http.server.BaseHTTPRequestHandler):
    posted: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Handler.posted.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"[global]\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=answers", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"https://127.0.0.1:{srv.server_address[1]}/answer", hashlib.sha256(der).hexdigest()
    srv.shutdown()


def test_https_with_the_pinned_fingerprint_posts_identity(tls_server: tuple[str, str]) -> None:
    url, fp = tls_server
    ident = {"network_interfaces": [{"name": "eth0", "mac": "52:54:00:12:34:56"}], "dmi": {}}
    data, origin = source.from_http(url, fp, ident)
    assert data == b"[global]\n" and origin == url
    assert Handler.posted[-1] == ident


def test_https_with_another_fingerprint_is_refused(tls_server: tuple[str, str]) -> None:
    url, _ = tls_server
    with pytest.raises(SourceError, match="not the pinned one; refusing the answer"):
        source.from_http(url, FP, {}, attempts=1)


def test_https_self_signed_without_a_pin_is_refused(tls_server: tuple[str, str]) -> None:
    url, _ = tls_server
    with pytest.raises(SourceError, match="cannot fetch the answer"):
        source.from_http(url, None, {}, attempts=1, deadline=5)


def test_machine_identity_lists_physical_nics_and_dmi(tmp_path: Path) -> None:
    net = tmp_path / "class/net"
    (net / "eth0/device").mkdir(parents=True)
    (net / "eth0/address").write_text("52:54:00:12:34:56\n")
    (net / "lo").mkdir()
    dmi = tmp_path / "class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "product_serial").write_text("SRV-42\n")
    ident = source.machine_identity(tmp_path)
    assert ident == {"network_interfaces": [{"name": "eth0", "mac": "52:54:00:12:34:56"}],
                     "dmi": {"product_serial": "SRV-42"}}


@pytest.mark.parametrize(("mkfs", "label"), [
    (["mkfs.ext4", "-q", "-F", "-L", "APPLIANCE-AIS"], "APPLIANCE-AIS"),
    (["mkfs.vfat", "-n", "APPL-AIS"], "APPL-AIS"),
    (["mkfs.vfat", "-n", "appl-ais"], "appl-ais"),
])
def test_answer_partition_labels_found_by_blkid(tmp_path: Path, mkfs: list[str],
                                                label: str) -> None:
    img = tmp_path / "ais.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run([*mkfs, str(img)], check=True, capture_output=True)
    out = subprocess.run(["blkid", "-o", "export", str(img)], capture_output=True, text=True,
                         check=True).stdout
    assert f"LABEL={label}" in out
    assert source.labelled(out) == [str(img)]


def test_other_labels_are_not_answer_partitions() -> None:
    assert source.labelled("DEVNAME=/dev/sdb1\nLABEL=APPLIANCE\n\nDEVNAME=/dev/sdc1\n") == []


LEASE = """lease {
  interface "enp0s3";
  fixed-address 10.0.2.15;
  option routers 10.0.2.2;
  option appliance-answer-url "https://10.0.2.100/answer";
  option appliance-answer-fingerprint "%s";
  renew 4 2026/11/26 02:15:01;
}
"""


def test_answer_url_from_dhcp_lease(tmp_path: Path) -> None:
    (tmp_path / "dhclient.enp0s3.leases").write_text(LEASE % ":".join(["AB"] * 32))
    assert source.from_dhcp_leases(tmp_path) == ("https://10.0.2.100/answer", FP)


def test_no_answer_url_in_leases(tmp_path: Path) -> None:
    (tmp_path / "dhclient.enp0s3.leases").write_text("lease {\n  option routers 10.0.2.2;\n}\n")
    assert source.from_dhcp_leases(tmp_path) is None


def test_http_without_any_url_says_where_it_looked(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "LEASES", tmp_path)
    with pytest.raises(SourceError, match="no DHCP server sent one"):
        source.fetch(source.decide("appliance.answer=http", tmp_path), tmp_path)
