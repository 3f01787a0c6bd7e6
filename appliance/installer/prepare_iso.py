"""`appliance prepare-iso`: make an installer ISO unattended, without
rebuilding it. xorriso re-packs the ISO (boot records replayed as they were)
with /appliance/auto-install.toml saying where the answer comes from, and the
answer itself at /appliance/answer.toml when it travels on the ISO, and a
first-boot script at /appliance/first-boot ([first-boot] source = "from-iso"). GRUB on
the ISO boots the install entry at once when auto-install.toml is there."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tomli_w

from appliance.errors import InstallerError
from appliance.installer.source import MODES, normalize_fingerprint
from appliance.runner import require_tools, run


class PrepareError(InstallerError):
    """The installer ISO cannot be made unattended."""


def validate_answer(answer: Path, allow_insecure: bool = False) -> None:
    """Parse and validate the answer offline (errors name the file and key);
    without allow_insecure, a plain http:// first-boot hook or webhook is
    refused here rather than at install time."""
    from appliance.answer.parse import load_answer

    a = load_answer(answer)
    urls = [("first-boot.url", a.first_boot.url if a.first_boot else None),
            ("post-installation-webhook.url", a.webhook.url if a.webhook else None)]
    for key, url in urls:
        if url and url.startswith("http://") and not allow_insecure:
            raise PrepareError(f"{answer}: {key}: {url} is plain http://, which the installer "
                               "refuses: use https:// (with cert-fingerprint, or a certificate "
                               "a trusted CA signed), or add --allow-insecure")


def prepare(iso: Path, out: Path, fetch_from: str, answer: Path | None = None,
            url: str | None = None, fingerprint: str | None = None,
            on_first_boot: Path | None = None, allow_insecure: bool = False) -> Path:
    """Write `out`: `iso` with /appliance/auto-install.toml (and the answer,
    the first-boot hook). `allow_insecure` lets the installer fetch over plain
    http:// (the answer, the first-boot hook, the webhook); it is recorded as
    `allow-insecure = true` in auto-install.toml."""
    if fetch_from not in MODES:
        raise PrepareError(f"--fetch-from {fetch_from}: expected one of {', '.join(MODES)}")
    if not iso.is_file():
        raise PrepareError(f"{iso}: no such ISO")
    with open(iso, "rb") as f:
        f.seek(0x8001)
        if f.read(5) != b"CD001":
            raise PrepareError(f"{iso}: not an ISO 9660 image")
    if fetch_from == "iso":
        if answer is None:
            raise PrepareError("--fetch-from iso needs --answer FILE (it goes onto the ISO)")
        validate_answer(answer, allow_insecure)
    elif answer is not None:
        # checked, but it is fetched at install time, not embedded
        validate_answer(answer, allow_insecure)
    if fetch_from == "http":
        if url is not None and not url.startswith(("http://", "https://")):
            raise PrepareError(f"--url {url}: not an http(s) URL")
        if url is not None and url.startswith("http://") and not allow_insecure:
            raise PrepareError(f"--url {url}: the installer refuses plain http://: use "
                               "https:// (with --cert-fingerprint, or a certificate a trusted "
                               "CA signed), or add --allow-insecure")
    elif url:
        raise PrepareError("--url is only for --fetch-from http")
    config: dict[str, str | bool] = {"fetch-from": fetch_from}
    if url:
        config["url"] = url
    if allow_insecure:
        config["allow-insecure"] = True
    if fingerprint:
        if not (url or "").startswith("https://"):
            raise PrepareError("--cert-fingerprint needs an https:// --url")
        config["cert-fingerprint"] = normalize_fingerprint(fingerprint, "--cert-fingerprint")
    if out.resolve() == iso.resolve():
        raise PrepareError("-o must name a new file, not the input ISO")
    require_tools("xorriso", why="to re-pack the ISO")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        auto = Path(tmp, "auto-install.toml")
        auto.write_text("# written by appliance prepare-iso\n" + tomli_w.dumps(config))
        maps = ["-map", str(auto), "/appliance/auto-install.toml"]
        if fetch_from == "iso" and answer is not None:
            maps += ["-map", str(answer), "/appliance/answer.toml"]
        if on_first_boot is not None:
            if not on_first_boot.is_file():
                raise PrepareError(f"--on-first-boot {on_first_boot}: no such file")
            maps += ["-map", str(on_first_boot), "/appliance/first-boot"]
        try:
            run(["xorriso", "-indev", str(iso), "-outdev", str(partial),
                 "-boot_image", "any", "replay", *maps, "-end"],
                what="xorriso (re-packing the ISO)", capture=True)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, out)
    return out
