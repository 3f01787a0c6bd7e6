"""`KEY=VALUE` items from a command line (`--set`, device filters)."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def parse_items(items: Iterable[str], error: Callable[[str], Exception]) -> dict[str, str]:
    """`KEY=VALUE` items as a dict: the key stripped of blanks, the value as
    given (it may be empty or hold more `=`); a later item overrides an
    earlier one. An item with no `=` or an empty key raises `error(item)`."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise error(item)
        out[key.strip()] = value
    return out
