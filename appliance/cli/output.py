"""The one place a command's result is printed: JSON with --json, else text."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def emit(
    args: argparse.Namespace,
    data: Callable[[], Any],
    text: Callable[[], str | None],
    *,
    text_to: TextIO | None = None,
) -> None:
    """Print `data()` as JSON on stdout when the command got --json, else the
    text: `text()` returns it (written to `text_to`, default stdout) or prints
    it itself and returns None. Only the one that is printed is computed."""
    if args.json:
        print_json(data())
        return
    out = text()
    if out is not None:
        (text_to or sys.stdout).write(out)
