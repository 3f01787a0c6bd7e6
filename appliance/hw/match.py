"""Select disks and NICs by globs over their udev properties.

This is the matching the installer uses for answer-file filters
(`filter.ID_SERIAL = "*MZ7KM240*"`) and that `appliance device-match` shows:
each filter is `udev property name -> glob`; a device matches a filter when
it has that property and the whole value matches the glob. With mode "any"
one matching filter selects the device, with "all" every filter must match.

Globs: `*` any run of characters, `?` one character, `[abc]` / `[a-z]` one
of a set, `[!abc]` none of a set. Matching is case-sensitive and `/` is an
ordinary character (udev values are not paths to walk).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from appliance import keyvalue
from appliance.errors import HardwareError

MatchMode = Literal["any", "all"]
MODES: tuple[MatchMode, ...] = ("any", "all")


@dataclass(frozen=True)
class _Chars:
    """One character of a glob: `?` (any), a literal, or a `[...]` class
    (`ranges` of (first, last) characters, `negate` for `[!...]`)."""

    ranges: tuple[tuple[str, str], ...] = ()
    negate: bool = False
    any: bool = False

    def matches(self, c: str) -> bool:
        if self.any:
            return True
        hit = any(lo <= c <= hi for lo, hi in self.ranges)
        return hit != self.negate


_STAR = None  # a `*` in the token list


@dataclass(frozen=True)
class Glob:
    """A parsed glob. `matches` runs the classic two-pointer wildcard match
    (back up only to the last `*`): at most len(pattern) * len(value) steps,
    never the exponential backtracking a regex of many `.*` can take."""

    pattern: str
    tokens: tuple[_Chars | None, ...]

    def matches(self, value: str) -> bool:
        toks, n = self.tokens, len(self.tokens)
        p = s = 0
        star, mark = -1, 0
        while s < len(value):
            tok = toks[p] if p < n else _STAR
            if p < n and tok is _STAR:
                star, mark = p, s
                p += 1
            elif tok is not None and tok.matches(value[s]):
                p += 1
                s += 1
            elif star >= 0:
                mark += 1
                p, s = star + 1, mark
            else:
                return False
        while p < n and toks[p] is _STAR:
            p += 1
        return p == n


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Glob:
    """Parse a glob (see the module doc).

    Raises HardwareError for an unclosed `[` or a reversed range (`[z-a]`), so
    a typo in a filter is reported instead of silently matching nothing.
    """
    tokens: list[_Chars | None] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not tokens or tokens[-1] is not _STAR:
                tokens.append(_STAR)
        elif c == "?":
            tokens.append(_Chars(any=True))
        elif c == "[":
            j = i
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":  # a leading ] is a literal member
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                raise HardwareError(f"glob {pattern!r}: '[' at position {i - 1} is never closed")
            body = pattern[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            ranges: list[tuple[str, str]] = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    lo, hi = body[k], body[k + 2]
                    if lo > hi:
                        raise HardwareError(f"glob {pattern!r}: the range {lo}-{hi} is "
                                            f"reversed (write {hi}-{lo})")
                    ranges.append((lo, hi))
                    k += 3
                else:
                    ranges.append((body[k], body[k]))
                    k += 1
            tokens.append(_Chars(tuple(ranges), negate))
        else:
            tokens.append(_Chars(((c, c),)))
    return Glob(pattern, tuple(tokens))


def glob_match(pattern: str, value: str) -> bool:
    """True when the whole of `value` matches the glob `pattern`."""
    return compile_glob(pattern).matches(value)


def check_mode(mode: str) -> MatchMode:
    if mode not in MODES:
        raise HardwareError(f"filter-match {mode!r}: expected 'any' or 'all'")
    return mode


def properties_match(
    properties: Mapping[str, str], filters: Mapping[str, str], mode: MatchMode = "any"
) -> bool:
    """Whether one device's udev properties satisfy the filters.

    No filters select nothing: an empty filter is a mistake, not "everything".
    """
    if not filters:
        return False
    hits = (
        key in properties and glob_match(pattern, properties[key])
        for key, pattern in filters.items()
    )
    return all(hits) if check_mode(mode) == "all" else any(hits)


def match_devices(
    devices: Mapping[str, Mapping[str, str]] | Iterable[tuple[str, Mapping[str, str]]],
    filters: Mapping[str, str],
    mode: MatchMode = "any",
) -> list[str]:
    """Keys of the devices whose udev properties match `filters` (see module doc).

    `devices` maps a device key (disk index or devnode, NIC name) to its udev
    properties, e.g. `appliance.hw.udevinfo.device_info(...)["disks"]` or the
    `disks`/`nics` of Proxmox's `run-env-udev.json`. Order is preserved.
    """
    check_mode(mode)
    for key, pattern in filters.items():
        if not key:
            raise HardwareError(f"filter {key!r}={pattern!r}: empty property name")
        compile_glob(pattern)
    items = devices.items() if isinstance(devices, Mapping) else devices
    return [key for key, props in items if properties_match(props, filters, mode)]


def parse_filters(items: Iterable[str]) -> dict[str, str]:
    """Parse command-line `KEY=GLOB` items into a filter dict."""
    return keyvalue.parse_items(items, lambda item: HardwareError(
        f"filter {item!r}: expected KEY=GLOB, e.g. 'ID_SERIAL=*SAMSUNG*'"))
