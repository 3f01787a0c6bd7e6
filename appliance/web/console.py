"""The serial console in the browser: a WebSocket (/api/guests/ID/console)
bridged to a VM's console socket, or to lxc-console on a pty for a
container. The browser's xterm.js sends keystrokes and shows the bytes.

Auth is the ticket cookie, and the Origin must be this server (a page on
another site cannot open the socket with the user's cookie).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from appliance.errors import HostError
from appliance.host import Host
from appliance.web.api import identify
from appliance.web.auth import Auth

POLICY_VIOLATION = 1008


def same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser (a browser always sends Origin on WebSockets)
    return urlsplit(origin).netloc == ws.headers.get("host")


async def _pump_to_ws(ws: WebSocket, reader: asyncio.StreamReader) -> None:
    while data := await reader.read(4096):
        await ws.send_bytes(data)


async def _ws_to(ws: WebSocket, write: asyncio.StreamWriter | int) -> None:
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        data = msg.get("bytes") or (msg.get("text") or "").encode()
        if isinstance(write, int):
            os.write(write, data)
        else:
            write.write(data)
            await write.drain()


async def _vm(ws: WebSocket, path: Path) -> None:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        await _race(_pump_to_ws(ws, reader), _ws_to(ws, writer))
    finally:
        writer.close()


async def _ct(ws: WebSocket, argv: list[str]) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(master, 4096)
        except OSError:
            data = b""
        queue.put_nowait(data)
        if not data:
            loop.remove_reader(master)

    loop.add_reader(master, readable)

    async def out() -> None:
        while data := await queue.get():
            await ws.send_bytes(data)

    try:
        await _race(out(), _ws_to(ws, master))
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(master)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        os.close(master)


async def _race(*aws: object) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[call-overload]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    for t in pending:
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError):
            await t
    for t in done:
        exc = t.exception()
        if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError):
            raise exc


async def console_ws(ws: WebSocket, host: Host, auth: Auth) -> None:
    identity = identify(ws, auth)  # type: ignore[arg-type]
    if identity is None or not same_origin(ws):
        await ws.close(code=POLICY_VIOLATION)
        return
    try:
        kind, target = host.console_target(int(ws.path_params["id"]))
    except HostError as e:
        await ws.accept()
        await ws.send_text(f"\r\n[console: {e}]\r\n")
        await ws.close()
        return
    await ws.accept()
    try:
        if kind == "socket":
            await _vm(ws, Path(target))
        else:
            await _ct(ws, list(target))
    except (WebSocketDisconnect, ConnectionError):
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await ws.send_text("\r\n[console closed]\r\n")
        await ws.close()
