"""Answers ONE HTTP request on stdin/stdout with a file from a directory
(GET, HEAD, and POST, whose body is appended to `--bodies FILE`: an answer
server for installer tests).

QEMU's user network runs it for each guest connection to the netboot
address (`guestfwd=tcp:IP:PORT-cmd:python3 -m appliance.boot.httpd DIR`),
so the guest can fetch the netboot files without any listening socket on
the host and without any traffic leaving the machine. QEMU connects stdin,
stdout AND stderr to the guest's connection, so requests are logged to a
file (`--log FILE`), never printed.

With `--tls CERT KEY` the request arrives over TLS, still on stdin/stdout
(ssl.MemoryBIO: the TLS records are moved between the pipe and the TLS
object by hand), so an HTTPS answer server with a self-signed certificate
can be reached through a guestfwd just the same.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import ssl
import sys
import time
import urllib.parse
from pathlib import Path
from typing import BinaryIO, cast


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
        try:
            if not ready or not os.read(fd, 65536):
                return
        except OSError:  # reset: a TLS client closing with our close_notify unread
            return


class TLSPipe(io.RawIOBase):
    """The server side of a TLS connection whose records travel over two
    file descriptors (a guestfwd's stdin and stdout): reads and writes
    plaintext. `close_notify()` ends the TLS session cleanly."""

    def __init__(self, ctx: ssl.SSLContext, fd_in: int, fd_out: int) -> None:
        super().__init__()
        self.fd_in, self.fd_out = fd_in, fd_out
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def _send(self) -> None:
        data = memoryview(self.outgoing.read())
        while data:
            data = data[os.write(self.fd_out, data):]

    def _pump(self, op: str, *args: object) -> object:
        while True:
            try:
                result = getattr(self.tls, op)(*args)
            except ssl.SSLWantReadError:
                self._send()
                data = os.read(self.fd_in, 1 << 16)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
            else:
                self._send()
                return result

    def handshake(self) -> None:
        self._pump("do_handshake")

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = cast(bytes, self._pump("read", len(buf)))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0  # the client closed (cleanly or not): end of the request
        buf[:len(data)] = data
        return len(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return cast(int, self._pump("write", bytes(data)))

    def close_notify(self) -> None:
        """Send our close_notify; the client's reply is not waited for."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        self._send()


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def serve_tls(root: Path, ctx: ssl.SSLContext, fd_in: int, fd_out: int,
              log: Path | None = None, bodies: Path | None = None) -> int:
    """serve_one over TLS on two file descriptors. A failed handshake (a
    client that does not trust the certificate hangs up) is logged: 0."""
    pipe = TLSPipe(ctx, fd_in, fd_out)
    try:
        pipe.handshake()
    except (ssl.SSLError, OSError) as e:
        _log(log, f"TLS handshake failed: {e}")
        return 0
    try:
        # each write is one TLS write, sent at once (no buffering to flush)
        code = serve_one(root, cast(BinaryIO, io.BufferedReader(pipe)), cast(BinaryIO, pipe),
                         log, bodies)
        pipe.close_notify()
    except (ssl.SSLError, OSError) as e:
        _log(log, f"TLS connection failed: {e}")
        return 0
    return code


def main(argv: list[str]) -> int:
    opts: dict[str, Path] = {}
    tls: tuple[Path, Path] | None = None
    while argv and argv[0] in ("--log", "--bodies", "--tls"):
        if argv[0] == "--tls" and len(argv) >= 4:
            tls, argv = (Path(argv[1]), Path(argv[2])), argv[3:]
        elif argv[0] != "--tls" and len(argv) >= 3:
            opts[argv[0]], argv = Path(argv[1]), argv[2:]
        else:
            return 2
    if len(argv) != 1:
        return 2
    if tls is not None:
        code = serve_tls(Path(argv[0]), tls_context(*tls), sys.stdin.fileno(),
                         sys.stdout.fileno(), opts.get("--log"), opts.get("--bodies"))
    else:
        code = serve_one(Path(argv[0]), sys.stdin.buffer, sys.stdout.buffer,
                         opts.get("--log"), opts.get("--bodies"))
        sys.stdout.buffer.flush()
    drain(sys.stdin.buffer)
    return 0 if code == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
