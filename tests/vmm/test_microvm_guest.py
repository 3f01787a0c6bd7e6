"""image_recipes/microvm-guest.toml boots under our monitor to a login
prompt, with its root file system on virtio-blk and its network on
virtio-net, inside the nested test host (QEMU TCG -cpu max -> kvm_amd).

The recipe is built once per session (rootfs output: ext4 image, kernel,
initramfs).  The image reaches L1 as a virtio disk (snapshot mode), and L1
runs `appliance vm run --disk /dev/vda --net tap0` in a network namespace
with a bridge.  A small Python driver on the console socket logs in as
root, asks the guest what its root is and pings the bridge, and L1 pings
the guest back.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.engine import build as engine
from appliance.vmm import testhost

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
          b"ping -c 2 -W 5 10.0.2.1 >/dev/null && echo GUEST-PING-OK; echo DONE-$((6*7))\n")
wait(b"DONE-42")
sys.stdout.write(seen.decode(errors="replace"))
'''

L1_SCRIPT = f"""
cat > /tmp/driver.py <<'DRIVER_EOF'
{DRIVER}
DRIVER_EOF
cat > /tmp/net.sh <<'NET_EOF'
ip link set lo up
brctl addbr br0
tunctl -t tap0 >/dev/null
brctl addif br0 tap0
ip addr add 10.0.2.1/24 dev br0
ip link set br0 up
ip link set tap0 up
python3 -m appliance vm run --kernel /l2/vmlinuz --initrd /l2/initrd.img --disk /dev/vda \\
    --net tap0 --memory 512 --timeout 280 --console-socket /tmp/console.sock \\
    --cmdline "{CMDLINE}" </dev/null > /tmp/monitor.log 2>&1 &
monitor=$!
python3 /tmp/driver.py /tmp/console.sock appliance 260
echo "L1-PING $(ping -c 2 -W 5 10.0.2.15 >/dev/null 2>&1 && echo ok || echo failed)"
kill $monitor
wait $monitor
echo "=== monitor"
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
    run = testhost.boot_l1(debian_kernel, l1_initrd, timeout=420, drives=[image])
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
