"""Behind a real nginx, under a path prefix: deploy/nginx-departments.conf in front of gunicorn.

nginx (Debian's package, installed by .ci/run) runs in the foreground with a configuration,
pid file, logs and temp directories of its own in the test's tmp directory, on a free port below
32768, and includes the deploy site file with only its two ports changed. gunicorn runs with
TRUSTED_PROXY_HOPS=1, as deploy/departments.service says. Everything goes through
http://127.0.0.1:<nginx>/chat-api/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from conftest import API, department_fields
from servers import ROOT, Server, free_port, login, stop_process

NGINX = Path("/usr/sbin/nginx")
SITE = ROOT / "deploy" / "nginx-departments.conf"
PREFIX = "/chat-api"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not NGINX.exists(),
        reason="nginx test skipped: Debian's nginx is not installed (/usr/sbin/nginx missing; "
        "`apt-get install nginx`, as .ci/run does)",
    ),
]

MAIN_CONFIG = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    log_format with_id '$remote_addr "$request" $status $body_bytes_sent request_id=$departments_request_id';
    access_log {tmp}/access.log with_id;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
"""


def render_site(nginx_port: int, gunicorn_port: int) -> str:
    """The deploy site file, listening on `nginx_port` and proxying to `gunicorn_port`."""
    site = SITE.read_text()
    for old, new in (("listen 80;", f"listen 127.0.0.1:{nginx_port};"), ("server 127.0.0.1:3000;", f"server 127.0.0.1:{gunicorn_port};")):
        assert site.count(old) == 1, f"{SITE} no longer has exactly one {old!r}"
        site = site.replace(old, new)
    return site


class Nginx:
    """nginx in the foreground, on its own files in `tmp`; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, tmp: Path, upstream_port: int) -> None:
        self.tmp = tmp
        self.upstream_port = upstream_port
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""

    def command(self, *extra: str) -> list[str]:
        return [str(NGINX), "-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf"), "-e", str(self.tmp / "error.log"), *extra]

    def start(self) -> Nginx:
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the 0700 tmp directory
        for _attempt in range(3):
            port = free_port()
            (self.tmp / "site.conf").write_text(render_site(port, self.upstream_port))
            (self.tmp / "nginx.conf").write_text(MAIN_CONFIG.format(user=user, tmp=self.tmp))
            checked = subprocess.run(self.command("-t"), capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
            self.process = subprocess.Popen(self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            self.base = f"http://127.0.0.1:{port}"
            if self._wait_until_listening(port):
                return self
            self.stop()
            if "Address already in use" not in self.errors():
                break
        pytest.fail(f"nginx did not start:\n{self.errors()[-3000:]}")

    def _wait_until_listening(self, port: int) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        stop_process(self.process, grace=10)
        self.process = None

    def errors(self) -> str:
        log = self.tmp / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def access_log(self) -> str:
        log = self.tmp / "access.log"
        return log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Server, Nginx]]:
    """gunicorn (two workers, SQLite, trusting one proxy, metrics on) behind nginx."""
    server = Server(f"sqlite:///{tmp_path / 'nginx.db'}", tmp_path / "gunicorn.log", "nginx-admin-pass")
    server.env.pop("GUNICORN_CMD_ARGS", None)  # gunicorn.conf.py's own access log format
    server.env.update(TRUSTED_PROXY_HOPS="1", METRICS="on", LOG_FORMAT="text")
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    with server:
        nginx = Nginx(nginx_dir, int(server.env["PORT"])).start()
        try:
            yield server, nginx
        finally:
            nginx.stop()


def test_the_api_through_nginx_under_a_prefix(stack: tuple[Server, Nginx]) -> None:
    server, nginx = stack
    api = f"{nginx.base}{PREFIX}{API}"
    headers = login(f"{nginx.base}{PREFIX}", "nginx-admin-pass")

    created = requests.post(
        f"{api}/livechat/department", json={"department": department_fields(name="Through nginx")}, headers=headers, timeout=10
    )
    assert created.status_code == 200, created.text
    department_id = created.json()["department"]["_id"]

    listed = requests.get(f"{api}/livechat/department", headers=headers, timeout=10)
    assert listed.status_code == 200, listed.text
    assert [d["_id"] for d in listed.json()["departments"]] == [department_id]
    assert listed.json()["total"] == 1

    one = requests.get(f"{api}/livechat/department/{department_id}", headers=headers, timeout=10)
    assert one.json()["department"]["name"] == "Through nginx"
    # errors stay the service's JSON, not nginx pages
    missing = requests.get(f"{api}/nope", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"success": False, "error": "Resource not found"}
    assert "Traceback" not in server.output()


def test_docs_and_openapi_through_nginx_under_a_prefix(stack: tuple[Server, Nginx]) -> None:
    _server, nginx = stack
    document = requests.get(f"{nginx.base}{PREFIX}/api/openapi.json", timeout=10)
    assert document.status_code == 200
    assert document.json()["servers"] == [{"url": PREFIX}]  # from X-Forwarded-Prefix
    assert "/api/v1/livechat/department" in document.json()["paths"]

    page_url = f"{nginx.base}{PREFIX}/api/docs"
    page = requests.get(page_url, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    # every file the page names resolves under the prefix and is served by the service
    references = re.findall(r'(?:src|href|data-spec-url)="([^"]+)"', page.text)
    assert "openapi.json" in references and "docs/swagger-ui-bundle.js" in references
    for reference in references:
        url = urljoin(page_url, reference)
        assert url.startswith(f"{nginx.base}{PREFIX}/api/"), url
        response = requests.get(url, timeout=10)
        assert response.status_code == 200, url
    bundle = requests.get(urljoin(page_url, "docs/swagger-ui-bundle.js"), timeout=10)
    assert len(bundle.content) > 1_000_000 and "javascript" in bundle.headers["Content-Type"]
    assert requests.get(f"{nginx.base}{PREFIX}", timeout=10, allow_redirects=False).headers["Location"] == f"{PREFIX}/"


def test_request_ids_health_and_metrics_through_nginx(stack: tuple[Server, Nginx]) -> None:
    server, nginx = stack
    base = f"{nginx.base}{PREFIX}"
    chosen = requests.get(f"{base}/healthz", headers={"X-Request-ID": "nginx-e2e.1"}, timeout=10)
    assert chosen.status_code == 200 and chosen.json() == {"success": True, "status": "ok"}
    assert chosen.headers["X-Request-ID"] == "nginx-e2e.1"
    made_by_nginx = requests.get(f"{base}/readyz", timeout=10)
    assert made_by_nginx.status_code == 200 and made_by_nginx.json()["status"] == "ready"
    nginx_id = made_by_nginx.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", nginx_id)  # nginx's $request_id, kept by the service

    # metrics are not served to the world through nginx; Prometheus scrapes gunicorn directly
    hidden = requests.get(f"{base}/metrics", timeout=10)
    assert hidden.status_code == 404 and hidden.json()["success"] is False
    scraped = requests.get(f"{server.base}/metrics", timeout=10)
    assert scraped.status_code == 200
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in scraped.text

    # one id in nginx's access log, gunicorn's access line and the response
    deadline = time.monotonic() + 5
    while nginx_id not in nginx.access_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f'"GET {PREFIX}/readyz HTTP/1.1" 200' in nginx.access_log()
    assert f"request_id={nginx_id}" in nginx.access_log()
    assert re.search(rf'"GET /readyz HTTP/1\.1" 200 .* request_id={nginx_id} ', server.output()), server.output()[-2000:]
    assert re.search(r'"GET /healthz HTTP/1\.1" 200 .* request_id=nginx-e2e\.1 ', server.output())
