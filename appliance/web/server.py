"""`appliance web serve`: the web UI and API over HTTPS (port 8006).

Server stack: Starlette + uvicorn. Starlette is small (routing, forms,
WebSockets, jinja2 templates, static files, a test client) with few
dependencies; uvicorn is its standard server, speaks TLS and WebSockets
(through the `websockets` package) and needs no C extensions of its own.
Both are pinned in pyproject.toml.

A self-signed certificate is made on first start (ETC/web/server.crt and
server.key); replace both files with your own and restart.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.host import HostPaths
from appliance.runner import run

log = logging.getLogger("appliance.web")


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
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ApplianceError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8006")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(listen: str = "127.0.0.1:8006") -> int:
    import uvicorn

    from appliance.web.app import make_app

    host, port = parse_listen(listen)
    paths = HostPaths.from_env()
    paths.ensure()
    crt, key = ensure_certificate(paths)
    app = make_app(paths)
    config = uvicorn.Config(app, host=host, port=port, ssl_certfile=str(crt),
                            ssl_keyfile=str(key), log_level="warning", ws="websockets",
                            proxy_headers=False)
    sock = listen_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"appliance web UI: https://{shown}:{port}/ (certificate {crt})", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
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
