"""`appliance vm run` end to end through the console script."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def appliance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "vm", "run", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_not_a_bzimage_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"\0" * 4096)
    r = appliance("--kernel", str(bogus))
    assert r.returncode == 9  # VmmError
    assert r.stderr.startswith(f"appliance: error: {bogus}: not a bzImage")
    assert "Traceback" not in r.stderr


def test_missing_kvm_device_is_a_clear_error(debian_kernel: Path, tmp_path: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--kvm", str(tmp_path / "kvm"))
    assert r.returncode == 9  # VmmError
    assert "cannot open" in r.stderr and "No such file or directory" in r.stderr


def test_timeout_kills_the_guest_and_reports_json(debian_kernel: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--timeout", "1", "--cpus", "2", "--json")
    assert r.returncode == 124, r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "killed"
    c = result["counters"]
    # The vCPUs ran: each stop either ended an exit or kicked KVM_RUN (EINTR).
    assert c["exits_total"] + c["interrupted"] >= 1, c
    # Every exit by kind is also counted in exits_total.
    by_kind = ("io_in", "io_out", "mmio_read", "mmio_write", "hlt", "shutdown")
    assert sum(c[k] for k in by_kind) <= c["exits_total"], c
    assert 1.0 <= result["run_s"] < 10


def test_ctrl_a_x_on_the_terminal_quits_and_restores_the_tty(debian_kernel: Path) -> None:
    import os
    import pty
    import termios
    import time

    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "vm", "run", "--kernel", str(debian_kernel),
             "--timeout", "60"],
            stdin=slave, stdout=slave, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait for the console to go raw
            if not termios.tcgetattr(slave)[3] & termios.ICANON:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the console never switched the terminal to raw mode")
        os.write(master, b"\x01x")
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 124, err
        assert "killed" in err
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_console_socket_is_served_while_running_and_removed_after(
    debian_kernel: Path, tmp_path: Path
) -> None:
    import socket
    import time

    path = tmp_path / "console.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "vm", "run", "--kernel", str(debian_kernel),
         "--console-socket", str(path), "--timeout", "3", "--json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(b"typed into the guest\n")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 124, err
    result = json.loads(out)  # only the result: the console went to the socket
    assert result["counters"]["serial_rx_bytes"] == len(b"typed into the guest\n")
    assert not path.exists()


def test_missing_disk_image_is_a_clear_error(debian_kernel: Path, tmp_path: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--disk", str(tmp_path / "none.img"))
    assert r.returncode == 9  # VmmError
    assert f"disk {tmp_path / 'none.img'}: No such file or directory" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_disk_option_is_a_clear_error(debian_kernel: Path, tmp_path: Path) -> None:
    img = tmp_path / "d.img"
    img.write_bytes(b"\0" * 4096)
    r = appliance("--kernel", str(debian_kernel), "--disk", f"{img},fast")
    assert r.returncode == 9  # VmmError
    assert "unknown option 'fast' (known: ro, rw)" in r.stderr


def test_missing_tap_is_a_clear_error_before_the_guest_starts(debian_kernel: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--net", "nosuchtap0", "--json")
    assert r.returncode == 9  # VmmError
    assert "TAP nosuchtap0 does not exist" in r.stderr
    assert r.stdout == ""


def test_disk_and_net_specs_parse() -> None:
    from appliance.vmm.launcher import DiskSpec, default_cmdline, parse_disk

    assert parse_disk("/x/root.img") == DiskSpec(Path("/x/root.img"), False)
    assert parse_disk("/x/root.img,ro") == DiskSpec(Path("/x/root.img"), True)
    assert "pci=conf1" in default_cmdline(True) and "pci=off" in default_cmdline(False)


@pytest.fixture(scope="module")
def console_kernels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The host tests' console guest as bzImages: "kbd" resets on
    Ctrl-Alt-Delete, "nokbd" never reads its keyboard."""
    from tests.host.conftest import build_console_guest

    out = tmp_path_factory.mktemp("console-guest")
    return {"kbd": build_console_guest(out, "vmlinuz"),
            "nokbd": build_console_guest(out, "vmlinuz-nokbd", ("NO_KEYBOARD",))}  # fmt: skip


class Running:
    """`appliance vm run` of a console guest, its console socket read up to
    the guest's prompt (from then on the monitor handles SIGTERM)."""

    def __init__(self, kernel: Path, sock: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "vm", "run", "--kernel", str(kernel),
             "--cmdline", "console=ttyS0", "--console-socket", str(sock), "--timeout", "60",
             *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(sock))
        self.sock.settimeout(20)
        self.console = b""
        while b"ready> " not in self.console:
            chunk = self.sock.recv(4096)
            assert chunk, self.console
            self.console += chunk

    def finish(self) -> tuple[int, str]:
        """Wait for the end; (exit status, stderr); the rest of the console is read."""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(4096):
                self.console += chunk
        self.sock.close()
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


def test_sigterm_asks_the_guest_to_shut_down(
    console_kernels: dict[str, Path], tmp_path: Path
) -> None:
    vm = Running(console_kernels["kbd"], tmp_path / "console.sock")
    vm.proc.terminate()
    rc, err = vm.finish()
    assert rc == 0, err
    assert "vm: shut down: guest shut down on request" in err
    assert b"ctrl-alt-del: reset" in vm.console  # the guest saw Delete and reset itself


def test_a_guest_that_ignores_sigterm_is_stopped_after_the_grace_period(
    console_kernels: dict[str, Path], tmp_path: Path
) -> None:
    vm = Running(console_kernels["nokbd"], tmp_path / "console.sock", "--shutdown-grace", "1")
    t0 = time.monotonic()
    vm.proc.terminate()
    rc, err = vm.finish()
    assert rc == 124, err
    assert "vm: killed: stopped by the host (the guest did not shut down on request)" in err
    assert 1 <= time.monotonic() - t0 < 10


def test_a_second_sigterm_stops_the_guest_at_once(
    console_kernels: dict[str, Path], tmp_path: Path
) -> None:
    vm = Running(console_kernels["nokbd"], tmp_path / "console.sock")  # grace: 90 s
    t0 = time.monotonic()
    vm.proc.terminate()
    time.sleep(0.5)
    vm.proc.terminate()
    rc, err = vm.finish()
    assert rc == 124, err
    assert "vm: killed: stopped by the host (the guest did not shut down on request)" in err
    assert time.monotonic() - t0 < 10
