"""Consoles for a microVM's serial port: the terminal, or a Unix socket.

A console gets the guest's output through `write()` (the sink passed to
Machine.run) and feeds what the user types to Machine.send_all().
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

from appliance.errors import VmmError
from appliance.vmm.machine import Machine

ESCAPE = 0x01  # Ctrl-A
QUIT = ord("x")
BACKLOG_BYTES = 64 * 1024


def _feed(vm: Machine, data: bytes) -> None:
    """Type into the guest; input it does not read within a while is dropped."""
    with contextlib.suppress(VmmError):
        vm.send_all(data, timeout=5.0)


class EscapeParser:
    """Ctrl-A x quits; Ctrl-A Ctrl-A sends one Ctrl-A; Ctrl-A other is dropped."""

    def __init__(self) -> None:
        self._armed = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            if self._armed:
                self._armed = False
                if b == QUIT:
                    return bytes(out), True
                if b == ESCAPE:
                    out.append(ESCAPE)
            elif b == ESCAPE:
                self._armed = True
            else:
                out.append(b)
        return bytes(out), False


class _InputThread:
    """Reads an fd until stopped, calling `on_data` with what arrived."""

    def __init__(self, fd: int, on_data: Callable[[bytes], bool]) -> None:
        self._fd = fd
        self._on_data = on_data
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name="vmm-input", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                data = os.read(self._fd, 4096)
            except OSError:
                return
            if not data or not self._on_data(data):
                return

    def stop(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)


class TerminalConsole:
    """The serial console on this terminal (raw mode when it is a tty)."""

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self._in = stdin_fd
        self._out = stdout_fd
        self._parser = EscapeParser()

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._out, data)

    @contextlib.contextmanager
    def attached(self, vm: Machine) -> Iterator[None]:
        saved = None
        if os.isatty(self._in):
            saved = termios.tcgetattr(self._in)
            tty.setraw(self._in)

        def on_data(data: bytes) -> bool:
            to_guest, quit_ = self._parser.feed(data)
            if to_guest:
                _feed(vm, to_guest)
            if quit_:
                vm.stop()
            return not quit_

        reader = _InputThread(self._in, on_data)
        reader.start()
        try:
            yield
        finally:
            reader.stop()
            if saved is not None:
                termios.tcsetattr(self._in, termios.TCSADRAIN, saved)


class SocketConsole:
    """The serial console on a Unix stream socket, one client at a time.

    The guest never waits for the socket: output goes to a bounded buffer
    (the last BACKLOG_BYTES) that is sent to the client as fast as it reads,
    without blocking.  With no client, or a client that stops reading, the
    oldest output is dropped (counted in `dropped`); a client that connects
    later gets the buffer first.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.dropped = 0
        self._lock = threading.Lock()
        self._backlog = bytearray()
        self._client: socket.socket | None = None
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise VmmError(f"--console-socket {self.path}: exists and is not a socket")
            self.path.unlink()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._server.bind(str(self.path))
        except OSError as e:
            self._server.close()
            raise VmmError(f"--console-socket {self.path}: {e.strerror}") from e
        self._server.listen(1)

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._backlog)

    def write(self, data: bytes) -> None:
        with self._lock:
            self._backlog += data
            excess = len(self._backlog) - BACKLOG_BYTES
            if excess > 0:
                del self._backlog[:excess]
                self.dropped += excess
            self._flush_locked()

    def _flush_locked(self) -> None:
        """Send what the client takes without blocking; keep the rest."""
        if self._client is None or not self._backlog:
            return
        try:
            sent = self._client.send(self._backlog)
        except BlockingIOError:
            return
        except OSError:
            self._client.close()
            self._client = None
            return
        del self._backlog[:sent]

    def _serve(self, vm: Machine, stop: threading.Event) -> None:
        while not stop.is_set():
            ready, _, _ = select.select([self._server], [], [], 0.1)
            if not ready:
                continue
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            conn.setblocking(False)
            with self._lock:
                self._client = conn
                self._flush_locked()
            while not stop.is_set():
                with self._lock:
                    if self._client is not conn:
                        break  # a send failed: the client is gone
                    pending = [conn] if self._backlog else []
                readable, writable, _ = select.select([conn], pending, [], 0.1)
                if writable:
                    with self._lock:
                        self._flush_locked()
                if not readable:
                    continue
                try:
                    data = conn.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    break
                _feed(vm, data)
            with self._lock:
                if self._client is conn:
                    self._client = None
            conn.close()

    @contextlib.contextmanager
    def attached(self, vm: Machine) -> Iterator[None]:
        stop = threading.Event()
        server = threading.Thread(
            target=self._serve, args=(vm, stop), name="vmm-console-socket", daemon=True
        )
        server.start()
        try:
            yield
        finally:
            stop.set()
            server.join()
            with self._lock:
                if self._client is not None:
                    self._client.close()
                    self._client = None
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
