"""The resolved recipe: what `recipe show` prints and the engine builds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

REDACTED = "<redacted>"


@dataclass
class StepSpec:
    type: str
    name: str
    options: dict[str, Any]
    origins: list[tuple[Path, int]]  # (file, ordinal of its [[steps]] table there)
    secrets: set[str] = field(default_factory=set)

    def public_options(self) -> dict[str, Any]:
        return {k: (REDACTED if k in self.secrets and v else v) for k, v in self.options.items()}


@dataclass
class OutputSpec:
    type: str
    options: dict[str, Any]
    origins: list[Path]


@dataclass
class Recipe:
    path: Path
    name: str
    description: str
    chain: list[Path]  # this file first, then what it extends
    templates_dir: Path
    source_date_epoch: int
    variables: dict[str, Any]
    steps: list[StepSpec]
    outputs: list[OutputSpec]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": {
                "name": self.name,
                "description": self.description,
                "file": str(self.path),
                "extends-chain": [str(p) for p in self.chain[1:]],
                "templates-dir": str(self.templates_dir),
                "source-date-epoch": self.source_date_epoch,
            },
            "variables": dict(self.variables),
            "steps": [
                {"type": s.type, "name": s.name, **_plain(s.public_options())} for s in self.steps
            ],
            "outputs": {o.type: _plain(o.options) for o in self.outputs},
        }

    def to_toml(self) -> str:
        header = f"# {self.path} resolved (extends and variables applied)\n"
        return header + tomli_w.dumps(_toml_safe(self.to_dict()))

    def digest(self) -> str:
        """A short hash of the resolved recipe (seeds derived ids and salts)."""
        data = json.dumps(self.to_dict() | {"recipe": {"name": self.name}}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _toml_safe(value: Any) -> Any:
    """TOML has no null: drop None values."""
    if isinstance(value, dict):
        return {k: _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_toml_safe(v) for v in value]
    return value
