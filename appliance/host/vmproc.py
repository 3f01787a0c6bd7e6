"""The supervised process of one running VM:

    python -m appliance.host.vmproc ETC_DIR STATE_DIR ID

It is started detached (its own session, re-parented away from whoever
started it), so VMs keep running across a restart of the web service. It
runs the guest with the `appliance vm run` code (launcher.run_vm) and the
console on RUN/vm-ID.console, records itself in RUN/vm-ID.json while it
runs and the run's result in RUN/vm-ID.result.json when the guest stops.
SIGTERM stops the guest through the monitor (`shutdown`); SIGKILL is `stop`.
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


class ShutdownRequested(BaseException):
    """Raised in the main thread by SIGTERM: vm.run() stops the guest."""


def _on_term(signum: int, frame: types.FrameType | None) -> None:
    raise ShutdownRequested


def run_files(paths: HostPaths, guest_id: int) -> tuple[Path, Path, Path]:
    """(pid record, result record, console socket) of a VM."""
    base = paths.run / f"vm-{guest_id}"
    return (base.with_suffix(".json"), base.with_suffix(".result.json"),
            base.with_suffix(".console"))


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
    try:
        cfg = guests.load(paths, guest_id)
        tpl = templates.vm_template(paths, cfg.template)
        run = launcher.run_vm(launcher.VmRun(
            kernel=tpl.kernel, initrd=tpl.initrd, cmdline=cfg.cmdline, memory_mib=cfg.memory_mib,
            cpus=cfg.cpus, console_socket=console, entry_64=True,
        ))
        result = {"status": run.status.value, "detail": run.detail, "ok": True}
    except ShutdownRequested:
        result = {"status": "shut down", "detail": "stopped by the host (shutdown)", "ok": True}
    except ApplianceError as e:
        result = {"status": "failed", "detail": str(e), "ok": False}
        print(f"vm {guest_id}: {e}", file=sys.stderr)
    result["started"] = started
    result["ended"] = time.time()
    write_json(result_file, result)
    with contextlib.suppress(FileNotFoundError):
        record.unlink()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
