"""The KVM microVM monitor: C core in native/, object model here.

`Machine` is one microVM (see machine.py); `console` attaches a terminal or a
Unix socket to its serial port; `launcher` is what `appliance vm run` calls.
"""

from appliance.vmm.machine import (
    BootInfo,
    DeviceInfo,
    E820Entry,
    EntryMode,
    ExitStatus,
    Machine,
    MachineConfig,
    RunResult,
)

__all__ = [
    "BootInfo",
    "DeviceInfo",
    "E820Entry",
    "EntryMode",
    "ExitStatus",
    "Machine",
    "MachineConfig",
    "RunResult",
]
