"""The admin page, `/admin/` (admin_page_routes.py, admin_page/): served files and headers in
process, then the page itself in a real browser against a real gunicorn, on SQLite and PostgreSQL.

The browser is Debian's chromium (/usr/bin/chromium, installed by .ci/run) driven by Playwright,
as in tests/test_docs_browser.py. The main walk is done with the keyboard only (Tab, Enter,
Space and typing: no clicks). On every page axe-core (the npm package, installed into a cache
directory on first use, never committed) must find no serious or critical violation, at desktop
and at phone width (375 px, where nothing may overflow sideways); screenshots of each go to
tests/output/ (not committed, for people to look at). Nothing here asserts a duration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from conftest import API
from servers import Server, login, server_url

import admin_page_routes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [  # as tests/test_docs_browser.py: no background traffic to Google's hosts
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parent / "output"
TIMEOUT_MS = 30_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}
PAGE_WEIGHT_LIMIT = 150 * 1024
# axe-core, pinned; installed with npm into a cache directory outside the repository.
AXE_VERSION = "4.14.1"
AXE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / f"livechat-departments-axe-{AXE_VERSION}"
ADMIN_PASS = "admin-page-pass"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser test skipped: Debian's chromium is not installed (/usr/bin/chromium missing; "
    "`apt-get install chromium`, as .ci/run does)",
)


# --- the served files, in process --------------------------------------------------------


def test_the_page_and_its_files_carry_a_strict_policy(client):
    page = client.get("/admin/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "require-trusted-types-for 'script'" in csp
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"  # security.py still applies
    for name in admin_page_routes.PAGE_FILES:
        asset = client.get(f"/admin/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["Content-Security-Policy"] == csp
    assert client.get("/admin/app.js").mimetype == "text/javascript"
    # the API keeps its own headers: the page's policy is for the page's routes only
    assert "Content-Security-Policy" not in client.get("/api/info").headers


def test_only_the_page_files_are_served(client):
    for path in ("/admin/index.html", "/admin/nope.js", "/admin/..%2fapp.py", "/admin/%2e%2e/app.py", "/admin/sub/app.js"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json == {"success": False, "error": "Resource not found"}
    redirect = client.get("/admin?x=1")
    assert redirect.status_code == 308 and redirect.headers["Location"] == "admin/"  # relative: keeps a prefix
    assert redirect.json == {"success": True}  # JSON, as every answer that is not a page


def test_the_page_has_no_inline_code_and_only_relative_urls():
    folder = admin_page_routes.PAGE_DIR
    html = (folder / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert references and all(not ref.startswith(("/", "http:", "https:", "//")) for ref in references), references
    for script in folder.glob("*.js"):
        source = script.read_text()
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source and "eval(" not in source, script.name
        for imported in re.findall(r'from "([^"]+)"', source):
            assert imported.startswith("./"), (script.name, imported)
    # every text the page shows comes from messages.js: no other module holds English sentences
    for script in folder.glob("*.js"):
        if script.name != "messages.js":
            texts = re.findall(r'"([A-Z][a-z]+ [a-z]+[^"]*)"', script.read_text())
            assert not texts, (script.name, texts)


def test_page_weight_is_within_150_kb():
    weight = sum((admin_page_routes.PAGE_DIR / name).stat().st_size for name in admin_page_routes.PAGE_FILES if not name.endswith(".svg"))
    weight += (admin_page_routes.PAGE_DIR / "index.html").stat().st_size
    assert weight <= PAGE_WEIGHT_LIMIT, weight


# --- in a real browser --------------------------------------------------------------------


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's axe.min.js, installed with npm on first use."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("npm is needed to install axe-core for the accessibility checks")
            pytest.skip("npm is not installed: no axe-core for the accessibility checks")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(AXE_DIR), "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"],
            check=False, capture_output=True, text=True, timeout=300,
        )
        if done.returncode != 0 or not script.exists():
            message = f"npm install axe-core@{AXE_VERSION} failed:\n{done.stdout}\n{done.stderr}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return script.read_text()


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (requirements-dev.txt)")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(empty_database_url: str, tmp_path: Path) -> Iterator[Server]:
    with Server(server_url(empty_database_url), tmp_path / "gunicorn.log", ADMIN_PASS) as running:
        yield running
        assert "Traceback" not in running.output()


def admin_headers(base: str) -> dict[str, str]:
    return login(base, ADMIN_PASS)


def create_user(base: str, headers: dict[str, str], username: str, roles: list[str]) -> dict[str, Any]:
    response = requests.post(
        f"{base}{API}/users.create",
        json={"username": username, "email": f"{username}@example.com", "name": username.title(), "password": f"pw-{username}", "roles": roles},
        headers=headers, timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["user"]


def api_get(base: str, headers: dict[str, str], path: str) -> dict[str, Any]:
    response = requests.get(f"{base}{API}/{path}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


class Browser:
    """One page of the admin UI: keyboard helpers, checks and screenshots."""

    def __init__(self, browser: Any, origin: str, name: str, axe: str | None) -> None:
        self.context = browser.new_context(viewport=DESKTOP)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.origin = origin
        self.name = name
        self.axe = axe
        self.problems: list[str] = []
        self.foreign: list[str] = []
        self.requests: list[str] = []
        self.page.route("**/*", self._only_this_service)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", self._console)

    def _only_this_service(self, route: Any) -> None:
        self.requests.append(route.request.url)
        if route.request.url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()

    def _console(self, message: Any) -> None:
        # A failed API call (the 401 of a revoked token, a 400) is logged by Chromium as a
        # failed resource; anything else (a CSP or Trusted Types violation, an exception) is a problem.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def close(self) -> None:
        self.context.close()
        assert not self.foreign, f"the page tried to load files from elsewhere: {self.foreign}"
        assert not self.problems, self.problems

    # keyboard only
    def focused_name(self, within: str = "*") -> str:
        """The focused control's accessible name ("" when it is not inside `within`, a CSS selector)."""
        return self.page.evaluate(
            """(within) => {
                const e = document.activeElement;
                if (!e || e === document.body || !e.closest(within)) return "";
                const label = e.getAttribute("aria-label") || (e.labels && e.labels[0] && e.labels[0].textContent);
                return (label || e.textContent || "").trim();
            }""",
            within,
        )

    def tab_to(self, name: str, within: str = "*", limit: int = 300) -> None:
        """Press Tab until the focused control's accessible name is `name`."""
        seen = []
        for _ in range(limit):
            self.page.keyboard.press("Tab")
            current = self.focused_name(within)
            if current == name:
                return
            seen.append(current)
        raise AssertionError(f"{name!r} not reached with Tab; focused in turn: {seen[:80]}")

    def press(self, name: str, key: str = "Enter", within: str = "*") -> None:
        self.tab_to(name, within)
        self.page.keyboard.press(key)

    def type_into(self, name: str, text: str) -> None:
        """Tab to the field named `name`, empty it and type `text`."""
        self.tab_to(name)
        self.page.keyboard.press("Control+A")
        self.page.keyboard.press("Delete")
        if text:
            self.page.keyboard.type(text)

    # waits and checks
    def expect_notice(self, text: str) -> None:
        expect(self.page.locator(".notice")).to_have_text(text)

    def rows(self) -> Any:
        return self.page.locator("table.data:not(.agents) tbody tr")

    def expect_rows(self, names: list[str]) -> None:
        expect(self.page.locator("table.data:not(.agents) tbody tr th")).to_have_text(names)

    def capture(self, page_name: str) -> None:
        """axe at desktop and phone width, no sideways overflow on the phone, screenshots of both."""
        OUTPUT.mkdir(exist_ok=True)
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            self.page.set_viewport_size(viewport)
            self.check_axe(f"{page_name} ({label})")
            if label == "phone":
                overflow = self.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{page_name} is {overflow}px wider than a 375px screen"
            self.page.screenshot(path=str(OUTPUT / f"admin-{self.name}-{page_name}-{label}.png"), full_page=True)
        self.page.set_viewport_size(DESKTOP)

    def check_axe(self, where: str) -> None:
        if self.axe is None:
            return
        if not self.page.evaluate("() => typeof axe !== 'undefined'"):
            self.page.evaluate(self.axe)  # through the DevTools protocol: the page's CSP is not relaxed
        result = self.page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        serious = [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:160] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")
        ]
        assert not serious, f"axe on {where}: {json.dumps(serious, indent=1)}"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def sign_in_with_keyboard(ui: Browser, user: str, password: str) -> None:
    ui.type_into("Username or email", user)
    ui.page.keyboard.press("Tab")
    ui.page.keyboard.type(password)
    ui.page.keyboard.press("Enter")


@pytest.mark.e2e
@needs_chromium
def test_department_walk_with_the_keyboard_only(server: Server, playwright_browser: Any, axe_source: str, backend: str) -> None:
    """Sign in → create a department with two agents → find it by search → edit a field and an
    agent's order → archive → find it in the archived tab → unarchive → delete."""
    headers = admin_headers(server.base)
    alice = create_user(server.base, headers, "alice", ["user", "livechat-agent"])
    bob = create_user(server.base, headers, "bob", ["user", "livechat-agent"])
    create_user(server.base, headers, "carol", ["user", "livechat-manager"])
    for index in range(30):
        requests.post(f"{server.base}{API}/livechat/department", headers=headers, timeout=10, json={
            "department": {"name": f"Filler {index:02d}", "email": f"f{index}@example.com", "enabled": True, "showOnRegistration": False}})

    ui = Browser(playwright_browser, server.base, f"walk-{backend}", axe_source)
    page = ui.page
    page.goto(f"{server.base}/admin/")
    page.get_by_role("heading", name="Sign in").wait_for()
    ui.capture("signin")
    sign_in_with_keyboard(ui, "admin", ADMIN_PASS)
    expect(ui.rows()).to_have_count(25)
    expect(page.locator(".summary")).to_have_text("1–25 of 30")
    ui.capture("departments")

    # pages and sorting come from the server
    ui.press("Next page")
    expect(page.locator(".summary")).to_have_text("26–30 of 30")
    ui.expect_rows([f"Filler {index}" for index in range(25, 30)])
    ui.press("Previous page")
    expect(page.locator(".summary")).to_have_text("1–25 of 30")
    ui.press("Email")
    expect(page.locator("th[aria-sort=ascending]")).to_have_text("Email")
    page.keyboard.press("Enter")  # the same button, still focused
    expect(page.locator("th[aria-sort=descending]")).to_have_text("Email")
    expect(ui.rows().first.locator("td").first).to_have_text("f9@example.com")  # f9 > f29 > … in byte order
    ui.press("Name")
    expect(page.locator("th[aria-sort=ascending]")).to_have_text("Name")
    expect(ui.rows().first.locator("th")).to_have_text("Filler 00")

    # create, with two agents found by search
    ui.press("New department")
    page.get_by_role("heading", name="New department").wait_for()
    ui.type_into("Name", "Keyboard sales")
    ui.page.keyboard.press("Tab")
    ui.page.keyboard.type("sales@example.com")
    ui.press("Show on registration form", " ")
    ui.type_into("Description", "Made without a mouse")
    for username in ("alice", "bob"):
        ui.type_into("Search an agent to add", username[:3])
        ui.press(f"Choose {username}")
        ui.expect_notice(f"{username} added.")
    expect(page.locator("table.agents tbody th")).to_have_text(["alice", "bob"])
    ui.type_into("Count of bob", "2")
    ui.capture("department-new")
    ui.press("Create")
    ui.expect_notice("Department created.")
    page.get_by_role("heading", name="Departments").wait_for()

    # find it by search (debounced, as you type)
    ui.type_into("Search departments", "keyboard")
    ui.expect_rows(["Keyboard sales"])
    expect(page.locator(".summary")).to_have_text("1–1 of 1")
    row = ui.rows().first
    expect(row.locator("td")).to_contain_text(["sales@example.com", "Yes", "Yes", "2"])
    listed = api_get(server.base, headers, "livechat/department?text=keyboard")["departments"]
    assert len(listed) == 1
    department = listed[0]
    assert department["showOnRegistration"] is True and department["numAgents"] == 2
    assert department["description"] == "Made without a mouse"

    # edit a field and an agent's order
    ui.press("Keyboard sales")
    page.get_by_role("heading", name="Edit “Keyboard sales”").wait_for()
    ui.capture("department-edit")
    ui.type_into("Email", "team@example.com")
    ui.type_into("Order of bob", "7")
    ui.press("Save")
    ui.expect_notice("Saved.")
    ui.expect_rows(["Keyboard sales"])  # the list as it was left: the search is kept
    one = api_get(server.base, headers, f"livechat/department/{department['_id']}")
    assert one["department"]["email"] == "team@example.com"
    assert one["department"]["description"] == "Made without a mouse"  # untouched: a merge
    assert {a["username"]: (a["count"], a["order"]) for a in one["agents"]} == {"alice": (0, 0), "bob": (2, 7)}

    # archive → archived tab → unarchive
    ui.press("Archive Keyboard sales")
    ui.expect_notice("“Keyboard sales” archived.")
    expect(page.locator("table.data tbody td.empty")).to_have_text("Nothing matches “keyboard”.")
    ui.press("Archived")
    page.locator(".tabs a[aria-current=page]", has_text="Archived").wait_for()
    ui.expect_rows(["Keyboard sales"])
    ui.capture("departments-archived")
    ui.press("Unarchive Keyboard sales")
    ui.expect_notice("“Keyboard sales” unarchived. It stays disabled until you enable it.")
    expect(page.locator("table.data tbody td.empty")).to_have_text("No departments.")
    assert api_get(server.base, headers, f"livechat/department/{department['_id']}")["department"]["archived"] is False

    # delete, after a confirmation that says what else goes
    ui.press("Active")
    ui.expect_rows(["Keyboard sales"])
    ui.press("Delete Keyboard sales")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("removes its agent links (2)")
    expect(dialog).to_contain_text("fallback department")
    expect(dialog).to_contain_text("allowed to forward")
    assert ui.focused_name() == "Cancel"
    ui.capture("department-delete-dialog")
    ui.press("Delete department")
    ui.expect_notice("“Keyboard sales” deleted.")
    assert api_get(server.base, headers, f"livechat/department/{department['_id']}")["department"] is None
    assert api_get(server.base, headers, f"livechat/agents/{alice['_id']}/departments")["departments"] == []
    assert api_get(server.base, headers, f"livechat/agents/{bob['_id']}/departments")["departments"] == []

    # agents and managers: give and take the roles
    ui.press("Agents", within="header")  # the link, not the column of that name
    page.get_by_role("heading", name="Agents").wait_for()
    ui.expect_rows(["alice", "bob"])
    ui.capture("agents")
    ui.type_into("Add by username", "carol")
    ui.press("Make agent")
    ui.expect_notice("carol now has the role.")
    ui.expect_rows(["alice", "bob", "carol"])
    ui.press("Remove the role of alice")
    expect(page.get_by_role("dialog")).to_contain_text("also leaves every department")
    ui.press("Remove role")
    ui.expect_notice("alice no longer has the role.")
    ui.expect_rows(["bob", "carol"])
    ui.press("Managers", within="header")
    page.get_by_role("heading", name="Managers").wait_for()
    ui.expect_rows(["carol"])
    ui.capture("managers")
    ui.type_into("Add by username", "nobody-here")
    ui.press("Make manager")
    expect(page.locator(".give-role .field-error")).to_have_text("error-invalid-user")

    ui.press("Sign out")
    page.get_by_role("heading", name="Sign in").wait_for()
    ui.close()


@pytest.mark.e2e
@needs_chromium
def test_validation_errors_show_next_to_their_field(server: Server, playwright_browser: Any, axe_source: str, backend: str) -> None:
    headers = admin_headers(server.base)
    create_user(server.base, headers, "alice", ["user", "livechat-agent"])
    ui = Browser(playwright_browser, server.base, f"validation-{backend}", axe_source)
    page = ui.page
    page.goto(f"{server.base}/admin/#/departments/new")
    sign_in_with_keyboard(ui, "admin", ADMIN_PASS)
    page.get_by_role("heading", name="New department").wait_for()

    # a rule of the service: closing tags are required once tags are requested
    name = page.get_by_label("Name", exact=True)
    name.fill("Tagged")
    page.get_by_label("Email").fill("tags@example.com")
    page.get_by_label("Request a tag before closing a chat").check()
    page.get_by_role("button", name="Create").click()
    tags = page.get_by_label("Closing tags (one per line)")
    expect(tags).to_have_attribute("aria-invalid", "true")
    message = page.locator(f"#{tags.get_attribute('aria-describedby')}")
    expect(message).to_have_text(
        "At least one closing tag is required when the department requires tag(s) on closing conversations. "
        "[error-validating-department-chat-closing-tags]"
    )
    expect(tags).to_be_focused()
    expect(page.get_by_role("alert").filter(has_text="was not saved")).to_be_visible()
    ui.capture("department-error")

    # a length the API checks (the page does not check it again)
    name.fill("x" * 300)
    tags.fill("urgent")
    page.get_by_role("button", name="Create").click()
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{name.get_attribute('aria-describedby')}")).to_have_text(
        "Match error: Expected string of at most 256 characters in field name"
    )
    expect(tags).not_to_have_attribute("aria-invalid", "true")

    # an agent's count: the message goes to that agent's row
    name.fill("Tagged")
    page.get_by_label("Search an agent to add").fill("ali")
    page.get_by_role("button", name="Choose alice").click()
    page.get_by_label("Count of alice").fill("-1")
    page.get_by_role("button", name="Create").click()
    count = page.get_by_label("Count of alice")
    expect(count).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{count.get_attribute('aria-describedby')}")).to_have_text(
        "Match error: Expected Integer >= 0, got -1 in field upsert[0].count"
    )
    assert api_get(server.base, headers, "livechat/department")["total"] == 0  # nothing was written

    count.fill("1")
    page.get_by_role("button", name="Create").click()
    ui.expect_notice("Department created.")
    created = api_get(server.base, headers, "livechat/department")["departments"]
    assert [(d["name"], d["chatClosingTags"], d["numAgents"]) for d in created] == [("Tagged", ["urgent"], 1)]
    ui.close()


@pytest.mark.e2e
@needs_chromium
def test_an_agent_sees_read_only_pages(server: Server, playwright_browser: Any, axe_source: str, backend: str) -> None:
    headers = admin_headers(server.base)
    agent = create_user(server.base, headers, "agnes", ["user", "livechat-agent"])
    created = requests.post(f"{server.base}{API}/livechat/department", headers=headers, timeout=10, json={
        "department": {"name": "Support", "email": "support@example.com", "enabled": True, "showOnRegistration": True,
                       "description": "Second line", "chatClosingTags": ["solved"]},
        "agents": [{"agentId": agent["_id"], "count": 1, "order": 2}],
    })
    assert created.status_code == 200, created.text

    ui = Browser(playwright_browser, server.base, f"agent-{backend}", axe_source)
    page = ui.page
    page.goto(f"{server.base}/admin/")
    sign_in_with_keyboard(ui, "agnes", "pw-agnes")
    ui.expect_rows(["Support"])
    # what an agent may not use is not there at all
    assert page.get_by_role("link", name="New department").count() == 0
    assert page.get_by_role("button", name=re.compile("^(Archive|Delete|Unarchive)")).count() == 0
    assert page.get_by_role("columnheader", name="Actions").count() == 0
    assert [link.inner_text() for link in page.locator("header nav a").all()] == ["Departments", "Agents"]
    ui.capture("departments")

    ui.press("Support")
    page.get_by_role("heading", name="Department “Support”").wait_for()
    expect(page.locator(".read-only-note")).to_have_text("You may look at this department but not change it.")
    expect(page.locator("dl.details")).to_contain_text("Second line")
    expect(page.locator("dl.details")).to_contain_text("solved")
    assert page.locator("form, input, textarea").count() == 0
    expect(page.get_by_text("Your account may not see this department's agents.")).to_be_visible()
    assert page.get_by_role("link", name="History").count() == 0  # no view-livechat-department-history
    ui.capture("department-read-only")

    ui.press("Agents", within="header")
    ui.expect_rows(["agnes"])
    assert page.get_by_role("button", name=re.compile("^Remove")).count() == 0
    assert page.get_by_label("Add by username").count() == 0
    ui.capture("agents")

    page.goto(f"{server.base}/admin/#/managers")  # not theirs: back to the first section they may see
    page.get_by_role("heading", name="Departments").wait_for()
    ui.close()


@pytest.mark.e2e
@needs_chromium
def test_the_history_tab_shows_who_changed_what_and_when(server: Server, playwright_browser: Any, axe_source: str, backend: str) -> None:
    headers = admin_headers(server.base)
    agent = create_user(server.base, headers, "hanna", ["user", "livechat-agent"])
    fields = {"name": "Billing", "email": "billing@example.com", "enabled": True, "showOnRegistration": True}
    created = requests.post(f"{server.base}{API}/livechat/department", headers=headers, timeout=10, json={
        "department": fields, "agents": [{"agentId": agent["_id"], "count": 0, "order": 0}],
    })
    assert created.status_code == 200, created.text
    department_id = created.json()["department"]["_id"]
    changed = requests.put(f"{server.base}{API}/livechat/department/{department_id}", headers=headers, timeout=10, json={
        "department": {**fields, "name": "Billing EU"}, "agents": [{"agentId": agent["_id"], "count": 2, "order": 5}],
    })
    assert changed.status_code == 200, changed.text
    archived = requests.post(f"{server.base}{API}/livechat/department/{department_id}/archive", headers=headers, timeout=10)
    assert archived.status_code == 200, archived.text

    ui = Browser(playwright_browser, server.base, f"history-{backend}", axe_source)
    page = ui.page
    page.goto(f"{server.base}/admin/#/departments/{department_id}/history")
    sign_in_with_keyboard(ui, "admin", ADMIN_PASS)
    page.get_by_role("heading", name="Change history").wait_for()
    expect(page.locator("nav.tabs a")).to_have_text(["Details", "History"])
    entries = page.locator("li.history-entry")
    expect(entries).to_have_count(3)
    expect(entries.nth(0).locator(".history-head")).to_contain_text("Archived by admin")
    expect(entries.nth(1).locator(".history-head")).to_contain_text("Changed by admin")
    expect(entries.nth(1).locator("table.history-diff tbody tr")).to_have_text([re.compile("^nameBillingBilling EU$")])
    expect(entries.nth(1).locator(".history-agents")).to_have_text("hanna: count 0 → 2, order 0 → 5")
    expect(entries.nth(2).locator(".history-head")).to_contain_text("Created by admin")
    expect(entries.nth(2).locator(".history-agents")).to_have_text("hanna added (count 0, order 0)")
    expect(page.locator(".pager .summary")).to_have_text("Changes 1–3 of 3")
    assert page.locator("time").count() == 3
    ui.capture("department-history")
    ui.close()


@pytest.mark.e2e
@needs_chromium
def test_a_revoked_token_brings_the_sign_in_back_and_keeps_the_form(server: Server, playwright_browser: Any, backend: str) -> None:
    headers = admin_headers(server.base)
    ui = Browser(playwright_browser, server.base, f"revoked-{backend}", None)
    page = ui.page
    page.goto(f"{server.base}/admin/")
    sign_in_with_keyboard(ui, "admin", ADMIN_PASS)
    page.get_by_role("heading", name="Departments").wait_for()
    page.get_by_role("link", name="New department").click()
    page.get_by_label("Name", exact=True).fill("Typed before the token died")
    page.get_by_label("Email").fill("typed@example.com")
    page.get_by_label("Description").fill("kept across the sign-in")

    session = json.loads(page.evaluate("() => sessionStorage.getItem('livechat-departments-admin')"))
    page_headers = {"X-User-Id": session["userId"], "X-Auth-Token": session["authToken"]}
    assert requests.post(f"{server.base}{API}/logout", headers=page_headers, timeout=10).status_code == 200

    page.get_by_role("button", name="Create").click()
    dialog = page.get_by_role("dialog", name="Your session has ended")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Username or email")).to_be_focused()
    page.keyboard.press("Escape")  # the dialog stays: there is no session behind it
    expect(dialog).to_be_visible()
    ui.check_axe("sign-in dialog")
    page.screenshot(path=str(OUTPUT / f"admin-{ui.name}-signin-dialog.png"))
    dialog.get_by_label("Username or email").fill("admin")
    dialog.get_by_label("Password").fill("wrong")
    dialog.get_by_role("button", name="Sign in").click()
    expect(dialog.get_by_role("alert")).to_have_text("Wrong username/email or password.")
    dialog.get_by_label("Password").fill(ADMIN_PASS)
    dialog.get_by_role("button", name="Sign in").click()
    # the interrupted create went through with the new token, with what was typed
    ui.expect_notice("Department created.")
    listed = api_get(server.base, headers, "livechat/department")["departments"]
    assert [(d["name"], d["description"]) for d in listed] == [("Typed before the token died", "kept across the sign-in")]

    # a token revoked while the tab was closed: the plain sign-in on the next visit
    session = json.loads(page.evaluate("() => sessionStorage.getItem('livechat-departments-admin')"))
    requests.post(f"{server.base}{API}/logout", headers={"X-User-Id": session["userId"], "X-Auth-Token": session["authToken"]}, timeout=10)
    page.reload()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.evaluate("() => sessionStorage.getItem('livechat-departments-admin')") is None

    # sign-out revokes the token on the server
    sign_in_with_keyboard(ui, "admin", ADMIN_PASS)
    page.get_by_role("heading", name="Departments").wait_for()
    session = json.loads(page.evaluate("() => sessionStorage.getItem('livechat-departments-admin')"))
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    me = requests.get(f"{server.base}{API}/me", headers={"X-User-Id": session["userId"], "X-Auth-Token": session["authToken"]}, timeout=10)
    assert me.status_code == 401
    ui.close()


@pytest.mark.e2e
@needs_chromium
@pytest.mark.skipif(not Path("/usr/sbin/nginx").exists(), reason="nginx test skipped: Debian's nginx is not installed")
def test_the_page_works_behind_nginx_under_a_prefix(tmp_path: Path, playwright_browser: Any, axe_source: str) -> None:
    from test_nginx_e2e import PREFIX, Nginx

    server = Server(f"sqlite:///{tmp_path / 'nginx.db'}", tmp_path / "gunicorn.log", ADMIN_PASS)
    server.env.pop("GUNICORN_CMD_ARGS", None)
    server.env.update(TRUSTED_PROXY_HOPS="1")
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    with server:
        nginx = Nginx(nginx_dir, int(server.env["PORT"])).start()
        try:
            base = f"{nginx.base}{PREFIX}"
            redirect = requests.get(f"{base}/admin", allow_redirects=False, timeout=10)
            assert urljoin(f"{base}/admin", redirect.headers["Location"]) == f"{base}/admin/"
            headers = admin_headers(base)
            requests.post(f"{base}{API}/livechat/department", headers=headers, timeout=10, json={
                "department": {"name": "Behind nginx", "email": "n@example.com", "enabled": True, "showOnRegistration": True}})

            ui = Browser(playwright_browser, nginx.base, "nginx", axe_source)
            page = ui.page
            # the API docs page links to it, relative to itself
            page.goto(f"{base}/api/docs")
            link = page.get_by_role("link", name="the admin page")
            assert urljoin(page.url, link.get_attribute("href")) == f"{base}/admin/"
            page.goto(f"{base}/admin")
            sign_in_with_keyboard(ui, "admin", ADMIN_PASS)
            ui.expect_rows(["Behind nginx"])
            page.get_by_role("link", name="New department").click()
            page.get_by_label("Name", exact=True).fill("Made behind nginx")
            page.get_by_label("Email").fill("m@example.com")
            page.get_by_role("button", name="Create").click()
            ui.expect_notice("Department created.")
            ui.expect_rows(["Behind nginx", "Made behind nginx"])
            ui.capture("departments")
            ui.close()
            # every file and call went through the prefix
            own = [url for url in ui.requests if not url.startswith(f"{base}/")]
            assert not own, own
            assert f"{base}/admin/app.js" in ui.requests and f"{base}/api/v1/login" in ui.requests
            assert f'"GET {PREFIX}/admin/departments.js HTTP/1.1" 200' in nginx.access_log()
        finally:
            nginx.stop()
    assert "Traceback" not in server.output()


def create_department(base: str, headers: dict[str, str], name: str, agents: list[dict[str, Any]] | None = None) -> str:
    body: dict[str, Any] = {"department": {"name": name, "email": f"{name.split()[0].lower()}@example.com", "enabled": True,
                                           "showOnRegistration": True}}
    if agents:
        body["agents"] = agents
    response = requests.post(f"{base}{API}/livechat/department", json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["department"]["_id"]


@pytest.mark.e2e
@needs_chromium
def test_forwarding_choices_custom_fields_agent_removal_and_what_delete_cleans_up(
    server: Server, playwright_browser: Any, axe_source: str, backend: str
) -> None:
    headers = admin_headers(server.base)
    alice = create_user(server.base, headers, "alice", ["user", "livechat-agent"])
    bob = create_user(server.base, headers, "bob", ["user", "livechat-agent"])
    alpha = create_department(server.base, headers, "Alpha desk", [{"agentId": alice["_id"]}, {"agentId": bob["_id"], "count": 3}])
    tiered = requests.put(f"{server.base}{API}/livechat/department/{alpha}", headers=headers, timeout=10,
                          json={"department": {"tier": "gold", "vip": False}})
    assert tiered.status_code == 200, tiered.text
    beta = create_department(server.base, headers, "Beta desk")
    gamma = create_department(server.base, headers, "Gamma desk")

    ui = Browser(playwright_browser, server.base, f"forwarding-{backend}", axe_source)
    page = ui.page
    page.goto(f"{server.base}/admin/#/departments/{alpha}")
    sign_in_with_keyboard(ui, "admin", ADMIN_PASS)
    page.get_by_role("heading", name="Edit “Alpha desk”").wait_for()
    expect(page.locator("table.agents tbody th")).to_have_text(["alice", "bob"])

    page.get_by_label("Fallback department").fill("bet")
    page.get_by_role("button", name="Choose Beta desk").click()
    expect(page.locator(".chosen")).to_contain_text("Beta desk")
    page.get_by_label("Departments allowed to forward to").fill("gam")
    page.get_by_role("button", name="Choose Gamma desk").click()
    page.get_by_label("Departments allowed to forward to").fill("beta")
    page.get_by_role("button", name="Choose Beta desk").click()
    expect(page.locator(".chips li")).to_have_text(["Gamma deskRemove", "Beta deskRemove"])
    page.get_by_label("Departments allowed to forward to").fill("alpha")  # a department never offers itself
    allowed_picker = page.locator(".picker", has=page.get_by_label("Departments allowed to forward to"))
    expect(allowed_picker.locator(".pick-results")).to_have_text("No results.")
    page.get_by_role("button", name="Remove alice").click()
    ui.expect_notice("alice removed.")
    # custom fields: edited with a control of their type, new ones added by name and type
    expect(page.get_by_label("tier", exact=True)).to_have_value("gold")
    page.get_by_label("tier", exact=True).fill("platinum")
    page.get_by_label("vip", exact=True).check()
    page.get_by_label("New custom field name").fill("tier")
    page.get_by_role("button", name="Add custom field").click()
    expect(page.locator(".custom-add .field-error").first).to_have_text("“tier” is already a field of this department.")
    page.get_by_label("New custom field name").fill("priority")
    page.get_by_label("Type", exact=True).select_option(label="Whole number")
    page.get_by_role("button", name="Add custom field").click()
    expect(page.get_by_label("priority", exact=True)).to_be_focused()
    page.keyboard.type("2")
    ui.capture("department-forwarding")
    page.get_by_role("button", name="Save").click()
    ui.expect_notice("Saved.")

    saved = api_get(server.base, headers, f"livechat/department/{alpha}")
    assert saved["department"]["fallbackForwardDepartment"] == beta
    assert saved["department"]["departmentsAllowedToForward"] == [gamma, beta]
    assert [(a["username"], a["count"]) for a in saved["agents"]] == [("bob", 3)]  # kept as it was
    assert saved["department"]["numAgents"] == 1
    assert (saved["department"]["tier"], saved["department"]["vip"], saved["department"]["priority"]) == ("platinum", True, 2)

    # delete Beta desk: the confirmation says it, and Alpha desk no longer names it
    page.get_by_label("Search departments").fill("beta")
    ui.expect_rows(["Beta desk"])
    page.get_by_role("button", name="Delete Beta desk").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("removes its agent links (0)")
    dialog.get_by_role("button", name="Delete department").click()
    ui.expect_notice("“Beta desk” deleted.")
    cleaned = api_get(server.base, headers, f"livechat/department/{alpha}")["department"]
    assert not cleaned.get("fallbackForwardDepartment")
    assert cleaned["departmentsAllowedToForward"] == [gamma]

    page.goto(f"{server.base}/admin/#/departments/{alpha}")
    page.get_by_role("heading", name="Edit “Alpha desk”").wait_for()
    expect(page.locator(".chosen")).to_have_text("None")
    expect(page.locator(".chips li")).to_have_text(["Gamma deskRemove"])
    ui.close()


@pytest.mark.e2e
@needs_chromium
def test_a_caller_who_may_only_add_agents_edits_the_agents_alone(
    server: Server, playwright_browser: Any, axe_source: str, backend: str
) -> None:
    """Without manage-livechat-departments but with add-livechat-department-agents: the fields are
    shown but cannot be changed, the agents can, and they are saved in one request (POST …/agents)."""
    headers = admin_headers(server.base)
    changed = requests.post(f"{server.base}{API}/permissions.update", headers=headers, timeout=10, json={"permissions": [
        {"_id": "manage-livechat-departments", "roles": ["admin", "livechat-monitor"]},
        {"_id": "remove-livechat-department", "roles": ["admin"]},
    ]})
    assert changed.status_code == 200, changed.text
    create_user(server.base, headers, "manny", ["user", "livechat-manager"])
    alice = create_user(server.base, headers, "alice", ["user", "livechat-agent"])
    create_user(server.base, headers, "bob", ["user", "livechat-agent"])
    desk = create_department(server.base, headers, "Agents desk", [{"agentId": alice["_id"]}])

    ui = Browser(playwright_browser, server.base, f"agents-only-{backend}", axe_source)
    page = ui.page
    page.goto(f"{server.base}/admin/")
    sign_in_with_keyboard(ui, "manny", "pw-manny")
    ui.expect_rows(["Agents desk"])
    assert page.get_by_role("link", name="New department").count() == 0
    assert page.get_by_role("button", name=re.compile("^(Archive|Delete)")).count() == 0
    ui.press("Agents desk")
    page.get_by_role("heading", name="Edit “Agents desk”").wait_for()
    expect(page.get_by_label("Name", exact=True)).to_be_disabled()
    expect(page.get_by_label("Fallback department")).to_be_disabled()
    ui.type_into("Search an agent to add", "bob")
    ui.press("Choose bob")
    ui.type_into("Order of alice", "4")
    ui.capture("department-agents-only")
    calls: list[str] = []
    page.on("request", lambda request: calls.append(f"{request.method} {request.url.split('/api/v1/')[1]}")
            if "/api/v1/livechat/department/" in request.url and request.method != "GET" else None)
    ui.press("Save")
    ui.expect_notice("Saved.")
    assert calls == [f"POST livechat/department/{desk}/agents"]
    saved = api_get(server.base, headers, f"livechat/department/{desk}")
    assert [(a["username"], a["order"]) for a in saved["agents"]] == [("alice", 4), ("bob", 0)]
    assert saved["department"]["name"] == "Agents desk"
    ui.close()
