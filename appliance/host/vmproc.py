"""The supervised process of one running VM:

    python -m appliance.host.vmproc ETC_DIR STATE_DIR ID

It is started detached (its own session, re-parented away from whoever
started it), so VMs keep running across a restart of the web service. It
runs the guest with the `appliance vm run` code (launcher.run_vm): its disks
on virtio-blk, its NIC on virtio-net through TAP tapIDi0 made a port of the
guest's bridge (removed when the guest stops), the console on
RUN/vm-ID.console, records itself in RUN/vm-ID.json while it
runs and the run's result in RUN/vm-ID.result.json when the guest stops.

SIGTERM (`shutdown`) asks the guest to shut down: Ctrl-Alt-Delete on its
keyboard, and the guest ends itself (Linux with reboot=k resets through the
i8042: status "shut down"). A guest that ignores it runs on, without a
deadline here (vm.shutdown() gives up waiting and says so; a slow but
honest shutdown is not cut short); a second SIGTERM stops it through the
monitor. SIGKILL is `stop`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import types
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.host import guests, templates
from appliance.host.store import HostPaths, process_start_time, write_json
from appliance.host.vm import make_tap, remove_tap, run_files
from appliance.vmm.net import NetSpec, default_mac


class ShutdownRequested(BaseException):
    """Raised in the main thread by SIGTERM before the guest runs (while it
    runs, launcher.run_vm() handles SIGTERM itself)."""


def _on_term(signum: int, frame: types.FrameType | None) -> None:
    raise ShutdownRequested


def main(argv: list[str]) -> int:
    from appliance.vmm import launcher

    paths = HostPaths(Path(argv[0]), Path(argv[1]))
    guest_id = int(argv[2])
    record, result_file, console = run_files(paths, guest_id)
    signal.signal(signal.SIGTERM, _on_term)
    pid = os.getpid()
    started = time.time()
    write_json(record, {"pid": pid, "pid_start": process_start_time(pid), "started": started,
                        "console": str(console)})
    result: dict[str, object]
    tap = None
    try:
        cfg = guests.load(paths, guest_id)
        tpl = templates.vm_template(paths, cfg.template)
        disks = tuple(launcher.DiskSpec(Path(d.path)) for d in cfg.disks if d.path)
        nets: tuple[NetSpec, ...] = ()
        if cfg.bridge:
            tap = make_tap(guest_id, cfg.bridge)
            nets = (NetSpec(tap, default_mac(f"vm{guest_id}")),)
        run = launcher.run_vm(launcher.VmRun(
            kernel=tpl.kernel, initrd=tpl.initrd, cmdline=cfg.cmdline, memory_mib=cfg.memory_mib,
            cpus=cfg.cpus, console_socket=console, entry_64=True, disks=disks, nets=nets,
            shutdown_grace=None,
        ))
        result = {"status": run.status.value, "detail": run.detail, "ok": True}
    except ShutdownRequested:
        result = {"status": "shut down", "detail": "shut down by the host before the guest ran",
                  "ok": True}
    except ApplianceError as e:
        result = {"status": "failed", "detail": str(e), "ok": False}
        print(f"vm {guest_id}: {e}", file=sys.stderr)
    finally:
        if tap is not None:
            remove_tap(guest_id)
    result["started"] = started
    result["ended"] = time.time()
    write_json(result_file, result)
    with contextlib.suppress(FileNotFoundError):
        record.unlink()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
