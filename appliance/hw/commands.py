"""What the `detect`, `device-info` and `device-match` commands do; appliance.cli
only parses their arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.errors import HardwareError
from appliance.hw import Report, load_recording, udevinfo
from appliance.hw import detect as _detect
from appliance.hw.kvm import probe_without_vm
from appliance.hw.match import check_mode, match_devices, parse_filters


def detect(recorded: str | None = None, inventory: bool = True,
           create_vm: bool = True) -> Report:
    """This machine, or a recorded one (whose udev side the caller replays
    with `umockdev-run -d DIR/devices.umockdev`). `create_vm=False`: /dev/kvm
    is asked its API version only (see appliance.hw.kvm.probe_device)."""
    if recorded is None:
        return _detect(inventory=inventory,
                       kvm=None if create_vm else probe_without_vm)
    rec = load_recording(Path(recorded))
    return _detect(rec.root, cpuid=rec.cpuid, msr=rec.msr, kvm=rec.kvm, inventory=inventory)


def record(dest: str) -> Path:
    """Record this machine for `detect --recorded` (see appliance.hw.record)."""
    from appliance.hw.record import record as _record

    return _record(Path(dest))


def _root(recorded: str | None) -> Path:
    return load_recording(Path(recorded)).root if recorded else Path("/")


def device_info(kind: str = "all", recorded: str | None = None) -> dict[str, Any]:
    return udevinfo.device_info(udevinfo.read_inventory(root=_root(recorded)), kind)


def device_match(
    kind: str,
    filters: list[str],
    mode: str = "any",
    recorded: str | None = None,
    udev_json: str | None = None,
) -> dict[str, Any]:
    """`{"matched": [...], "candidates": [...]}`: devnodes for disks, names for
    NICs (or the keys of `udev_json`, a device-info/run-env-udev.json file)."""
    section = "disks" if kind == "disk" else "nics"
    if udev_json:
        try:
            devices: dict[str, dict[str, str]] = json.loads(Path(udev_json).read_text())[section]
        except (OSError, ValueError, KeyError) as e:
            raise HardwareError(f"{udev_json}: cannot read '{section}' from it: {e}") from e
        label = {key: key for key in devices}
    else:
        info = device_info("disk" if kind == "disk" else "network", recorded)
        devices = info[section]
        label = {
            key: props.get("DEVNAME", key) if kind == "disk" else key
            for key, props in devices.items()
        }
    matched = match_devices(devices, parse_filters(filters), check_mode(mode))
    return {"matched": [label[k] for k in matched], "candidates": list(label.values())}
