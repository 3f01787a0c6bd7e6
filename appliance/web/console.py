"""The serial console in the browser: a WebSocket (/api/guests/ID/console)
bridged to a VM's console socket, or to lxc-console on a pty for a
container. The browser's xterm.js sends keystrokes and shows the bytes.

Auth is the ticket cookie, and the Origin must be this server (a page on
another site cannot open the socket with the user's cookie).

Nothing here blocks the event loop: the pty is non-blocking and what the
browser sends waits in a bounded buffer (INPUT_BUFFER). While that buffer is
full no more is read from the WebSocket (the sender is slowed down by TCP);
a guest that reads nothing for STALL_TIMEOUT seconds gets its console closed.
What the guest prints waits in a bounded queue too (OUTPUT_CHUNKS): when the
browser is slow, the pty is not read until it catches up.
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
INPUT_BUFFER = 256 * 1024  # bytes sent by the browser that the guest has not read yet
OUTPUT_CHUNKS = 64  # reads from the pty not yet sent to the browser (4 KiB each)
STALL_TIMEOUT = 10.0  # seconds a guest may leave a full input buffer unread


class ConsoleStalled(Exception):
    """The guest does not read what is typed or pasted into its console."""


def same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser (a browser always sends Origin on WebSockets)
    return urlsplit(origin).netloc == ws.headers.get("host")


class FdWriter:
    """Writes to a non-blocking file descriptor through a bounded buffer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.room = asyncio.Event()
        self.room.set()
        self.error: OSError | None = None
        self.watching = False

    def _flush(self) -> None:
        try:
            while self.buffer:
                n = os.write(self.fd, self.buffer[:65536])
                del self.buffer[:n]
        except BlockingIOError:
            pass
        except OSError as e:  # the other side is gone (EIO on a pty)
            self.error = e
            self.buffer.clear()
        if self.buffer and not self.watching:
            self.loop.add_writer(self.fd, self._flush)
            self.watching = True
        elif not self.buffer and self.watching:
            self.loop.remove_writer(self.fd)
            self.watching = False
        if self.error is not None or len(self.buffer) <= INPUT_BUFFER // 2:
            self.room.set()
        else:
            self.room.clear()

    async def write(self, data: bytes) -> None:
        """Queue `data`; wait (never block) while the buffer is full.

        Raises ConsoleStalled when the fd takes nothing for STALL_TIMEOUT s."""
        if self.error is not None:
            raise self.error
        self.buffer += data
        self._flush()
        if len(self.buffer) > INPUT_BUFFER:
            try:
                await asyncio.wait_for(self.room.wait(), STALL_TIMEOUT)
            except TimeoutError:
                raise ConsoleStalled(f"the guest read none of {len(self.buffer)} bytes "
                                     f"in {STALL_TIMEOUT:.0f} s") from None
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.watching:
            self.loop.remove_writer(self.fd)
            self.watching = False


async def _pump_to_ws(ws: WebSocket, reader: asyncio.StreamReader) -> None:
    while data := await reader.read(4096):
        await ws.send_bytes(data)


async def _ws_to(ws: WebSocket, write: asyncio.StreamWriter | FdWriter) -> None:
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        data = msg.get("bytes") or (msg.get("text") or "").encode()
        if isinstance(write, FdWriter):
            await write.write(data)
        else:
            write.write(data)
            try:
                await asyncio.wait_for(write.drain(), STALL_TIMEOUT)
            except TimeoutError:
                raise ConsoleStalled(f"the VM read none of its console input in "
                                     f"{STALL_TIMEOUT:.0f} s") from None


async def _vm(ws: WebSocket, path: Path) -> None:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        await _race(_pump_to_ws(ws, reader), _ws_to(ws, writer))
    finally:
        writer.transport.abort()  # what was not sent is dropped, nothing waits for it


async def _ct(ws: WebSocket, argv: list[str]) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    reading, eof = True, False

    def readable() -> None:
        nonlocal reading, eof
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: the console's process has exited
            data = b""
        queue.put_nowait(data)
        eof = not data
        if eof or queue.qsize() >= OUTPUT_CHUNKS:
            loop.remove_reader(master)  # at the end, or until the browser catches up
            reading = False

    loop.add_reader(master, readable)

    async def out() -> None:
        nonlocal reading
        while data := await queue.get():
            await ws.send_bytes(data)
            if not reading and not eof and queue.qsize() < OUTPUT_CHUNKS // 2:
                loop.add_reader(master, readable)
                reading = True

    writer = FdWriter(master)
    try:
        await _race(out(), _ws_to(ws, writer))
    finally:
        writer.close()
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
    except ConsoleStalled as e:
        closing = f"\r\n[console closed: {e}]\r\n"
    else:
        closing = "\r\n[console closed]\r\n"
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await ws.send_text(closing)
        await ws.close()
