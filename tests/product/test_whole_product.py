"""The whole product as a new user meets it (issue 9): build the installer ISO
with the README's main command, install a host unattended in QEMU (TCG,
`-cpu max`: AMD-V visible to the guest), boot it, check it, then in a real
browser log in to its web UI and run a container and a microVM (nested KVM)
from the bundled templates; reboot the host and find both guests again.

The host's NIC is QEMU user networking with restrict=on: nothing leaves this
machine; the web UI (8006) and SSH (22) are forwarded to this machine's
loopback only. Each stage prints its time."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from appliance.boot import firmware as fw
from appliance.boot import harness, qemu
from appliance.boot.install_run import Disk, run_installer
from appliance.installer.prepare_iso import prepare
from appliance.runner import spawn, stop

from ..conftest import require_root
from ..host import ct_checks

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ANSWER = ROOT / "templates/answer/answer.qemu.toml"
CHROMIUM = "/usr/bin/chromium"
GiB = 1 << 30
STAGES: list[tuple[str, float]] = []


class Stage:
    """Times one stage and prints it (the closing note quotes these)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        print(f"--- stage: {self.name}", flush=True)
        self.t0 = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        seconds = time.monotonic() - self.t0
        STAGES.append((self.name, seconds))
        print(f"--- stage: {self.name}: {seconds:.0f}s{' (failed)' if exc[0] else ''}",
              flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer_password() -> str:
    m = re.search(r'^root-password = "([^"]+)"', ANSWER.read_text(), re.M)
    assert m, f"{ANSWER} has no root-password"
    return m.group(1)


class Host:
    """The installed host running in QEMU, reachable over forwarded ports."""

    def __init__(self, disk: Path, workdir: Path) -> None:
        self.web_port, self.ssh_port = free_port(), free_port()
        self.key = workdir / "id_ed25519"
        self.serial = workdir / "host.serial.log"
        vars_copy = workdir / "host.OVMF_VARS.fd"
        # The host has 10.0.2.15 (the answer's static address): QEMU's DHCP must not
        # lease it to a guest on the host's bridge, or the forwarded ports reach that
        # guest instead; so leases start at .16 and the forwards name the host's address.
        fwd = (f"dhcpstart=10.0.2.16,hostfwd=tcp:127.0.0.1:{self.web_port}-10.0.2.15:8006,"
               f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-10.0.2.15:22")
        # no -no-reboot: a reboot of the host is a reboot of this machine.
        # One vCPU: with two, QEMU's TCG emulation of nested SVM left our
        # microVM's vCPU idle for ever before its first console byte.
        self.argv = [
            qemu.QEMU, "-nodefaults", "-display", "none",
            "-machine", "q35", "-m", "4096", "-smp", "1", "-accel", "tcg", "-cpu", "max",
            "-serial", f"file:{self.serial}", *fw.qemu_args("uefi", vars_copy),
            "-drive", f"if=none,id=d0,format=raw,file={disk}",
            "-device", "virtio-blk-pci,drive=d0,serial=HOSTDISK",
            "-netdev", f"user,id=n0,restrict=on,{fwd}",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
        ]
        log = workdir / "host.qemu.log"
        log.write_text(shlex.join(self.argv) + "\n")
        self.proc = spawn(self.argv, output=log, what="QEMU")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}"

    def ssh(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=timeout, check=False)

    def wait_ssh(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"QEMU ended: {self.console_tail()}"
            try:
                if self.ssh("true", timeout=30).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise AssertionError(f"no SSH within {timeout:.0f}s:\n{self.console_tail()}")

    def console_tail(self, lines: int = 40) -> str:
        text = self.serial.read_bytes().decode(errors="replace") if self.serial.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        stop(self.proc)


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ssh")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e@product",
                    "-f", str(d / "id_ed25519")], check=True)
    return d / "id_ed25519"


@pytest.fixture(scope="module")
def host_disk(build_cache: Path, ssh_key: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Stages 1-2: the README's build command, prepare-iso with the README's
    example answer (plus our SSH key), an unattended UEFI install."""
    require_root()
    work = tmp_path_factory.mktemp("product")
    with Stage("build the installer ISO (./run build)"):
        out = work / "out"
        proc = subprocess.run([str(ROOT / "run"), "build", "-o", str(out),
                               "--cache-dir", str(build_cache)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        iso = out / "installer.iso"
        assert f"{iso}" in proc.stdout, "the build does not say where the ISO is"
        assert "qemu-system-x86_64" in proc.stdout, "the build does not say how to boot it"
        print(f"installer ISO: {iso.stat().st_size / (1 << 20):.1f} MiB")
    with Stage("unattended install (UEFI, one blank disk)"):
        text = ANSWER.read_text().replace(
            "[network]", f'root-ssh-keys = ["{ssh_key.with_suffix(".pub").read_text().strip()}"]'
            "\n\n[network]")
        answer = work / "answer.toml"
        answer.write_text(text)
        auto = prepare(iso, work / "auto.iso", "iso", answer)
        disk = work / "host.img"
        with open(disk, "wb") as f:
            f.truncate(16 * GiB)
        run = run_installer(auto, [Disk(disk, "HOSTDISK")], firmware="uefi", timeout=900,
                            nic="", workdir=work)
        tail = "\n".join(run.text().splitlines()[-40:])
        assert run.ok, f"{run.failure}\n{tail}"
        assert run.exited, "the installer did not power off (reboot-mode = power-off)"
    yield disk


def log_in(page: Page, url: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    expect(page).to_have_url(re.compile(r"/(dashboard|guests)$"))  # the landing page


def wait_task(page: Page, timeout: float) -> None:
    """The task page until its task ends; it must end OK (else: its log)."""
    expect(page).to_have_url(re.compile(r"/tasks/UPID"))
    status = page.locator("#task-status")
    expect(status).not_to_have_text("running", timeout=timeout * 1000)
    assert status.inner_text().strip() == "OK", page.locator("main").inner_text()[-2000:]


def create(page: Page, url: str, kind: str, fields: dict[str, str]) -> int:
    page.goto(f"{url}/guests/new-{kind}")
    for name, value in fields.items():
        if name == "template":
            page.select_option("select[name=template]", value)
        else:
            page.fill(f"[name={name}]", value)
    page.click("main button[type=submit]")
    wait_task(page, 600)
    page.goto(f"{url}/guests")
    row = page.locator("tr[data-guest]", has_text=fields["name"])
    expect(row).to_have_count(1)
    gid = row.get_attribute("data-guest")
    assert gid and gid.isdigit(), gid
    return int(gid)


def start(page: Page, url: str, gid: int) -> None:
    page.goto(f"{url}/guests/{gid}")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_task(page, 300)
    page.goto(f"{url}/guests")
    expect(page.locator(f"tr[data-guest='{gid}'] .status")).to_have_text("running")


def wait_console(page: Page, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = page.locator(".xterm-rows").inner_text()
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not on the console:\n{text[-800:]}")
        page.wait_for_timeout(500)


def shot(page: Page, tmp: Path, name: str) -> None:
    """A screenshot next to the test's logs (docs/ with APPLIANCE_UPDATE_SCREENSHOTS=1)."""
    docs = ROOT / "docs" if os.environ.get("APPLIANCE_UPDATE_SCREENSHOTS") == "1" else tmp
    page.screenshot(path=str(docs / name), full_page=True)


def vm_login_prompt(page: Page, timeout: float) -> str | None:
    """Wait for the VM's login prompt on the browser console (Enter now and
    then: getty prints it again). None when it is there, else the console."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_console(page, "login:", timeout=20)
            return None
        except AssertionError as e:
            if time.monotonic() > deadline:
                return str(e)
            page.keyboard.press("Enter")


def test_from_build_to_a_container_and_a_vm_on_an_installed_host(
        host_disk: Path, ssh_key: Path, tmp_path: Path) -> None:
    with Stage("first boot of the installed host (boot check)"):
        booted = harness.boot_test(host_disk, firmware="uefi", medium="disk", timeout=900,
                                   nic_mac="52:54:00:12:34:56")
        assert booted.ok, booted.summary() + "\n" + booted.log_tail
        assert "APPLIANCE-BOOT-CHECK state=running failed=none" in Path(
            booted.serial_log).read_text(errors="replace")

    host = Host(host_disk, tmp_path)
    host.key = ssh_key
    try:
        with Stage("boot the host, SSH in, hardware detection"):
            host.wait_ssh()
            state = host.ssh("systemctl is-system-running --wait", timeout=600).stdout.strip()
            assert state == "running", host.ssh("systemctl --failed --no-legend").stdout
            detect = host.ssh("appliance detect --json --no-inventory")
            report = json.loads(detect.stdout)
            assert report["accelerated"], report["verdict"]
            assert report["virtualization"]["extension"] == "AMD-V", report["virtualization"]
            assert report["virtualization"]["kvm_module"] == "kvm_amd"
            first = json.loads(host.ssh("cat /var/lib/appliance/hw-report.json").stdout)
            assert first["verdict"] == report["verdict"], "the first-boot report differs"
            web = host.ssh("systemctl is-active appliance-web.service").stdout.strip()
            assert web == "active", host.ssh("journalctl -u appliance-web -n 30").stdout
            # guests and templates live on the data pool's thin volume, not on root
            mnt = host.ssh("findmnt -no SOURCE,FSTYPE /var/lib/appliance").stdout.split()
            assert mnt == ["/dev/mapper/appliance-guests", "ext4"], mnt
            lvs = host.ssh("lvs --noheadings -o lv_name,pool_lv appliance").stdout.split()
            assert "guests" in lvs and lvs[lvs.index("guests") + 1] == "data", lvs
            names = {t["name"] for t in json.loads(host.ssh("appliance template list --json")
                                                   .stdout)}
            assert {"debian-12", "debian-12-microvm"} <= names, names

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.set_default_timeout(60_000)
            with Stage("web UI: log in, dashboard verdict"):
                log_in(page, host.url, answer_password())
                page.goto(f"{host.url}/dashboard")
                expect(page.locator("#verdict")).to_have_text(report["verdict"])
            with Stage("web UI: container from the bundled template"):
                ct = create(page, host.url, "ct", {
                    "name": "ct1", "template": "debian-12", "memory_mib": "256",
                    "password": "ct-secret-1", "bridge": "vmbr0"})
                start(page, host.url, ct)
            with Stage("container confinement: id map, AppArmor, cgroup v2 limits"):
                def run(cmd: str) -> tuple[int, str]:
                    r = host.ssh(cmd)
                    return r.returncode, r.stdout + r.stderr
                # the installed host's kernel has AppArmor and the unified
                # cgroup v2 hierarchy, which this machine's kernel lacks
                assert ct_checks.cgroup_keys(run)[0] == "memory.max"
                ct_checks.check_container(run, ct, memory_mib=256, cpus=1,
                                          pids=4096, require_apparmor=True)
            with Stage("web UI: microVM from the bundled template (nested KVM)"):
                vm = create(page, host.url, "vm", {
                    "name": "vm1", "template": "debian-12-microvm", "memory_mib": "512",
                    "bridge": "vmbr0"})
                start(page, host.url, vm)
                page.goto(f"{host.url}/guests/{vm}")
                expect(page.locator("#console[data-state=open]")).to_be_attached()
                page.locator("#console").click()
                missing = vm_login_prompt(page, timeout=600)
                assert missing is None, missing
                shot(page, tmp_path, "product-vm-console.png")
                # log in on the browser console: its NIC on vmbr0 has a lease from the
                # host's network (QEMU's DHCP: 10.0.2.16 on)
                page.keyboard.type("root\n")
                wait_console(page, "Password:", timeout=60)
                page.keyboard.type("appliance\n")
                wait_console(page, "root@microvm:~#", timeout=120)  # login flushes type-ahead
                page.keyboard.type("echo ADDR=$(ip -4 -o addr show eth0 | awk '{print $4}')\n")
                wait_console(page, "ADDR=10.0.2.", timeout=120)
                page.goto(f"{host.url}/guests")
                for gid in (ct, vm):
                    expect(page.locator(f"tr[data-guest='{gid}'] .status")).to_have_text(
                        "running")
            browser.close()

        with Stage("reboot the host; the guests are still defined"):
            boot_id = host.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
            assert boot_id
            with contextlib.suppress(subprocess.TimeoutExpired):  # the connection drops
                host.ssh("systemctl reboot", timeout=60)
            deadline = time.monotonic() + 900
            while True:  # until SSH answers from the new boot
                time.sleep(5)
                host.wait_ssh(timeout=max(60, deadline - time.monotonic()))
                now = host.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
                if now and now != boot_id:
                    break
                assert time.monotonic() < deadline, "the host did not reboot"
            listed = [g for kind in ("vm", "ct")
                      for g in json.loads(host.ssh(f"appliance {kind} list --json").stdout)]
            names = sorted(g["name"] for g in listed)
            assert names == ["ct1", "vm1"], listed
            files = host.ssh("ls /etc/appliance/guests").stdout.split()
            assert sorted(files) == sorted([f"{ct}.toml", f"{vm}.toml"])
    finally:
        host.close()
        print("stages: " + ", ".join(f"{n}: {s:.0f}s" for n, s in STAGES))
