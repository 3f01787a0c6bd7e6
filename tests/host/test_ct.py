"""Containers: real LXC containers from the ct-debian template the recipe
engine builds (once a session)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from appliance.errors import HostError
from appliance.host import Host
from appliance.host import ct as ctbackend

from .conftest import lxc_ls

pytestmark = pytest.mark.e2e
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZWQtb25seS1pbi10ZXN0cw test@appliance"
PASSWORD = "corr3ct-horse"


def env_of(host: Host) -> dict[str, str]:
    return {**os.environ, "APPLIANCE_ETC_DIR": str(host.paths.etc),
            "APPLIANCE_STATE_DIR": str(host.paths.state)}


def attach(host: Host, guest_id: int, *cmd: str) -> str:
    return subprocess.run(["lxc-attach", "-P", str(host.paths.lxc), "-n", str(guest_id), "--",
                           *cmd], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def expect(fd: int, want: bytes, timeout: float = 60) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {want!r} on the console; got {got[-400:]!r}")
        if select.select([fd], [], [], left)[0]:
            try:
                got += os.read(fd, 4096)
            except OSError:
                break
    return got


def test_container_life_cycle_with_limits_login_and_console(full_host: Host) -> None:
    host = full_host
    task = host.create("ct", {"name": "web1", "template": "debian", "memory_mib": 256,
                              "cpus": 1, "password": PASSWORD, "ssh_keys": [KEY]})
    assert task.status == "OK", host.tasks.log(task.upid)
    gid = task.guest
    assert gid == 100
    config = (host.paths.guests / "100.toml").read_text()
    assert PASSWORD not in config and 'name = "web1"' in config
    rootfs = host.paths.lxc / "100" / "rootfs"
    assert (rootfs / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    shadow = next(ln for ln in (rootfs / "etc/shadow").read_text().splitlines()
                  if ln.startswith("root:"))
    hashed = shadow.split(":")[1]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", hashed.split("$")[2], PASSWORD],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert again == hashed

    host.start(100)
    assert host.guest(100).status == "running"
    assert "RUNNING" in lxc_ls(host.paths)
    assert attach(host, 100, "hostname").strip() == "web1"
    limit = subprocess.run(["lxc-cgroup", "-P", str(host.paths.lxc), "-n", "100",
                            ctbackend.memory_limit_key()], capture_output=True, text=True)
    assert limit.stdout.strip() == str(256 << 20), limit.stderr

    # the console: log in as root with the password and run a command
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "appliance", "ct", "console", "100"],
                   env_of(host))
    try:
        expect(fd, b"to exit the console")  # lxc-console is attached
        for _ in range(10):  # getty prints its prompt again on a new line
            os.write(fd, b"\r")
            try:
                expect(fd, b"login: ", timeout=6)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("no login prompt on the container's console")
        os.write(fd, b"root\r")
        expect(fd, b"Password: ")
        os.write(fd, PASSWORD.encode() + b"\r")
        expect(fd, b"# ")
        os.write(fd, b"echo $((6 * 7))done\r")
        assert b"42done" in expect(fd, b"42done")
        os.write(fd, b"exit\r\x01q")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)

    with pytest.raises(HostError, match="already running"):
        host.start(100)
    host.shutdown(100)
    assert host.guest(100).status == "stopped"
    host.delete(100)
    assert not (host.paths.lxc / "100").exists() and host.list_guests() == []


def test_container_nic_on_a_bridge_in_a_test_namespace(full_host: Host) -> None:
    """The NIC goes on a bridge: made in a network namespace this test makes
    and removes (nothing touches the host's own network)."""
    host = full_host
    ns = f"appl-t{os.getpid()}"
    cgroups = host.paths.state / "host-cgroup"
    cgroups.mkdir()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    # LXC reads /sys for the bridge: `ip netns exec` mounts the namespace's
    # sysfs over /sys; the host's cgroup tree is bound back under it.
    subprocess.run(["mount", "--rbind", "/sys/fs/cgroup", str(cgroups)], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vmbr0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "vmbr0", "up"], check=True)

        def in_ns(*argv: str) -> subprocess.CompletedProcess[str]:
            # (LXC's command socket is abstract: per network namespace)
            script = f"mount --rbind {cgroups} /sys/fs/cgroup && exec {' '.join(argv)}"
            return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script],
                                  env=env_of(host), capture_output=True, text=True, timeout=120)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return in_ns(sys.executable, "-m", "appliance", "ct", *args)

        r = cli("create", "--name", "net1", "--template", "debian", "--memory", "128",
                "--bridge", "vmbr0")
        assert r.returncode == 0, r.stderr
        r = cli("start", "100")
        assert r.returncode == 0, r.stderr
        try:
            inside = in_ns("lxc-attach", "-P", str(host.paths.lxc), "-n", "100", "--", "ip",
                           "-o", "link", "show", "eth0")
            assert ctbackend.mac_address(100) in inside.stdout, inside.stderr
            ports = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "master", "vmbr0"],
                                   capture_output=True, text=True, check=True).stdout
            assert "veth" in ports  # the host end of the container's NIC, on the bridge
        finally:
            r = cli("stop", "100")
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["umount", "-R", "-l", str(cgroups)], check=False)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_bridge_that_does_not_exist_is_refused(full_host: Host) -> None:
    with pytest.raises(HostError, match="no bridge 'nobr0'") as e:
        full_host.create("ct", {"name": "x", "template": "debian", "memory_mib": 128,
                                "bridge": "nobr0"})
    assert e.value.http_status == 400


def test_cli_lists_and_refuses_bad_input_without_traceback(full_host: Host) -> None:
    host = full_host
    host.create("ct", {"name": "c1", "template": "debian", "memory_mib": 128})
    base = [sys.executable, "-m", "appliance"]
    r = subprocess.run([*base, "ct", "list", "--json"], env=env_of(host), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    import json

    assert [(g["id"], g["name"], g["status"]) for g in json.loads(r.stdout)] == [
        (100, "c1", "stopped")]
    r = subprocess.run([*base, "ct", "create", "--name", "bad name", "--template", "debian"],
                       env=env_of(host), capture_output=True, text=True, timeout=60)
    assert r.returncode == 6
    assert r.stderr.startswith("appliance: error: name: 'bad name' is not valid")
    assert "Traceback" not in r.stderr
    r = subprocess.run([*base, "vm", "start", "100"], env=env_of(host), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 6 and "guest 100 is not a VM" in r.stderr
    r = subprocess.run([*base, "task", "list"], env=env_of(host), capture_output=True,
                       text=True, timeout=60)
    assert "ctcreate" in r.stdout and "OK" in r.stdout
