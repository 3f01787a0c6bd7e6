"""Hostile answer files: each one gets an AnswerError naming the file, the key
and the reason, quickly, instead of a crash (ValueError, RecursionError,
re.error, OverflowError) or minutes of regex backtracking."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.answer.machine import Machine
from appliance.answer.parse import MAX_ANSWER_BYTES, load_answer, parse_answer
from appliance.answer.resolve import resolve
from appliance.errors import AnswerError
from appliance.hw.match import glob_match

from .conftest import MINIMAL, UNSET, answer_text

# 5000 characters; as a regex (`.*0.*0…X`) it backtracks for minutes on a
# value full of zeros.
BACKTRACKER = "*0" * 2499 + "*X"


def rejected(text: str) -> AnswerError:
    started = time.monotonic()
    with pytest.raises(AnswerError) as exc:  # noqa: PT011 (callers check the message)
        parse_answer(text, "answer.toml")
    assert time.monotonic() - started < 1.0, "refusing a hostile answer must be quick"
    return exc.value


def with_lines(*lines: str) -> str:
    """minimal.toml with `lines` added at its end (in its last table, [disk-setup])."""
    return MINIMAL.read_text() + "\n".join(lines) + "\n"


def test_integer_beyond_pythons_digit_limit_is_named() -> None:
    huge = "1" * 5000  # int() refuses more than 4300 digits with a bare ValueError
    text = answer_text(disk_setup__filesystem="zfs", disk_setup__disk_list=UNSET,
                       disk_setup__filter={"ID_SERIAL": "*"})
    text += f"\n[disk-setup.zfs]\nraid = \"raid0\"\narc-max = {huge}\n"
    err = rejected(text)
    line = text.splitlines().index(f"arc-max = {huge}") + 1
    assert (err.file, err.key, err.line) == ("answer.toml", "disk-setup.zfs.arc-max", line)
    assert str(err).startswith(f"answer.toml:{line}: disk-setup.zfs.arc-max: a number of more "
                               "than 100 digits")


def test_integer_out_of_range_is_named() -> None:
    text = answer_text(disk_setup__filesystem="zfs", disk_setup__disk_list=UNSET,
                       disk_setup__filter={"ID_SERIAL": "*"})
    text += "\n[disk-setup.zfs]\nraid = \"raid0\"\narc-max = 10000000000000000000000\n"
    err = rejected(text)
    assert err.key == "disk-setup.zfs.arc-max" and "above the maximum" in err.reason


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000,
                                   "[" * 11 + '"ssh-ed25519 AAAA"' + "]" * 11])
def test_deep_array_nesting_is_refused_not_a_recursion_error(value: str) -> None:
    text = MINIMAL.read_text().replace("[global]\n", f"[global]\nroot-ssh-keys = {value}\n")
    err = rejected(text)
    assert (err.file, err.key, err.line) == ("answer.toml", "global.root-ssh-keys", 3)
    assert err.reason == "nested more than 10 levels deep"


def test_deep_inline_table_nesting_is_refused() -> None:
    err = rejected(with_lines("filter = " + "{ a = " * 3000 + "1" + " }" * 3000))
    assert err.key == "disk-setup.filter" and "nested more than 10 levels deep" in err.reason


def test_a_dotted_key_of_many_parts_is_refused_at_once() -> None:
    # tomllib takes time quadratic in the parts: 100000 parts would take hours
    err = rejected(with_lines("lvm" + ".x" * 100_000 + " = 1"))
    assert err.file == "answer.toml" and err.key == "disk-setup"
    assert "a key of more than 10 dotted parts" in err.reason
    err = rejected(with_lines("[disk-setup" + ".x" * 100_000 + "]"))
    assert "a key of more than 10 dotted parts" in err.reason


def test_dots_and_brackets_inside_strings_do_not_count() -> None:
    key = "ssh-ed25519 AAAA [[[[[[[[[[[[{{{{{{{{{{{{ a.b.c.d.e.f.g.h.i.j.k.l # not a comment"
    text = MINIMAL.read_text().replace(
        "[global]\n", f"[global]\nroot-ssh-keys = [\n  \"{key}\", # a comment [[[[[[[[[[[[\n"
        f"  '''{key}''',\n]\n")
    assert parse_answer(text).global_.root_ssh_keys == (key, key)


def test_reversed_glob_range_is_named() -> None:
    err = rejected(answer_text(disk_setup__disk_list=UNSET,
                               disk_setup__filter={"ID_SERIAL": "[z-a]*"}))
    assert (err.file, err.key) == ("answer.toml", "disk-setup.filter.ID_SERIAL")
    assert "the range z-a is reversed" in err.reason


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("maxroot", "1e300", "1e+300 GiB is above the maximum 1048576 GiB"),
    ("hdsize", "inf", "inf is not a size"),
    ("swapsize", "nan", "nan is not a size"),
    ("minfree", str(1 << 70), "above the maximum 1048576 GiB"),
])
def test_absurd_sizes_are_refused_at_parse_time(key: str, value: str, reason: str) -> None:
    err = rejected(with_lines("[disk-setup.lvm]", f"{key} = {value}"))
    assert (err.file, err.key) == ("answer.toml", f"disk-setup.lvm.{key}")
    assert reason in err.reason


def test_pathological_glob_matches_in_linear_time(lab: Machine) -> None:
    started = time.monotonic()
    assert not glob_match(BACKTRACKER, "0" * 5000)
    assert glob_match(BACKTRACKER, "0" * 2499 + "X")
    assert time.monotonic() - started < 1.0
    answer = parse_answer(answer_text(disk_setup__disk_list=UNSET,
                                      disk_setup__filter={"ID_SERIAL": BACKTRACKER}))
    started = time.monotonic()
    with pytest.raises(AnswerError, match=r"disk-setup.filter: filter .* matched no disk"):
        resolve(answer, lab)
    assert time.monotonic() - started < 1.0


def test_an_answer_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "answer.toml"
    padding = "# padding\n" * (2 * MAX_ANSWER_BYTES // 10)
    path.write_text(MINIMAL.read_text() + padding)
    with pytest.raises(AnswerError, match=r"answer.toml: larger than 1024 KiB: not an answer"):
        load_answer(path)
    with pytest.raises(AnswerError, match=r"x.toml: larger than 1024 KiB"):
        parse_answer(path.read_text(), "x.toml")


def test_a_huge_unknown_key_is_shortened_in_the_message() -> None:
    huge = "x" * 500_000
    err = rejected(MINIMAL.read_text().replace("[global]\n", f"[global]\n{huge} = 1\n"))
    assert err.key == "global." + "x" * 93 + "…" and err.line == 3
    assert len(str(err)) < 1000 and "unknown key" in err.reason
