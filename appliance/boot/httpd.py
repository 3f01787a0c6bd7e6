"""Answers ONE HTTP request on stdin/stdout with a file from a directory
(GET, HEAD, and POST, whose body is appended to `--bodies FILE`: an answer
server for installer tests).

QEMU's user network runs it for each guest connection to the netboot
address (`guestfwd=tcp:IP:PORT-cmd:python3 -m appliance.boot.httpd DIR`),
so the guest can fetch the netboot files without any listening socket on
the host and without any traffic leaving the machine. QEMU connects stdin,
stdout AND stderr to the guest's connection, so requests are logged to a
file (`--log FILE`), never printed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.parse
from pathlib import Path
from typing import BinaryIO


def serve_one(root: Path, rfile: BinaryIO, wfile: BinaryIO, log: Path | None = None,
              bodies: Path | None = None) -> int:
    request = rfile.readline(8192).decode("latin-1").split()
    length = 0
    while (line := rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = min(int(value.strip()), 1 << 20)
    if len(request) >= 2 and request[0] == "POST":
        body = rfile.read(length) if length else b""
        if bodies is not None:
            with open(bodies, "ab") as f:
                f.write(body + b"\n")
    if len(request) < 2 or request[0] not in ("GET", "HEAD", "POST"):
        wfile.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        _log(log, f"400 {' '.join(request)[:200]}")
        return 400
    rel = urllib.parse.unquote(urllib.parse.urlsplit(request[1]).path).lstrip("/")
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_file() or base not in path.parents:
        wfile.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        _log(log, f"404 {request[1]}")
        return 404
    size = path.stat().st_size
    wfile.write(f"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode())
    if request[0] in ("GET", "POST"):
        with open(path, "rb") as f:
            shutil.copyfileobj(f, wfile, 1 << 20)
    wfile.flush()
    _log(log, f"200 {request[1]} ({size} bytes)")
    return 200


def _log(log: Path | None, line: str) -> None:
    if log is not None:
        with open(log, "a") as f:
            f.write(f"httpd: {line}\n")


def drain(rfile: BinaryIO, seconds: float = 30.0) -> None:
    """Wait for the guest to close its side before exiting. QEMU's user
    network can busy-loop on a guestfwd `cmd:` whose process is gone while
    the guest still holds the connection open; the guest closes first this way."""
    import select

    fd = rfile.fileno()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready or not os.read(fd, 65536):
            return


def main(argv: list[str]) -> int:
    opts: dict[str, Path] = {}
    while len(argv) >= 3 and argv[0] in ("--log", "--bodies"):
        opts[argv[0]], argv = Path(argv[1]), argv[2:]
    if len(argv) != 1:
        return 2
    code = serve_one(Path(argv[0]), sys.stdin.buffer, sys.stdout.buffer, opts.get("--log"),
                     opts.get("--bodies"))
    sys.stdout.buffer.flush()
    drain(sys.stdin.buffer)
    return 0 if code == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
