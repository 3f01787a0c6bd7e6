"""Recipe loading: extends, merging, variables, and every bad-input error."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.errors import RecipeError
from appliance.recipe import loader

BOOTSTRAP = '[[steps]]\ntype = "bootstrap"\nname = "bootstrap"\ninclude = ["systemd"]\n'


def write(dirpath: Path, name: str, text: str) -> Path:
    p = dirpath / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    """A recipe directory with a templates/ folder next to it."""
    t = tmp_path / "templates"
    write(t, "overlay/etc/issue", "hello\n")
    write(t, "motd.j2", "Welcome to {{ hostname }}\n")
    write(t, "needs-missing.j2", "{{ hostname }} {{ not_declared }}\n")
    write(t, "single.conf", "x = 1\n")
    return tmp_path


def load_text(tdir: Path, text: str, name: str = "r.toml", **kw: object) -> loader.Recipe:
    path = write(tdir, name, text)
    return loader.load(path, **kw)  # type: ignore[arg-type]


def error_of(tdir: Path, text: str, name: str = "r.toml", **kw: object) -> str:
    with pytest.raises(RecipeError, match=re.escape(name)) as exc:  # names the file
        load_text(tdir, text, name, **kw)
    return str(exc.value)


def test_defaults_fill_every_declared_option(tdir: Path) -> None:
    r = load_text(tdir, BOOTSTRAP)
    step = r.steps[0]
    assert step.options["suite"] == "bookworm"
    assert step.options["variant"] == "minbase"
    assert step.options["include"] == ["systemd"]
    assert r.name == "r"
    assert r.templates_dir == (tdir / "templates") or r.templates_dir.name == "templates"


def test_templates_dir_relative_to_recipe(tdir: Path) -> None:
    r = load_text(tdir, '[recipe]\ntemplates-dir = "templates"\n' + BOOTSTRAP)
    assert r.templates_dir == tdir / "templates"


def test_extends_merges_named_step_and_appends_lists(tdir: Path) -> None:
    write(tdir, "parent.toml", BOOTSTRAP + '[[steps]]\ntype = "hostname"\nhostname = "p"\n'
          '[outputs.squashfs]\ncompression-level = 5\n')
    r = load_text(tdir, """
        [recipe]
        extends = "parent.toml"
        [[steps]]
        name = "bootstrap"
        include = ["lxc"]
        variant = "apt"
        [[steps]]
        type = "timezone"
        zone = "Etc/UTC"
        [outputs.squashfs]
        block-size = "256K"
    """)
    assert [s.name for s in r.steps] == ["bootstrap", "hostname", "timezone"]
    assert r.steps[0].options["include"] == ["systemd", "lxc"]
    assert r.steps[0].options["variant"] == "apt"
    out = r.outputs[0].options
    assert (out["compression-level"], out["block-size"]) == (5, "256K")
    assert [p.name for p in r.chain] == ["r.toml", "parent.toml"]


def test_extends_replace_marker_replaces_a_list(tdir: Path) -> None:
    write(tdir, "parent.toml", BOOTSTRAP)
    r = load_text(tdir, """
        [recipe]
        extends = "parent.toml"
        [[steps]]
        name = "bootstrap"
        include = { replace = ["busybox"] }
    """)
    assert r.steps[0].options["include"] == ["busybox"]


def test_output_can_be_disabled_by_child(tdir: Path) -> None:
    write(tdir, "parent.toml", BOOTSTRAP + "[outputs.squashfs]\n[outputs.tar]\n")
    r = load_text(tdir, '[recipe]\nextends = "parent.toml"\n[outputs.tar]\nenabled = false\n')
    assert [o.type for o in r.outputs] == ["squashfs"]


def test_cyclic_extends_is_an_error(tdir: Path) -> None:
    write(tdir, "a.toml", '[recipe]\nextends = "b.toml"\n' + BOOTSTRAP)
    write(tdir, "b.toml", '[recipe]\nextends = "a.toml"\n')
    with pytest.raises(RecipeError, match=r"cyclic extends: .*a\.toml -> .*b\.toml -> .*a\.toml"):
        loader.load(tdir / "a.toml")


def test_missing_extended_recipe_names_file_and_key(tdir: Path) -> None:
    msg = error_of(tdir, '[recipe]\nextends = "nope.toml"\n' + BOOTSTRAP)
    assert "r.toml:2:" in msg and "extends" in msg and "nope.toml" in msg


def test_variables_substitute_and_set_overrides(tdir: Path) -> None:
    text = '[variables]\nhost = "a"\n' + BOOTSTRAP + \
        '[[steps]]\ntype = "hostname"\nhostname = "${host}-node"\n'
    assert load_text(tdir, text).steps[1].options["hostname"] == "a-node"
    r = load_text(tdir, text, variables={"host": "b"})
    assert r.steps[1].options["hostname"] == "b-node"


def test_set_of_undeclared_variable_is_an_error(tdir: Path) -> None:
    msg = error_of(tdir, '[variables]\nhost = "a"\n' + BOOTSTRAP, variables={"hots": "x"})
    assert "--set hots" in msg and "declared: host" in msg


def test_unknown_variable_reference_names_step_and_key(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + '[[steps]]\ntype = "hostname"\nhostname = "${nope}"\n')
    assert "r.toml:7:" in msg and "hostname" in msg and "unknown variable ${nope}" in msg


def test_unknown_key_suggests_and_gives_line(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + '[[steps]]\ntype = "packages"\ninstal = ["lxc"]\n')
    assert "r.toml:7:" in msg
    assert "instal" in msg and "did you mean 'install'" in msg


def test_wrong_type_names_key_and_type(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + '[[steps]]\ntype = "packages"\ninstall = "lxc"\n')
    assert "r.toml:7:" in msg and "install" in msg and "expected a list of strings" in msg


def test_invalid_package_name_is_rejected(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + '[[steps]]\ntype = "packages"\ninstall = ["lxc "]\n')
    assert "install[0]" in msg and "'lxc ' is not a valid package name" in msg


def test_unknown_step_type_lists_known_types(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + '[[steps]]\ntype = "frobnicate"\n')
    assert "r.toml:6:" in msg and "unknown step type 'frobnicate'" in msg
    assert "packages" in msg and "templates" in msg


def test_unknown_output_type_is_an_error(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + "[outputs.floppy]\n")
    assert "r.toml:5:" in msg and "[outputs.floppy]" in msg and "squashfs" in msg


def test_unknown_top_level_key_is_an_error(tdir: Path) -> None:
    assert "unknown top-level key 'step'" in error_of(tdir, '[[step]]\ntype = "bootstrap"\n')


def test_toml_syntax_error_gives_line(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + "[[steps]]\ntype = \n")
    assert "r.toml:6:" in msg and "not valid TOML" in msg


def test_first_step_must_be_bootstrap(tdir: Path) -> None:
    msg = error_of(tdir, '[[steps]]\ntype = "hostname"\nhostname = "x"\n')
    assert "first step must be of type 'bootstrap'" in msg


def test_duplicate_step_names_are_an_error(tdir: Path) -> None:
    msg = error_of(tdir, BOOTSTRAP + '[[steps]]\ntype = "timezone"\nname = "bootstrap"\n')
    assert "used twice" in msg


def test_missing_overlay_directory_names_path(tdir: Path) -> None:
    msg = error_of(tdir, '[recipe]\ntemplates-dir = "templates"\n' + BOOTSTRAP +
                   '[[steps]]\ntype = "files"\noverlay = ["nothere"]\n')
    assert "r.toml:9:" in msg and "overlay[0]" in msg and "nothere does not exist" in msg


def test_missing_single_file_names_path(tdir: Path) -> None:
    msg = error_of(tdir, '[recipe]\ntemplates-dir = "templates"\n' + BOOTSTRAP +
                   '[[steps]]\ntype = "files"\n'
                   'files = [{ source = "gone.conf", destination = "/etc/x" }]\n')
    assert "files[0].source" in msg and "gone.conf does not exist" in msg


def test_relative_destination_is_rejected(tdir: Path) -> None:
    msg = error_of(tdir, '[recipe]\ntemplates-dir = "templates"\n' + BOOTSTRAP +
                   '[[steps]]\ntype = "files"\n'
                   'files = [{ source = "single.conf", destination = "etc/x" }]\n')
    assert "destination" in msg and "absolute path" in msg


def test_bad_mode_is_rejected(tdir: Path) -> None:
    msg = error_of(tdir, '[recipe]\ntemplates-dir = "templates"\n' + BOOTSTRAP +
                   '[[steps]]\ntype = "files"\n'
                   'files = [{ source = "single.conf", destination = "/etc/x", mode = "rw" }]\n')
    assert "files[0].mode" in msg and "not a file mode" in msg


def test_template_missing_variable_names_template_and_variable(tdir: Path) -> None:
    msg = error_of(tdir, '[recipe]\ntemplates-dir = "templates"\n[variables]\nhostname = "h"\n'
                   + BOOTSTRAP + '[[steps]]\ntype = "templates"\n'
                   'templates = [{ source = "needs-missing.j2", destination = "/etc/x" }]\n')
    assert "needs-missing.j2" in msg and "'not_declared' is undefined" in msg


def test_source_and_content_are_exclusive(tdir: Path) -> None:
    msg = error_of(tdir, '[recipe]\ntemplates-dir = "templates"\n' + BOOTSTRAP +
                   '[[steps]]\ntype = "files"\nfiles = [{ source = "single.conf", '
                   'content = "x", destination = "/etc/x" }]\n')
    assert "only one of source, content" in msg


def test_plain_password_is_redacted_in_show(tdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tdir, "r.toml", BOOTSTRAP + '[[steps]]\ntype = "users"\n'
                 'root-password = "hunter2"\n')
    assert main(["recipe", "show", str(path)]) == 0
    toml_out = capsys.readouterr().out
    assert "hunter2" not in toml_out and "<redacted>" in toml_out
    assert main(["recipe", "show", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["steps"][1]["root-password"] == "<redacted>"


def test_cli_reports_recipe_errors_without_traceback(
    tdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tdir, "r.toml", BOOTSTRAP + '[[steps]]\ntype = "packages"\ninstal = ["x"]\n')
    assert main(["build", "--dry-run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("appliance: error: ") and "Traceback" not in err


def test_shipped_recipes_are_valid() -> None:
    for name in ("base", "host", "test-minimal"):
        r = loader.load(name)
        assert r.steps[0].type == "bootstrap"
        assert r.outputs, name
