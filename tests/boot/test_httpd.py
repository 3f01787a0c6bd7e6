"""The one-request HTTP(S) responder used for netboot and answer servers inside
QEMU user networking (a guestfwd cmd: the connection on stdin/stdout)."""

from __future__ import annotations

import io
import json
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from appliance.boot.httpd import serve_one


def ask(root: Path, request: bytes) -> tuple[int, bytes]:
    out = io.BytesIO()
    code = serve_one(root, io.BytesIO(request), out)
    return code, out.getvalue()


def test_serves_a_file_with_its_length_and_logs_to_a_file(tmp_path: Path) -> None:
    (tmp_path / "filesystem.squashfs").write_bytes(b"hsqs" + bytes(100))
    out_io, log = io.BytesIO(), tmp_path / "http.log"
    code = serve_one(tmp_path, io.BytesIO(b"GET /filesystem.squashfs HTTP/1.1\r\n\r\n"),
                     out_io, log)
    out = out_io.getvalue()
    assert log.read_text() == "httpd: 200 /filesystem.squashfs (104 bytes)\n"
    head, _, body = out.partition(b"\r\n\r\n")
    assert code == 200 and head.startswith(b"HTTP/1.0 200 OK")
    assert b"Content-Length: 104" in head and body == b"hsqs" + bytes(100)


def test_never_serves_outside_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "netboot"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    code, out = ask(root, b"GET /../secret HTTP/1.1\r\n\r\n")
    assert code == 404 and out.startswith(b"HTTP/1.0 404")


def test_rejects_other_methods(tmp_path: Path) -> None:
    assert ask(tmp_path, b"DELETE / HTTP/1.1\r\n\r\n")[0] == 400


def test_post_answers_with_the_file_and_keeps_the_body(tmp_path: Path) -> None:
    (tmp_path / "answer").write_bytes(b"[global]\n")
    bodies = tmp_path / "bodies"
    out = io.BytesIO()
    req = b'POST /answer HTTP/1.1\r\nContent-Length: 9\r\n\r\n{"a": 1}\n'
    assert serve_one(tmp_path, io.BytesIO(req), out, None, bodies) == 200
    assert out.getvalue().endswith(b"\r\n\r\n[global]\n")
    assert bodies.read_bytes() == b'{"a": 1}\n\n'


def self_signed(tmp: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate and key (openssl req) and its SHA-256
    fingerprint in openssl's `AA:BB:...` form."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=answers.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint",
                          "-sha256"], check=True, capture_output=True, text=True).stdout
    return cert, key, out.strip().split("=", 1)[1]


def guestfwd_like(argv: list[str]) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """Run `argv` as QEMU's guestfwd cmd: runs it, one connected socket as its
    stdin and stdout; the other end is returned (the guest's side)."""
    guest, host = socket.socketpair()
    proc = subprocess.Popen(argv, stdin=host.fileno(), stdout=host.fileno(),
                            stderr=subprocess.DEVNULL)
    host.close()
    return guest, proc


def test_tls_on_stdin_stdout_serves_a_pinned_client(tmp_path: Path) -> None:
    """--tls: the one-request server speaks TLS over its stdin/stdout, and
    the installer's own fetch (source.from_http with an `AA:BB:...` pin)
    gets the file through it; the POSTed body is kept."""
    from appliance.installer import source

    cert, key, pin = self_signed(tmp_path)
    served = tmp_path / "served"
    served.mkdir()
    (served / "answer").write_bytes(b"[global]\nfqdn = 'a.test'\n")
    bodies, log = tmp_path / "bodies", tmp_path / "http.log"
    # a real listening socket on 127.0.0.1 whose connection is handed to the
    # server process as its stdin/stdout, as QEMU's guestfwd does
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        port = lsock.getsockname()[1]
        result: dict[str, object] = {}

        def accept() -> None:
            conn, _ = lsock.accept()
            with conn:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "appliance.boot.httpd", "--log", str(log),
                     "--bodies", str(bodies), "--tls", str(cert), str(key), str(served)],
                    stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.DEVNULL)
            result["rc"] = proc.wait(60)

        t = threading.Thread(target=accept)
        t.start()
        data, _ = source.from_http(f"https://127.0.0.1:{port}/answer", pin,
                                   {"network_interfaces": [{"mac": "52:54:00:00:00:01"}]},
                                   attempts=1, deadline=30)
        t.join(60)
    assert data == b"[global]\nfqdn = 'a.test'\n"
    assert result["rc"] == 0
    assert json.loads(bodies.read_text())["network_interfaces"][0]["mac"] == "52:54:00:00:00:01"
    assert log.read_text() == "httpd: 200 /answer (25 bytes)\n"


def test_tls_client_with_another_pin_gets_nothing(tmp_path: Path) -> None:
    """A client pinning another certificate refuses this one: the installer
    says so, and the server logs the failed handshake or connection."""
    from appliance.installer import source

    cert, key, _ = self_signed(tmp_path)
    (tmp_path / "answer").write_bytes(b"secret answer")
    log = tmp_path / "http.log"
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        port = lsock.getsockname()[1]

        def accept() -> None:
            conn, _ = lsock.accept()
            with conn:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "appliance.boot.httpd", "--log", str(log),
                     "--tls", str(cert), str(key), str(tmp_path)],
                    stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.DEVNULL)
            proc.wait(60)

        t = threading.Thread(target=accept)
        t.start()
        with pytest.raises(source.SourceError, match="fingerprint"):
            source.from_http(f"https://127.0.0.1:{port}/answer", "AB" * 32, {}, attempts=1,
                             deadline=30)
        t.join(60)
    assert "200" not in log.read_text()


def test_tls_pipe_reads_a_request_split_into_tiny_records(tmp_path: Path) -> None:
    """The request arrives in many small TLS records (a byte at a time):
    the server reassembles it; the reply ends with a TLS close_notify."""
    cert, key, _ = self_signed(tmp_path)
    (tmp_path / "f").write_bytes(b"x" * 70000)  # more than one TLS record back
    guest, proc = guestfwd_like([sys.executable, "-m", "appliance.boot.httpd", "--tls",
                                 str(cert), str(key), str(tmp_path)])
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with ctx.wrap_socket(guest) as tls:
        for b in b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n":
            tls.sendall(bytes([b]))
        reply = b""
        while chunk := tls.recv(65536):  # b"" only after the server's close_notify
            reply += chunk
    assert proc.wait(60) == 0
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") and body == b"x" * 70000
