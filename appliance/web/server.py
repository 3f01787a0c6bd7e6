"""`appliance web serve`: the web UI and API over HTTPS (port 8006).

Server stack: Starlette + uvicorn. Starlette is small (routing, forms,
WebSockets, jinja2 templates, static files, a test client) with few
dependencies; uvicorn is its standard server, speaks TLS and WebSockets
(through the `websockets` package, its sans-I/O implementation). It runs on
uvloop's event loop with httptools' HTTP parser (C extensions from manylinux
wheels: about three times the requests per second of asyncio and h11). All
are pinned in pyproject.toml and deps/python-runtime.txt.

Limits: request bodies are cut at 1 MiB on every route (app.BodyLimit), a
request head (request line and headers) at 64 KiB, a WebSocket message at
1 MiB. On SIGTERM the server stops within a few seconds whatever its
clients do: idle keep-alive connections are closed, open consoles get a
close frame (1012, service restart), and requests still running after
GRACEFUL_TIMEOUT seconds are cancelled.

A self-signed certificate is made on first start (ETC/web/server.crt and
server.key); replace both files with your own and restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appliance.errors import ApplianceError
from appliance.host import HostPaths
from appliance.runner import run

log = logging.getLogger("appliance.web")
MAX_HEAD = 64 << 10  # request line and headers
GRACEFUL_TIMEOUT = 3  # s: requests still running then are cancelled
CLOSE_GRACE = 0.5  # s: a peer that does not answer TLS close_notify by then is cut off


def ensure_certificate(paths: HostPaths) -> tuple[Path, Path]:
    crt, key = paths.web / "server.crt", paths.web / "server.key"
    if crt.exists() and key.exists():
        return crt, key
    paths.web.mkdir(parents=True, exist_ok=True)
    name = socket.gethostname()
    tmp_key, tmp_crt = key.with_suffix(".key.new"), crt.with_suffix(".crt.new")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "3650", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1",
         "-keyout", tmp_key, "-out", tmp_crt], capture=True,
        what="making the web server's self-signed certificate")
    os.chmod(tmp_key, 0o600)
    os.replace(tmp_key, key)
    os.replace(tmp_crt, crt)
    log.warning("made a self-signed certificate %s", crt)
    return crt, key


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if (not sep or not port.isascii() or not port.isdigit() or len(port) > 5
            or not 0 < int(port) < 65536):
        raise ApplianceError(f"--listen {listen!r:.60}: expected HOST:PORT (port 1 to 65535), "
                             "e.g. 127.0.0.1:8006")
    return host.strip("[]") or "127.0.0.1", int(port)


class LimitedHttpTools(HttpToolsProtocol):
    """httptools' protocol with a bound on the request head: httptools (unlike
    h11) gathers a request line or header of any length, so a client could
    make the server hold an endless one. Past MAX_HEAD bytes without the end
    of the head, the connection gets 431 and is closed."""

    head_bytes = 0
    in_head = True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.in_head and self.head_bytes > MAX_HEAD and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 b"content-type: text/plain; charset=utf-8\r\n"
                                 b"connection: close\r\ncontent-length: 29\r\n\r\n"
                                 b"request headers: at most 64 KiB")
            self.transport.close()


class Server(uvicorn.Server):
    """uvicorn's server, saying what it runs on when it is up, and stopping
    promptly: connections closed at shutdown whose peer does not finish the
    TLS close (an idle browser tab, a client that never reads) are cut
    off after CLOSE_GRACE instead of uvicorn's 30 s TLS shutdown wait."""

    banner = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        loop = type(asyncio.get_running_loop())
        print(f"{self.banner} [{loop.__module__}.{loop.__name__}, "
              f"{self.config.http_protocol_class.__name__}]", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async def cut_off() -> None:
            await asyncio.sleep(CLOSE_GRACE)
            while True:
                for conn in list(self.server_state.connections):
                    transport: Any = getattr(conn, "transport", None)
                    if transport is not None and transport.is_closing():
                        transport.abort()
                await asyncio.sleep(0.1)

        cutter = asyncio.ensure_future(cut_off())
        try:
            await super().shutdown(sockets)
        finally:
            cutter.cancel()


def make_config(app: Any, host: str, port: int, crt: Path, key: Path) -> uvicorn.Config:
    from appliance.web.api import MAX_BODY

    return uvicorn.Config(
        app, host=host, port=port, ssl_certfile=str(crt), ssl_keyfile=str(key),
        log_level="warning", access_log=False, proxy_headers=False,
        loop="uvloop", http=LimitedHttpTools, ws="websockets-sansio", ws_max_size=MAX_BODY,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT)


def serve(listen: str = "127.0.0.1:8006") -> int:
    from appliance.web.app import make_app

    host, port = parse_listen(listen)
    paths = HostPaths.from_env()
    paths.ensure()
    crt, key = ensure_certificate(paths)
    app = make_app(paths)
    sock = listen_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    server = Server(make_config(app, host, port, crt, key))
    server.banner = f"appliance web UI: https://{shown}:{port}/ (certificate {crt})"
    server.run(sockets=[sock])
    return 0


def listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket. An IPv6 address (e.g. `::`, every address) also
    takes IPv4 connections (asyncio, left alone, makes IPv6 sockets v6-only)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ApplianceError(f"--listen {where}: cannot listen there: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
