"""The web UI in a real browser: Debian's Chromium, headless, driven by
Playwright against `appliance web serve` over HTTPS on 127.0.0.1, with a
real LXC container and a real VM. APPLIANCE_UPDATE_SCREENSHOTS=1 refreshes
the README's screenshots in docs/."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from appliance.host import Host, HostPaths
from appliance.hw import detect

from ..conftest import ROOT
from ..host import ct_checks
from ..host.conftest import add_templates, cleanup_guests
from .conftest import Account, Server, start_server, stop_server

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
DOCS = ROOT / "docs"
PASSWORD = "ct-r00t-pass"


@pytest.fixture(scope="module")
def server(test_guest_files: dict[str, Path],
           ct_tarball: Path, account: Account) -> Iterator[Server]:
    # the container is unprivileged: its root must reach the state directory
    with ct_checks.reachable_dir("appliance-web-e2e-") as tmp:
        paths = HostPaths(tmp / "etc", tmp / "state")
        paths.ensure()
        add_templates(paths, test_guest_files, ct_tarball)
        srv = start_server(paths, account.group, tmp / "server.log")
        try:
            yield srv
        finally:
            stop_server(srv)
            cleanup_guests(Host(paths))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("no /usr/bin/chromium: ./run setup installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


SHOTS: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Screenshots go to docs/ (the README's) with APPLIANCE_UPDATE_SCREENSHOTS=1,
    else to a temporary directory (taken all the same, the tree stays clean)."""
    update = os.environ.get("APPLIANCE_UPDATE_SCREENSHOTS") == "1"
    SHOTS[:] = [DOCS if update else tmp_path_factory.mktemp("screenshots")]


def shot(page: Page, name: str) -> None:
    SHOTS[0].mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS[0] / name), full_page=True)


def wait_task_ok(page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/tasks/UPID"))
    expect(page.locator("#task-status")).to_have_text("OK", timeout=60_000)


def console_text(page: Page) -> str:
    return page.locator(".xterm-rows").inner_text()


def wait_console(page: Page, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = console_text(page)
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not on the console:\n{text[-800:]}")
        page.wait_for_timeout(200)


def action(page: Page, server: Server, gid: int, label: str) -> None:
    page.goto(f"{server.url}/guests/{gid}")
    page.get_by_role("button", name=label, exact=True).click()
    wait_task_ok(page)


def test_log_in_run_a_container_and_a_vm_log_out(server: Server, browser: Browser,
                                                 account: Account) -> None:
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(30_000)

    # not logged in: every page sends us to the login page
    page.goto(f"{server.url}/guests")
    expect(page).to_have_url(re.compile(r"/login"))
    shot(page, "webui-login.png")
    page.fill("input[name=username]", account.name)
    page.fill("input[name=password]", "wrong password")
    page.click("main button[type=submit]")
    expect(page.locator(".error")).to_contain_text("login failed")
    page.fill("input[name=password]", account.password)
    page.click("main button[type=submit]")
    expect(page).to_have_url(re.compile(r"/guests$"))

    page.goto(f"{server.url}/dashboard")
    expect(page.locator("#verdict")).to_have_text(detect(inventory=False).verdict)
    shot(page, "webui-dashboard.png")

    # create a container: a bad name first, the form says why
    page.goto(f"{server.url}/guests/new-ct")
    page.fill("input[name=name]", "bad name")
    page.fill("input[name=memory_mib]", "256")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("name: 'bad name' is not valid")
    shot(page, "webui-create-error.png")
    page.fill("input[name=name]", "web1")
    page.fill("input[name=password]", PASSWORD)
    page.select_option("select[name=template]", "debian")
    page.click("main button[type=submit]")
    wait_task_ok(page)

    action(page, server, 100, "Start")
    page.goto(f"{server.url}/guests")
    row = page.locator("tr[data-guest='100']")
    expect(row.locator(".status")).to_have_text("running")
    shot(page, "webui-guests.png")

    # the console: log in on the container's console and run a command
    page.goto(f"{server.url}/guests/100")
    expect(page.locator("#status")).to_have_text("running")
    expect(page.locator("#console[data-state=open]")).to_be_attached()
    page.locator("#console").click()
    wait_console(page, "to exit the console")  # lxc-console is attached
    for _ in range(10):  # getty prints its prompt again on a new line
        page.keyboard.press("Enter")
        try:
            wait_console(page, "login:", timeout=6)
            break
        except AssertionError:
            continue
    page.keyboard.type("root")
    page.keyboard.press("Enter")
    wait_console(page, "Password:")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    wait_console(page, "root@web1:~#")
    page.keyboard.type("echo $((6 * 7))done")
    page.keyboard.press("Enter")
    wait_console(page, "42done")
    shot(page, "webui-ct-console.png")

    action(page, server, 100, "Stop")
    page.goto(f"{server.url}/guests")
    expect(page.locator("tr[data-guest='100'] .status")).to_have_text("stopped")
    action(page, server, 100, "Delete")
    page.goto(f"{server.url}/guests")
    expect(page.locator("tr[data-guest='100']")).to_have_count(0)

    # a VM from the test-guest template: start it and see its console
    page.goto(f"{server.url}/guests/new-vm")
    page.fill("input[name=name]", "tiny1")
    page.fill("input[name=memory_mib]", "64")
    page.select_option("select[name=template]", "testguest")
    page.click("main button[type=submit]")
    wait_task_ok(page)
    # the guest list updates itself: start the VM through the API (the
    # page's session and CSRF token) and watch the row change, no reload
    page.goto(f"{server.url}/guests")
    row = page.locator("tr[data-guest='100'] .status")
    expect(row).to_have_text("stopped")
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content") or ""
    r = page.request.post(f"{server.url}/api/guests/100/start",
                          headers={"CSRFPreventionToken": csrf})
    assert r.status == 200, r.text()
    expect(row).to_have_text("running")
    page.goto(f"{server.url}/guests/100")
    expect(page.locator("#console[data-state=open]")).to_be_attached()
    wait_console(page, "ready>")
    assert "appliance test guest" in console_text(page)
    page.locator("#console").click()
    page.keyboard.type("hello web")
    wait_console(page, "HELLO WEB")
    shot(page, "webui-vm-console.png")
    action(page, server, 100, "Stop")
    action(page, server, 100, "Delete")

    page.goto(f"{server.url}/tasks")
    expect(page.locator("table")).to_contain_text("ctcreate")
    shot(page, "webui-tasks.png")

    # log out: pages and the API refuse us again
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(f"{server.url}/dashboard")
    expect(page).to_have_url(re.compile(r"/login"))
    assert page.request.get(f"{server.url}/api/guests").status == 401
    ctx.close()


# What is wider than the screen, if anything: "tag.class (width px)" of each offender.
_TOO_WIDE_JS = """() => {
  const w = document.documentElement.clientWidth;
  return [...document.querySelectorAll('body *')]
    .filter(e => !e.closest('.table-wrap > table') && (e.getBoundingClientRect().right > w + 0.5
                 || (e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === 'visible')))
    .map(e => `${e.tagName.toLowerCase()}.${e.className}`
              + ` (${Math.round(e.getBoundingClientRect().right)} px)`);
}"""

# Host names, user names, paths and error texts come from the machine: make every one of them a
# long word without a break, as a long FQDN or a PAM user from a directory can be.
_LONG_WORDS_JS = """() => {
  for (const e of document.querySelectorAll('h1, .who, code, td, dd, li, .error, p'))
    if (e.children.length === 0) e.textContent = 'x'.repeat(90);
}"""


@pytest.mark.parametrize("path", ["/dashboard", "/guests", "/tasks", "/guests/new-ct"])
def test_pages_are_readable_on_a_phone(server: Server, browser: Browser, account: Account,
                                       path: str) -> None:
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844},
                              device_scale_factor=2, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", account.name)
    page.fill("input[name=password]", account.password)
    page.click("main button[type=submit]")
    expect(page.locator("#verdict")).to_be_visible()
    page.goto(f"{server.url}{path}")
    # nothing wider than the screen: no sideways scrolling of the page (tables scroll in their box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, page.evaluate(_TOO_WIDE_JS)
    if path == "/dashboard":
        shot(page, "webui-phone.png")
    page.evaluate(_LONG_WORDS_JS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, page.evaluate(_TOO_WIDE_JS)
    ctx.close()


def test_the_ui_works_without_javascript(server: Server, browser: Browser,
                                         account: Account) -> None:
    ctx = browser.new_context(ignore_https_errors=True, java_script_enabled=False)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", account.name)
    page.fill("input[name=password]", account.password)
    page.click("main button[type=submit]")
    expect(page.locator("#verdict")).to_be_visible()

    def task_done() -> None:  # no htmx: reload the task page until it is done
        deadline = time.monotonic() + 60
        while page.locator("#task-status").inner_text() == "running":
            assert time.monotonic() < deadline
            page.wait_for_timeout(300)
            page.reload()
        expect(page.locator("#task-status")).to_have_text("OK")

    page.goto(f"{server.url}/guests/new-vm")
    page.fill("input[name=name]", "nojs")
    page.fill("input[name=memory_mib]", "64")
    page.fill("input[name=id]", "150")
    page.click("main button[type=submit]")
    task_done()
    for label, status in (("Start", "running"), ("Stop", "stopped")):
        page.goto(f"{server.url}/guests/150")
        page.get_by_role("button", name=label, exact=True).click()
        task_done()
        page.goto(f"{server.url}/guests")
        expect(page.locator("tr[data-guest='150'] .status")).to_have_text(status)
    page.goto(f"{server.url}/guests/150")
    page.get_by_role("button", name="Delete", exact=True).click()
    task_done()
    ctx.close()
