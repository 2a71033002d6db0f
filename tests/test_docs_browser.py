"""The API docs page in a real browser: gunicorn, headless Chromium driven by Playwright.

Debian's chromium (/usr/bin/chromium, installed by .ci/run) is the browser; Playwright's own
browser download is never used. The page must load every file from the service itself, list the
department endpoints, take a login token in its Authorize dialog and call
`GET /api/v1/livechat/department` with it ("Try it out" → "Execute"), at the root and under a
path prefix (gunicorn's SCRIPT_NAME). Screenshots go to tests/output/ (not committed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import API, department_fields
from servers import Server, login

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which this closed network refuses.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parent / "output"
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser test skipped: Debian's chromium is not installed (/usr/bin/chromium missing; "
        "`apt-get install chromium`, as .ci/run does)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (requirements-dev.txt)")

DEPARTMENT_PATHS = {
    "/api/v1/livechat/department",
    "/api/v1/livechat/department/{department_id}",
    "/api/v1/livechat/department/{department_id}/agents",
    "/api/v1/livechat/department/{department_id}/archive",
    "/api/v1/livechat/department.autocomplete",
    "/api/v1/livechat/departments/archived",
}


class PrefixedServer(Server):
    """gunicorn mounted under `prefix` (SCRIPT_NAME); `base` includes the prefix."""

    def __init__(self, database_url: str, log: Path, admin_pass: str, prefix: str) -> None:
        super().__init__(database_url, log, admin_pass)
        self.prefix = prefix
        if prefix:
            self.env["SCRIPT_NAME"] = prefix
        self.env.pop("GUNICORN_CMD_ARGS", None)  # the access log format of gunicorn.conf.py

    def _wait_until_answering(self) -> bool:
        self.base += self.prefix  # gunicorn refuses paths outside SCRIPT_NAME
        return super()._wait_until_answering()


@pytest.mark.parametrize("prefix", ["", "/chat-api"], ids=["root", "prefix"])
def test_docs_page_lists_authorises_and_executes(prefix: str, tmp_path: Path) -> None:
    password = "browser-admin-pass"
    with PrefixedServer(f"sqlite:///{tmp_path / 'docs.db'}", tmp_path / "gunicorn.log", password, prefix) as server:
        headers = login(server.base, password)
        created = requests.post(
            f"{server.base}{API}/livechat/department",
            json={"department": department_fields(name="Browser sales")}, headers=headers, timeout=10,
        )
        assert created.status_code == 200, created.text
        origin = server.base[: len(server.base) - len(prefix)] if prefix else server.base
        shots = browse(f"{server.base}/api/docs", origin, headers, f"docs-browser-{'prefix' if prefix else 'root'}")
        assert "Traceback" not in server.output()
        # the page's own requests reached the service under the prefix, and logged their request ids
        assert f'"GET {prefix}/api/docs/swagger-ui-bundle.js HTTP/1.1" 200' in server.output()
        assert f'"GET {prefix}{API}/livechat/department HTTP/1.1" 200' in server.output()
    assert all(shot.stat().st_size > 10_000 for shot in shots)


def browse(page_url: str, origin: str, headers: dict[str, str], name: str) -> list[Path]:
    """Drive the docs page; returns the screenshots written."""
    OUTPUT.mkdir(exist_ok=True)
    foreign: list[str] = []
    problems: list[str] = []
    api_calls: list[dict[str, Any]] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)

            def only_this_service(route: Any) -> None:
                if route.request.url.startswith(origin + "/"):
                    route.continue_()
                else:
                    foreign.append(route.request.url)
                    route.abort()

            page.route("**/*", only_this_service)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
                    if message.type == "error" else None)
            page.on("request", lambda request: api_calls.append({"url": request.url, "headers": request.headers})
                    if "/api/v1/" in request.url else None)

            response = page.goto(page_url)
            assert response is not None and response.status == 200

            # the department endpoints are listed (from the service's own OpenAPI document)
            page.wait_for_selector('.opblock-summary-path[data-path="/api/v1/livechat/department"]')
            listed = set(page.locator(".opblock-summary-path").evaluate_all("nodes => nodes.map(n => n.dataset.path)"))
            assert DEPARTMENT_PATHS <= listed, sorted(listed)
            assert page.locator(".opblock-tag", has_text="departments").count() == 1

            # Authorize: one apiKey form per header, each with its value and its own button
            page.click("button.authorize")
            values = {"X-User-Id": headers["X-User-Id"], "X-Auth-Token": headers["X-Auth-Token"]}
            forms = page.locator(".auth-container")
            assert forms.count() == 2
            for index in range(2):
                form = forms.nth(index)
                header = form.locator("p", has_text="Name:").locator("code").inner_text()
                form.locator("input").fill(values[header])
                form.locator("button.authorize").click()
                form.locator("button", has_text="Logout").wait_for()  # Swagger UI's "authorised" state
            page.click("button.btn-done >> nth=0")
            page.locator(".modal-ux").wait_for(state="detached")
            shots = [OUTPUT / f"{name}.png", OUTPUT / f"{name}-response.png"]
            page.screenshot(path=str(shots[0]))  # the top: title, servers, Authorize (locked), endpoints

            # Try it out → Execute on GET /api/v1/livechat/department
            operation = page.locator("div.opblock.opblock-get").filter(
                has=page.locator('.opblock-summary-path[data-path="/api/v1/livechat/department"]')
            )
            assert operation.count() == 1
            operation.locator(".opblock-summary-control").click()
            operation.locator("button.try-out__btn").click()
            operation.locator("button.execute").click()
            status = operation.locator(".live-responses-table tbody .response .response-col_status")
            status.wait_for()
            assert status.inner_text().strip() == "200"
            request_url = operation.locator(".request-url pre").inner_text().strip()
            assert request_url == page_url.removesuffix("/api/docs") + "/api/v1/livechat/department"
            body = operation.locator(".live-responses-table tbody .response .response-col_description pre").first.inner_text()
            assert '"Browser sales"' in body and '"success": true' in body

            sent = [call for call in api_calls if call["url"] == request_url]
            assert sent and sent[-1]["headers"].get("x-auth-token") == headers["X-Auth-Token"]
            assert sent[-1]["headers"].get("x-user-id") == headers["X-User-Id"]

            operation.screenshot(path=str(shots[1]))  # the call: curl, request URL, 200 and body
        finally:
            browser.close()
    assert not foreign, f"the page tried to load files from elsewhere: {foreign}"
    assert not problems, problems
    return shots
