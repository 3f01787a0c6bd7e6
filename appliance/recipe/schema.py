"""Declarative option tables.

Every recipe key (a step's or an output's option, a `[recipe]` key) is
declared once as an `Option`: name, parser, default and help. That one
declaration drives parsing, validation, error messages, `appliance recipe
steps` and the cache key (options are normalized by their parsers).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class OptionError(ValueError):
    """A value is wrong; `path` grows as the error bubbles up through tables."""

    def __init__(self, reason: str, path: Sequence[str | int] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = list(path)

    def prefixed(self, *outer: str | int) -> OptionError:
        return OptionError(self.reason, [*outer, *self.path])

    def key_path(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Option:
    key: str
    parse: Parser
    default: Any = REQUIRED
    help: str = ""
    kind: str = "string"
    secret: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Table:
    """A set of options: one step's, one output's, or a nested entry's."""

    options: tuple[Option, ...]
    exclusive: tuple[tuple[str, ...], ...] = field(default=())

    def keys(self) -> list[str]:
        return [o.key for o in self.options]

    def parse(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise OptionError(f"expected a table, got {_type_name(data)}")
        known = {o.key: o for o in self.options}
        for key in data:
            if key not in known:
                raise OptionError(_unknown_key_reason(key, known), [key])
        out: dict[str, Any] = {}
        for opt in self.options:
            if opt.key in data:
                try:
                    out[opt.key] = opt.parse(data[opt.key])
                except OptionError as e:
                    raise e.prefixed(opt.key) from None
            elif opt.required:
                raise OptionError("required key is missing", [opt.key])
            else:
                out[opt.key] = opt.default
        for group in self.exclusive:
            present = [k for k in group if k in data]
            if len(present) > 1:
                raise OptionError(
                    f"only one of {', '.join(group)} may be given", [present[1]]
                )
        return out

    def secrets(self) -> set[str]:
        return {o.key for o in self.options if o.secret}


def _unknown_key_reason(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; known keys: {', '.join(known)}"


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


# --- parsers -----------------------------------------------------------------


def string(
    *, choices: Sequence[str] | None = None, pattern: str | None = None, what: str = ""
) -> Parser:
    rx = re.compile(pattern) if pattern else None

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise OptionError(f"expected a string, got {_type_name(value)}")
        if choices is not None and value not in choices:
            raise OptionError(f"{value!r} is not one of: {', '.join(choices)}")
        if rx is not None and not rx.fullmatch(value):
            raise OptionError(f"{value!r} is not a valid {what or 'value'}")
        return value

    return parse


def boolean() -> Parser:
    def parse(value: Any) -> bool:
        if not isinstance(value, bool):
            raise OptionError(f"expected true or false, got {_type_name(value)}")
        return value

    return parse


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"expected an integer, got {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise OptionError(f"{value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise OptionError(f"{value} is above the maximum {maximum}")
        return value

    return parse


def string_list(
    *, pattern: str | None = None, what: str = "", choices: Sequence[str] | None = None
) -> Parser:
    item = string(pattern=pattern, what=what, choices=choices)

    def parse(value: Any) -> list[str]:
        if not isinstance(value, list):
            raise OptionError(f"expected a list of strings, got {_type_name(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except OptionError as e:
                raise e.prefixed(i) from None
        return out

    return parse


def file_mode() -> Parser:
    """A permission mode: "0644" (string, octal) or 0o644 (TOML octal integer),
    normalized to a four-digit octal string."""

    def parse(value: Any) -> str:
        if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
            mode = int(value, 8)
        elif isinstance(value, int) and not isinstance(value, bool):
            mode = value
        else:
            raise OptionError(f"{value!r} is not a file mode (write it as \"0644\" or 0o644)")
        if not 0 <= mode <= 0o7777:
            raise OptionError(f"{oct(mode)} is not a file mode")
        return f"{mode:04o}"

    return parse


def table_list(table: Table) -> Parser:
    def parse(value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise OptionError(f"expected a list of tables, got {_type_name(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(table.parse(v))
            except OptionError as e:
                raise e.prefixed(i) from None
        return out

    return parse


# Names and paths used by several steps.
PACKAGE_NAME = r"[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?(=[A-Za-z0-9.+~:-]+)?"
UNIT_NAME = r"[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|target|path|mount|automount|swap|slice)"
ABS_PATH = r"/[^\0]*"
USER_NAME = r"[a-z_][a-z0-9_-]{0,31}"
