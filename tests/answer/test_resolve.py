"""Resolving answers against the lab machine (tests/data/answer/lab-*.json)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from appliance.answer.machine import Gateway, Machine
from appliance.answer.parse import load_answer
from appliance.answer.resolve import resolve
from appliance.errors import AnswerError

from .conftest import DATA, UNSET


def plan_for(write_answer: Any, machine: Machine, **changes: Any) -> Any:
    return resolve(load_answer(write_answer(**changes)), machine)


def refused(write_answer: Any, machine: Machine, **changes: Any) -> AnswerError:
    with pytest.raises(AnswerError) as exc:  # noqa: PT011 (callers check the message)
        plan_for(write_answer, machine, **changes)
    return exc.value


def test_minimal_answer_takes_the_named_disk_and_the_dhcp_lease(lab: Machine) -> None:
    plan = resolve(load_answer(DATA / "minimal.toml"), lab)
    assert [d.devnode for d in plan.disks] == ["/dev/sda"]
    assert plan.disks[0].properties["ID_SERIAL_SHORT"] == "ZC11ABCD"
    assert plan.hdsize == pytest.approx(7814037168 * 512 / 2**30)
    n = plan.network
    assert (n.source, n.device, n.interface, n.mac) == ("from-dhcp", "eno1", "eno1",
                                                        "3c:ec:ef:11:22:33")
    assert (n.cidr, n.gateway, n.dns, n.address, n.prefix) == (
        "192.0.2.10/24", "192.0.2.1", "192.0.2.53", "192.0.2.10", 24)
    assert (plan.hostname, plan.domain, plan.fqdn) == ("pve1", "lab.example", "pve1.lab.example")
    assert plan.storage.installer_supported and not plan.warnings


def test_full_answer_uses_the_filtered_disk_nic_and_pinned_name(lab: Machine) -> None:
    plan = resolve(load_answer(DATA / "full.toml"), lab)
    assert [d.devnode for d in plan.disks] == ["/dev/nvme0n1"]
    assert (plan.storage.filesystem, plan.hdsize, plan.storage.swapsize) == ("xfs", 400.0, 8.0)
    n = plan.network
    assert (n.source, n.device, n.interface, n.cidr) == ("from-answer", "enp3s0f1", "mgmt",
                                                         "192.0.2.20/24")
    assert dict(n.pin_map) == {"3c:ec:ef:11:22:33": "nic0", "a0:36:9f:00:00:01": "nic1",
                               "a0:36:9f:00:00:02": "mgmt"}
    assert plan.first_boot.enabled and plan.first_boot.ordering_target == "network-online"
    assert plan.reboot_mode == "power-off" and plan.reboot_on_error
    assert plan.root_password_from == "hashed"
    assert plan.root_password_hash.startswith("$6$saltsaltsaltsalt$")


def test_filter_matching_no_disk_lists_the_candidates_with_udev_properties(
        write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__disk_list=UNSET,
                  disk_setup__filter={"ID_MODEL": "*INTEL*"})
    assert err.key == "disk-setup.filter"
    assert "filter ID_MODEL='*INTEL*' (filter-match = any) matched no disk" in err.reason
    for expected in ("nvme0n1 (931.51 GiB) ID_MODEL=Samsung SSD 980 PRO 1TB",
                     "ID_SERIAL_SHORT=ZC11ABCD", "sdb", "sdc (3.75 GiB)"):
        assert expected in err.reason


def test_ext4_filter_matching_two_disks_is_an_error(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__disk_list=UNSET,
                  disk_setup__filter={"ID_MODEL": "ST4000*"})
    assert err.key == "disk-setup.filter"
    assert "matched 2 disks (sda, sdb)" in err.reason and "exactly one" in err.reason
    assert "candidates: nvme0n1" in err.reason


def test_filter_match_all_needs_every_property(write_answer: Any, lab: Machine) -> None:
    flt = {"ID_MODEL": "ST4000*", "ID_SERIAL_SHORT": "*EFGH"}
    plan = plan_for(write_answer, lab, disk_setup__disk_list=UNSET, disk_setup__filter=flt,
                    disk_setup__filter_match="all")
    assert [d.devnode for d in plan.disks] == ["/dev/sdb"]
    err = refused(write_answer, lab, disk_setup__disk_list=UNSET, disk_setup__filter=flt)
    assert "matched 2 disks (sda, sdb)" in err.reason  # with "any", either property will do


def test_zfs_mirror_over_a_filter_resolves_but_is_not_installable_yet(
        write_answer: Any, lab: Machine) -> None:
    plan = plan_for(write_answer, lab, disk_setup__filesystem="zfs", disk_setup__disk_list=UNSET,
                    disk_setup__filter={"ID_BUS": "ata"}, disk_setup__zfs={"raid": "raid1"})
    s = plan.storage
    assert [d.index for d in s.disks] == ["1", "2"] and s.label == "zfs (RAID1)"
    assert s.zfs == {"ashift": 12, "arc_max": 3276, "checksum": "on", "compress": "on",
                     "copies": 1}
    assert s.installer_supported is False
    assert any("cannot lay down zfs yet" in w for w in plan.warnings)


def test_raid_needs_enough_matched_disks(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__filesystem="btrfs",
                  disk_setup__disk_list=UNSET, disk_setup__filter={"ID_BUS": "ata"},
                  disk_setup__btrfs={"raid": "raid10"})
    assert err.key == "disk-setup.filter"
    assert "Btrfs RAID10 needs at least 4 disks, got 2 (sda, sdb)" in err.reason


def test_mirror_of_very_different_disks_is_refused(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__filesystem="zfs",
                  disk_setup__disk_list=["nvme0n1", "sda"], disk_setup__zfs={"raid": "raid1"})
    assert err.key == "disk-setup.zfs.raid" and "same size" in err.reason


def test_disk_below_the_minimum_size_is_refused(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__disk_list=["sdc"])
    assert "/dev/sdc (3.75 GiB) is smaller than the minimum of 8 GiB" in err.reason


def test_unknown_disk_name_lists_the_candidates(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__disk_list=["sdz"])
    assert err.key == "disk-setup.disk-list[0]"
    assert "no disk 'sdz'" in err.reason and "sda (3726.02 GiB)" in err.reason


def test_disk_name_is_matched_exactly(write_answer: Any, lab: Machine) -> None:
    refused(write_answer, lab, disk_setup__disk_list=["da"])  # Proxmox would take /dev/sda
    plan = plan_for(write_answer, lab, disk_setup__disk_list=["/dev/sdb"])
    assert plan.disks[0].devnode == "/dev/sdb"


def test_hdsize_larger_than_the_disk_is_refused(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__disk_list=["nvme0n1"],
                  disk_setup__lvm={"hdsize": 1000})
    assert err.key == "disk-setup.lvm.hdsize" and "931.51 GiB" in err.reason


def test_swapsize_is_checked_against_the_resolved_disk(write_answer: Any, lab: Machine) -> None:
    plan = plan_for(write_answer, lab, disk_setup__lvm={"swapsize": 64})
    assert plan.storage.swapsize == 64.0
    small = dataclasses.replace(lab, disks=tuple(
        dataclasses.replace(d, size_bytes=20 * 2**30) for d in lab.disks))
    err = refused(write_answer, small, disk_setup__lvm={"swapsize": 16})
    assert err.key == "disk-setup.lvm.swapsize"
    assert "cannot be greater than 10 GiB" in err.reason


def test_nic_filter_matching_several_nics_takes_the_first_and_warns(
        write_answer: Any, lab: Machine) -> None:
    plan = plan_for(write_answer, lab, network__source="from-answer",
                    network__cidr="192.0.2.5/24", network__gateway="192.0.2.1",
                    network__dns="192.0.2.53", network__filter={"ID_NET_DRIVER": "igb"})
    assert plan.network.device == "enp3s0f0"
    assert "network.filter matched 2 NICs (enp3s0f0, enp3s0f1); using the first, enp3s0f0" \
        in plan.warnings


def test_nic_filter_matching_nothing_is_an_error(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, network__source="from-answer", network__cidr="192.0.2.5/24",
                  network__gateway="192.0.2.1", network__dns="192.0.2.53",
                  network__filter={"ID_NET_DRIVER": "mlx5_core"})
    assert "filter ID_NET_DRIVER='mlx5_core' matched no NIC" in err.reason
    assert "eno1 ID_NET_NAME=eno1 ID_NET_NAME_MAC=enx3cecef112233" in err.reason


def test_without_a_lease_the_first_nic_gets_the_fallback_address(
        write_answer: Any, lab: Machine) -> None:
    offline = dataclasses.replace(lab, gateway4=None, dns_servers=())
    plan = plan_for(write_answer, offline)
    n = plan.network
    assert (n.source, n.device, n.cidr, n.gateway, n.dns) == (
        "fallback", "eno1", "192.168.100.2/24", "192.168.100.1", "192.168.100.1")
    assert any("no DHCP lease" in w for w in plan.warnings)


def test_ipv6_lease_is_used_when_there_is_no_ipv4_route(write_answer: Any, lab: Machine) -> None:
    nics = tuple(dataclasses.replace(n, addresses=("2001:db8::10/64",)) if n.name == "enp3s0f0"
                 else n for n in lab.nics)
    v6 = dataclasses.replace(lab, nics=nics, gateway4=None,
                             gateway6=Gateway("enp3s0f0", "2001:db8::1"))
    n = plan_for(write_answer, v6).network
    assert (n.device, n.cidr, n.gateway) == ("enp3s0f0", "2001:db8::10/64", "2001:db8::1")


def test_fqdn_from_dhcp(write_answer: Any, lab: Machine) -> None:
    plan = plan_for(write_answer, lab, global__fqdn={"source": "from-dhcp"})
    assert (plan.hostname, plan.domain) == ("lab1", "lab.example")
    plan = plan_for(write_answer, lab, global__fqdn={"source": "from-dhcp", "domain": "b.example"})
    assert (plan.hostname, plan.domain) == ("lab1", "b.example")  # the answer's domain wins
    nameless = dataclasses.replace(lab, dhcp_hostname=None)
    err = refused(write_answer, nameless, global__fqdn={"source": "from-dhcp"})
    assert err.key == "global.fqdn.source"
    no_domain = dataclasses.replace(lab, dhcp_domain=None)
    err = refused(write_answer, no_domain, global__fqdn={"source": "from-dhcp"})
    assert err.key == "global.fqdn.domain"


def test_pinned_name_colliding_with_a_generated_one_is_an_error(
        write_answer: Any, lab: Machine) -> None:
    pin = {"enabled": True, "mapping": {"3c:ec:ef:11:22:33": "nic1"}}
    err = refused(write_answer, lab, **{"network__interface-name-pinning": pin})
    assert err.key == "network.interface-name-pinning.mapping"
    assert "'nic1'" in err.reason


def test_pinning_a_mac_this_machine_lacks_is_a_warning(write_answer: Any, lab: Machine) -> None:
    pin = {"enabled": True, "mapping": {"02:00:00:00:00:99": "spare"}}
    plan = plan_for(write_answer, lab, **{"network__interface-name-pinning": pin})
    assert plan.network.interface == "nic0"
    assert any("02:00:00:00:00:99" in w for w in plan.warnings)


def test_disabled_pinning_keeps_kernel_names(write_answer: Any, lab: Machine) -> None:
    pin = {"enabled": False, "mapping": {"3c:ec:ef:11:22:33": "mgmt"}}
    plan = plan_for(write_answer, lab, **{"network__interface-name-pinning": pin})
    assert plan.network.interface == "eno1" and not plan.network.pin_map


@pytest.mark.parametrize("hvm", [False, None])
def test_required_virtualization_refuses_a_machine_without_it(
        write_answer: Any, lab: Machine, hvm: bool | None) -> None:
    machine = dataclasses.replace(lab, hvm_supported=hvm,
                                  hvm_verdict="software-only (kvm_pvm)" if hvm is False else None)
    err = refused(write_answer, machine, global__require_hardware_virtualization=True)
    assert err.key == "global.require-hardware-virtualization"
    assert ("kvm_pvm" if hvm is False else "cannot tell") in err.reason
    plan = plan_for(write_answer, machine)  # not required: installs anyway
    assert plan.hardware_virtualization is hvm


def test_plain_password_is_hashed_and_never_kept(write_answer: Any, lab: Machine) -> None:
    plan = plan_for(write_answer, lab)
    text = json.dumps(plan.to_json())
    assert "correct horse" not in text and "correct horse" not in repr(plan)
    h = plan.root_password_hash
    assert h.startswith("$6$") and plan.root_password_from == "plain"
    salt = h.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                           input="correct horse\n", capture_output=True, text=True, check=True)
    assert again.stdout.strip() == h
    assert plan_for(write_answer, lab).root_password_hash == h  # derived salt: same plan


def test_disk_sizes_are_needed(write_answer: Any) -> None:
    udev_only = Machine.from_files(DATA / "lab-udev.json")
    err = refused(write_answer, udev_only)
    assert "size of /dev/sda is unknown" in err.reason


def test_info_disk_with_a_stale_index_finds_its_udev_data_by_devname(tmp_path: Path) -> None:
    info = json.loads((DATA / "lab-info.json").read_text())
    info["disks"] = [[0, "/dev/sdb", 7814037168, "ST4000", 512, "/sys/block/sdb"]]
    path = tmp_path / "info.json"
    path.write_text(json.dumps(info))
    m = Machine.from_files(DATA / "lab-udev.json", path)
    assert m.disks[0].properties["ID_SERIAL_SHORT"] == "ZC11EFGH"


def test_resolve_errors_point_at_the_line_too(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__disk_list=["sdz"])
    text = Path(err.file or "").read_text()
    assert err.line == next(i for i, t in enumerate(text.splitlines(), 1) if "disk-list" in t)
    assert str(err).startswith(f"{err.file}:{err.line}: disk-setup.disk-list[0]: ")


def test_4kn_disk_cannot_boot_in_bios_mode(write_answer: Any, lab: Machine) -> None:
    disks = tuple(dataclasses.replace(d, logical_block_size=4096) for d in lab.disks)
    uefi = dataclasses.replace(lab, disks=disks, boot_type="efi")
    assert plan_for(write_answer, uefi).disks[0].logical_block_size == 4096
    err = refused(write_answer, dataclasses.replace(uefi, boot_type="bios"))
    assert "4Kn" in err.reason and "/dev/sda" in err.reason


def test_dhcp_host_name_and_domain_come_from_lease_files(tmp_path: Path) -> None:
    from appliance.answer.machine import read_dhcp_leases

    netd = tmp_path / "run/systemd/netif/leases"
    netd.mkdir(parents=True)
    (netd / "2").write_text("# private\nADDRESS=192.0.2.10\nHOSTNAME=lab1\n"
                            "DOMAINNAME=lab.example\n")
    (netd / "9").write_text("HOSTNAME=ghost\n")  # no such interface any more
    dhc = tmp_path / "var/lib/dhcp"
    dhc.mkdir(parents=True)
    (dhc / "dhclient.leases").write_text(
        'lease {\n  interface "enp3s0f0";\n  option host-name "old";\n}\n'
        'lease {\n  interface "enp3s0f0";\n  fixed-address 192.0.2.11;\n'
        '  option host-name "lab2";\n  option domain-name "b.example c.example";\n}\n')
    leases = read_dhcp_leases(tmp_path, {2: "eno1", 3: "enp3s0f0"})
    assert leases == {"eno1": {"hostname": "lab1", "domain": "lab.example"},
                      "enp3s0f0": {"hostname": "lab2", "domain": "b.example"}}
    assert read_dhcp_leases(tmp_path / "nothing", {}) == {}


def test_installer_refuses_zfs_and_btrfs_plans_for_now(write_answer: Any, lab: Machine) -> None:
    from appliance.answer import require_installable

    require_installable(plan_for(write_answer, lab))  # ext4: fine
    plan = plan_for(write_answer, lab, disk_setup__filesystem="btrfs",
                    disk_setup__disk_list=["sda", "sdb"], disk_setup__btrfs={"raid": "raid1"})
    with pytest.raises(AnswerError) as exc:  # noqa: PT011 (key and reason: below)
        require_installable(plan)
    assert exc.value.key == "disk-setup.btrfs.raid"
    assert "btrfs (RAID1) is not supported by the installer yet" in exc.value.reason


def test_this_machine_agrees_with_hardware_detection() -> None:
    from appliance.answer import this_machine
    from appliance.hw import detect

    report = detect()
    assert report.inventory is not None
    m = this_machine()
    assert m.hvm_supported is report.accelerated
    assert [d.devnode for d in m.disks] == [d.devnode for d in report.inventory.install_targets]
    assert sorted(n.name for n in m.nics) == sorted(n.name for n in report.inventory.nics)
    assert all(d.size_bytes is not None for d in m.disks)


def test_same_disk_under_two_names_is_a_duplicate(write_answer: Any, lab: Machine) -> None:
    err = refused(write_answer, lab, disk_setup__filesystem="zfs",
                  disk_setup__disk_list=["sda", "/dev/sda"], disk_setup__zfs={"raid": "raid1"})
    assert err.key == "disk-setup.disk-list[1]" and "duplicate" in err.reason


def test_static_network_without_a_filter_uses_the_default_route_nic(
        write_answer: Any, lab: Machine) -> None:
    static = {"network__source": "from-answer", "network__cidr": "192.0.2.5/24",
              "network__gateway": "192.0.2.1", "network__dns": "192.0.2.53"}
    n = plan_for(write_answer, lab, **static).network
    assert (n.source, n.device, n.cidr) == ("from-answer", "eno1", "192.0.2.5/24")
    offline = dataclasses.replace(lab, gateway4=None)
    assert plan_for(write_answer, offline, **static).network.device == "eno1"  # lowest index
