"""Debian's stock kernel drives our virtio-pci devices, inside the nested
test host (QEMU TCG -cpu max -> kvm_amd -> our monitor):

- the PCI bus (pci=conf1) shows the virtio functions, virtio_pci binds them;
- the ext4 disk on virtio-blk mounts, a file written by the guest lands in
  the image;
- the vCPU threads run under the seccomp filter (--seccomp);
- virtio-net reaches an address on a bridge in a network namespace of L1
  (ping and a TCP echo), through a TAP created there.

The L2 userspace is busybox in an initramfs (this test does not build the
Debian microvm-guest image: see image_recipes/ for that).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from appliance.runner import run
from tests.vmm import testhost

pytestmark = pytest.mark.e2e

L2_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic")
L1_MODULES = ("tun", "bridge")
CMDLINE = "console=ttyS0 reboot=k panic=-1 acpi=off pci=conf1 i8042.noaux i8042.nomux quiet"

L2_SCRIPT = r"""
echo "L2-PCI $(cat /sys/bus/pci/devices/*/device | tr '\n' ' ')"
echo "L2-DRIVERS $(ls -d /sys/bus/virtio/drivers/*/virtio* | wc -l)"
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "L2-IRQS $(grep -c virtio /proc/interrupts)"
mount -t ext4 /dev/vda /mnt && echo "L2-ROOT $(cat /mnt/etc/hostname)"
echo "written by L2 over virtio-blk" > /mnt/from-l2.txt
sync
umount /mnt
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "L2-MAC $(cat /sys/class/net/eth0/address)"
ping -c 2 -W 10 10.0.2.1 >/tmp/ping 2>&1 && echo L2-PING-OK
cat /tmp/ping
echo hello-over-virtio-net | timeout 10 nc 10.0.2.1 7 > /tmp/echo
echo "L2-ECHO $(cat /tmp/echo)"
printf '\001' | dd of=/dev/port bs=1 seek=1088 count=1 2>/dev/null
printf '\000' | dd of=/dev/port bs=1 seek=1281 count=1 2>/dev/null
"""

L1_SCRIPT = f"""
cat > /tmp/net.sh <<'NET_EOF'
ip link set lo up
brctl addbr br0
tunctl -t tap0 >/dev/null
brctl addif br0 tap0
ip addr add 10.0.2.1/24 dev br0
ip link set br0 up
ip link set tap0 up
nc -ll -p 7 -e cat &
echo "=== L2 virtio"
python3 -m appliance vm run --kernel /l2/vmlinuz --initrd /l2/initrd.cpio \\
    --disk /l2/root.img --net tap0,mac=52:54:00:12:34:56 --memory 256 --timeout 240 --seccomp \\
    --json --cmdline "{CMDLINE}" </dev/null
echo "=== rc=$?"
echo "L1-DISK $(grep -c 'written by L2 over virtio-blk' /l2/root.img)"
NET_EOF
unshare -n sh /tmp/net.sh
"""


@pytest.fixture(scope="module")
def l1_output(debian_kernel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("nested-virtio")
    tree = work / "root"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("microvm-virtio-test\n")
    root = work / "root.img"
    run(["mke2fs", "-q", "-t", "ext4", "-d", tree, "-L", "root", "-F", root, "16M"],
        what="building the L2 root image")  # fmt: skip
    initrd = testhost.build_l2_busybox_initramfs(
        work, debian_kernel, L2_MODULES, L2_SCRIPT, "l2-virtio"
    )
    l1_initrd = testhost.build_l1_initramfs(
        work,
        debian_kernel,
        L1_SCRIPT,
        {"l2/vmlinuz": debian_kernel, "l2/initrd.cpio": initrd, "l2/root.img": root},
        extra_modules=L1_MODULES,
    )
    out = testhost.boot_l1(debian_kernel, l1_initrd, timeout=330).output
    (work / "l1-output.txt").write_text(out)
    return out


def line(output: str, key: str) -> str:
    m = re.search(rf"^{key} ?(.*)$", output, re.M)
    assert m, f"no {key} in:\n{output[-4000:]}"
    return m.group(1).strip()


def test_guest_sees_and_binds_the_virtio_pci_functions(l1_output: str) -> None:
    devices = line(l1_output, "L2-PCI").split()
    assert "0x1042" in devices and "0x1041" in devices, devices
    assert line(l1_output, "L2-DRIVERS") == "2"
    assert int(line(l1_output, "L2-IRQS")) >= 1  # MSI-X vectors of the virtio devices


def test_guest_mounts_its_ext4_disk_and_writes_to_the_image(l1_output: str) -> None:
    assert line(l1_output, "L2-ROOT") == "microvm-virtio-test"
    assert int(line(l1_output, "L1-DISK")) >= 1


def test_guest_reaches_the_host_bridge_over_virtio_net(l1_output: str) -> None:
    assert line(l1_output, "L2-MAC") == "52:54:00:12:34:56"
    assert "L2-PING-OK" in l1_output, l1_output[-3000:]
    assert line(l1_output, "L2-ECHO") == "hello-over-virtio-net"


def test_the_monitor_reports_a_clean_power_off(l1_output: str) -> None:
    m = re.search(r"=== L2 virtio\n(.*?)=== rc=(\d+)", l1_output, re.S)
    assert m, l1_output[-3000:]
    result = json.loads(re.search(r'\{\s*"status".*?\n\}', m.group(1), re.S).group(0))  # type: ignore[union-attr]
    assert result["status"] == "powered off", result
    assert m.group(2) == "0"
