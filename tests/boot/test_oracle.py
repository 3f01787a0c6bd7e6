"""The serial-console oracle on console text."""

from __future__ import annotations

from appliance.boot.oracle import judge, tail

BOOT = b"[    1.0] Linux version 6.1\r\n[  OK  ] Reached target multi-user.target\r\n"


def test_marker_running_without_failed_units_is_good() -> None:
    v = judge(BOOT + b"\r\nAPPLIANCE-BOOT-CHECK state=running failed=none\r\n")
    assert (v.done, v.ok, v.state, v.failed_units) == (True, True, "running", ())


def test_marker_degraded_names_the_failed_units() -> None:
    v = judge(BOOT + b"APPLIANCE-BOOT-CHECK state=degraded failed=a.service,b.mount\r\n")
    assert v.done and not v.ok
    assert v.failed_units == ("a.service", "b.mount")
    assert v.reason == "system degraded; failed units: a.service, b.mount"


def test_marker_counts_only_once_its_line_is_complete() -> None:
    assert not judge(BOOT + b"APPLIANCE-BOOT-CHECK state=runn").done
    assert not judge(BOOT + b"APPLIANCE-BOOT-CHECK state=running failed=no").done
    assert judge(BOOT + b"APPLIANCE-BOOT-CHECK state=running failed=none\n").ok


def test_running_with_failed_units_is_not_good() -> None:
    assert not judge(b"APPLIANCE-BOOT-CHECK state=running failed=x.service\n").ok


def test_kernel_panic_is_decided_before_any_marker() -> None:
    v = judge(BOOT + b"[ 2.1] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    assert v.done and not v.ok
    assert v.reason.startswith("kernel panic: Kernel panic - not syncing: VFS")


def test_emergency_shell_and_initramfs_shell_fail() -> None:
    assert judge(b"You are in emergency mode. After...\n").reason.startswith("emergency shell")
    v = judge(b"ALERT!  UUID=1234 does not exist.  Dropping to a shell!\n(initramfs) ")
    assert not v.ok and "root file system" in v.reason


def test_decision_point_is_the_end_of_the_marker_line() -> None:
    log = BOOT + b"APPLIANCE-BOOT-CHECK state=degraded failed=x.service\r\nreboot: Power down"
    v = judge(log)
    assert log[:v.end].endswith(b"failed=x.service")


def test_nothing_decided_while_booting() -> None:
    assert not judge(BOOT).done


def test_tail_strips_colors_and_carriage_returns() -> None:
    assert tail(b"a\r\n\x1b[0;32m  OK  \x1b[0m] b\r\n", 1) == "  OK  ] b"
