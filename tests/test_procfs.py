"""appliance.procfs: the one reader of /proc/meminfo."""

from __future__ import annotations

import os
from pathlib import Path

from appliance import procfs

MEMINFO = """\
MemTotal:       16318752 kB
MemFree:         1203344 kB
MemAvailable:    9871234 kB
HugePages_Total:       2
HugePages_Free:        1
Hugepagesize:       2048 kB
"""


def test_meminfo_gives_kb_fields_in_bytes_and_counts_as_written(tmp_path: Path):
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    mem = procfs.meminfo(path)
    assert mem["MemTotal"] == 16318752 * 1024
    assert mem["MemAvailable"] == 9871234 * 1024
    assert mem["Hugepagesize"] == 2048 * 1024
    assert (mem["HugePages_Total"], mem["HugePages_Free"]) == (2, 1)


def test_meminfo_of_this_machine_matches_the_kernels_page_count():
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert procfs.meminfo()["MemTotal"] == pages
