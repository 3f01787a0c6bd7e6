"""The identifiers of the bootable outputs (GPT and file system UUIDs) are
derived from the recipe, never random: the same recipe gives the same ids in
any process, a changed recipe or epoch gives others (no build needed)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from appliance.outputs import _boot
from appliance.recipe import loader


def in_another_process(purpose: str, env: dict[str, str] | None = None) -> uuid.UUID:
    code = ("import sys; from appliance.recipe import loader; from appliance.outputs import "
            "_boot; print(_boot.derived_uuid(loader.load('test-boot'), sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, purpose], capture_output=True, text=True,
                         check=True, env=env).stdout
    return uuid.UUID(out.strip())


def test_the_same_recipe_gives_the_same_ids_in_another_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    rec = loader.load("test-boot")
    for purpose in ("disk/gpt", "disk/root-fs"):
        assert in_another_process(purpose, env={"PATH": "/usr/bin:/bin"}) \
            == _boot.derived_uuid(rec, purpose)


def test_ids_differ_by_purpose_recipe_and_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    rec = loader.load("test-boot")
    gpt = _boot.derived_uuid(rec, "disk/gpt")
    assert gpt.version == 4 and gpt.variant == uuid.RFC_4122
    assert gpt != _boot.derived_uuid(rec, "disk/root-fs")
    assert gpt != _boot.derived_uuid(loader.load("test-boot", {"hostname": "other"}), "disk/gpt")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(rec.source_date_epoch + 1))
    assert gpt != _boot.derived_uuid(loader.load("test-boot"), "disk/gpt")
