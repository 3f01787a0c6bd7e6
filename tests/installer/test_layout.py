"""Disk layout: Proxmox-like LVM defaults and the answer's size limits."""

from __future__ import annotations

import pytest

from appliance.installer.layout import GiB, LayoutError, Sizes, plan

MEM = 2 * GiB


def test_small_disk_gets_no_data_volume_and_root_takes_the_rest() -> None:
    lay = plan(8 * GiB, MEM)
    assert lay.data == 0
    assert lay.swap == 1 * GiB  # hdsize/8 caps the memory-based default
    assert lay.minfree == 1 * GiB
    assert lay.esp == 512 << 20
    assert lay.swap + lay.root + lay.minfree <= lay.pv
    assert lay.root >= 5 * GiB


def test_medium_disk_has_a_thin_pool_for_guests() -> None:
    lay = plan(64 * GiB, 16 * GiB)
    assert lay.swap == 8 * GiB  # memory, at most 8 GiB
    assert lay.root == 16 * GiB  # hdsize/4
    assert lay.minfree == 8 * GiB  # hdsize/8 below 128 GiB
    assert lay.data > 0
    assert lay.swap + lay.root + lay.minfree + lay.data <= lay.pv


def test_large_disk_caps_root_and_minfree_and_uses_a_1g_esp() -> None:
    lay = plan(1024 * GiB, 64 * GiB)
    assert lay.root == 96 * GiB
    assert lay.minfree == 16 * GiB
    assert lay.esp == 1 * GiB


def test_answer_sizes_win() -> None:
    lay = plan(64 * GiB, MEM, Sizes(hdsize=32, swapsize=2, maxroot=6, minfree=4, maxvz=10))
    assert lay.hdsize == 32 * GiB
    assert (lay.swap, lay.root, lay.minfree, lay.data) == (2 * GiB, 6 * GiB, 4 * GiB, 10 * GiB)


def test_disk_below_minimum_is_refused() -> None:
    with pytest.raises(LayoutError, match="needs at least 8 GiB"):
        plan(3 * GiB, MEM)


def test_hdsize_larger_than_disk_is_refused() -> None:
    with pytest.raises(LayoutError, match=r"hdsize = 100 GiB is larger than the disk"):
        plan(50 * GiB, MEM, Sizes(hdsize=100))


def test_swap_and_minfree_leaving_no_root_is_refused() -> None:
    with pytest.raises(LayoutError, match="left for the root volume"):
        plan(8 * GiB, MEM, Sizes(swapsize=4, minfree=3))
