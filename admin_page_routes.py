"""The admin web page, `GET /admin/`: departments, agents and managers, on top of this API.

The page is plain files in `admin_page/` (HTML, CSS and ES modules, no build step), served from
an allow-list by this blueprint. Every URL the page uses is relative to it (`app.js`,
`../api/v1/…`), so it works wherever the service is mounted, under gunicorn's SCRIPT_NAME or a
proxy's X-Forwarded-Prefix alike, as the docs page does (docs_routes.py). The page signs in
through `POST /api/v1/login` and sends the token as X-User-Id/X-Auth-Token headers: the page's
own routes need no login and hold no data. docs/admin-page.md explains the design.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app
from werkzeug.exceptions import NotFound

from openapi import doc

bp = Blueprint("admin_page", __name__)

PAGE_DIR = Path(__file__).resolve().parent / "admin_page"
# Every file the page may load: nothing else in the folder (or outside it) is served.
PAGE_FILES = frozenset(
    path.name for path in PAGE_DIR.iterdir() if path.suffix in (".js", ".css", ".svg") and path.is_file()
)

# The page's own policy, stricter than the docs page's: only this service's origin, no inline
# script or style at all, no <base>, no form posts, no framing, and Trusted Types so that no
# string can become HTML (the page builds its DOM with textContent only).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; "
    "trusted-types 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@bp.get("/admin")
@doc(hidden=True)  # the admin page, not part of the API
def page_without_slash() -> Response:
    """The admin page's address without its trailing slash: a redirect to it."""
    # Relative, so that any path prefix is kept (/chat-api/admin -> /chat-api/admin/), and with a
    # JSON body like every answer of the service that is not a page (werkzeug's own slash
    # redirect would answer HTML).
    response = current_app.json.response({"success": True})
    response.status_code = 308
    response.headers["Location"] = "admin/"
    return response


@bp.get("/admin/")
@doc(hidden=True)
def page() -> Response:
    """The admin page."""
    return _file("index.html")


@bp.get("/admin/<filename>")
@doc(hidden=True)
def asset(filename: str) -> Response:
    """A file of the admin page."""
    if filename not in PAGE_FILES:
        raise NotFound()
    return _file(filename)


MIMETYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _file(filename: str) -> Response:
    # Read on each request (a few KB): an edited file is served without a restart, and the
    # page is never cached anyway (security.py sends Cache-Control: no-store with everything).
    body = (PAGE_DIR / filename).read_bytes()
    return Response(body, mimetype=MIMETYPES[Path(filename).suffix], headers=PAGE_HEADERS)
