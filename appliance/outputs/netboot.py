"""netboot: kernel + initrd + squashfs + an iPXE script, for PXE/HTTP boot of
many servers. The initrd (with live-boot) fetches the squashfs over HTTP from
`base-url` at boot and runs it from RAM."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from appliance.engine.context import OutputContext
from appliance.outputs import _boot, squashfs
from appliance.recipe.model import Recipe
from appliance.recipe.schema import Option, OptionError, Table, boolean, integer, string

NAME = "netboot"
HELP = (
    "A directory <name>.netboot/ with vmlinuz, initrd.img, filesystem.squashfs, boot.ipxe "
    "(an example iPXE script) and netboot.json (what `appliance boot-test` boots). At boot "
    "live-boot fetches the squashfs from `base-url` over HTTP (DHCP on the first NIC). "
    "The default base-url is where `appliance boot-test` serves the directory inside "
    "QEMU's user network."
)
TOOLS = ("mksquashfs",)
DEFAULT_BASE_URL = "http://10.0.2.100/"

OPTIONS = Table((
    Option("enabled", boolean(), True, "write this output", kind="boolean"),
    Option("filename", string(pattern=r"[A-Za-z0-9._-]+", what="directory name"), None,
           "directory name (default: <recipe name>.netboot)"),
    Option("base-url", string(pattern=r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?",
                              what="http:// URL"),
           DEFAULT_BASE_URL, "URL of the directory the servers fetch the files from"),
    Option("cmdline", string(pattern=_boot.KERNEL_ARG, what="kernel command line"),
           _boot.SERIAL_CMDLINE, "kernel command line added after the live-boot arguments"),
    Option("compression-level", integer(minimum=1, maximum=22), 15,
           "zstd level of the squashfs (1-22)", kind="integer"),
    Option("block-size", string(choices=("128K", "256K", "512K", "1M")), "1M",
           "squashfs block size"),
))

SQUASHFS = "filesystem.squashfs"


def validate(options: dict[str, Any], recipe: Recipe) -> None:
    if re.search(r"\b(boot|fetch)=", options["cmdline"]):
        raise OptionError("boot= and fetch= are set by the output itself", ["cmdline"])
    _boot.require_packages(recipe, [], {"live-boot": ("live-boot",)}, NAME)


def base_url(options: dict[str, Any]) -> str:
    url = str(options["base-url"])
    return url if url.endswith("/") else url + "/"


def write(ctx: OutputContext) -> list[Path]:
    o = ctx.options
    dest = ctx.scratch / str(o["filename"] or f"{ctx.recipe.name}.netboot")
    dest.mkdir()
    kernel = _boot.find_kernel(ctx.tree)
    _boot.copy_file(kernel.vmlinuz, dest / "vmlinuz")
    _boot.copy_file(kernel.initrd, dest / "initrd.img")
    squashfs.make(ctx, ctx.tree, dest / SQUASHFS, int(o["compression-level"]),  # type: ignore[call-overload]
                  str(o["block-size"]))
    url = base_url(o)
    cmdline = " ".join(x for x in (
        f"boot=live components fetch={url}{SQUASHFS} ip=dhcp", str(o["cmdline"])) if x)
    (dest / "boot.ipxe").write_text(
        "#!ipxe\n"
        f"# {ctx.recipe.name}: boots the live system, which fetches {url}{SQUASHFS}\n"
        "dhcp\n"
        "# `appliance boot-test` asks for the boot check through the SMBIOS serial number.\n"
        "iseq ${smbios/serial} appliance.boot_check=1 && set check appliance.boot_check=1 ||\n"
        f"kernel {url}vmlinuz initrd=initrd.img {cmdline} ${{check}}\n"
        f"initrd {url}initrd.img\n"
        "boot\n")
    (dest / "netboot.json").write_text(json.dumps({
        "recipe": ctx.recipe.name,
        "kernel": "vmlinuz",
        "initrd": "initrd.img",
        "squashfs": SQUASHFS,
        "base-url": url,
        "cmdline": cmdline,
        "kernel-version": kernel.version,
    }, indent=2) + "\n")
    return [dest]
