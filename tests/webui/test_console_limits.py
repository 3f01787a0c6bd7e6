"""The console WebSocket never blocks the web server (issue 19, item 8): a
guest that does not read its console while a client pastes megabytes leaves
every other request answering, and gets its console closed after
STALL_TIMEOUT; a guest that reads gets every byte. A real server (uvicorn in
a thread), a real pty or Unix socket, a real WebSocket client; the console's
target is set on the app's Host (a stand-in for lxc-console or a VM)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from appliance.host import HostPaths
from appliance.web import console
from appliance.web.app import make_app
from appliance.web.auth import AuthSettings

from .conftest import serve_in_thread

PASTE = 8 << 20  # bytes
CHUNK = 64 << 10
STALL = 2.0


@pytest.fixture
def app(web_paths: HostPaths, settings: AuthSettings,
        monkeypatch: pytest.MonkeyPatch) -> Starlette:
    monkeypatch.setattr(console, "STALL_TIMEOUT", STALL)
    return make_app(web_paths, settings, secure_cookie=False)


def token_header(app: Starlette) -> dict[str, str]:
    tokenid, secret = app.state.auth.create_token("root@pam", "console")
    return {"Authorization": f"ApplianceToken {tokenid}={secret}"}


class Paster(threading.Thread):
    """Opens the console, pastes PASTE bytes of text lines, collects what comes back."""

    def __init__(self, url: str, headers: dict[str, str], data: bytes | None = None,
                 wait_for: bytes = b"") -> None:
        super().__init__(daemon=True)
        self.ws_url = url.replace("http://", "ws://") + "/api/guests/100/console"
        self.headers = headers
        self.data = data if data is not None else (b"x" * 63 + b"\n") * (PASTE // 64)
        self.wait_for = wait_for
        self.got = bytearray()
        self.closed = threading.Event()
        self.error: BaseException | None = None
        self.ws: Any = None

    def abort(self) -> None:
        """Drop the connection (a sender blocked by TCP back-pressure returns)."""
        if self.ws is not None:
            with contextlib.suppress(OSError):
                self.ws.socket.shutdown(socket.SHUT_RDWR)
        self.join(timeout=10)

    def run(self) -> None:
        try:
            with connect(self.ws_url, additional_headers=self.headers,
                         max_size=None, open_timeout=10, close_timeout=1) as ws:
                self.ws = ws
                reader = threading.Thread(target=self.read, args=(ws,), daemon=True)
                reader.start()
                deadline = time.monotonic() + 20
                while self.wait_for not in self.got and time.monotonic() < deadline:
                    time.sleep(0.05)
                try:
                    for i in range(0, len(self.data), CHUNK):
                        if self.closed.is_set():
                            break
                        ws.send(self.data[i:i + CHUNK])
                except (ConnectionClosed, OSError):
                    pass
                reader.join(timeout=30)
        except BaseException as e:  # reported by the test
            self.error = e

    def read(self, ws: Any) -> None:
        try:
            for msg in ws:
                self.got += msg if isinstance(msg, bytes) else msg.encode()
                if b"[console closed" in self.got:
                    break
        except ConnectionClosed:
            pass
        self.closed.set()


def answer_times(url: str, until: threading.Event, seconds: float) -> list[float]:
    """How long GET /login takes, again and again, for `seconds` or until `until`."""
    times = []
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=5) as c:
        while time.monotonic() < end and not until.is_set():
            t = time.monotonic()
            with contextlib.suppress(httpx.TimeoutException):
                c.get("/login")
            times.append(time.monotonic() - t)
            time.sleep(0.1)
    return times


@contextlib.contextmanager
def killed_at_end(pid_file: Path) -> Iterator[None]:
    """Kill the console's process (its pid is in pid_file) at the end, whatever happened."""
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_a_pty_that_is_never_read_does_not_stop_the_server(app: Starlette, tmp_path: Path,
                                                           loop: str) -> None:
    """With asyncio's loop a blocking write froze the server; with uvloop (which
    makes the fd non-blocking) it closed the console at the first long paste."""
    pid_file = tmp_path / "pid"
    argv = ["sh", "-c", f"echo $$ > {pid_file}; echo READY; exec sleep 600"]
    app.state.host.console_target = lambda gid: ("command", argv)
    with serve_in_thread(app, loop) as url, killed_at_end(pid_file):
        paster = Paster(url, token_header(app), wait_for=b"READY")
        paster.start()
        times = answer_times(url, paster.closed, seconds=STALL + 10)
        assert len(times) >= 5 and max(times) < 1.0, times
        assert paster.closed.wait(timeout=10), "the stalled console was not closed"
        paster.abort()
    assert paster.error is None, paster.error
    assert b"[console closed: the guest read none of" in paster.got


def test_a_vm_socket_that_is_never_read_does_not_stop_the_server(app: Starlette,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "console.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]),
                     daemon=True).start()
    app.state.host.console_target = lambda gid: ("socket", path)
    try:
        with serve_in_thread(app) as url:
            paster = Paster(url, token_header(app))
            paster.start()
            times = answer_times(url, paster.closed, seconds=STALL + 10)
            assert len(times) >= 5 and max(times) < 1.0, times
            assert paster.closed.wait(timeout=10), "the stalled console was not closed"
            paster.abort()
    finally:
        for s in (*accepted, listener):
            s.close()
    assert paster.error is None, paster.error
    assert b"[console closed: the VM read none of its console input" in paster.got


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_a_paste_into_a_reading_console_arrives_whole(app: Starlette, tmp_path: Path,
                                                      loop: str) -> None:
    out, pid_file = tmp_path / "pasted", tmp_path / "pid"
    size = 2 << 20
    data = bytes(range(32, 127)) * (size // 95) + b"z" * (size % 95)
    argv = ["sh", "-c", f"echo $$ > {pid_file}; stty raw -echo; echo READY; "
            f"head -c {size} > {out}; echo DONE; exec sleep 600"]
    app.state.host.console_target = lambda gid: ("command", argv)
    with serve_in_thread(app, loop) as url, killed_at_end(pid_file):
        paster = Paster(url, token_header(app), data=data, wait_for=b"READY")
        paster.start()
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (
            [time.sleep(0.05) for _ in range(600) if b"DONE" not in paster.got
             and not paster.closed.is_set()], done.set()), daemon=True)
        waiter.start()
        times = answer_times(url, done, seconds=30)
        assert done.wait(timeout=5) and b"DONE" in paster.got, bytes(paster.got[-200:])
    assert out.read_bytes() == data
    assert max(times) < 1.0, times


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_megabytes_of_output_reach_a_slow_browser_whole_and_in_order(
        app: Starlette, tmp_path: Path, loop: str) -> None:
    """A browser that lags behind a guest's output gets all of it, in order."""
    pid_file, count = tmp_path / "pid", 300_000
    argv = ["sh", "-c", f"echo $$ > {pid_file}; stty -echo; sleep 0.5; seq 1 {count}; "
            "echo END; exec sleep 600"]
    app.state.host.console_target = lambda gid: ("command", argv)
    got = bytearray()
    with serve_in_thread(app, loop) as url, killed_at_end(pid_file):
        ws_url = url.replace("http://", "ws://") + "/api/guests/100/console"
        with connect(ws_url, additional_headers=token_header(app), max_size=None,
                     close_timeout=1) as ws:
            time.sleep(3)  # the browser lags: seq has long finished writing
            deadline = time.monotonic() + 60
            while b"END" not in got and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    msg = ws.recv(timeout=5)
                    got += msg if isinstance(msg, bytes) else msg.encode()
                    time.sleep(0.001)
            ws.socket.shutdown(socket.SHUT_RDWR)
    lines = got.decode().split("\r\n")
    numbers = [int(x) for x in lines if x.isdigit()]
    assert numbers == list(range(1, count + 1))
