"""Parsing and offline validation of answer files."""

from __future__ import annotations

import pytest

from appliance.answer.keys import reference
from appliance.answer.parse import load_answer, parse_answer
from appliance.errors import AnswerError

from .conftest import DATA, UNSET, answer_text


def rejected(text: str) -> AnswerError:
    with pytest.raises(AnswerError) as exc:  # noqa: PT011 (callers check the message)
        parse_answer(text, "answer.toml")
    return exc.value


def test_minimal_answer_parses() -> None:
    a = load_answer(DATA / "minimal.toml")
    assert a.global_.fqdn == "pve1.lab.example"
    assert a.disk_setup.filesystem == "ext4" and a.disk_setup.disk_list == ("sda",)
    assert a.network.source == "from-dhcp"
    assert a.global_.reboot_mode == "reboot" and not a.require_hw_virt
    assert a.first_boot is None and a.webhook is None


def test_full_answer_parses_every_section() -> None:
    a = load_answer(DATA / "full.toml")
    assert a.require_hw_virt is True
    assert a.network.interface_name_pinning is not None
    assert dict(a.network.interface_name_pinning.mapping) == {"a0:36:9f:00:00:02": "mgmt"}
    assert a.disk_setup.lvm is not None and a.disk_setup.lvm.hdsize == 400.0
    assert a.first_boot is not None and a.first_boot.ordering_target == "network-online"
    assert a.webhook is not None and a.webhook.url.endswith("/installed")


def test_plain_password_is_not_in_the_answer_json() -> None:
    a = load_answer(DATA / "minimal.toml")
    assert "correct horse" not in str(a.to_json())
    assert "correct horse" not in repr(a)


def test_error_names_file_line_key_and_reason() -> None:
    text = answer_text(global__root_password="short")
    err = rejected(text)
    line = text.splitlines().index('root-password = "short"') + 1
    assert str(err).startswith(f"answer.toml:{line}: global.root-password: ")
    assert (err.key, err.line, err.file) == ("global.root-password", line, "answer.toml")
    assert "at least 8 characters" in err.reason


def test_toml_syntax_error_has_the_line() -> None:
    err = rejected("[global]\nkeyboard = \"de\"\nfqdn = \n")
    assert str(err).startswith("answer.toml:3: not valid TOML")


def test_snake_case_aliases_are_accepted() -> None:
    text = answer_text(global__root_password=UNSET, disk_setup__disk_list=UNSET)
    text = text.replace("[global]", "[global]\nroot_password = \"correct horse\"")
    text = text.replace("[disk-setup]",
                        "[disk-setup]\ndisk_list = [\"sda\"]\nfilter_match = \"all\"")
    a = parse_answer(text)
    assert a.global_.root_password == "correct horse"
    assert a.disk_setup.disk_list == ("sda",) and a.disk_setup.filter_match == "all"


def test_same_key_in_both_spellings_is_an_error() -> None:
    text = answer_text().replace("[global]", "[global]\nroot_password = \"other one\"")
    err = rejected(text)
    assert err.key == "global.root_password"
    assert "root-password and root_password" in err.reason


def test_unknown_key_suggests_the_right_one() -> None:
    err = rejected(answer_text(global__time_zone="UTC"))
    assert err.key == "global.time-zone"
    assert "did you mean 'timezone'" in err.reason


def test_unknown_section_is_an_error() -> None:
    err = rejected(answer_text() + "\n[disks]\nfoo = 1\n")
    assert err.key == "disks" and "unknown key" in err.reason


@pytest.mark.parametrize(
    ("changes", "key", "reason"),
    [
        ({"global__fqdn": "pve"}, "global.fqdn", "host name only"),
        ({"global__fqdn": "123.lab.example"}, "global.fqdn", "purely numeric"),
        ({"global__fqdn": "pve_1.lab"}, "global.fqdn", "not a valid name"),
        ({"global__fqdn": {"source": "from-dhcp", "domain": "-x"}}, "global.fqdn.domain",
         "not a valid domain"),
        ({"global__fqdn": {"source": "static"}}, "global.fqdn.source", "not one of"),
        ({"global__keyboard": "us"}, "global.keyboard", "not one of"),
        ({"global__country": "xx"}, "global.country", "not valid"),
        ({"global__country": "DE"}, "global.country", "lower case"),
        ({"global__timezone": "Mars/Olympus"}, "global.timezone", "not valid"),
        ({"global__mailto": "root"}, "global.mailto", "email address"),
        ({"global__mailto": "mail@example.invalid"}, "global.mailto", "placeholder"),
        ({"global__root_password": UNSET}, "global.root-password", "must be set"),
        ({"global__root_password_hashed": "plain"}, "global.root-password",
         "at the same time"),
        ({"global__root_ssh_keys": ["my key"]}, "global.root-ssh-keys[0]", "SSH public key"),
        ({"global__reboot_mode": "halt"}, "global.reboot-mode", "not one of"),
        ({"global__require_hardware_virtualization": "yes"},
         "global.require-hardware-virtualization", "true or false"),
    ],
)
def test_global_section_is_checked(changes: dict[str, object], key: str, reason: str) -> None:
    err = rejected(answer_text(**changes))
    assert err.key == key
    assert reason in err.reason


def test_fqdn_from_dhcp_with_empty_domain_means_unset() -> None:
    a = parse_answer(answer_text(global__fqdn={"source": "from-dhcp", "domain": ""}))
    assert a.global_.fqdn is None and a.global_.fqdn_domain is None


@pytest.mark.parametrize(
    ("changes", "key", "reason"),
    [
        ({"network__cidr": "192.0.2.5/24"}, "network.cidr", "not supported with source"),
        ({"network__source": "from-answer"}, "network.cidr", "required with source"),
        ({"network__source": "from-answer", "network__cidr": "192.0.2.0/24",
          "network__gateway": "192.0.2.1", "network__dns": "192.0.2.1",
          "network__filter": {"ID_NET_NAME": "eno1"}}, "network.cidr", "network address"),
        ({"network__source": "from-answer", "network__cidr": "192.0.2.5",
          "network__gateway": "192.0.2.1", "network__dns": "192.0.2.1",
          "network__filter": {"ID_NET_NAME": "eno1"}}, "network.cidr", "ADDRESS/PREFIX"),
        ({"network__source": "from-answer", "network__cidr": "192.0.2.5/24",
          "network__gateway": "192.0.2.300", "network__dns": "192.0.2.1",
          "network__filter": {"ID_NET_NAME": "eno1"}}, "network.gateway", "not a valid IP"),
        ({"network__source": "from-answer", "network__cidr": "192.0.2.5/24",
          "network__gateway": "192.0.2.1", "network__dns": "192.0.2.1",
          "network__filter": {}}, "network.filter", "empty filter"),
        ({"network__source": "from-answer", "network__cidr": "192.0.2.5/24",
          "network__gateway": "192.0.2.1", "network__dns": "192.0.2.1",
          "network__filter": {"ID_NET_NAME": "en[o"}}, "network.filter.ID_NET_NAME",
         "never closed"),
        ({"network__interface-name-pinning": {"enabled": True, "mapping": {"aa:bb": "x1"}}},
         "network.interface-name-pinning.mapping.aa:bb", "not a MAC address"),
        ({"network__interface-name-pinning": {"enabled": True, "mapping": {
            "aa:bb:cc:dd:ee:01": "lan0", "AA:BB:CC:DD:EE:02": "lan0"}}},
         "network.interface-name-pinning.mapping.AA:BB:CC:DD:EE:02", "given to both"),
        ({"network__interface-name-pinning": {"enabled": True, "mapping": {
            "aa:bb:cc:dd:ee:01": "0lan"}}},
         "network.interface-name-pinning.mapping.aa:bb:cc:dd:ee:01", "start with a letter"),
    ],
)
def test_network_section_is_checked(changes: dict[str, object], key: str, reason: str) -> None:
    err = rejected(answer_text(**changes))
    assert err.key == key
    assert reason in err.reason


@pytest.mark.parametrize(
    ("changes", "key", "reason"),
    [
        ({"disk_setup__disk_list": UNSET}, "disk-setup", "either disk-list or filter"),
        ({"disk_setup__filter": {"ID_SERIAL": "*"}}, "disk-setup.filter", "cannot both"),
        ({"disk_setup__disk_list": ["sda", "sdb"]}, "disk-setup.disk-list",
         "exactly one disk"),
        ({"disk_setup__filesystem": "zfs"}, "disk-setup.zfs.raid", "must be set"),
        ({"disk_setup__filesystem": "btrfs", "disk_setup__btrfs": {"compress": "zlib"}},
         "disk-setup.btrfs.raid", "must be set"),
        ({"disk_setup__zfs": {"raid": "raid0"}}, "disk-setup.zfs", "do not apply"),
        ({"disk_setup__filesystem": "zfs", "disk_setup__zfs": {"raid": "raid5"}},
         "disk-setup.zfs.raid", "not one of"),
        ({"disk_setup__filesystem": "zfs", "disk_setup__disk_list": ["sda", "sdb", "sdc"],
          "disk_setup__zfs": {"raid": "raidz-2"}}, "disk-setup.disk-list",
         "RAIDZ-2 needs at least 4 disks, got 3"),
        ({"disk_setup__filesystem": "zfs", "disk_setup__zfs": {"raid": "raid10"},
          "disk_setup__disk_list": ["a", "b", "c", "d", "e"]}, "disk-setup.disk-list",
         "even number"),
        ({"disk_setup__lvm": {"hdsize": 4}}, "disk-setup.lvm.hdsize", "below the minimum"),
        ({"disk_setup__lvm": {"hdsize": 40, "maxroot": 50}}, "disk-setup.lvm.maxroot",
         "more than hdsize"),
        ({"disk_setup__lvm": {"swapsize": -1}}, "disk-setup.lvm.swapsize", "below the minimum"),
        ({"disk_setup__lvm": {"maxvz": float("nan")}}, "disk-setup.lvm.maxvz", "not a size"),
        ({"disk_setup__filter_match": "most"}, "disk-setup.filter-match", "not one of"),
    ],
)
def test_disk_setup_is_checked(changes: dict[str, object], key: str, reason: str) -> None:
    err = rejected(answer_text(**changes))
    assert err.key == key
    assert reason in err.reason


def test_raid_levels_fold_case() -> None:
    a = parse_answer(answer_text(disk_setup__filesystem="zfs",
                                 disk_setup__disk_list=["sda", "sdb", "sdc"],
                                 disk_setup__zfs={"raid": "RAIDZ-1", "arc-max": 4096}))
    assert a.disk_setup.raid == "raidz-1"
    assert a.disk_setup.zfs is not None and a.disk_setup.zfs.arc_max == 4096


@pytest.mark.parametrize(
    ("section", "key", "reason"),
    [
        ({"source": "from-url"}, "first-boot.url", "required"),
        ({"source": "from-iso", "url": "https://x.example/a"}, "first-boot.url", "only used"),
        ({"source": "from-url", "url": "ftp://x.example/a"}, "first-boot.url", "not a http"),
        ({"source": "from-iso", "ordering": "late"}, "first-boot.ordering", "not one of"),
    ],
)
def test_first_boot_is_checked(section: dict[str, str], key: str, reason: str) -> None:
    err = rejected(answer_text(first_boot=UNSET, **{f"first_boot__{k}": v
                                                    for k, v in section.items()}))
    assert err.key == key
    assert reason in err.reason


def test_webhook_fingerprint_is_checked() -> None:
    err = rejected(answer_text(post_installation_webhook__url="https://h.example/x",
                               post_installation_webhook__cert_fingerprint="abc"))
    assert err.key == "post-installation-webhook.cert-fingerprint"


def test_key_reference_lists_every_key_once_with_aliases() -> None:
    ref = {k["key"]: k for k in reference()}
    assert len(ref) == len(reference())
    for key in ("global.fqdn.domain", "network.interface-name-pinning.mapping",
                "disk-setup.zfs.arc-max", "post-installation-webhook.url",
                "global.require-hardware-virtualization"):
        assert key in ref
    assert ref["disk-setup.disk-list"]["aliases"] == ["disk_list"]
    assert ref["global"]["required"] and not ref["first-boot"]["required"]


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("[disk-setup]\nfilesystem = \"ext4\"\nlvm.swapsize = 9\n", "disk-setup.lvm.swapsize", 3),
        ("[disk-setup]\nfilesystem = \"ext4\"\n\n[disk-setup.lvm]\nhdsize = 1\nswapsize = 9\n",
         "disk-setup.lvm.swapsize", 6),
        ("[global]\nroot_password = \"x\"\n", "global.root-password", 2),
        ("[network]\nsource = \"x\"\n[network.interface-name-pinning.mapping]\n"
         "\"aa:bb:cc:dd:ee:ff\" = \"x\"\n",
         "network.interface-name-pinning.mapping.aa:bb:cc:dd:ee:ff", 4),
        ("[disk-setup]\ndisk-list = [\"a\", \"a\"]\n", "disk-setup.disk-list[1]", 2),
        ("[disk-setup]\nfilesystem = \"ext4\"\n", "disk-setup.zfs.raid", 1),
        ("[global]\n", "network.cidr", None),
    ],
)
def test_errors_point_at_the_line_of_the_key(text: str, key: str, line: int | None) -> None:
    from appliance.answer.parse import locate

    assert locate(text, key) == line


def test_the_shipped_example_answer_is_valid() -> None:
    from .conftest import DATA as data

    example = data.parents[2] / "templates/answer/answer.example.toml"
    a = load_answer(example)
    assert a.require_hw_virt and a.disk_setup.filter == {"ID_PATH": "pci-*-nvme-1"}


def test_the_readme_tour_answer_is_valid() -> None:
    from .conftest import DATA as data

    a = load_answer(data.parents[2] / "templates/answer/answer.qemu.toml")
    assert a.disk_setup.disk_list == ("vda",) and a.global_.reboot_mode == "power-off"
