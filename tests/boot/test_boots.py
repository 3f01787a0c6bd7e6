"""Real boots of the test-boot image in QEMU, each combination its own test.
Every boot must reach the boot-check marker with state `running` and no
failed units. One QEMU at a time (tests run sequentially)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.boot import harness
from appliance.engine import build as engine

from .conftest import product

pytestmark = pytest.mark.e2e
TIMEOUT = 420.0


def assert_boots(image: Path, firmware: str, medium: str | None,
                 record_property: pytest.RecordProperty) -> harness.BootResult:
    result = harness.boot_test(image, firmware=firmware, medium=medium, timeout=TIMEOUT)
    record_property("seconds_to_marker", result.seconds)
    record_property("accelerator", result.accelerator)
    print(f"{image.name} {firmware} {result.medium}: {result.seconds:.1f}s ({result.reason})")
    assert result.ok, result.summary()
    assert result.state == "running" and result.failed_units == []
    assert Path(result.serial_log).parent == image.parent
    assert "APPLIANCE-BOOT-CHECK state=running failed=none" in Path(
        result.serial_log).read_text(errors="replace")
    return result


def test_iso_boots_bios_as_cdrom(boot_build: engine.BuildResult,
                                 record_property: pytest.RecordProperty) -> None:
    assert_boots(product(boot_build, ".iso"), "bios", "cdrom", record_property)


def test_iso_boots_uefi_as_cdrom(boot_build: engine.BuildResult,
                                 record_property: pytest.RecordProperty) -> None:
    assert_boots(product(boot_build, ".iso"), "uefi", "cdrom", record_property)


def test_iso_boots_bios_as_usb_stick(boot_build: engine.BuildResult,
                                     record_property: pytest.RecordProperty) -> None:
    assert_boots(product(boot_build, ".iso"), "bios", "usb", record_property)


def test_iso_boots_uefi_as_usb_stick(boot_build: engine.BuildResult,
                                     record_property: pytest.RecordProperty) -> None:
    assert_boots(product(boot_build, ".iso"), "uefi", "usb", record_property)


def test_disk_image_boots_bios(boot_build: engine.BuildResult,
                               record_property: pytest.RecordProperty) -> None:
    assert_boots(product(boot_build, ".img"), "bios", "disk", record_property)


def test_disk_image_qcow2_boots_uefi(boot_build: engine.BuildResult,
                                     record_property: pytest.RecordProperty) -> None:
    assert_boots(product(boot_build, ".qcow2"), "uefi", "disk", record_property)


def test_netboot_kernel_initrd_boot_fetches_squashfs_over_http(
        boot_build: engine.BuildResult, record_property: pytest.RecordProperty) -> None:
    netboot = product(boot_build, ".netboot")
    assert_boots(netboot, "bios", None, record_property)  # -kernel/-initrd
    log = Path(f"{netboot}.bios-net.http.log").read_text()
    assert "httpd: 200 /filesystem.squashfs" in log  # fetched from our responder


def test_netboot_boots_uefi_over_pxe_with_the_ipxe_script(
        boot_build: engine.BuildResult, record_property: pytest.RecordProperty) -> None:
    netboot = product(boot_build, ".netboot")
    assert_boots(netboot, "uefi", "pxe", record_property)
    log = Path(f"{netboot}.uefi-pxe.http.log").read_text().splitlines()
    # boot.ipxe came over TFTP; iPXE fetched kernel and initrd, live-boot the squashfs.
    assert [ln.split()[2] for ln in log] == ["/vmlinuz", "/initrd.img", "/filesystem.squashfs"]


def test_boot_test_rejects_image_with_failing_unit(broken_build: engine.BuildResult) -> None:
    iso = product(broken_build, ".iso")
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "boot-test", str(iso), "--timeout", str(TIMEOUT)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 8, proc.stderr  # BootError
    assert "FAIL test-boot-broken.iso" in proc.stderr
    assert "failed units: appliance-broken.service" in proc.stderr
    assert "APPLIANCE-BOOT-CHECK state=degraded failed=appliance-broken.service" in proc.stderr
