"""`appliance vm run` end to end through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
    assert r.returncode == 5
    assert r.stderr.startswith(f"appliance: error: {bogus}: not a bzImage")
    assert "Traceback" not in r.stderr


def test_missing_kvm_device_is_a_clear_error(debian_kernel: Path, tmp_path: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--kvm", str(tmp_path / "kvm"))
    assert r.returncode == 5
    assert "cannot open" in r.stderr and "No such file or directory" in r.stderr


def test_timeout_kills_the_guest_and_reports_json(debian_kernel: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--timeout", "1", "--cpus", "2", "--json")
    assert r.returncode == 124, r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "killed"
    assert result["counters"]["exits_total"] >= 0
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
    assert r.returncode == 5
    assert f"disk {tmp_path / 'none.img'}: No such file or directory" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_disk_option_is_a_clear_error(debian_kernel: Path, tmp_path: Path) -> None:
    img = tmp_path / "d.img"
    img.write_bytes(b"\0" * 4096)
    r = appliance("--kernel", str(debian_kernel), "--disk", f"{img},fast")
    assert r.returncode == 5
    assert "unknown option 'fast' (known: ro, rw)" in r.stderr


def test_missing_tap_is_a_clear_error_before_the_guest_starts(debian_kernel: Path) -> None:
    r = appliance("--kernel", str(debian_kernel), "--net", "nosuchtap0", "--json")
    assert r.returncode == 5
    assert "TAP nosuchtap0 does not exist" in r.stderr
    assert r.stdout == ""


def test_disk_and_net_specs_parse() -> None:
    from appliance.vmm.launcher import DiskSpec, default_cmdline, parse_disk

    assert parse_disk("/x/root.img") == DiskSpec(Path("/x/root.img"), False)
    assert parse_disk("/x/root.img,ro") == DiskSpec(Path("/x/root.img"), True)
    assert "pci=conf1" in default_cmdline(True) and "pci=off" in default_cmdline(False)
