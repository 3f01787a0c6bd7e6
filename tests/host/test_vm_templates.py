"""VM templates are confined to their directory, and a VM's disks are
private: crafted templates in temporary roots, the real host layer."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.errors import HostError
from appliance.host import Host, HostPaths, templates

REQ = {"name": "vm1", "template": "crafted", "memory_mib": 64}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside every template directory that a template must not reach."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret\n")
    return secret


@pytest.fixture
def crafted(paths: HostPaths, test_guest_files: dict[str, Path]) -> Iterator[Path]:
    """An empty template directory vm/crafted/ holding a good kernel file."""
    d = paths.vm_templates / "crafted"
    d.mkdir(parents=True)
    (d / "vmlinuz").write_bytes(test_guest_files["kernel"].read_bytes())
    yield d


def manifest(d: Path, **keys: str) -> None:
    (d / "template.toml").write_text("".join(f'{k} = "{v}"\n' for k, v in keys.items()))


def refused(paths: HostPaths, match: str) -> None:
    host = Host(paths)
    with pytest.raises(HostError, match=match) as e:
        host.create("vm", REQ)
    assert e.value.http_status == 400
    assert host.list_guests() == []
    assert not paths.images.exists() or list(paths.images.iterdir()) == []


CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "absolute kernel": (
        lambda d, secret: manifest(d, kernel=str(secret)),
        r"kernel = '/.*secret': must name a file inside the template directory"),
    "absolute /etc/shadow disk": (
        lambda d, secret: manifest(d, kernel="vmlinuz", disk="/etc/shadow"),
        r"disk = '/etc/shadow': must name a file inside the template directory"),
    "dot-dot initrd": (
        lambda d, secret: manifest(d, kernel="vmlinuz", initrd="../../../secret"),
        r"initrd = '\.\./\.\./\.\./secret': .*without '\.\.'"),
    "dot-dot in the middle": (
        lambda d, secret: manifest(d, kernel="sub/../../crafted/vmlinuz"),
        r"kernel = .*without '\.\.'"),
    "file symlink out": (
        lambda d, secret: (os.symlink(secret, d / "root.img"),
                           manifest(d, kernel="vmlinuz", disk="root.img")),
        r"disk = 'root\.img': is a symbolic link out of the template directory .*secret"),
    "directory symlink out": (
        lambda d, secret: (os.symlink(secret.parent, d / "sub"),
                           manifest(d, kernel="sub/secret")),
        r"kernel = 'sub/secret': is a symbolic link out of the template directory"),
    "relative symlink out": (
        lambda d, secret: (os.symlink("../../../../secret", d / "k"), manifest(d, kernel="k")),
        r"kernel = 'k': is a symbolic link out of the template directory"),
    "manifest is a symlink": (
        lambda d, secret: (secret.write_text('kernel = "vmlinuz"\n'),
                           os.symlink(secret, d / "template.toml")),
        r"template\.toml: .*not a symbolic link"),
    "not a string": (
        lambda d, secret: (d / "template.toml").write_text("kernel = 7\n"),
        r"kernel = '7': expected a file name"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_template_path_outside_its_directory_is_refused(
        paths: HostPaths, crafted: Path, outside: Path, case: str) -> None:
    # the secret sits at tmp/secret; the template at tmp/state/templates/vm/crafted
    assert crafted.relative_to(outside.parent).parts[:1] == ("state",)
    make, match = CASES[case]
    make(crafted, outside)
    refused(paths, match)
    assert outside.read_bytes() in (b"host secret\n", b'kernel = "vmlinuz"\n')


def test_a_template_directory_that_is_a_symlink_is_refused(
        paths: HostPaths, crafted: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "vmlinuz").write_bytes((crafted / "vmlinuz").read_bytes())
    manifest(elsewhere, kernel="vmlinuz")
    os.rename(crafted, tmp_path / "unused")
    os.symlink(elsewhere, paths.vm_templates / "crafted")
    refused(paths, r"VM template crafted: .*crafted is a symbolic link")


def test_links_and_subdirectories_inside_the_template_are_followed(
        paths: HostPaths, crafted: Path) -> None:
    (crafted / "boot").mkdir()
    os.rename(crafted / "vmlinuz", crafted / "boot" / "vmlinuz-6.1")
    os.symlink("boot/vmlinuz-6.1", crafted / "vmlinuz")
    manifest(crafted, kernel="vmlinuz", initrd="./boot/vmlinuz-6.1")
    tpl = templates.vm_template(paths, "crafted")
    assert tpl.kernel == tpl.initrd == (crafted / "boot" / "vmlinuz-6.1").resolve()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_new_vm_has_disks_only_root_can_read(vm_host: Host) -> None:
    old = os.umask(0o022)  # a service's usual umask: files would be 0644
    try:
        leftover = vm_host.paths.images / "vm-100-disk-1.raw"  # of an earlier guest 100
        vm_host.paths.images.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"old")
        os.chmod(leftover, 0o644)
        vm_host.create("vm", {**REQ, "template": "testguest", "disks": [8]})
    finally:
        os.umask(old)
    cfg = vm_host.guest(100).config
    disks = [Path(d.path) for d in cfg.disks if d.path]
    assert [d.name for d in disks] == ["vm-100-disk-0.raw", "vm-100-disk-1.raw"]
    # the template's root disk is 0644, its copy is not
    assert mode(templates.vm_template(vm_host.paths, "testguest").disk or Path("/")) == 0o644
    assert [mode(d) for d in disks] == [0o600, 0o600]
    assert disks[1].stat().st_size == 8 << 20 and disks[1].stat().st_blocks == 0
    assert mode(vm_host.paths.images) == 0o700
