"""Proxmox VE's own answer-file corpus: every answer in parse_answer/ resolves
on the recorded server to the settings Proxmox's parser computed, and every
answer in parse_answer_fail/ is rejected naming the same key and reason.

The corpus is read in place from ../shared/conformance/pve-auto-installer/
(its README asks not to copy it into this repository); without it these
tests skip, and tests/answer/test_parse.py and test_resolve.py still cover
the behaviour with our own data.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from appliance.answer.machine import Machine
from appliance.answer.model import InstallPlan
from appliance.answer.parse import load_answer
from appliance.answer.resolve import resolve
from appliance.errors import AnswerError

ROOT = Path(__file__).resolve().parents[2]
CORPUS = (ROOT / "../shared/conformance/pve-auto-installer").resolve()


def _names(sub: str) -> list[str]:
    if not CORPUS.is_dir():
        return ["corpus-missing"]
    return sorted(p.stem for p in (CORPUS / sub).glob("*.toml"))


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"Proxmox conformance corpus not found at {CORPUS}")
    return CORPUS


def _machine(corpus: Path, sub: str, name: str) -> Machine:
    override = corpus / sub / f"{name}.run-env.json"  # replaces the whole run env
    info = override if override.exists() else corpus / "run-env-info.json"
    return Machine.from_files(corpus / "run-env-udev.json", info)


def _crypt(password: str, salt_from: str) -> str:
    """`openssl passwd` of `password` with the method and salt of `salt_from`."""
    method, salt = salt_from.split("$")[1:3]
    out = subprocess.run(["openssl", "passwd", f"-{method}", "-salt", salt, "-stdin"],
                         input=password + "\n", capture_output=True, text=True, check=True)
    return out.stdout.strip()


# Each key of Proxmox's expected JSON -> how our plan states it. A key that is
# neither here nor in IGNORED fails the test, so new corpus fields get noticed.
def _ours(plan: InstallPlan, key: str, expected: Any) -> Any:
    s, n = plan.storage, plan.network
    if key == "target_hd":
        assert len(s.disks) == 1, "ext4/xfs take exactly one disk"
        return s.disks[0].devnode
    if key == "disk_selection":
        return {d.index: d.index for d in s.disks}
    if key == "root_password":
        if "hashed" in expected:
            return {"hashed": plan.root_password_hash}
        # We keep only a hash: it must be the hash of the expected plain text.
        assert plan.root_password_from == "plain"
        assert expected["plain"] not in json.dumps(plan.to_json())
        ok = _crypt(expected["plain"], plan.root_password_hash) == plan.root_password_hash
        return expected if ok else {"plain": "<hash does not match>"}
    if key == "first_boot":
        fb = plan.first_boot
        return ({"enabled": 1, "ordering_target": fb.ordering_target} if fb.enabled
                else {"enabled": 0})
    if key == "zfs_opts":
        return dict(s.zfs) if s.zfs is not None else None
    if key == "btrfs_opts":
        return dict(s.btrfs) if s.btrfs is not None else None
    simple = {
        "filesys": s.label,
        "hdsize": s.hdsize,
        "mngmt_nic": n.interface,
        "cidr": n.cidr,
        "gateway": n.gateway,
        "dns": n.dns,
        "hostname": plan.hostname,
        "domain": plan.domain,
        "keymap": plan.keyboard,
        "country": plan.country,
        "timezone": plan.timezone,
        "mailto": plan.mailto,
        "network_interface_pin_map": dict(n.pin_map),
        "swapsize": s.swapsize,
        "maxroot": s.maxroot,
        "minfree": s.minfree,
        "maxvz": s.maxvz,
    }
    if key not in simple:
        raise AssertionError(f"Proxmox's expected key {key!r} is not mapped to our plan")
    return simple[key]


# Knobs of Proxmox's low-level installer with no counterpart in our plan.
IGNORED = {
    "autoreboot": "Proxmox's low-level installer prompt; our plan has reboot_mode",
    "existing_storage_auto_rename": "renaming a foreign 'pve' VG/zpool: not our installer's",
}


@pytest.mark.parametrize("name", _names("parse_answer"))
def test_proxmox_answer_resolves_like_proxmox(corpus: Path, name: str) -> None:
    plan = resolve(load_answer(corpus / "parse_answer" / f"{name}.toml"),
                   _machine(corpus, "parse_answer", name))
    expected = json.loads((corpus / "parse_answer" / f"{name}.json").read_text())
    for key, want in expected.items():
        if key in IGNORED:
            continue
        got = _ours(plan, key, want)
        if isinstance(want, float):
            assert math.isclose(got, want, rel_tol=1e-12), key
        else:
            assert got == want, key
    # The plan names the disks by device node too, and keeps their udev data.
    assert all(d.devnode.startswith("/dev/") and d.properties for d in plan.disks)


# The key each rejection is about (Proxmox's messages do not always name it).
FAIL_KEYS = {
    "both_password_and_hashed_set": "global.root-password",
    "btrfs_raid_single_disk": "disk-setup.disk-list",
    "duplicate_disk": "disk-setup.disk-list",
    "fqdn_from_dhcp_no_default_domain": "global.fqdn.domain",
    "fqdn_hostname_only": "global.fqdn",
    "ipv4_and_subnet_mask_33": "network.cidr",
    "lvm_swapsize_greater_than_hdsize": "disk-setup.lvm.swapsize",
    "network_interface_pinning_overlong_interface_name":
        "network.interface-name-pinning.mapping",
    "no_fqdn_from_dhcp": "global.fqdn.source",
    "no_root_password_set": "global.root-password",
    "short_password": "global.root-password",
    "zfs_raid_single_disk": "disk-setup.disk-list",
}
# Wording, not facts (and "error parsing answer.toml:", Proxmox's prefix).
STOPWORDS = {"must", "with", "cannot", "than", "from", "error", "parsing", "answer", "toml",
             "either", "specified", "extendend", "usage", "for", "configuration", "list",
             "contains", "server", "received", "provide", "did", "not", "the", "and", "but",
             "greater", "same", "time", "needs", "least", "longer", "characters", "long",
             "unset", "disk", "size", "hard", "one", "set", "got", "need", "be", "at", "of",
             "or", "is", "to"}


def _facts(message: str) -> list[str]:
    """What a Proxmox message says, as tokens that must reappear in ours:
    numbers, quoted or backticked values, and distinctive words."""
    quoted = re.findall(r"['`\"]([^'`\"]+)['`\"]", message)
    numbers = re.findall(r"\d+(?:\.\d+)?", message)
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z-]+", message)
             if w.lower() not in STOPWORDS and w not in " ".join(quoted)]
    return [*quoted, *numbers, *words]


@pytest.mark.parametrize("name", _names("parse_answer_fail"))
def test_proxmox_bad_answer_is_rejected_for_the_same_reason(corpus: Path, name: str) -> None:
    expected = json.loads((corpus / "parse_answer_fail" / f"{name}.json").read_text())
    message = expected.get("error") or expected["parse-error"]
    with pytest.raises(AnswerError) as exc:  # noqa: PT011 (its key and text: below)
        answer = load_answer(corpus / "parse_answer_fail" / f"{name}.toml")
        resolve(answer, _machine(corpus, "parse_answer_fail", name))
    err = exc.value
    assert name in FAIL_KEYS, f"new corpus case {name}: add the key it is about"
    assert err.key is not None and err.key.startswith(FAIL_KEYS[name]), str(err)
    assert str(err).startswith(str(corpus / "parse_answer_fail" / f"{name}.toml"))
    ours = str(err).lower()
    missing = [f for f in _facts(message) if f.lower() not in ours]
    assert not missing, f"Proxmox: {message!r}\nours: {err}\nmissing: {missing}"
