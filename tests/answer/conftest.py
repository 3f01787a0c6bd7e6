"""Helpers for the answer-file tests: write an answer from the minimal one
with keys changed, and the lab machine of tests/data/answer/."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from appliance.answer.machine import Machine

DATA = Path(__file__).resolve().parents[1] / "data" / "answer"
MINIMAL = DATA / "minimal.toml"
UNSET = object()


def answer_text(**changes: Any) -> str:
    """minimal.toml with `section__key=value` changes (UNSET removes a key),
    e.g. `answer_text(global__fqdn="x.y", disk_setup__filesystem="xfs")`."""
    data = tomllib.loads(MINIMAL.read_text())
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        table = data.setdefault(section.replace("_", "-"), {})
        if value is UNSET:
            table.pop(key.replace("_", "-"), None)
        else:
            table[key.replace("_", "-")] = value
    return tomli_w.dumps(data)


@pytest.fixture
def write_answer(tmp_path: Path) -> Any:
    def write(text: str | None = None, **changes: Any) -> Path:
        path = tmp_path / "answer.toml"
        path.write_text(text if text is not None else answer_text(**changes))
        return path

    return write


@pytest.fixture
def lab() -> Machine:
    return Machine.from_files(DATA / "lab-udev.json", DATA / "lab-info.json")
