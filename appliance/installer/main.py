"""`appliance install`: from an answer (or the interactive dialog) to an
installed disk. On the live ISO it runs as appliance-installer.service
(`--boot`): the answer source comes from the kernel command line or the ISO,
and afterwards the machine reboots or powers off as the answer says."""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import ApplianceError
from appliance.installer import files, layout, source
from appliance.installer.plan import DiskIdentity, Network, Plan
from appliance.installer.run import (
    FAIL_MARKER,
    OK_MARKER,
    RUN_LOG,
    Console,
    InstallError,
    install,
    make_plan,
    start_log,
)

if TYPE_CHECKING:
    from appliance.answer.model import InstallPlan
    from appliance.hw import Report

log = logging.getLogger("appliance.install")

ANSWER_DIR = Path("/run")  # where the interactive dialog writes its answer
ANSWER_FILE = ANSWER_DIR / "appliance-answer.toml"  # a fetched answer (root password!)


def save_answer(data: bytes, path: Path | None = None) -> Path:
    """Keep a fetched answer for the rest of the install: it may hold the root
    password, so it is created 0600 (never readable by others, not even
    before a chmod)."""
    return files.write_private(path or ANSWER_FILE, data)


def detect_report() -> Report:
    """This machine's verdict without KVM_CREATE_VM (see
    appliance.hw.kvm.probe_device: nested under TCG it wedged the installer)."""
    from appliance.hw import detect
    from appliance.hw.kvm import probe_without_vm

    return detect(kvm=probe_without_vm)


def resolve_answer(answer_file: Path, recorded: str | None = None) -> InstallPlan:
    """Parse, validate and resolve an answer against this (or a recorded) machine."""
    from appliance.answer import machine
    from appliance.answer.parse import load_answer
    from appliance.answer.resolve import resolve

    answer = load_answer(answer_file)
    return resolve(answer, machine.this_machine(recorded))


def to_plan(ip: InstallPlan, origin: str, offline: bool = False,
            allow_insecure: bool = False) -> Plan:
    """The installer's plan (with the disk layout) from a resolved answer.
    `offline`: the disk is not on this machine (a recorded one): its size
    comes from the udev data instead of the kernel. `allow_insecure`: the
    ISO allows plain http:// for the first-boot hook and the webhook."""
    if not ip.storage.installer_supported:
        raise InstallError(
            f"{ip.answer_file}: disk-setup.filesystem = {ip.filesystem!r}: the installer "
            "cannot lay down zfs or btrfs yet; use ext4 or xfs (on LVM)")
    if len(ip.disks) != 1:
        raise InstallError(f"{ip.answer_file}: {ip.filesystem} takes exactly one disk, the "
                           f"answer selects {len(ip.disks)}")
    d = ip.disks[0]
    s = ip.storage
    sizes = layout.Sizes(hdsize=s.hdsize if s.hdsize < d.size_gib else None,
                         swapsize=s.swapsize, maxroot=s.maxroot, minfree=s.minfree,
                         maxvz=s.maxvz)
    n = ip.network
    return make_plan(
        d.devnode, d.model or "unknown model", ip.filesystem, sizes,
        disk_size=d.size_bytes if offline else None,
        fqdn=ip.fqdn, root_password_hash=ip.root_password_hash,
        ssh_keys=list(ip.root_ssh_keys), timezone=ip.timezone, keyboard=ip.keyboard,
        country=ip.country, mailto=ip.mailto,
        network=Network(nic=n.device, mac=n.mac, dhcp=False, cidr=n.cidr, gateway=n.gateway,
                        dns=n.dns, interface_name=n.interface if n.interface != n.device
                        else None),
        reboot_mode=ip.reboot_mode, reboot_on_error=ip.reboot_on_error, answer_source=origin,
        first_boot={k: v for k, v in (("source", fb.source), ("ordering", fb.ordering),
                                      ("url", fb.url), ("cert-fingerprint", fb.cert_fingerprint))
                    if v} if (fb := ip.first_boot).enabled else None,
        webhook=(ip.webhook.url, ip.webhook.cert_fingerprint) if ip.webhook else None,
        allow_insecure=allow_insecure,
        disk_identity=DiskIdentity.from_udev(d.devnode, d.size_bytes, d.properties))


def plan_from_answer(answer_file: Path, console: Console, origin: str,
                     recorded: str | None = None, allow_insecure: bool = False) -> Plan:
    if recorded is None:
        report = detect_report()
        console.say(f"hardware: {report.verdict}")
        if not report.accelerated:
            console.say("WARNING: no usable hardware virtualization: VMs will not run on "
                        "this machine (containers will)")
    ip = resolve_answer(answer_file, recorded)
    for w in ip.warnings:
        console.say(f"WARNING: {w}")
    return to_plan(ip, origin, offline=recorded is not None, allow_insecure=allow_insecure)


def finish_machine(mode: str) -> None:
    """Reboot or power off (on the live system, at the end of an install)."""
    action = "poweroff" if mode == "power-off" else "reboot"
    subprocess.run(["systemctl", action, "--no-block"], check=False)


def boot(console: Console | None = None) -> int:
    """The installer service's entry point: never returns with a traceback;
    the outcome is one marker line on the console."""
    console = console or Console()
    start_log()
    plan: Plan | None = None
    try:
        how = source.decide(source.kernel_cmdline())
        console.say(f"appliance installer (answer: {how.mode or 'interactive'}, "
                    f"from {how.origin})")
        subprocess.run(["udevadm", "settle", "--timeout=60"], check=False)
        # As on Proxmox's installer: DHCP first, so a from-dhcp answer (and
        # an answer URL) sees the lease.
        up = source.bring_up_network(timeout=20)
        console.say(f"network: DHCP lease on {', '.join(up)}" if up
                    else "network: no DHCP lease (no NIC, or no DHCP server)")
        for argv in (["ip", "-4", "-br", "addr"], ["ip", "-4", "route"]):
            shown = subprocess.run(argv, capture_output=True, text=True, check=False)
            console.say(f"  $ {' '.join(argv)}\n{shown.stdout.rstrip()}")
        if how.mode is None:
            answer_file = interactive(console)
            origin = "interactive"
        else:
            data, origin = source.fetch(how)
            console.say(f"answer file from {origin}")
            answer_file = save_answer(data)
        plan = plan_from_answer(answer_file, console, origin,
                                allow_insecure=how.allow_insecure)
        console.say("install plan:\n" + plan.describe())
        install(plan, console)
    except (ApplianceError, OSError) as e:
        log.debug("install failed", exc_info=True)
        fail(console, str(e), plan)
        return 1
    except Exception as e:  # an installer bug: still a clear end on the console
        log.error("installer error:\n%s", traceback.format_exc())
        fail(console, f"internal error: {e!r} (details in {RUN_LOG})", plan)
        return 1
    console.say(OK_MARKER)
    finish_machine(plan.reboot_mode)
    return 0


def fail(console: Console, reason: str, plan: Plan | None) -> None:
    with contextlib.suppress(OSError):
        tail = RUN_LOG.read_text(errors="replace").splitlines()[-25:]
        console.say("the install log ends with:\n" + "\n".join(f"  | {t}" for t in tail))
    console.say(f"{FAIL_MARKER}: {reason}")
    console.say(f"the full log is {RUN_LOG}; nothing else was written unless a step above "
                "says so")
    if plan is not None and plan.reboot_on_error:
        console.say("rebooting (reboot-on-error = true)")
        finish_machine("reboot")
    elif sys.stdin.isatty():
        console.say("starting a shell on this console (exit it to power off)")
        subprocess.run(["/bin/bash", "-l"], check=False)
        finish_machine("power-off")


# --- interactive ---------------------------------------------------------------


def ask(prompt: str, default: str = "", choices: list[str] | None = None) -> str:
    while True:
        suffix = f" [{default}]" if default else ""
        try:
            value = input(f"{prompt}{suffix}: ").strip() or default
        except EOFError:
            raise InstallError("the console closed during the interactive install") from None
        if not value:
            continue
        if choices and value not in choices:
            print(f"  choose one of: {', '.join(choices)}")
            continue
        return value


def interactive(console: Console, machine: dict[str, Any] | None = None) -> Path:
    """The text-mode dialog on the console. It writes an answer file, which
    then goes through the same validation and resolution as any other.
    `machine`: a detection report as JSON (`appliance detect --json`);
    default: this machine's."""
    import tomli_w

    machine = machine or detect_report().to_json()
    print("\n== appliance installer ==\n")
    print(f"hardware: {machine['verdict']}")
    if not machine["accelerated"]:
        print("WARNING: this machine cannot run VMs with hardware virtualization "
              "(containers still work).")
    disks = [d for d in machine.get("disks") or [] if d.get("install_target")]
    if not disks:
        raise InstallError("no disk to install on (no install-target disk found)")
    print("\ndisks:")
    names = []
    for d in disks:
        names.append(str(d["name"]))
        print(f"  {d['name']:10} {(d.get('size_bytes') or 0) / 2**30:8.1f} GiB  "
              f"{d.get('model') or ''} {d.get('serial') or ''}")
    disk = ask("install on disk", names[0], names)
    fs = ask("root file system", "ext4", ["ext4", "xfs"])
    fqdn = ask("host name (fully qualified, e.g. pve1.example.com)", "appliance.localdomain")
    while True:
        pw = getpass.getpass("root password: ")
        if len(pw) >= 8 and pw == getpass.getpass("again: "):
            break
        print("  passwords must match and have at least 8 characters")
    net = ask("network: dhcp or static", "dhcp", ["dhcp", "static"])
    network: dict[str, Any] = {"source": "from-dhcp"}
    if net == "static":
        network = {"source": "from-answer", "cidr": ask("address/prefix (e.g. 10.0.0.5/24)"),
                   "gateway": ask("gateway"), "dns": ask("DNS server"),
                   "filter": {"ID_NET_NAME": "*"}}
    if ask(f"ERASE ALL DATA on {disk} and install? type yes", "no") != "yes":
        raise InstallError("install cancelled; nothing was written")
    answer = {
        "global": {"keyboard": "en-us", "country": "us", "fqdn": fqdn,
                   "mailto": f"root@{fqdn}", "timezone": "Etc/UTC", "root-password": pw},
        "network": network,
        "disk-setup": {"filesystem": fs, "disk-list": [disk]},
    }
    fd, name = tempfile.mkstemp(prefix="appliance-answer-", suffix=".toml", dir=ANSWER_DIR)
    with os.fdopen(fd, "w") as f:
        f.write(tomli_w.dumps(answer))
    return Path(name)
