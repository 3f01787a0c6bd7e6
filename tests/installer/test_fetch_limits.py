"""The installer's fetches (answer, first-boot hook, webhook) against real
servers on 127.0.0.1: HTTPS with a certificate pinned in Proxmox's `AA:BB:...`
form, plain http:// refused unless the ISO allows it, a size cap, and an
overall deadline that cuts off a server trickling its reply."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.answer.parse import parse_answer
from appliance.installer import hooks, source
from appliance.installer.source import SourceError
from tests.installer.test_target import make_plan

from ..answer.conftest import answer_text

ANSWER = b'[global]\nkeyboard = "de"\n'
HOOK = b"#!/bin/sh\necho first boot\n"


class Handler(http.server.BaseHTTPRequestHandler):
    """/answer and /hook: small bodies; /big: 2 MiB with Content-Length;
    /big-unsized: 2 MiB without (read until the server closes); /trickle: one
    body byte every 0.25 s; /trickle-status: even the status line trickles."""

    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if self.path in ("/answer", "/hook"):
                self.reply(ANSWER if self.path == "/answer" else HOOK)
            elif self.path == "/big":
                self.reply(b"#" * (2 << 20))
            elif self.path == "/big-unsized":
                self.wfile.write(b"HTTP/1.0 200 OK\r\n\r\n" + b"#" * (2 << 20))
            elif self.path == "/trickle":
                self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n")
                self.drip(b"#" * 1000)
            elif self.path == "/trickle-status":
                self.drip(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n#")
        except OSError:
            pass  # the client gave up

    def reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drip(self, data: bytes) -> None:
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(0.25)

    def log_message(self, *args: object) -> None:
        pass


def serve(srv: http.server.ThreadingHTTPServer) -> threading.Thread:
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return t


@pytest.fixture(scope="module")
def https() -> Iterator[tuple[str, str]]:
    """(base URL, the certificate's fingerprint as Proxmox writes it: AA:BB:...)."""
    with pytest.MonkeyPatch.context():
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            key, cert = Path(d, "key.pem"), Path(d, "cert.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-subj", "/CN=answers", "-keyout", key, "-out", cert],
                           check=True, capture_output=True)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    serve(srv)
    digest = hashlib.sha256(der).hexdigest().upper()
    yield (f"https://127.0.0.1:{srv.server_address[1]}",
           ":".join(digest[i:i + 2] for i in range(0, 64, 2)))
    srv.shutdown()


@pytest.fixture(scope="module")
def plain() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve(srv)
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_pinned_answer_in_proxmox_fingerprint_form_is_fetched(https: tuple[str, str]) -> None:
    base, pin = https
    assert pin.count(":") == 31 and pin.upper() == pin
    assert source.from_http(f"{base}/answer", pin, {}) == (ANSWER, f"{base}/answer")
    assert source.from_http(f"{base}/answer", pin.lower(), {})[0] == ANSWER


def test_answer_with_another_pin_is_refused_clearly(https: tuple[str, str]) -> None:
    base, pin = https
    wrong = "AB:" * 31 + "AB"
    with pytest.raises(SourceError, match=rf"{base}/answer: the server's certificate has "
                       rf"SHA-256 fingerprint {pin}, not the pinned one; refusing the answer"):
        source.from_http(f"{base}/answer", wrong, {}, attempts=1)


def test_self_signed_answer_without_a_pin_is_refused(https: tuple[str, str]) -> None:
    base, _ = https
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
        source.from_http(f"{base}/answer", None, {}, attempts=1, deadline=5)


def test_plain_http_is_refused_unless_the_iso_allows_it(plain: str) -> None:
    with pytest.raises(SourceError, match=r"over plain http:// is refused: use https:// .*"
                       r"prepare-iso --allow-insecure"):
        source.from_http(f"{plain}/answer", None, {})
    assert source.from_http(f"{plain}/answer", None, {}, allow_insecure=True)[0] == ANSWER


def test_the_answer_fetch_mode_carries_allow_insecure(tmp_path: Path, plain: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "machine_identity", lambda: {})
    how = source.decide(f"appliance.answer={plain}/answer", tmp_path)
    with pytest.raises(SourceError, match="plain http:// is refused"):
        source.fetch(how, tmp_path)
    (tmp_path / "appliance").mkdir()
    (tmp_path / "appliance/auto-install.toml").write_text(
        f'fetch-from = "http"\nurl = "{plain}/answer"\nallow-insecure = true\n')
    assert source.fetch(source.decide("", tmp_path), tmp_path) == (ANSWER, f"{plain}/answer")


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_an_answer_of_2_mib_is_refused(https: tuple[str, str], path: str) -> None:
    base, pin = https
    with pytest.raises(SourceError, match=rf"{base}{path}: the answer is larger than the 1 MiB "
                       "allowed"):
        source.from_http(f"{base}{path}", pin, {})
    hook = source.from_http(f"{base}{path}", pin, {}, max_bytes=source.FIRST_BOOT_MAX_BYTES)
    assert len(hook[0]) == 2 << 20


@pytest.mark.parametrize("path", ["/trickle", "/trickle-status"])
def test_a_trickling_server_is_cut_off_at_the_deadline(https: tuple[str, str],
                                                       path: str) -> None:
    base, pin = https
    started = time.monotonic()
    with pytest.raises(SourceError, match=rf"cannot fetch the answer from {base}{path}: no "
                       r"complete reply within the deadline of 2 s"):
        source.from_http(f"{base}{path}", pin, {}, deadline=2)
    took = time.monotonic() - started
    assert 2 <= took < 3.5, took


def test_pinned_first_boot_hook_from_the_answer_is_fetched(https: tuple[str, str]) -> None:
    """The answer's cert-fingerprint (AA:BB:...) goes through the parser and
    the plan to the hook's fetch, and matches."""
    base, pin = https
    a = parse_answer(answer_text(first_boot__source="from-url", first_boot__url=f"{base}/hook",
                                 first_boot__cert_fingerprint=pin))
    fb = a.first_boot
    assert fb is not None and fb.cert_fingerprint == pin.replace(":", "").lower()
    plan = make_plan(first_boot={"source": "from-url", "ordering": fb.ordering, "url": fb.url,
                                 "cert-fingerprint": fb.cert_fingerprint})
    assert hooks.first_boot_script(plan) == HOOK
    wrong = make_plan(first_boot={"source": "from-url", "ordering": "fully-up",
                                  "url": f"{base}/hook", "cert-fingerprint": "ab" * 32})
    with pytest.raises(SourceError, match="not the pinned one; refusing the first-boot hook"):
        hooks.first_boot_script(wrong)


def test_plain_http_first_boot_hook_needs_allow_insecure(plain: str) -> None:
    fb = {"source": "from-url", "ordering": "fully-up", "url": f"{plain}/hook"}
    with pytest.raises(SourceError, match="the first-boot hook over plain http:// is refused"):
        hooks.first_boot_script(make_plan(first_boot=fb))
    assert hooks.first_boot_script(make_plan(first_boot=fb, allow_insecure=True)) == HOOK


def test_pinned_webhook_from_the_answer_is_sent(https: tuple[str, str], tmp_path: Path) -> None:
    base, pin = https
    a = parse_answer(answer_text(post_installation_webhook__url=f"{base}/answer",
                                 post_installation_webhook__cert_fingerprint=pin))
    assert a.webhook is not None
    plan = make_plan(webhook=(a.webhook.url, a.webhook.cert_fingerprint))
    assert hooks.post_webhook(plan, tmp_path) == f"post-installation webhook: sent to {base}/answer"
