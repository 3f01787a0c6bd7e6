"""Containers: real LXC containers from the ct-debian template the recipe
engine builds (once a session), unprivileged unless asked otherwise; and
small hand-made templates that try to reach outside the container's root."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.errors import HostError
from appliance.host import Host, HostPaths, guests, templates
from appliance.host import ct as ctbackend
from appliance.host.tasks import TaskLog

from ..conftest import require_root
from . import ct_checks
from .conftest import lxc_ls

e2e = pytest.mark.e2e
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZWQtb25seS1pbi10ZXN0cw test@appliance"
PASSWORD = "corr3ct-horse"


@pytest.fixture
def paths() -> Iterator[HostPaths]:
    """Roots an unprivileged container's root can reach."""
    require_root()
    with ct_checks.reachable_dir("appliance-ct-") as d:
        yield HostPaths(etc=d / "etc", state=d / "state")


OVERLAY_ETC = Path(__file__).resolve().parents[2] / "templates/overlays/host/etc"


@pytest.fixture(autouse=True)
def host_image_subids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host image's /etc/subuid and /etc/subgid, not this machine's:
    other tests' useradd/userdel change those while these run."""
    monkeypatch.setattr(ctbackend, "SUBID_FILES",
                        (OVERLAY_ETC / "subuid", OVERLAY_ETC / "subgid"))


def local(cmd: str) -> tuple[int, str]:
    """ct_checks' `run`, on this machine."""
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def env_of(host: Host) -> dict[str, str]:
    return {**os.environ, "APPLIANCE_ETC_DIR": str(host.paths.etc),
            "APPLIANCE_STATE_DIR": str(host.paths.state)}


def attach(host: Host, guest_id: int, *cmd: str) -> str:
    return subprocess.run(["lxc-attach", "-P", str(host.paths.lxc), "-n", str(guest_id), "--",
                           *cmd], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def expect(fd: int, want: bytes, timeout: float = 60) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {want!r} on the console; got {got[-400:]!r}")
        if select.select([fd], [], [], left)[0]:
            try:
                got += os.read(fd, 4096)
            except OSError:
                break
    return got


@e2e
def test_container_life_cycle_with_limits_login_and_console(full_host: Host) -> None:
    host = full_host
    task = host.create("ct", {"name": "web1", "template": "debian", "memory_mib": 256,
                              "cpus": 1, "pids": 300, "password": PASSWORD,
                              "ssh_keys": [KEY]})
    assert task.status == "OK", host.tasks.log(task.upid)
    gid = task.guest
    assert gid == 100
    config = (host.paths.guests / "100.toml").read_text()
    assert PASSWORD not in config and 'name = "web1"' in config
    assert "unprivileged = true" in config and "pids = 300" in config
    # unprivileged: the first id range, the files owned by the mapped ids
    assert ctbackend.container_ids(host.paths, 100) == ctbackend.IdRange(100_000, 65_536)
    rootfs = host.paths.lxc / "100" / "rootfs"
    owners = {rel: (st.st_uid, st.st_gid) for rel in (".", "etc/hostname", "etc/shadow",
                                                      "root/.ssh", "root/.ssh/authorized_keys",
                                                      "usr/bin/passwd")
              if (st := os.lstat(rootfs / rel))}
    assert owners == {".": (100_000, 100_000), "etc/hostname": (100_000, 100_000),
                      "etc/shadow": (100_000, 100_042),  # Debian's shadow group: 42
                      "root/.ssh": (100_000, 100_000),
                      "root/.ssh/authorized_keys": (100_000, 100_000),
                      "usr/bin/passwd": (100_000, 100_000)}
    assert os.stat(rootfs / "usr/bin/passwd").st_mode & 0o4000  # setuid kept
    assert (rootfs / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert "lxc.idmap = u 0 100000 65536" in (host.paths.lxc / "100/config").read_text()
    shadow = next(ln for ln in (rootfs / "etc/shadow").read_text().splitlines()
                  if ln.startswith("root:"))
    hashed = shadow.split(":")[1]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", hashed.split("$")[2], PASSWORD],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert again == hashed

    host.start(100)
    assert host.guest(100).status == "running"
    assert "RUNNING" in lxc_ls(host.paths)
    assert attach(host, 100, "hostname").strip() == "web1"
    limit = subprocess.run(["lxc-cgroup", "-P", str(host.paths.lxc), "-n", "100",
                            ctbackend.memory_limit_key()], capture_output=True, text=True)
    assert limit.stdout.strip() == str(256 << 20), limit.stderr
    # systemd is the init and boots (degraded: sys-kernel-debug.mount cannot mount)
    assert attach(host, 100, "cat", "/proc/1/comm").strip() == "systemd"
    deadline, state = time.monotonic() + 60, ""
    while state not in ("running", "degraded") and time.monotonic() < deadline:
        r = subprocess.run(["lxc-attach", "-P", str(host.paths.lxc), "-n", "100", "--",
                            "systemctl", "is-system-running", "--wait"],
                           capture_output=True, text=True, timeout=90)
        state = r.stdout.strip() or r.stderr.strip()  # early: no systemd socket yet
        time.sleep(0.5)
    assert state in ("running", "degraded"), state
    # the id mapping, what must fail inside, the cgroup limits (no AppArmor here)
    assert ct_checks.check_id_mapping(local, 100, str(host.paths.lxc)) == 100_000
    ct_checks.check_container(local, 100, memory_mib=256, cpus=1, pids=300,
                              lxc_path=str(host.paths.lxc), require_apparmor=False)

    # the console: log in as root with the password and run a command
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "appliance", "ct", "console", "100"],
                   env_of(host))
    try:
        expect(fd, b"to exit the console")  # lxc-console is attached
        for _ in range(10):  # getty prints its prompt again on a new line
            os.write(fd, b"\r")
            try:
                expect(fd, b"login: ", timeout=6)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("no login prompt on the container's console")
        os.write(fd, b"root\r")
        expect(fd, b"Password: ")
        os.write(fd, PASSWORD.encode() + b"\r")
        expect(fd, b"# ")
        os.write(fd, b"echo $((6 * 7))done\r")
        assert b"42done" in expect(fd, b"42done")
        os.write(fd, b"exit\r\x01q")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)

    with pytest.raises(HostError, match="already running"):
        host.start(100)
    host.shutdown(100)
    assert host.guest(100).status == "stopped"
    host.delete(100)
    assert not (host.paths.lxc / "100").exists() and host.list_guests() == []


@e2e
def test_container_nic_on_a_bridge_in_a_test_namespace(full_host: Host) -> None:
    """The NIC goes on a bridge: made in a network namespace this test makes
    and removes (nothing touches the host's own network)."""
    host = full_host
    ns = f"appl-t{os.getpid()}"
    cgroups = host.paths.state / "host-cgroup"
    cgroups.mkdir()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    # LXC reads /sys for the bridge: `ip netns exec` mounts the namespace's
    # sysfs over /sys; the host's cgroup tree is bound back under it.
    subprocess.run(["mount", "--rbind", "/sys/fs/cgroup", str(cgroups)], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vmbr0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "vmbr0", "up"], check=True)

        def in_ns(*argv: str) -> subprocess.CompletedProcess[str]:
            # (LXC's command socket is abstract: per network namespace)
            script = f"mount --rbind {cgroups} /sys/fs/cgroup && exec {' '.join(argv)}"
            return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script],
                                  env=env_of(host), capture_output=True, text=True, timeout=120)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return in_ns(sys.executable, "-m", "appliance", "ct", *args)

        r = cli("create", "--name", "net1", "--template", "debian", "--memory", "128",
                "--bridge", "vmbr0")
        assert r.returncode == 0, r.stderr
        r = cli("start", "100")
        assert r.returncode == 0, r.stderr
        try:
            inside = in_ns("lxc-attach", "-P", str(host.paths.lxc), "-n", "100", "--", "ip",
                           "-o", "link", "show", "eth0")
            assert ctbackend.mac_address(100) in inside.stdout, inside.stderr
            ports = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "master", "vmbr0"],
                                   capture_output=True, text=True, check=True).stdout
            assert "veth" in ports  # the host end of the container's NIC, on the bridge
        finally:
            r = cli("stop", "100")
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["umount", "-R", "-l", str(cgroups)], check=False)
        subprocess.run(["ip", "netns", "del", ns], check=False)


@e2e
def test_bridge_that_does_not_exist_is_refused(full_host: Host) -> None:
    with pytest.raises(HostError, match="no bridge 'nobr0'") as e:
        full_host.create("ct", {"name": "x", "template": "debian", "memory_mib": 128,
                                "bridge": "nobr0"})
    assert e.value.http_status == 400


@e2e
def test_cli_lists_and_refuses_bad_input_without_traceback(full_host: Host) -> None:
    host = full_host
    host.create("ct", {"name": "c1", "template": "debian", "memory_mib": 128})
    base = [sys.executable, "-m", "appliance"]
    r = subprocess.run([*base, "ct", "list", "--json"], env=env_of(host), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    import json

    assert [(g["id"], g["name"], g["status"]) for g in json.loads(r.stdout)] == [
        (100, "c1", "stopped")]
    r = subprocess.run([*base, "ct", "create", "--name", "bad name", "--template", "debian"],
                       env=env_of(host), capture_output=True, text=True, timeout=60)
    assert r.returncode == 15  # HostError
    assert r.stderr.startswith("appliance: error: name: 'bad name' is not valid")
    assert "Traceback" not in r.stderr
    r = subprocess.run([*base, "vm", "start", "100"], env=env_of(host), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 15 and "guest 100 is not a VM" in r.stderr
    # the container options of the API are flags too
    r = subprocess.run([*base, "ct", "create", "--name", "c2", "--template", "debian",
                        "--memory", "128", "--pids", "300", "--privileged", "--json"],
                       env=env_of(host), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cfg = tomllib.loads((host.paths.guests / "101.toml").read_text())
    assert (cfg["pids"], cfg["unprivileged"]) == (300, False), cfg
    r = subprocess.run([*base, "ct", "create", "--name", "c3", "--template", "debian",
                        "--pids", "0"], env=env_of(host), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 15 and "pids" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([*base, "task", "list"], env=env_of(host), capture_output=True,
                       text=True, timeout=60)
    assert "ctcreate" in r.stdout and "OK" in r.stdout


@e2e
def test_privileged_container_only_on_request_and_it_is_not_confined(full_host: Host) -> None:
    """unprivileged = 0: files owned by host root, root inside is root; the
    checks that pass for an unprivileged container fail for it."""
    host = full_host
    task = host.create("ct", {"name": "priv1", "template": "debian", "memory_mib": 128,
                              "unprivileged": 0})
    assert task.status == "OK", host.tasks.log(task.upid)
    assert "unprivileged = false" in (host.paths.guests / "100.toml").read_text()
    assert ctbackend.container_ids(host.paths, 100) is None
    rootfs = host.paths.lxc / "100" / "rootfs"
    assert os.stat(rootfs / "etc/shadow").st_uid == 0
    assert "lxc.idmap" not in (host.paths.lxc / "100/config").read_text()
    host.start(100)
    try:
        with pytest.raises(AssertionError, match="container 100 is privileged"):
            ct_checks.check_id_mapping(local, 100, str(host.paths.lxc))
        with pytest.raises(AssertionError, match="could write core_pattern"):
            ct_checks.check_must_fail(local, 100, str(host.paths.lxc))
    finally:
        host.stop(100)


# --- hand-made templates: ids, links and members that reach outside ------------------

SHADOW = b"root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "",
           uid: int = 0, gid: int = 0, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.uid, m.gid, m.mode = kind, link, uid, gid, mode
    m.size = len(data)
    if kind == tarfile.DIRTYPE:
        m.mode = 0o755
    return m, data


def base_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    d = tarfile.DIRTYPE
    return [member("./", d), member("./etc", d), member("./root", d, mode=0o700),
            member("./etc/shadow", data=SHADOW, gid=42, mode=0o640),
            member("./etc/hostname", data=b"template\n"),
            member("./var", d), member("./var/log", d, uid=42, gid=4)]


def make_template(paths: HostPaths, name: str,
                  members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for m, data in members:
            tf.addfile(m, io.BytesIO(data) if data else None)
    tar = paths.state / f"{name}.tar"
    tar.parent.mkdir(parents=True, exist_ok=True)
    tar.write_bytes(raw.getvalue())
    subprocess.run(["zstd", "-q", "-f", "--rm", str(tar), "-o", f"{tar}.zst"], check=True)
    templates.add_ct_template(paths, name, Path(f"{tar}.zst"))
    return Path(f"{tar}.zst")


def ct_create(paths: HostPaths, guest_id: int, template: str, password: str | None = None,
              keys: tuple[str, ...] = (), unprivileged: int = 1) -> guests.GuestConfig:
    paths.ensure()
    cfg = guests.new_config("ct", guest_id, {"name": f"c{guest_id}", "template": template,
                                             "memory_mib": 64, "ssh_keys": list(keys),
                                             "unprivileged": unprivileged})
    ctbackend.create(paths, cfg, password, TaskLog(paths.state / "task.log"))
    return cfg


def test_id_ranges_are_per_container_lowest_free_first_and_files_are_shifted(
        paths: HostPaths) -> None:
    make_template(paths, "tiny", base_members())
    for gid in (100, 101, 102):
        ct_create(paths, gid, "tiny")
    firsts = [ctbackend.container_ids(paths, g) for g in (100, 101, 102)]
    assert [r.first for r in firsts if r] == [100_000, 165_536, 231_072]
    rootfs = paths.lxc / "101" / "rootfs"
    st = {rel: (s.st_uid, s.st_gid, s.st_mode & 0o7777) for rel in ("etc/shadow", "var/log",
                                                                   "etc/hostname")
          if (s := os.lstat(rootfs / rel))}
    assert st == {"etc/shadow": (165_536, 165_578, 0o640), "var/log": (165_578, 165_540, 0o755),
                  "etc/hostname": (165_536, 165_536, 0o644)}
    assert (rootfs / "etc/hostname").read_text() == "c101\n"
    ctbackend.delete(paths, guests.new_config("ct", 100, {"name": "x", "template": "tiny",
                                                           "memory_mib": 64}),
                     TaskLog(paths.state / "task.log"))
    ct_create(paths, 103, "tiny")  # the freed range is used again: lowest first
    assert ctbackend.container_ids(paths, 103) == ctbackend.IdRange(100_000)
    ct_create(paths, 104, "tiny", unprivileged=0)
    assert ctbackend.container_ids(paths, 104) is None
    assert os.lstat(paths.lxc / "104/rootfs/etc/shadow").st_uid == 0


def test_root_only_gets_ranges_subuid_and_subgid_give_it(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path / "etc", tmp_path / "state")
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("root:100000:196608\nalice:170000:10\n")
    subgid.write_text("root:100000:1000000\n")
    files = (subuid, subgid)
    # slot 1 (165536-231071) holds alice's ids: skipped
    assert ctbackend.allocate_ids(paths, set(), files).first == 100_000
    assert ctbackend.allocate_ids(paths, {100_000}, files).first == 231_072
    with pytest.raises(HostError, match=r"no free id range .*subuid and .*subgid must give"):
        ctbackend.allocate_ids(paths, {100_000, 231_072}, files)
    # a file that gives root nothing only keeps other users' ranges out
    subuid.write_text("")
    subgid.write_text("bob:100000:65536\n")
    assert ctbackend.allocate_ids(paths, set(), files).first == 165_536
    # the host image's files give root the whole pool
    pool = (OVERLAY_ETC / "subuid", OVERLAY_ETC / "subgid")
    assert ctbackend.allocate_ids(paths, set(), pool).first == 100_000
    last = ctbackend.ID_FIRST + (ctbackend.ID_SLOTS - 1) * ctbackend.ID_COUNT
    taken = {ctbackend.ID_FIRST + k * ctbackend.ID_COUNT for k in range(ctbackend.ID_SLOTS - 1)}
    assert ctbackend.allocate_ids(paths, taken, pool).first == last


@pytest.mark.parametrize("unprivileged", [1, 0])
def test_template_links_never_lead_writes_outside_the_root(paths: HostPaths,
                                                           unprivileged: int) -> None:
    outside = paths.state / "outside"
    (outside / "sshdir").mkdir(parents=True)
    (outside / "hostname").write_text("host-name\n")
    (outside / "shadow").write_text("root:HOST-SECRET-HASH:1:0:99999:7:::\n")
    links = [member("./etc/hostname", tarfile.SYMTYPE, link=str(outside / "hostname")),
             member("./etc/shadow", tarfile.SYMTYPE, link=str(outside / "shadow")),
             member("./root/.ssh", tarfile.SYMTYPE, link=str(outside / "sshdir"))]
    keep = [m for m in base_members() if m[0].name not in ("./etc/hostname", "./etc/shadow")]
    make_template(paths, "links", keep + links)
    before = {p.name: p.read_text() for p in outside.iterdir() if p.is_file()}

    # a password: the shadow link is refused (reading it would copy the host's hashes in)
    with pytest.raises(HostError, match="etc/shadow is a symbolic link: refusing"):
        ct_create(paths, 100, "links", password="pw", unprivileged=unprivileged)
    # SSH keys: the .ssh link is refused, nothing is written where it points
    with pytest.raises(HostError, match=r"root/\.ssh is a symbolic link or not a directory"):
        ct_create(paths, 100, "links", keys=(KEY,), unprivileged=unprivileged)
    assert not (paths.lxc / "100").exists() and not list(paths.lxc.glob(".100*"))
    # neither: created; the hostname link is replaced by a file inside the root
    ct_create(paths, 100, "links", unprivileged=unprivileged)
    hostname = paths.lxc / "100/rootfs/etc/hostname"
    assert not hostname.is_symlink() and hostname.read_text() == "c100\n"
    assert {p.name: p.read_text() for p in outside.iterdir() if p.is_file()} == before
    assert list((outside / "sshdir").iterdir()) == []

    # a whole directory of the template pointing outside: refused, not followed
    etc_link = [m for m in base_members() if not m[0].name.startswith("./etc")]
    make_template(paths, "etclink", [*etc_link, member("./etc", tarfile.SYMTYPE,
                                                        link=str(outside))])
    with pytest.raises(HostError, match="etc is a symbolic link or not a directory"):
        ct_create(paths, 101, "etclink", unprivileged=unprivileged)
    # ... and a member below that link: tar does not follow it either
    make_template(paths, "etclink2", [*etc_link, member("./etc", tarfile.SYMTYPE,
                                                         link=str(outside)),
                                      member("./etc/evil", data=b"evil\n")])
    with pytest.raises(HostError, match=r"unpacking .* failed"):
        ct_create(paths, 102, "etclink2", unprivileged=unprivileged)
    assert {p.name: p.read_text() for p in outside.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(("bad", "why"), [
    (member("/etc/cron.d/x", data=b"x"), "absolute name '/etc/cron.d/x'"),
    (member("./etc/../../x", data=b"x"), r"'\.\.' in the name"),
    (member("./etc/passwd", tarfile.LNKTYPE, link="../../../etc/passwd"),
     r"'\.\.' in the link target"),
    (member("./etc/pw", tarfile.LNKTYPE, link="/etc/passwd"), "absolute link target"),
    (member("./dev/sda", tarfile.BLKTYPE), "a device node"),
    (member("./dev/mem", tarfile.CHRTYPE), "a device node"),
    (member("./etc/big-id", data=b"x", uid=70_000), "owned by 70000:0, outside the 0-65535"),
])
def test_template_members_that_reach_outside_are_refused(paths: HostPaths, bad: tuple[
        tarfile.TarInfo, bytes], why: str) -> None:
    make_template(paths, "bad", [*base_members(), bad])
    with pytest.raises(HostError, match=f"member .*: {why}.*: refused"):
        ct_create(paths, 100, "bad")
    assert not (paths.lxc / "100").exists()
    assert not Path("/etc/cron.d/x").exists()


def test_privileged_container_takes_ids_beyond_the_range(paths: HostPaths) -> None:
    make_template(paths, "bigid", [*base_members(), member("./etc/big-id", data=b"x",
                                                           uid=70_000)])
    ct_create(paths, 100, "bigid", unprivileged=0)
    assert os.lstat(paths.lxc / "100/rootfs/etc/big-id").st_uid == 70_000


def test_start_refuses_a_config_that_disagrees_with_the_files(paths: HostPaths) -> None:
    make_template(paths, "tiny", base_members())
    cfg = ct_create(paths, 100, "tiny")
    cfg.unprivileged = False
    with pytest.raises(HostError, match=r"files belong to host ids 100000-165535.*cannot become"):
        ctbackend.start(paths, cfg, TaskLog(paths.state / "task.log"))


def test_privileged_containers_are_marked_in_the_web_ui() -> None:
    import jinja2

    from appliance.host.manager import GuestStatus

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(
        Path(__file__).resolve().parents[2] / "webui/templates"), autoescape=True)

    def row(unprivileged: int) -> str:
        cfg = guests.new_config("ct", 100, {"name": "a", "template": "t", "memory_mib": 64,
                                            "unprivileged": unprivileged})
        return env.get_template("guest_rows.html").render(rows=[GuestStatus(cfg, "stopped")])

    assert 'class="st bad privileged"' in row(0) and ">privileged</span>" in row(0)
    assert "privileged" not in row(1)
    loaded = ("id = 100\ntype = \"ct\"\nname = \"old\"\ntemplate = \"t\"\nmemory_mib = 64\n"
              "cpus = 1\n")  # a config written before containers were unprivileged
    with tempfile.TemporaryDirectory() as d:
        paths = HostPaths(Path(d) / "etc", Path(d) / "state")
        paths.guests.mkdir(parents=True)
        (paths.guests / "100.toml").write_text(loaded)
        assert guests.load(paths, 100).unprivileged is False
