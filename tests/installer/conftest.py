"""The installer ISO, built once per session; blank target disks; answers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.digest import sha256_file
from appliance.engine import build as engine

from ..conftest import require_root

GiB = 1 << 30
# A syntactically valid ed25519 public key (32 key bytes of 0x42); no private key exists.
SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC"
           " e2e@test")


@pytest.fixture(scope="session")
def root_hash() -> str:
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", "e2etest", "e2e-secret-pw"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def installer_iso(build_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """image_recipes/installer.toml: the product's installer ISO."""
    require_root()
    out = tmp_path_factory.mktemp("out-installer")
    result = engine.build("installer", outdir=out, cache_dir=build_cache)
    isos = [p.path for p in result.products if p.path.suffix == ".iso"]
    assert len(isos) == 1, result.products
    return isos[0]


def blank_disk(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def file_hash(path: Path) -> str:
    return sha256_file(path)


def answer(tmp: Path, disk_filter: str, network: str = 'source = "from-dhcp"',
           name: str = "answer.toml", root_hash: str = "", fqdn: str = "pve-e2e.example.test",
           extra: str = "") -> Path:
    text = f"""\
[global]
keyboard = "de"
country = "at"
fqdn = "{fqdn}"
mailto = "admin@example.test"
timezone = "Europe/Vienna"
root-password-hashed = "{root_hash}"
root-ssh-keys = ["{SSH_KEY}"]
reboot-mode = "power-off"
{extra}
[network]
{network}

[disk-setup]
filesystem = "ext4"
{disk_filter}
"""
    p = tmp / name
    p.write_text(text)
    return p
