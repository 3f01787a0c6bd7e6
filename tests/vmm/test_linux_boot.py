"""Debian's stock kernel boots to userspace under our monitor, with 1 and 2
vCPUs and through the 64-bit and the 32-bit entry point, inside the nested
test host (QEMU TCG -cpu max -> kvm_amd -> us).

The guest's /init stops the boot timer, prints the marker with the number of
CPUs it sees and powers off; `appliance vm run --json` reports the result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.vmm import testhost

pytestmark = pytest.mark.e2e

# (name, vCPUs, entry point)
RUNS = (("cpus1", 1, "64"), ("cpus2", 2, "64"), ("entry32", 1, "32"))


@pytest.fixture(scope="module")
def l1_output(debian_kernel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("nested")
    l2_initrd = testhost.build_l2_initramfs(work)
    runs = "\n".join(
        f'echo "=== L2 {name}"\n'
        f"python3 -m appliance vm run --kernel /l2/vmlinuz --initrd /l2/initrd.cpio "
        f"--cpus {cpus} --entry {entry} --memory 256 --timeout 180 --json "
        f'--cmdline "{testhost.L2_CMDLINE}" </dev/null\n'
        f'echo "=== rc=$?"'
        for name, cpus, entry in RUNS
    )
    l1_initrd = testhost.build_l1_initramfs(
        work,
        debian_kernel,
        runs,
        {"l2/vmlinuz": debian_kernel, "l2/initrd.cpio": l2_initrd},
    )
    return testhost.boot_l1(debian_kernel, l1_initrd, timeout=420).output


def section(output: str, name: str) -> str:
    m = re.search(rf"=== L2 {name}\n(.*?)=== rc=(\d+)", output, re.S)
    assert m, f"no run {name} in:\n{output[-3000:]}"
    return m.group(1) + f"rc={m.group(2)}"


@pytest.mark.parametrize(("name", "cpus", "entry"), RUNS, ids=[r[0] for r in RUNS])
def test_debian_kernel_boots_to_userspace_marker(
    l1_output: str, name: str, cpus: int, entry: str
) -> None:
    text = section(l1_output, name)
    assert f"{testhost.MARKER} cpus={cpus}\n" in text, text[-3000:]
    m = re.search(r'\{\s*"status".*?\n\}', text, re.S)
    assert m, text[-3000:]
    result = json.loads(m.group(0))
    assert result["status"] == "powered off", result
    assert result["exit_code"] == 0
    assert result["boot_done_value"] == 1
    assert 0 < result["boot_done_s"] <= result["run_s"]
    assert text.endswith("rc=0")
