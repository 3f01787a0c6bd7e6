#!/usr/bin/env python3
"""Boot benchmark of the host ISO (default: image_recipes/host.toml).

Prints: the ISO's size; time-to-marker (boot-check: state running) booting it
as a CD-ROM on BIOS and on UEFI (the accelerator boot-test chooses; TCG here);
and the ISO's size against a plain `grub-mkrescue` ISO of the same files
(the same live/ directory and grub.cfg). Also writes the numbers as JSON.

    .venv/bin/python bench/boot.py [--recipe host] [--cache-dir DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.boot import accel, harness
from appliance.engine import build as engine

MiB = 1 << 20


def grub_mkrescue_iso(iso: Path, work: Path) -> Path:
    """A plain grub-mkrescue ISO of the same files as `iso` (its live/ and its
    GRUB menu), with the host's full GRUB for BIOS and UEFI."""
    root = work / "root"
    root.mkdir()
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/live",
                    root / "live", "-extract", "/boot/grub/grub.cfg",
                    root / "boot/grub/grub.cfg"], check=True, capture_output=True)
    for f in iso_root_stamps(iso):
        (root / f).write_text("")
    dest = work / "grub-mkrescue.iso"
    subprocess.run(["grub-mkrescue", "-o", dest, root], check=True, capture_output=True)
    return dest


def iso_root_stamps(iso: Path) -> list[str]:
    """The ISO's marker file (GRUB's search for its own file system)."""
    out = subprocess.run(["xorriso", "-indev", iso, "-find", "/", "-maxdepth", "1",
                          "-name", ".appliance-*"], check=True, capture_output=True,
                         text=True).stdout
    return [line.strip().strip("'").lstrip("/") for line in out.splitlines()
            if ".appliance-" in line]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="host")
    p.add_argument("--cache-dir", default="/var/cache/appliance")
    p.add_argument("--out", default="out/bench-boot")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", default=None, help="write the results here (default: "
                   "OUT/bench-boot.json)")
    args = p.parse_args()
    out = Path(args.out).resolve()
    t0 = time.monotonic()
    result = engine.build(args.recipe, outdir=out, cache_dir=args.cache_dir, formats=["iso"])
    build_s = time.monotonic() - t0
    iso = next(pr.path for pr in result.products if pr.type == "iso")
    name, why = accel.choose_accelerator()
    print(f"recipe {result.recipe.name}: built in {build_s:.1f}s -> {iso}")
    print(f"accelerator: {name} ({why})")
    size = iso.stat().st_size
    print(f"ISO size: {size / MiB:.1f} MiB ({size} bytes)")
    numbers: dict[str, object] = {"recipe": result.recipe.name, "iso": str(iso),
                                  "iso_bytes": size, "accelerator": name}
    for fw in ("bios", "uefi"):
        r = harness.boot_test(iso, firmware=fw, medium="cdrom", timeout=args.timeout)
        verdict = "running" if r.ok else f"FAILED ({r.reason})"
        print(f"time to marker, {fw:4} CD-ROM: {r.seconds:6.1f}s  {verdict}")
        numbers[f"seconds_to_marker_{fw}"] = r.seconds if r.ok else None
        numbers[f"boot_{fw}"] = r.reason
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        plain = grub_mkrescue_iso(iso, Path(tmp))
        plain_size = plain.stat().st_size
    ratio = size / plain_size
    print(f"plain grub-mkrescue ISO of the same files: {plain_size / MiB:.1f} MiB; "
          f"ours / grub-mkrescue = {ratio:.3f} ({(size - plain_size) / MiB:+.1f} MiB)")
    numbers |= {"grub_mkrescue_bytes": plain_size, "ratio": round(ratio, 4)}
    dest = Path(args.json) if args.json else out / "bench-boot.json"
    dest.write_text(json.dumps(numbers, indent=2) + "\n")
    print(f"results: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
