"""Consoles: the terminal (Ctrl-A x) and the Unix socket the web UI will use."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import VmmError
from appliance.vmm import EntryMode, ExitStatus, Machine, MachineConfig
from appliance.vmm.console import EscapeParser, SocketConsole, TerminalConsole

GUEST_LOAD = 0x10000


def _machine(guests: dict[str, bytes], name: str) -> Machine:
    vm = Machine(MachineConfig(memory_mib=32))
    vm.load_raw(GUEST_LOAD, guests[name])
    vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
    return vm


def test_escape_parser_quits_on_ctrl_a_x() -> None:
    p = EscapeParser()
    assert p.feed(b"ab\x01") == (b"ab", False)
    assert p.feed(b"xcd") == (b"", True)


def test_escape_parser_passes_a_doubled_ctrl_a_and_drops_unknown_escapes() -> None:
    p = EscapeParser()
    assert p.feed(b"a\x01\x01b\x01zc") == (b"a\x01bc", False)


def test_terminal_console_feeds_input_and_shows_output(guests: dict[str, bytes]) -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        os.write(in_w, b"tty works\n")
        with _machine(guests, "echo") as vm:
            console = TerminalConsole(in_r, out_w)
            with console.attached(vm):
                result = vm.run(timeout=20, sink=console.write)
        assert result.status is ExitStatus.POWERED_OFF
        assert os.read(out_r, 100) == b">TTY WORKS\n"
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)


def test_terminal_console_ctrl_a_x_kills_the_guest(guests: dict[str, bytes]) -> None:
    in_r, in_w = os.pipe()
    try:
        threading.Timer(0.3, os.write, args=(in_w, b"\x01x")).start()
        with _machine(guests, "halt") as vm:
            console = TerminalConsole(in_r, os.open(os.devnull, os.O_WRONLY))
            with console.attached(vm):
                result = vm.run(timeout=20, sink=console.write)
        assert result.status is ExitStatus.KILLED
        assert result.run_s < 10
    finally:
        os.close(in_r)
        os.close(in_w)


def test_socket_console_serves_backlog_and_takes_input(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "console.sock"
    received = bytearray()

    def client() -> None:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
            s.settimeout(10)
            while b">" not in received:  # the prompt the guest wrote before we came
                received.extend(s.recv(100))
            s.sendall(b"over the socket\n")
            while not received.endswith(b"\n"):
                chunk = s.recv(100)
                if not chunk:
                    break
                received.extend(chunk)

    with _machine(guests, "echo") as vm:
        console = SocketConsole(path)
        with console.attached(vm):
            time.sleep(0.2)  # let the guest print its prompt with nobody connected
            t = threading.Thread(target=client)
            t.start()
            result = vm.run(timeout=20, sink=console.write)
            t.join()
    assert bytes(received) == b">OVER THE SOCKET\n"
    assert result.status is ExitStatus.POWERED_OFF
    assert not path.exists()


def test_socket_console_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "console.sock"
    path.write_text("precious")
    with pytest.raises(VmmError, match="not a socket"):
        SocketConsole(path)
    assert path.read_text() == "precious"


def test_socket_console_never_blocks_on_a_client_that_does_not_read(tmp_path: Path) -> None:
    from appliance.vmm import Machine, MachineConfig
    from appliance.vmm.console import BACKLOG_BYTES

    path = tmp_path / "console.sock"
    with Machine(MachineConfig(memory_mib=16)) as vm:
        console = SocketConsole(path)
        with console.attached(vm), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.connect(str(path))  # connects, then never reads
            time.sleep(0.3)  # the server takes the client (it polls every 0.1 s)
            # far more than any socket buffer holds: write() must never wait
            chunk = b"y" * 65536
            writer = threading.Thread(target=lambda: [console.write(chunk) for _ in range(200)])
            t0 = time.monotonic()
            writer.start()
            writer.join(10)
            assert not writer.is_alive(), "console.write blocked on a client that does not read"
            assert time.monotonic() - t0 < 10
            assert console.buffered <= BACKLOG_BYTES
            assert console.dropped > 0
            # a client that starts reading gets the newest output, bounded
            got = bytearray()
            idle.settimeout(1)
            try:
                while chunk_in := idle.recv(65536):
                    got += chunk_in
            except TimeoutError:
                pass
            assert got.endswith(b"y" * 1000)


def test_socket_console_buffers_with_no_client_and_bounds_the_buffer(
    guests: dict[str, bytes], tmp_path: Path
) -> None:
    from appliance.vmm.console import BACKLOG_BYTES

    with _machine(guests, "spew") as vm:
        console = SocketConsole(tmp_path / "console.sock")
        written = 0

        def sink(data: bytes) -> None:
            nonlocal written
            console.write(data)
            written += len(data)
            if written > 2 * BACKLOG_BYTES:
                vm.stop()  # enough output went by with nobody connected

        with console.attached(vm):
            result = vm.run(timeout=120, sink=sink)
        assert result.status is ExitStatus.KILLED
        assert written > 2 * BACKLOG_BYTES, result
        assert console.buffered == BACKLOG_BYTES
        assert console.dropped == written - BACKLOG_BYTES
