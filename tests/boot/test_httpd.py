"""The one-request HTTP responder used for netboot inside QEMU user networking."""

from __future__ import annotations

import io
from pathlib import Path

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
