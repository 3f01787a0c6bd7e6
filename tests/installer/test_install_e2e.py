"""Unattended installs of the installer ISO in QEMU TCG, each answer delivered
another way; then the installed disk boots on its own.

Every guest NIC is QEMU user networking with restrict=on: nothing leaves this
machine (the HTTPS answer server is a process QEMU runs per connection,
reached only through a guestfwd)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.boot import harness
from appliance.boot.install_run import Disk, InstallRun, run_installer
from appliance.installer.prepare_iso import prepare

from .conftest import SSH_KEY, GiB, answer, blank_disk, file_hash
from .lvm_offline import lv_fstype, mounted_lv

pytestmark = pytest.mark.e2e

MAC = "52:54:00:12:34:56"
FACTS = re.compile(r"APPLIANCE-BOOT-FACTS hostname=(\S+) ipv4=(\S+)")


def install(iso: Path, disks: list[Disk], **kw: object) -> InstallRun:
    """run_installer with the installs' common time limit. No retry: the
    hang seen about once in five nested installs (right after the answer
    was read, the whole QEMU wedged) came with the installer's KVM_CREATE_VM
    probe, which it no longer issues (tests/hw/test_install_probe.py)."""
    return run_installer(iso, disks, timeout=600, **kw)  # type: ignore[arg-type]


def facts(serial_log: str) -> tuple[str, str]:
    m = FACTS.search(Path(serial_log).read_text(errors="replace"))
    assert m, "no boot facts line on the console"
    return m.group(1), m.group(2)


def show(run_text: str, lines: int = 40) -> str:
    return "\n".join(run_text.splitlines()[-lines:])


def test_uefi_install_selects_second_disk_by_serial_and_boots(
        installer_iso: Path, tmp_path: Path, root_hash: str) -> None:
    decoy = blank_disk(tmp_path / "decoy.img", 8 * GiB)
    with open(decoy, "r+b") as f:  # something worth protecting on the first disk
        f.write(b"DECOY-DATA" * 1000)
    target = blank_disk(tmp_path / "target.img", 12 * GiB)
    before = file_hash(decoy)
    ans = answer(tmp_path, 'filter.ID_SERIAL = "*TARGET*"', root_hash=root_hash)
    iso = prepare(installer_iso, tmp_path / "auto.iso", "iso", ans)

    run = install(iso, [Disk(decoy, "DECOY0001"), Disk(target, "TARGET0002")],
                        firmware="uefi", nic="", workdir=tmp_path)
    print(f"install (UEFI, answer on the ISO): {run.seconds}s")
    assert run.ok, f"{run.failure}\n{show(run.text())}"
    assert run.exited, "the installer did not power off (reboot-mode = power-off)"
    assert file_hash(decoy) == before, "the disk the answer did not select was written"

    with mounted_lv(target) as root:
        assert (root / "etc/hostname").read_text() == "pve-e2e\n"
        shadow = [line.split(":") for line in (root / "etc/shadow").read_text().splitlines()]
        assert [f[1] for f in shadow if f[0] == "root"] == [root_hash]
        assert (root / "root/.ssh/authorized_keys").read_text() == SSH_KEY + "\n"
        assert (root / "var/log/appliance-install.log").stat().st_size > 0
        assert not list((root / "var/lib/dpkg/info").glob("live-boot*.list")), \
            "live-boot is still installed"
        assert (root / "etc/localtime").readlink() == Path("/usr/share/zoneinfo/Europe/Vienna")

    booted = harness.boot_test(target, firmware="uefi", medium="disk", timeout=600,
                               nic_mac=MAC)
    print(f"installed system (UEFI) to boot-check: {booted.seconds}s")
    assert booted.ok, booted.summary() + "\n" + booted.log_tail
    assert facts(booted.serial_log)[0] == "pve-e2e"


def ais_partition(tmp: Path, answer_file: Path) -> Path:
    """A small disk with an ext4 file system labelled APPLIANCE-AIS holding answer.toml."""
    content = tmp / "ais"
    content.mkdir()
    (content / "answer.toml").write_bytes(answer_file.read_bytes())
    img = blank_disk(tmp / "ais.img", 64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "APPLIANCE-AIS", "-d", str(content),
                    str(img)], check=True, capture_output=True)
    return img


def test_bios_install_answer_from_partition_static_network(
        installer_iso: Path, tmp_path: Path, root_hash: str) -> None:
    target = blank_disk(tmp_path / "target.img", 10 * GiB)
    net = ('source = "from-answer"\ncidr = "10.0.2.77/24"\ngateway = "10.0.2.2"\n'
           'dns = "10.0.2.3"\nfilter.ID_NET_NAME_MAC = "*525400123456"')
    ans = answer(tmp_path, 'filter.ID_SERIAL = "SRV-ROOT-*"', network=net,
                 root_hash=root_hash, fqdn="pve-static.example.test")
    ais = ais_partition(tmp_path, ans)
    iso = prepare(installer_iso, tmp_path / "auto.iso", "partition")

    run = install(iso, [Disk(ais, "ANSWERS"), Disk(target, "SRV-ROOT-1")],
                        firmware="bios", nic="", workdir=tmp_path)
    print(f"install (BIOS, answer from APPLIANCE-AIS): {run.seconds}s")
    assert run.ok, f"{run.failure}\n{show(run.text())}"

    booted = harness.boot_test(target, firmware="bios", medium="disk", timeout=600,
                               nic_mac=MAC)
    print(f"installed system (BIOS) to boot-check: {booted.seconds}s")
    assert booted.ok, booted.summary() + "\n" + booted.log_tail
    hostname, ipv4 = facts(booted.serial_log)
    assert hostname == "pve-static"
    assert "vmbr0=10.0.2.77/24" in ipv4.split(","), ipv4


def self_signed_cert(tmp: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate and key (openssl req) and its SHA-256
    fingerprint as openssl prints it: `AA:BB:...` (upper case, colons)."""
    cert, key = tmp / "answer-cert.pem", tmp / "answer-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=answers.example.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint",
                          "-sha256"], check=True, capture_output=True, text=True).stdout
    fingerprint = out.strip().split("=", 1)[1]
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint), fingerprint
    return cert, key, fingerprint


def test_install_with_answer_over_https_pinned_through_guestfwd_only_xfs_root(
        installer_iso: Path, tmp_path: Path, root_hash: str) -> None:
    """The answer comes over HTTPS from a server with a self-signed
    certificate, pinned on the ISO by prepare's fingerprint in openssl's
    `AA:BB:...` form. The server is appliance.boot.httpd --tls, run by QEMU
    for each guest connection to 10.0.2.100:443 (guestfwd -cmd:, TLS over its
    stdin/stdout): no socket listens on the host, nothing leaves the
    machine. The answer asks for an xfs root, which the installed disk has."""
    target = blank_disk(tmp_path / "target.img", 8 * GiB)
    served = tmp_path / "served"
    served.mkdir()
    ans = answer(served, 'disk-list = ["vda"]', root_hash=root_hash,
                 fqdn="pve-https.example.test", name="answer")
    text = ans.read_text()
    assert 'filesystem = "ext4"\n' in text
    ans.write_text(text.replace('filesystem = "ext4"\n', 'filesystem = "xfs"\n'))
    cert, key, fingerprint = self_signed_cert(tmp_path)
    bodies, http_log = tmp_path / "posted.jsonl", tmp_path / "https.log"
    # no allow_insecure: the installer must verify the pin to get its answer
    iso = prepare(installer_iso, tmp_path / "auto.iso", "http",
                  url="https://10.0.2.100/answer", fingerprint=fingerprint)
    serve = (f"{sys.executable} -m appliance.boot.httpd --log {http_log} --bodies {bodies} "
             f"--tls {cert} {key} {served}")
    run = install(iso, [Disk(target, "HTTPSDISK")], firmware="bios",
                  nic=f",guestfwd=tcp:10.0.2.100:443-cmd:{serve}", workdir=tmp_path)
    print(f"install (answer over HTTPS, pinned; xfs root): {run.seconds}s")
    assert run.ok, f"{run.failure}\n{show(run.text())}"
    assert "200 /answer" in http_log.read_text(), http_log.read_text()
    posted = [json.loads(line) for line in bodies.read_text().splitlines() if line]
    assert posted, "the installer did not POST to the answer server"
    assert MAC in [n["mac"] for n in posted[0]["network_interfaces"]]
    assert lv_fstype(target) == "xfs"
    with mounted_lv(target) as root:
        assert (root / "etc/hostname").read_text() == "pve-https\n"
        fstab = (root / "etc/fstab").read_text()
        assert re.search(r"^\S+\s+/\s+xfs\s", fstab, re.M), fstab


def test_filter_matching_nothing_stops_before_touching_any_disk(
        installer_iso: Path, tmp_path: Path, root_hash: str) -> None:
    a = blank_disk(tmp_path / "a.img", 8 * GiB)
    b = blank_disk(tmp_path / "b.img", 8 * GiB)
    with open(a, "r+b") as f:
        f.write(b"KEEP" * 4096)
    before = (file_hash(a), file_hash(b))
    ans = answer(tmp_path, 'filter.ID_SERIAL = "NO-SUCH-DISK*"', root_hash=root_hash)
    iso = prepare(installer_iso, tmp_path / "auto.iso", "iso", ans)
    run = install(iso, [Disk(a, "DISK-A"), Disk(b, "DISK-B")], firmware="bios",
                        nic="", workdir=tmp_path)
    print(f"failed install reported after {run.seconds}s")
    assert not run.ok
    assert run.failure and "NO-SUCH-DISK" in run.failure, run.failure
    text = run.text()
    assert "DISK-A" in text and "DISK-B" in text, "the candidates are not listed"
    assert (file_hash(a), file_hash(b)) == before
