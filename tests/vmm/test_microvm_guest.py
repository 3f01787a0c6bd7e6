"""image_recipes/microvm-guest.toml boots under our monitor to a login
prompt, with its root file system on virtio-blk and its network on
virtio-net, inside the nested test host (QEMU TCG -cpu max -> kvm_amd).

The recipe is built once per session (rootfs output: ext4 image, kernel,
initramfs).  The image reaches L1 as a virtio disk (snapshot mode), and L1
runs `appliance vm run --disk /dev/vda --net tap0` in a network namespace
with a bridge.  A small Python driver on the console socket logs in as
root, asks the guest what its root is and which keyboard it found, and
pings the bridge, and L1 pings the guest back.  Then L1 sends the monitor
SIGTERM: Ctrl-Alt-Delete on the guest's keyboard, systemd reboots, and the
guest's reset through the i8042 ends the monitor ("shut down").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.engine import build as engine
from tests.vmm import testhost

pytestmark = pytest.mark.e2e

CMDLINE = ("console=ttyS0 root=/dev/vda rw pci=conf1 acpi=off net.ifnames=0 reboot=k "
           "panic=-1 i8042.noaux i8042.nomux quiet")  # fmt: skip

# Runs in L1 (Python with the appliance package is there): talks to the
# guest's serial console over the monitor's console socket.
DRIVER = r'''
import socket, sys, time
path, password = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + float(sys.argv[3])
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path); break
    except OSError:
        if time.monotonic() > deadline: sys.exit("no console socket")
        time.sleep(0.5)
s.settimeout(1)
seen = b""
def wait(token):
    global seen
    while token not in seen:
        if time.monotonic() > deadline:
            sys.stdout.write(seen.decode(errors="replace"))
            sys.exit("timeout waiting for %r" % token)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        if not chunk: sys.exit("console closed")
        seen += chunk
t0 = time.monotonic()
wait(b"login: ")
print("GUEST-LOGIN-PROMPT after %.1f s" % (time.monotonic() - t0), flush=True)
s.sendall(b"root\n"); wait(b"assword: "); s.sendall(password.encode() + b"\n")
wait(b"# ")
seen = b""
s.sendall(b"echo ROOT=$(findmnt -n -o SOURCE,FSTYPE /); ip -br addr show eth0; "
          b"dmesg | grep -E 'i8042|serio|input:'; "
          b"ping -c 2 -W 5 10.0.2.1 >/dev/null && echo GUEST-PING-OK; echo DONE-$((6*7))\n")
wait(b"DONE-42")
sys.stdout.write(seen.decode(errors="replace"))
# show the shutdown on the console: systemd's status lines and the kernel's info
seen = b""
s.sendall(b"dmesg -n 7; kill -s RTMIN+20 1\n")
wait(b"# ")
'''

# Runs in L1 after the driver: asks the monitor to shut the guest down
# (SIGTERM) and shows the guest's console until the monitor closes it.
SHUTDOWN = r'''
import os, signal, socket, sys, time
path, pid, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
s.settimeout(1)
t0 = time.monotonic()
os.kill(pid, signal.SIGTERM)
seen = b""
while time.monotonic() - t0 < limit:
    try:
        chunk = s.recv(4096)
    except socket.timeout:
        continue
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
print("GUEST-CONSOLE-CLOSED after %.1f s" % (time.monotonic() - t0))
sys.stdout.write(seen.decode(errors="replace"))
'''

L1_SCRIPT = f"""
cat > /tmp/driver.py <<'DRIVER_EOF'
{DRIVER}
DRIVER_EOF
cat > /tmp/shutdown.py <<'SHUTDOWN_EOF'
{SHUTDOWN}
SHUTDOWN_EOF
cat > /tmp/net.sh <<'NET_EOF'
ip link set lo up
brctl addbr br0
tunctl -t tap0 >/dev/null
brctl addif br0 tap0
ip addr add 10.0.2.1/24 dev br0
ip link set br0 up
ip link set tap0 up
python3 -m appliance vm run --kernel /l2/vmlinuz --initrd /l2/initrd.img --disk /dev/vda \\
    --net tap0 --memory 512 --timeout 500 --shutdown-grace 180 \\
    --console-socket /tmp/console.sock \\
    --cmdline "{CMDLINE}" </dev/null > /tmp/monitor.log 2>&1 &
monitor=$!
python3 /tmp/driver.py /tmp/console.sock appliance 260
echo "L1-PING $(ping -c 2 -W 5 10.0.2.15 >/dev/null 2>&1 && echo ok || echo failed)"
echo "=== shutdown"
python3 /tmp/shutdown.py /tmp/console.sock $monitor 200
wait $monitor
echo "=== monitor rc=$?"
cat /tmp/monitor.log
NET_EOF
unshare -n sh /tmp/net.sh
"""


@pytest.fixture(scope="module")
def l1_output(
    build_cache: Path, debian_kernel: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    out = tmp_path_factory.mktemp("microvm-guest")
    result = engine.build("microvm-guest", outdir=out, cache_dir=build_cache)
    products = {p.path.suffix: p.path for p in result.products}
    image, vmlinuz, initrd = products[".ext4"], products[".vmlinuz"], products[".img"]
    l1_initrd = testhost.build_l1_initramfs(
        out, debian_kernel, L1_SCRIPT, {"l2/vmlinuz": vmlinuz, "l2/initrd.img": initrd},
        extra_modules=("tun", "bridge", "virtio_pci", "virtio_blk"),
    )  # fmt: skip
    run = testhost.boot_l1(debian_kernel, l1_initrd, timeout=600, drives=[image])
    (out / "l1-output.txt").write_text(run.output)
    return run.output


def test_microvm_guest_reaches_a_login_prompt(l1_output: str) -> None:
    assert re.search(r"GUEST-LOGIN-PROMPT after [\d.]+ s", l1_output), l1_output[-4000:]


def test_microvm_guest_root_is_on_virtio_blk(l1_output: str) -> None:
    m = re.search(r"ROOT=(/\S+) (\S+)", l1_output)  # not the echoed command line
    assert m, l1_output[-4000:]
    assert m.group(1) == "/dev/vda" and m.group(2) == "ext4"


def test_microvm_guest_network_works_both_ways(l1_output: str) -> None:
    assert re.search(r"eth0\s+UP\s+10\.0\.2\.15/24", l1_output), l1_output[-4000:]
    assert "GUEST-PING-OK" in l1_output
    assert "L1-PING ok" in l1_output


def test_microvm_guest_finds_the_i8042_keyboard(l1_output: str) -> None:
    assert "serio: i8042 KBD port at 0x60,0x64 irq 1" in l1_output, l1_output[-4000:]
    assert "Keylock active" not in l1_output  # the status byte says "not inhibited"
    # no translation in the controller: Linux's atkbd reads scan code set 2
    assert re.search(r"input: AT Raw Set 2 keyboard as ", l1_output), l1_output[-4000:]


def test_microvm_guest_shuts_down_on_sigterm_to_its_monitor(l1_output: str) -> None:
    shutdown = l1_output.split("=== shutdown", 1)[-1]
    assert "GUEST-CONSOLE-CLOSED" in shutdown, l1_output[-4000:]
    console = shutdown.split("GUEST-CONSOLE-CLOSED", 1)[1].split("=== monitor", 1)[0]
    # systemd took Ctrl-Alt-Delete (ctrl-alt-del.target = reboot.target) and
    # went down; the kernel then reset through the i8042 (reboot=k)
    assert "systemd-shutdown" in console, console[-4000:]
    assert "reboot: Restarting system" in console, console[-4000:]
    assert "=== monitor rc=0" in shutdown, shutdown[-4000:]
    assert re.search(r"vm: shut down: guest shut down on request after [\d.]+ s", shutdown), (
        shutdown[-4000:]
    )
