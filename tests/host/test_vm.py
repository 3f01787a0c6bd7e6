"""VMs: real monitor processes running the console test guest."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from appliance.errors import HostError
from appliance.host import Host, templates
from appliance.host import vm as vmbackend
from appliance.host.store import write_json

REQ = {"name": "vm1", "template": "testguest", "memory_mib": 64}


def read_console(path: Path, send: bytes, want: bytes, timeout: float = 20) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.settimeout(0.2)
        got = b""
        sent = False
        deadline = time.monotonic() + timeout
        while want not in got and time.monotonic() < deadline:
            if not sent and b"ready> " in got:
                s.sendall(send)
                sent = True
            with contextlib.suppress(TimeoutError):
                got += s.recv(4096)
        return got


def test_vm_life_cycle(vm_host: Host) -> None:
    host = vm_host
    created = host.create("vm", {**REQ, "disks": [8], "cpus": 1})
    assert created.status == "OK" and created.guest == 100
    cfg_file = host.paths.guests / "100.toml"
    cfg = tomllib.loads(cfg_file.read_text())  # a readable TOML file
    assert cfg["cmdline"] == "console=ttyS0 test=1"  # the template's default
    disks = [Path(d["path"]) for d in cfg["disks"]]
    assert [d.name for d in disks] == ["vm-100-disk-0.raw", "vm-100-disk-1.raw"]
    assert disks[1].stat().st_size == 8 << 20 and disks[1].stat().st_blocks == 0  # sparse

    old_umask = os.umask(0o022)
    try:
        host.start(100)
    finally:
        os.umask(old_umask)
    guest = host.guest(100)
    assert guest.status == "running"
    assert (host.paths.logs / "vm-100.log").stat().st_mode & 0o077 == 0  # 0600 from the start
    out = read_console(vmbackend.console_path(host.paths, 100), b"hello\r", b"HELLO")
    assert b"cmdline: console=ttyS0 test=1" in out and b"HELLO" in out

    host.shutdown(100)  # Ctrl-Alt-Delete: the guest resets through the i8042
    assert host.guest(100).status == "stopped"
    result = vmbackend.last_result(host.paths, 100)
    assert result is not None and result["status"] == "shut down"
    assert host.guest(100).to_json()["last_run"]["detail"] == "guest shut down on request"
    assert not vmbackend.console_path(host.paths, 100).exists()
    log = (host.paths.logs / "vm-100.log").read_text()  # the VM process's own log
    assert "Warning" not in log and "Traceback" not in log, log

    host.delete(100)
    assert host.list_guests() == [] and not disks[0].exists() and not cfg_file.exists()
    types = [t.type for t in host.tasks.list()]
    assert types == ["vmdelete", "vmshutdown", "vmstart", "vmcreate"]  # newest first
    assert all(t.status == "OK" for t in host.tasks.list())


def start_guest_that_ignores_shutdown(host: Host, files: dict[str, Path]) -> None:
    """VM 100 from a template whose guest never reads its keyboard, running
    (its prompt printed: the monitor handles SIGTERM by then)."""
    templates.add_vm_template(host.paths, "nokbd", files["nokbd_kernel"],
                              cmdline="console=ttyS0", description="ignores Ctrl-Alt-Delete")
    host.create("vm", {**REQ, "template": "nokbd"})
    host.start(100)
    assert b"ready> " in read_console(vmbackend.console_path(host.paths, 100), b"", b"ready> ")


def test_shutdown_of_a_guest_that_ignores_it_fails_after_the_timeout(
    vm_host: Host, test_guest_files: dict[str, Path]
) -> None:
    host = vm_host
    start_guest_that_ignores_shutdown(host, test_guest_files)
    cfg = host.guest(100).config
    t0 = time.monotonic()
    task = host.tasks.run("vmshutdown", 100, "t", lambda log: vmbackend.shutdown(
        host.paths, cfg, log, timeout=2), background=False)
    assert task.status == "VM 100 did not shut down within 2 s; use stop"
    assert 2 <= time.monotonic() - t0 < 10
    assert host.guest(100).status == "running"  # asked, not forced
    host.stop(100)  # SIGKILL still ends it
    assert host.guest(100).status == "stopped" and vmbackend.pid_of(host.paths, 100) is None


def test_a_second_shutdown_stops_a_guest_that_ignored_the_first(
    vm_host: Host, test_guest_files: dict[str, Path]
) -> None:
    host = vm_host
    start_guest_that_ignores_shutdown(host, test_guest_files)
    cfg = host.guest(100).config
    with pytest.raises(HostError, match="did not shut down within 1 s; use stop"):
        vmbackend.shutdown(host.paths, cfg, lambda line: None, timeout=1)
    vmbackend.shutdown(host.paths, cfg, lambda line: None, timeout=20)
    assert host.guest(100).status == "stopped"
    result = vmbackend.last_result(host.paths, 100)
    assert result is not None and result["status"] == "killed"
    assert result["detail"] == "stopped by the host (the guest did not shut down on request)"


def test_vm_outlives_the_process_that_started_it(vm_host: Host) -> None:
    host = vm_host
    host.create("vm", REQ)
    env = {**os.environ, "APPLIANCE_ETC_DIR": str(host.paths.etc),
           "APPLIANCE_STATE_DIR": str(host.paths.state)}
    r = subprocess.run([sys.executable, "-m", "appliance", "vm", "start", "100"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pid = vmbackend.pid_of(host.paths, 100)
    assert pid is not None  # the CLI is gone, the VM runs on in its own session
    assert os.getsid(pid) == pid
    assert host.guest(100).status == "running"
    host.stop(100)  # hard stop: SIGKILL
    assert host.guest(100).status == "stopped" and vmbackend.pid_of(host.paths, 100) is None


def test_start_of_a_running_vm_and_stop_of_a_stopped_one_conflict(vm_host: Host) -> None:
    host = vm_host
    host.create("vm", REQ)
    with pytest.raises(HostError, match="not running") as e:
        host.stop(100)
    assert e.value.http_status == 409
    host.start(100)
    with pytest.raises(HostError, match="already running") as e:
        host.start(100)
    assert e.value.http_status == 409
    with pytest.raises(HostError, match="stop it first") as e:
        host.delete(100)
    assert e.value.http_status == 409


def test_ids_count_up_from_100_and_a_taken_id_conflicts(vm_host: Host) -> None:
    host = vm_host
    assert [host.create("vm", REQ).guest for _ in range(3)] == [100, 101, 102]
    host.delete(101)
    assert host.create("vm", REQ).guest == 101
    with pytest.raises(HostError, match="guest 102 exists already") as e:
        host.create("vm", {**REQ, "id": 102})
    assert e.value.http_status == 409
    assert host.create("vm", {**REQ, "id": 4242}).guest == 4242


def test_missing_guest_is_not_found(vm_host: Host) -> None:
    with pytest.raises(HostError, match=r"^no guest 999$") as e:
        vm_host.start(999)
    assert e.value.http_status == 404


def test_a_kernel_the_monitor_refuses_fails_the_start_task(vm_host: Host) -> None:
    host = vm_host
    host.create("vm", {**REQ, "memory_mib": 16, "cmdline": "x" * 1500})
    # the command line is longer than the (test) kernel accepts: the VM
    # process ends at once and the start task carries its reason
    task = host.tasks.run("vmstart", 100, "t", lambda log: vmbackend.start(
        host.paths, host.guest(100).config, log), background=False)
    assert "stopped at once" in task.status and "command line" in task.status
    assert host.guest(100).status == "stopped"


def test_a_task_whose_process_died_is_interrupted_not_running(vm_host: Host) -> None:
    host = vm_host
    task = host.tasks.run("vmstart", None, "t", lambda log: None, background=False)
    status = host.paths.tasks / task.upid / "status.json"
    write_json(status, {**task.to_json(), "status": "running", "pid": 2**22 + 1})
    assert host.tasks.get(task.upid).status.startswith("interrupted")


def test_task_ids_are_checked_before_touching_files(vm_host: Host) -> None:
    # refused by its form (quoted), not looked up
    with pytest.raises(HostError, match=r"^no task '\.\./\.\./etc/passwd'$") as e:
        vm_host.tasks.log("../../etc/passwd")
    assert e.value.http_status == 404


def test_vm_console_command_bridges_the_console_socket(vm_host: Host) -> None:
    host = vm_host
    host.create("vm", REQ)
    host.start(100)
    env = {**os.environ, "APPLIANCE_ETC_DIR": str(host.paths.etc),
           "APPLIANCE_STATE_DIR": str(host.paths.state)}
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "vm", "console", "100"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    got = b""
    deadline = time.monotonic() + 30
    while b"ready> " not in got and time.monotonic() < deadline:
        got += os.read(proc.stdout.fileno(), 4096)
    proc.stdin.write(b"cli\n")
    proc.stdin.flush()
    while b"CLI" not in got and time.monotonic() < deadline:
        got += os.read(proc.stdout.fileno(), 4096)
    proc.stdin.close()  # end of input ends the console command, not the VM
    assert proc.wait(timeout=10) == 0
    assert b"appliance test guest" in got and b"CLI" in got
    assert host.guest(100).status == "running"


def test_vm_nic_is_a_tap_on_its_bridge_while_it_runs(vm_host: Host) -> None:
    """The VM's NIC: TAP tap100i0, a port of the guest's bridge, made in a
    network namespace this test makes and removes (the host's own network is
    never touched). The disks are attached too: the guest still runs."""
    host = vm_host
    ns = f"appl-v{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    env = {**os.environ, "APPLIANCE_ETC_DIR": str(host.paths.etc),
           "APPLIANCE_STATE_DIR": str(host.paths.state)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "appliance",
                               "vm", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    def ports() -> str:
        return subprocess.run(["ip", "-n", ns, "-o", "link", "show", "master", "vmbr0"],
                              capture_output=True, text=True, check=True).stdout

    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vmbr0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "vmbr0", "up"], check=True)
        r = cli("create", "--name", "net1", "--template", "testguest", "--memory", "64",
                "--disk", "8", "--bridge", "vmbr0")
        assert r.returncode == 0, r.stderr
        r = cli("start", "100")
        assert r.returncode == 0, r.stderr
        assert host.guest(100).status == "running"
        assert "tap100i0" in ports()
        out = read_console(vmbackend.console_path(host.paths, 100), b"hi\r", b"HI")
        assert b"HI" in out
        r = cli("stop", "100")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 20
        while "tap100i0" in ports() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "tap100i0" not in ports(), "the TAP outlived its VM"
    finally:
        cli("stop", "100")
        subprocess.run(["ip", "netns", "del", ns], check=False)
