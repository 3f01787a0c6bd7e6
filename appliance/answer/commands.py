"""What `appliance answer validate|resolve|keys` do; appliance.cli only parses arguments."""

from __future__ import annotations

from typing import Any

from appliance.answer import keys
from appliance.answer.machine import Machine, this_machine
from appliance.answer.model import Answer, InstallPlan
from appliance.answer.parse import load_answer
from appliance.answer.resolve import resolve
from appliance.errors import AnswerError


def validate(path: str) -> Answer:
    return load_answer(path)


def machine_for(
    udev_json: str | None = None, info_json: str | None = None, recorded: str | None = None
) -> Machine:
    """The machine to resolve against: the given udev/run-env files, a recorded
    machine, or (default) this one."""
    if recorded and (udev_json or info_json):
        raise AnswerError("--recorded cannot be combined with --udev-json/--info-json")
    if udev_json or info_json:
        return Machine.from_files(udev_json, info_json)
    return this_machine(recorded)


def resolve_file(
    path: str, udev_json: str | None = None, info_json: str | None = None,
    recorded: str | None = None,
) -> InstallPlan:
    answer = load_answer(path)
    return resolve(answer, machine_for(udev_json, info_json, recorded))


def answer_text(a: Answer) -> str:
    ds, g, n = a.disk_setup, a.global_, a.network
    target = (f"disk-list {', '.join(ds.disk_list)}" if ds.disk_list else
              f"filter ({ds.filter_match}) " + " ".join(f"{k}={v}" for k, v in ds.filter.items()))
    fqdn = g.fqdn or ("from DHCP" + (f", domain {g.fqdn_domain}" if g.fqdn_domain else ""))
    lines = [
        f"{a.source}: valid",
        f"  fqdn:       {fqdn}",
        f"  disks:      {ds.filesystem}{f' {ds.raid}' if ds.raid else ''} on {target}",
        f"  network:    {n.source}" + (f" {n.cidr} via {n.gateway}, dns {n.dns}"
                                       if n.source == "from-answer" else ""),
    ]
    if g.require_hardware_virtualization:
        lines.append("  requires:   hardware virtualization (VT-x/AMD-V)")
    return "\n".join(lines) + "\n"


def _gib(value: float | None) -> str:
    return "default" if value is None else f"{value:.2f} GiB"


def plan_text(p: InstallPlan) -> str:
    s, n = p.storage, p.network
    disks = "\n".join(f"  disk:       {d.devnode} ({d.size_gib:.2f} GiB"
                      f"{', ' + d.model if d.model else ''}; udev index {d.index})"
                      for d in s.disks)
    lvm = "" if s.filesystem not in ("ext4", "xfs") else (
        f", swapsize {_gib(s.swapsize)}, maxroot {_gib(s.maxroot)}, "
        f"minfree {_gib(s.minfree)}, maxvz {_gib(s.maxvz)}")
    opts = s.zfs or s.btrfs
    extra = (", " + ", ".join(f"{k} {v}" for k, v in opts.items())) if opts else ""
    lines = [
        f"answer:       {p.answer_file}",
        f"  host:       {p.fqdn} (hostname {p.hostname}, domain {p.domain})",
        disks,
        f"  storage:    {s.label}, hdsize {_gib(s.hdsize)}{lvm}{extra}",
        f"  network:    {n.interface}"
        + (f" (now {n.device})" if n.interface != n.device else "")
        + f"{f' {n.mac}' if n.mac else ''}: {n.cidr} via {n.gateway}, dns {n.dns} "
          f"({n.source})",
        f"  root:       password ({p.root_password_from} in the answer, stored as a hash), "
        f"{len(p.root_ssh_keys)} SSH key(s)",
        f"  locale:     keyboard {p.keyboard}, country {p.country}, timezone {p.timezone}",
        f"  mailto:     {p.mailto}",
        f"  afterwards: {p.reboot_mode}; on error: "
        f"{'reboot' if p.reboot_on_error else 'wait'}",
        "  first boot: " + (f"{p.first_boot.source} ({p.first_boot.ordering})"
                            if p.first_boot.enabled else "none"),
        "  webhook:    " + (p.webhook.url if p.webhook else "none"),
    ]
    if p.require_hardware_virtualization:
        lines.append("  requires:   hardware virtualization (present)")
    lines += [f"warning: {w}" for w in p.warnings]
    return "\n".join(lines) + "\n"


def keys_text() -> str:
    out = []
    for k in keys.reference():
        req = "required" if k["required"] else f"default {k['default']!r}"
        alias = f" (also {', '.join(k['aliases'])})" if k["aliases"] else ""
        out.append(f"{k['key']}{alias}  [{k['kind']}, {req}]\n    {k['help']}")
    return "\n".join(out) + "\n"


def keys_json() -> list[dict[str, Any]]:
    return keys.reference()
