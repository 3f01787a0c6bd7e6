"""The keyboard behind the i8042 and Ctrl-Alt-Delete from the host, with
tiny guests on the real /dev/kvm (native/guests/kbd.S reads the keyboard
by interrupt, as Linux does)."""

from __future__ import annotations

import threading
import time

import pytest

from appliance.errors import VmmError
from appliance.vmm import EntryMode, ExitStatus, Machine, MachineConfig

GUEST_LOAD = 0x10000  # where conftest links and loads the test guests

# scan code set 2: press Ctrl, Alt, Delete (E0 71); release Delete, Alt, Ctrl
CTRL_ALT_DEL = "14 11 e0 71 e0 f0 71 f0 11 f0 14 "


def _type_when(vm: Machine, prompt: bytes, timeout: float = 10.0) -> threading.Thread:
    """Press Ctrl-Alt-Delete once the guest has printed `prompt`."""

    def go() -> None:
        deadline = time.monotonic() + timeout
        while prompt not in vm.output and time.monotonic() < deadline:
            time.sleep(0.01)
        vm.send_ctrl_alt_del()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_keyboard_answers_and_types_ctrl_alt_del_by_interrupt(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm:
        vm.load_raw(GUEST_LOAD, guests["kbd"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        typist = _type_when(vm, b"kbd> ")
        result = vm.run(timeout=20)
        typist.join()
        out = vm.output.decode()
    assert result.status is ExitStatus.POWERED_OFF and result.exit_code == 0, (result, out)
    # translation stays off; the byte for the mouse gets no answer; get ID,
    # then reset; then the keys, one interrupt per byte and none without data
    assert out == "ctr=21 fa ab 83 fa aa \r\nkbd> " + CTRL_ALT_DEL


def test_ctrl_alt_del_into_a_full_keyboard_buffer_is_refused(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm:
        vm.send_ctrl_alt_del()  # queued: nothing reads the keyboard yet
        with pytest.raises(VmmError, match="keyboard buffer is full"):
            vm.send_ctrl_alt_del()


def test_a_reset_after_ctrl_alt_del_is_a_shutdown(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm:
        vm.load_raw(GUEST_LOAD, guests["reset"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        vm.send_ctrl_alt_del()
        result = vm.run(timeout=20)
    assert result.status is ExitStatus.SHUT_DOWN
    assert result.reason == "i8042-reset"
    assert result.detail == "guest shut down on request"


def test_a_guest_that_ignores_ctrl_alt_del_runs_until_stopped(guests: dict[str, bytes]) -> None:
    with Machine(MachineConfig(memory_mib=32)) as vm:
        vm.load_raw(GUEST_LOAD, guests["halt"])
        vm.set_entry(EntryMode.PROT32, GUEST_LOAD)
        threading.Timer(0.2, vm.send_ctrl_alt_del).start()
        result = vm.run(timeout=1.0)
    assert result.status is ExitStatus.KILLED
    assert result.detail == "stopped by the host (the guest did not shut down on request)"
    assert result.run_s >= 1.0
