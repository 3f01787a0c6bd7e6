"""What the running kernel reports under /proc, read in one place.

The callers pass another path (a recorded machine's `<root>/proc/meminfo`,
a test's file) where this machine is not the one to read.
"""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """`/proc/meminfo` as field -> value, in bytes for the `kB` fields
    (`MemTotal`, `MemAvailable`, ...) and as written for the counts
    (`HugePages_Total`). Raises OSError when the file cannot be read."""
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or not words or not words[0].isdigit():
            continue
        out[key.strip()] = int(words[0]) * (1024 if words[1:2] == ["kB"] else 1)
    return out
