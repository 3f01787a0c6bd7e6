"""Create requests are checked field by field before anything happens."""

from __future__ import annotations

import pytest

from appliance.errors import HostError
from appliance.host import Host, HostPaths
from appliance.host.guests import host_memory_mib, parse_request

BASE = {"name": "web1", "template": "debian", "memory_mib": 256}


def refused(kind: str, match: str, **changes: object) -> HostError:
    with pytest.raises(HostError, match=match) as e:
        parse_request(kind, {**BASE, **changes})  # type: ignore[arg-type]
    assert e.value.http_status == 400
    return e.value


def test_a_valid_request_is_returned_clean() -> None:
    req = parse_request("ct", {**BASE, "cpus": "2", "ssh_keys": "ssh-ed25519 AAAA k\n\n"})
    assert req == {**BASE, "cpus": 2, "ssh_keys": ["ssh-ed25519 AAAA k"]}


@pytest.mark.parametrize("name", ["", "-x", "x-", "a b", "a_b", "x" * 64, "ä"])
def test_name_must_be_a_host_name(name: str) -> None:
    refused("vm", "^name: ", name=name)


def test_memory_beyond_the_host_names_the_host_size() -> None:
    refused("vm", f"^memory_mib: .*more than the {host_memory_mib()} this host has",
            memory_mib=host_memory_mib() + 1)


def test_cpus_beyond_the_host_are_refused() -> None:
    refused("ct", "^cpus: ", cpus=1000)


@pytest.mark.parametrize("value", [True, 1.5, "12x", [], None])
def test_memory_must_be_a_whole_number(value: object) -> None:
    refused("vm", "^memory_mib: ", memory_mib=value)


def test_unknown_and_foreign_fields_are_refused() -> None:
    refused("vm", "unknown field: colour", colour="red")
    # a VM has no root password, a container no kernel command line
    refused("vm", "unknown field: password", password="x")
    refused("ct", "unknown field: cmdline", cmdline="quiet")


def test_ssh_keys_and_disks_are_checked() -> None:
    refused("ct", r"^ssh_keys\[0\]", ssh_keys=["not a key"])
    refused("vm", r"^disks\[1\]", disks=[10, 0])


def test_a_request_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(HostError, match="expected a JSON object"):
        parse_request("vm", ["name"])  # type: ignore[arg-type]


def test_missing_template_is_refused_before_anything_is_written(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    host = Host(HostPaths(tmp_path / "etc", tmp_path / "state"))
    with pytest.raises(HostError, match="no VM template 'nope'") as e:
        host.create("vm", {**BASE, "template": "nope"})
    assert e.value.http_status == 400
    with pytest.raises(HostError, match="no container template 'nope'"):
        host.create("ct", {**BASE, "template": "nope"})
    assert host.list_guests() == [] and host.tasks.list() == []


def test_a_broken_template_or_config_file_is_named_in_the_error(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    paths = HostPaths(tmp_path / "etc", tmp_path / "state")
    host = Host(paths)
    (paths.vm_templates / "bad").mkdir(parents=True)
    (paths.vm_templates / "bad" / "template.toml").write_text("kernel = \n")
    with pytest.raises(HostError, match=r"VM template bad: .*template\.toml") as e:
        host.create("vm", {**BASE, "template": "bad"})
    assert e.value.http_status == 400
    (paths.guests / "100.toml").write_text("id = [\n")
    assert host.list_guests() == []
    with pytest.raises(HostError, match=r"100\.toml") as e:
        host.guest(100)
    assert e.value.http_status == 500
