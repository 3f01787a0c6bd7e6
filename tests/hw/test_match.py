import json
import tomllib
from pathlib import Path

import pytest

from appliance.errors import HardwareError
from appliance.hw.match import glob_match, match_devices, parse_filters

from .conftest import appliance_json


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*MZ7KM240HAGR*", "SAMSUNG_MZ7KM240HAGR-00005_S2HRNX0J403419", True),
        ("*MZ7KM240HAGR*", "Micron_9300_MTFDHAL3T2TDR_19502596FC74", False),
        ("Micron_9300*", "Micron_9300_MTFDHAL3T2TDR", True),
        ("micron_9300*", "Micron_9300_MTFDHAL3T2TDR", False),  # case-sensitive
        ("sd?", "sda", True),
        ("sd?", "sda1", False),  # the whole value must match
        ("sd[ab]", "sdb", True),
        ("sd[a-c]", "sdc", True),
        ("sd[!ab]", "sda", False),
        ("sd[!ab]", "sdc", True),
        ("nvme*", "nvme0n1", True),
        ("*", "", True),
        ("a.b", "aXb", False),  # regex characters are literal
        ("/dev/disk/by-id/*", "/dev/disk/by-id/ata-X", True),  # / is ordinary
        ("[]]x", "]x", True),
    ],
)
def test_glob_semantics(pattern, value, expected):
    assert glob_match(pattern, value) is expected


def test_unclosed_bracket_is_an_error_not_a_silent_miss():
    with pytest.raises(HardwareError, match="never closed"):
        match_devices({"sda": {"ID_SERIAL": "x"}}, {"ID_SERIAL": "[abc"})


DEVICES = {
    "sda": {"ID_SERIAL": "SAMSUNG_A", "ID_BUS": "ata"},
    "sdb": {"ID_SERIAL": "SAMSUNG_B", "ID_BUS": "usb"},
    "nvme0n1": {"ID_SERIAL": "Micron_C"},
}


def test_filter_any_needs_one_key():
    assert match_devices(DEVICES, {"ID_SERIAL": "SAMSUNG*", "ID_BUS": "nomatch"}, "any") == [
        "sda",
        "sdb",
    ]


def test_filter_all_requires_every_key():
    got = match_devices(DEVICES, {"ID_SERIAL": "SAMSUNG*", "ID_BUS": "usb"}, "all")
    assert got == ["sdb"]


def test_filter_all_fails_when_a_property_is_absent():
    assert match_devices(DEVICES, {"ID_SERIAL": "*", "ID_BUS": "*"}, "all") == ["sda", "sdb"]


def test_empty_filter_selects_nothing():
    assert match_devices(DEVICES, {}, "any") == []


def test_bad_mode_and_bad_item_are_errors():
    with pytest.raises(HardwareError, match="filter-match"):
        match_devices(DEVICES, {"ID_SERIAL": "*"}, "some")  # type: ignore[arg-type]
    with pytest.raises(HardwareError, match="KEY=GLOB"):
        parse_filters(["ID_SERIAL"])


# --- Proxmox's own corpus ------------------------------------------------------


def _filter_cases(corpus: Path) -> list[tuple[str, str, dict[str, str], str, Path]]:
    """(name, kind, filters, mode, expected .json) for every answer using filters."""
    cases = []
    for toml in sorted((corpus / "parse_answer").glob("*.toml")):
        answer = tomllib.loads(toml.read_text())
        for section, kind in (("disk-setup", "disk"), ("network", "network")):
            sect = answer.get(section, {})
            if "filter" in sect:
                mode = sect.get("filter-match", sect.get("filter_match", "any"))
                cases.append((toml.stem, kind, sect["filter"], mode, toml.with_suffix(".json")))
    return cases


def test_conformance_corpus_has_filter_cases(conformance):
    kinds = {kind for _, kind, *_ in _filter_cases(conformance)}
    assert len(_filter_cases(conformance)) >= 5 and kinds == {"disk", "network"}


def test_device_match_agrees_with_proxmox_corpus(conformance):
    udev = json.loads((conformance / "run-env-udev.json").read_text())
    for name, kind, filters, mode, expected_file in _filter_cases(conformance):
        expected = json.loads(expected_file.read_text())
        if kind == "disk":
            got = match_devices(udev["disks"], filters, mode)
            if "disk_selection" in expected:
                want = sorted(expected["disk_selection"], key=int)
            else:  # ext4/xfs: a single target disk
                by_node = {p["DEVNAME"]: k for k, p in udev["disks"].items()}
                want = [by_node[expected["target_hd"]]]
            assert got == want, name
        else:
            got = match_devices(udev["nics"], filters, mode)
            assert got == [expected["mngmt_nic"]], name


def test_device_match_cli_reads_a_udev_json(conformance):
    code, out = appliance_json(
        "device-match",
        "disk",
        "ID_SERIAL=*MZ7KM240HAGR*",
        "ID_SERIAL_SHORT=S2HRNX0J403419",
        "--filter-match",
        "all",
        "--json",
        "--udev-json",
        str(conformance / "run-env-udev.json"),
    )
    assert code == 0
    assert out["matched"] == ["9"]
    assert len(out["candidates"]) == 10
