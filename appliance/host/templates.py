"""Guest templates under STATE/templates/.

- A VM template is a directory vm/NAME/ with template.toml naming a kernel
  (bzImage), an optional initramfs, an optional root disk image and the
  default kernel command line.
- A container template is a root file system tarball ct/NAME.tar.zst, as the
  recipe engine builds it (image_recipes/ct-debian.toml, `[outputs.tar]`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from appliance.errors import HostError
from appliance.host.store import HostPaths, read_toml, write_toml

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CT_SUFFIX = ".tar.zst"


@dataclass(frozen=True)
class VmTemplate:
    name: str
    kernel: Path
    initrd: Path | None
    disk: Path | None
    cmdline: str
    description: str


@dataclass(frozen=True)
class TemplateInfo:
    kind: str  # vm or ct
    name: str
    size_bytes: int
    description: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "size_bytes": self.size_bytes,
                "description": self.description}


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise HostError(f"template {name!r:.70}: not a valid template name", 400)


def _read_manifest(name: str, d: Path) -> dict[str, Any]:
    """template.toml, never through a symbolic link (of the directory or the file)."""
    if d.is_symlink():
        raise HostError(f"VM template {name}: {d} is a symbolic link; a template must be a "
                        "directory of its own", 400)
    try:
        fd = os.open(d / "template.toml", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HostError(f"no VM template {name!r} (in {d.parent})", 400) from None
    except OSError as e:
        raise HostError(f"VM template {name}: {d / 'template.toml'}: {e.strerror} "
                        "(it must be a regular file, not a symbolic link)", 400) from None
    with os.fdopen(fd, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise HostError(f"VM template {name}: {d / 'template.toml'}: {e}", 400) from None


def template_file(name: str, d: Path, key: str, value: object) -> Path:
    """The file `value` (from template.toml's `key`) resolved inside the
    template directory `d`: a relative path, no `..`, and no symbolic link
    that leads out of `d`. Returns the resolved path (no links left in it)."""
    where = f"VM template {name}: {key} = {str(value)!r:.120}"
    if not isinstance(value, str):
        raise HostError(f"{where}: expected a file name", 400)
    rel = PurePosixPath(value)
    if rel.is_absolute() or ".." in rel.parts or "\0" in value:
        raise HostError(f"{where}: must name a file inside the template directory {d} "
                        "(a relative path without '..')", 400)
    root = Path(os.path.realpath(d))
    real = Path(os.path.realpath(root / rel))
    if not real.is_relative_to(root):
        raise HostError(f"{where}: is a symbolic link out of the template directory {d} "
                        f"(to {real})", 400)
    if not real.is_file():
        raise HostError(f"VM template {name}: {key} file {d / rel} is missing", 400)
    return real


def vm_template(paths: HostPaths, name: str) -> VmTemplate:
    _check_name(name)
    d = paths.vm_templates / name
    data = _read_manifest(name, d)

    def file(key: str) -> Path | None:
        value = data.get(key)
        if value is None or value == "":
            return None
        return template_file(name, d, key, value)

    kernel = file("kernel")
    if kernel is None:
        raise HostError(f"VM template {name}: template.toml names no kernel", 400)
    return VmTemplate(name, kernel, file("initrd"), file("disk"), str(data.get("cmdline", "")),
                      str(data.get("description", "")))


def ct_template(paths: HostPaths, name: str) -> Path:
    _check_name(name)
    p = paths.ct_templates / f"{name}{CT_SUFFIX}"
    if not p.is_file():
        raise HostError(f"no container template {name!r} (in {paths.ct_templates})", 400)
    return p


def add_vm_template(paths: HostPaths, name: str, kernel: Path, initrd: Path | None = None,
                    disk: Path | None = None, cmdline: str = "", description: str = "") -> None:
    """Copy a kernel (and initramfs, disk) into a new VM template."""
    _check_name(name)
    d = paths.vm_templates / name
    if d.exists():
        raise HostError(f"VM template {name} exists already", 409)
    tmp = paths.vm_templates / f".{name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data: dict[str, Any] = {"kernel": "vmlinuz", "cmdline": cmdline, "description": description}
    shutil.copyfile(kernel, tmp / "vmlinuz")
    if initrd is not None:
        shutil.copyfile(initrd, tmp / "initrd.img")
        data["initrd"] = "initrd.img"
    if disk is not None:  # sparse: a root disk image is mostly unused blocks
        proc = subprocess.run(["cp", "--sparse=always", str(disk), str(tmp / "root.img")],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise HostError(f"VM template {name}: copying {disk}: {proc.stderr.strip()}", 400)
        data["disk"] = "root.img"
    write_toml(tmp / "template.toml", data)
    tmp.rename(d)


def add_ct_template(paths: HostPaths, name: str, tarball: Path) -> Path:
    """Copy a root file system tarball (tar.zst) in as a container template."""
    _check_name(name)
    if not tarball.name.endswith((".tar.zst", ".tzst")):
        raise HostError(f"{tarball}: expected a .tar.zst root file system", 400)
    dest = paths.ct_templates / f"{name}{CT_SUFFIX}"
    if dest.exists():
        raise HostError(f"container template {name} exists already", 409)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.new")
    shutil.copyfile(tarball, tmp)
    tmp.rename(dest)
    return dest


def list_templates(paths: HostPaths) -> list[TemplateInfo]:
    out: list[TemplateInfo] = []
    if paths.vm_templates.is_dir():
        for d in sorted(paths.vm_templates.iterdir()):
            if d.name.startswith(".") or not (d / "template.toml").is_file():
                continue
            try:
                desc = str(read_toml(d / "template.toml").get("description", ""))
            except (OSError, ValueError):
                desc = "(unreadable template.toml)"
            size = sum(p.lstat().st_size for p in d.iterdir() if not p.is_symlink()
                       and p.is_file())
            out.append(TemplateInfo("vm", d.name, size, desc))
    if paths.ct_templates.is_dir():
        for p in sorted(paths.ct_templates.iterdir()):
            if p.name.endswith(CT_SUFFIX) and not p.name.startswith("."):
                out.append(TemplateInfo("ct", p.name[: -len(CT_SUFFIX)], p.stat().st_size,
                                        "container root file system"))
    return out
